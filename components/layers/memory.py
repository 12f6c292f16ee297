"""The MIRAS/Titans memory layer: (batch, seq, dim) -> (batch, seq, dim) around the memory engine.

    x -> q, k, v projections -> depthwise short conv + SiLU -> l2-normalised q and k, per head
      -> data-dependent gates theta, alpha, eta, delta from x -> memory engine (any rule of the space)
      -> per-head RMSNorm -> output gate SiLU(x W_g) -> output projection

Optional persistent memory tokens (learned, input-independent) are prepended at the start of a sequence, so
the memory starts each sequence having written them. The layer carries a state (memory weights and
momentum, the convolution's last inputs) for streaming and generation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..engine import Execution, MemoryRule, MemoryState, Plan, memory_scan, plan
from ..options import ComponentError
from .conv import ShortConv
from .couplings import GATE_COUPLINGS
from .gates import default_inits
from .norm import rms_norm

OUTPUTS = ("gated", "norm", "linear")


@dataclass
class MemoryLayerState:
    memory: MemoryState
    conv: Tensor | None  # (batch, kernel - 1, 3 * inner): the last inputs of the q/k/v convolution

    def detach(self) -> "MemoryLayerState":
        return MemoryLayerState(self.memory.detach(), None if self.conv is None else self.conv.detach())


class MemoryLayer(nn.Module):
    def __init__(self, dim: int, rule: MemoryRule | dict, heads: int = 1, head_dim: int | None = None,
                 chunk_size: int = 64, read: str = "after", max_lr: float = 1.0, conv_size: int = 4,
                 output: str = "gated", gate_projection: str = "linear", gate_rank: int = 16, persistent_tokens: int = 0,
                 execution: Execution | Mapping[str, Any] | None = None, gate_coupling: str = "independent",
                 retain_init: float | None = None) -> None:
        super().__init__()
        if output not in OUTPUTS:
            raise ComponentError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
        self.rule = rule if isinstance(rule, MemoryRule) else MemoryRule(**rule)
        self.dim, self.heads = dim, heads
        self.head_dim = head_dim or dim // heads
        self.chunk_size, self.read, self.output = chunk_size, read, output
        # How the engine runs the rule (path, exactness, checkpointing, compile): never what the layer computes.
        self.execution = Execution.of(execution)
        self.rule.check_dims(self.head_dim, self.head_dim)
        self.steps = self.rule.algorithm.steps_per_token()
        inner = self.inner = heads * self.head_dim
        # q, then k and v for every inner sub-step (multi-step GD may write several pairs per token)
        self.to_qkv = nn.Linear(dim, inner * (1 + 2 * self.steps), bias=False)
        self.conv = ShortConv(inner * (1 + 2 * self.steps), conv_size) if conv_size > 0 else None
        self.gate_specs = self.rule.gates()
        # how the gates come from the token: each from its own projection, or coupled (Mamba2's one step size)
        inits = default_inits(self.rule, self.head_dim)
        if retain_init is not None:
            inits["retain"] = retain_init
        coupling = GATE_COUPLINGS.create(gate_coupling)
        reason = coupling.check(self.rule)
        if reason:
            raise ComponentError(reason)
        self.gates = coupling.build(dim, heads, self.head_dim, self.gate_specs, gate_projection, gate_rank, max_lr,
                                    inits)
        self.out_norm = rms_norm(self.head_dim) if output in ("gated", "norm") else None
        self.out_gate = nn.Linear(dim, inner, bias=False) if output == "gated" else None
        self.out = nn.Linear(inner, dim, bias=False)
        self.persistent = nn.Parameter(torch.randn(persistent_tokens, dim) * 0.02) if persistent_tokens else None
        init = [self.rule.structure.init_params(self.head_dim, self.head_dim) for _ in range(heads)]
        self.init_acc = nn.ParameterList(
            [nn.Parameter(torch.stack([h[i] for h in init])) for i in range(len(init[0]))]
        )
        # the structure's outer parameters per head (TTT's LN scale and shift): trained here, never by inner steps
        self.outer = nn.ParameterList(
            [nn.Parameter(p.unsqueeze(0).repeat(heads, *([1] * p.dim())))
             for p in self.rule.structure.init_outer(self.head_dim, self.head_dim)]
        )

    # ------------------------------------------------------------------ state
    def initial_memory(self, batch: int) -> list[Tensor]:
        return [rearrange(p.unsqueeze(0).expand(batch, *p.shape), "b h ... -> (b h) ...") for p in self.init_acc]

    def outer_params(self, batch: int) -> list[Tensor]:
        """The structure's outer parameters per sequence-head, (batch * heads, *shape)."""
        return [rearrange(p.unsqueeze(0).expand(batch, *p.shape), "b h ... -> (b h) ...") for p in self.outer]

    def make_gates(self, x: Tensor) -> dict[str, Tensor]:
        return self.gates(x)

    # ------------------------------------------------------------------ forward
    def forward(self, x: Tensor, state: MemoryLayerState | None = None, **engine: Any) -> tuple[Tensor, MemoryLayerState]:
        b, n_in = x.shape[0], x.shape[1]
        if state is None and self.persistent is not None:
            x = torch.cat([self.persistent.unsqueeze(0).expand(b, -1, -1).to(x.dtype), x], dim=1)
        qkv = self.to_qkv(x)
        conv_state = None
        if self.conv is not None:
            qkv, conv_state = self.conv(qkv, None if state is None else state.conv)
            qkv = F.silu(qkv)
        q, kv = qkv.split([self.inner, 2 * self.steps * self.inner], dim=-1)
        q = F.normalize(rearrange(q, "b t (h d) -> (b h) t d", h=self.heads), dim=-1)
        k, v = rearrange(kv, "b t (two s h d) -> two (b h) (t s) d", two=2, h=self.heads, s=self.steps)
        k = F.normalize(k, dim=-1)
        memory = self.initial_memory(b) if state is None else state.memory
        y, memory = memory_scan(self.rule, k, v, q, self.make_gates(x), memory, self.chunk_size, self.read,
                                self.execution, outer=self.outer_params(b), **engine)
        out = self._output(y.to(x.dtype), x, b)
        return out[:, out.shape[1] - n_in:], MemoryLayerState(memory, conv_state)

    def plan(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Plan:
        """The engine path this layer's rule takes on `device` (what a run records as memory.path)."""
        return plan(self.rule, self.execution, device, self.read == "after", dtype)

    def state_numel(self, seq_len: int = 0) -> int:
        """Numbers held per sequence between calls (independent of length): every head's memory weights,
        its momentum where the algorithm has one, and the short convolution's last inputs."""
        per_head = sum(math.prod(s) for s in self.rule.structure.param_shapes(self.head_dim, self.head_dim))
        copies = 2 if self.rule.algorithm.uses_momentum else 1
        return self.heads * per_head * copies + (0 if self.conv is None else self.conv.state_numel())

    def retrieve(self, x: Tensor, state: MemoryLayerState | None = None) -> Tensor:
        """Read the memory at queries from x without writing (Titans MAC's h_t = M*_{t-1}(q_t))."""
        b = x.shape[0]
        q_proj = self.to_qkv.weight[: self.inner]
        q = F.normalize(rearrange(x @ q_proj.mT, "b t (h d) -> (b h) t d", h=self.heads), dim=-1)
        weights = self.rule.read_weights(self.initial_memory(b)) if state is None else state.memory.read
        dtype = weights[0].dtype
        y = self.rule.structure.forward(list(weights), q.to(dtype), [p.to(dtype) for p in self.outer_params(b)])
        return self._output(y.to(x.dtype), x, b)

    def _output(self, y: Tensor, x: Tensor, b: int) -> Tensor:
        if self.out_norm is not None:
            y = self.out_norm(y)
        y = rearrange(y, "(b h) t d -> b t (h d)", b=b)
        if self.out_gate is not None:
            y = y * F.silu(self.out_gate(x))
        return self.out(y)
