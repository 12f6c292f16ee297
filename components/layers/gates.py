"""Data-dependent gates of the memory layer: theta (inner learning rate), alpha (retention), eta (momentum),
delta (Huber threshold), each from the input token, one value per head or per channel."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..options import ComponentError

# Gate name -> initial value: alpha and eta in (0, 1), delta > 0; theta in (0, max_lr) starts at this fraction of
# max_lr (so any max_lr > 0 has a valid start).
# retain 0.99 keeps a write for ~70 tokens at half strength; 0.95 (~14) wiped a 128-token MQAR context before its
# queries, and Gated DeltaNet / Titans then sat at chance (0.11 / 0.12 recall after 600 steps, vs 0.93 / 0.54).
GATE_INIT = {"lr": 0.5, "retain": 0.99, "momentum": 0.9, "delta": 1.0}
# A memory whose output passes a LayerNorm (x + LN(MLP(x))) is scale-invariant in its last weights: under decay its
# weights settle where each write turns them by about sqrt(1 - alpha^2) radians per token, whatever theta is
# (decay takes (1 - alpha) of the norm, the write, orthogonal to the weights, puts it back). At 0.99 that is 0.14 rad
# per token and the inner optimisation is chaotic: fp32 and float64 outputs part after ~1000 tokens (titans: 0.04
# relative at 2048 for one layer). At 0.999 (0.045 rad) most seeds agree to 1e-4 but not all (titans_mac 2.6e-2,
# titans_mag 4.5e-3 at seed 1); at 0.9995 (0.032 rad) every Titans variant stays within 3.4e-4 over three seeds.
# benchmarks/fp32_stability.py --seeds 3 measures it.
SCALE_INVARIANT_RETAIN = 0.9995


# A data-dependent Huber threshold starts at twice the norm of an error with unit RMS per channel (an LN output, a
# unit-variance value): typical errors take the l2 piece and outliers the l1 piece, as a Huber loss means. At
# GATE_INIT's 1.0 every error of Yaad's x + LN(MLP) memory (norm ~sqrt(d) = 4 at head dim 16) took the l1 piece, so
# the memory did sign descent, which has no curvature to damp rounding: fp32 parted from float64 by 1.1 at 2048
# tokens (at 2 sqrt(d): 5e-5, at dims 64 and 128, three seeds).
DELTA_PER_SQRT_DIM = 2.0


def default_inits(rule, head_dim: int) -> dict[str, float]:
    """Initial gate values that differ from GATE_INIT for this rule: the retention of scale-invariant memories, the
    Huber threshold (which scales with the head's value width), and what the retention itself asks for."""
    inits = {}
    gates = rule.gates()
    if "retain" in gates and getattr(rule.structure, "has_residual", False):
        inits["retain"] = SCALE_INVARIANT_RETAIN
    if "delta" in gates:
        inits["delta"] = DELTA_PER_SQRT_DIM * math.sqrt(head_dim)
    inits.update({name: value for name, value in rule.retention.gate_starts.items() if name in gates})
    return inits


PROJECTIONS = ("linear", "lowrank", "constant")


def _inverse_activation(name: str, value: float) -> float:
    return math.log(math.expm1(value)) if name == "delta" else math.log(value / (1.0 - value))


class GateProjection(nn.Module):
    """x -> one gate for every head (or every channel of every head).

    'linear' is one Linear; 'lowrank' factors it through `rank` (GLA's low-rank gates), for channel-wise
    gates on wide layers; 'constant' is a learned value per head or channel that ignores the input (RetNet's
    fixed decays, linear attention's unit step). Weights start at zero, so every gate starts at its GATE_INIT
    value for every token.
    """

    def __init__(self, name: str, dim: int, heads: int, channels: int, projection: str = "linear",
                 rank: int = 16, max_lr: float = 1.0, init: float | None = None) -> None:
        super().__init__()
        if projection not in PROJECTIONS:
            raise ComponentError(f"gate_projection must be one of {', '.join(PROJECTIONS)}, got {projection!r}")
        self.name, self.heads, self.channels, self.max_lr = name, heads, channels, max_lr
        width = heads * channels
        if projection == "constant":
            self.proj = None
            self.bias = nn.Parameter(torch.zeros(width))
            last = self
        elif projection == "lowrank":
            self.proj = nn.Sequential(nn.Linear(dim, rank, bias=False), nn.Linear(rank, width))
            nn.init.zeros_(self.proj[1].weight)
            last = self.proj[1]
        else:
            self.proj = nn.Linear(dim, width)
            nn.init.zeros_(self.proj.weight)
            last = self.proj
        if name == "lr" and not max_lr > 0:
            raise ComponentError(f"max_lr must be > 0 (the inner learning rate's ceiling), got {max_lr!r}")
        start = GATE_INIT[name] if init is None else init
        if not (start > 0 and (name == "delta" or start < 1)):
            raise ComponentError(f"the initial {name} gate must be in (0, 1){' (a fraction of max_lr)' if name == 'lr' else ''}"
                                 f", got {start!r}" if name != "delta" else f"the initial delta must be > 0, got {start!r}")
        nn.init.constant_(last.bias, _inverse_activation(name, start))

    def forward(self, x: Tensor) -> Tensor:
        """(batch, seq, dim) -> (batch * heads, seq) or (batch * heads, seq, channels)."""
        raw = self.bias.expand(*x.shape[:-1], -1) if self.proj is None else self.proj(x)
        val = F.softplus(raw) if self.name == "delta" else raw.sigmoid()
        if self.name == "lr":
            val = val * self.max_lr
        if self.channels == 1:
            return rearrange(val, "b t h -> (b h) t")
        return rearrange(val, "b t (h c) -> (b h) t c", h=self.heads)

