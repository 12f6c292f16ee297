"""NeuralMemory: the engine as a trainable sequence layer (batch, seq, dim) -> (batch, seq, dim).

Projects q, k, v per head (l2-normalised q and k), produces the data-dependent gates the rule asks
for, runs the memory engine, and projects back. Each head's initial memory is learned. The full
MIRAS/Titans block (short convolutions, output norm and gate, persistent tokens) builds on this.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from .engine import MemoryRule, MemoryState, memory_scan


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


# Gate name -> (activation, initial value): theta in (0, max_lr), alpha and eta in (0, 1), delta > 0.
GATE_INIT = {"lr": 0.5, "retain": 0.95, "momentum": 0.9, "delta": 1.0}


class NeuralMemory(nn.Module):
    def __init__(self, dim: int, rule: MemoryRule | dict, heads: int = 1, head_dim: int | None = None,
                 chunk_size: int = 64, read: str = "after", max_lr: float = 1.0) -> None:
        super().__init__()
        self.rule = rule if isinstance(rule, MemoryRule) else MemoryRule(**rule)
        self.heads = heads
        self.head_dim = head_dim or dim // heads
        self.chunk_size = chunk_size
        self.read = read
        self.max_lr = max_lr
        self.rule.check_dims(self.head_dim, self.head_dim)
        steps = self.rule.algorithm.steps_per_token()
        inner = heads * self.head_dim
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner * steps, bias=False)
        self.out = nn.Linear(inner, dim, bias=False)
        self.gate_specs = self.rule.gates()
        self.gates = nn.ModuleDict()
        for name, granularity in self.gate_specs.items():
            width = heads * (self.head_dim if granularity == "channel" else 1)
            proj = nn.Linear(dim, width)
            nn.init.zeros_(proj.weight)
            init = GATE_INIT[name] / (max_lr if name == "lr" else 1.0)
            nn.init.constant_(proj.bias, math.log(math.expm1(init)) if name == "delta" else _logit(init))
            self.gates[name] = proj
        shapes = self.rule.structure.param_shapes(self.head_dim, self.head_dim)
        init = [self.rule.structure.init_params(self.head_dim, self.head_dim) for _ in range(heads)]
        self.init_acc = nn.ParameterList(
            [nn.Parameter(torch.stack([h[i] for h in init])) for i in range(len(shapes))]
        )

    def initial_state(self, batch: int) -> list[Tensor]:
        return [rearrange(p.unsqueeze(0).expand(batch, *p.shape), "b h ... -> (b h) ...") for p in self.init_acc]

    def make_gates(self, x: Tensor) -> dict[str, Tensor]:
        out = {}
        for name, granularity in self.gate_specs.items():
            raw = self.gates[name](x)
            val = F.softplus(raw) if name == "delta" else torch.sigmoid(raw)
            if name == "lr":
                val = val * self.max_lr
            pattern = "b t (h c) -> (b h) t c" if granularity == "channel" else "b t h -> (b h) t"
            out[name] = rearrange(val, pattern, h=self.heads)
        return out

    def forward(self, x: Tensor, state: MemoryState | None = None, **engine: Any) -> tuple[Tensor, MemoryState]:
        b = x.shape[0]
        q = F.normalize(rearrange(self.to_q(x), "b t (h d) -> (b h) t d", h=self.heads), dim=-1)
        k, v = rearrange(self.to_kv(x), "b t (two s h d) -> two (b h) (t s) d", two=2, h=self.heads,
                         s=self.rule.algorithm.steps_per_token())
        k = F.normalize(k, dim=-1)
        opts = {"chunk_size": self.chunk_size, "read": self.read, **engine}
        y, state = memory_scan(self.rule, k, v, q, self.make_gates(x),
                               self.initial_state(b) if state is None else state, **opts)
        y = rearrange(y.to(x.dtype), "(b h) t d -> b t (h d)", b=b)
        return self.out(y), state
