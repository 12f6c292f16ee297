"""Data-dependent gates of the memory layer: theta (inner learning rate), alpha (retention), eta (momentum),
delta (Huber threshold), each from the input token, one value per head or per channel."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..options import ComponentError

# Gate name -> initial value: theta in (0, max_lr), alpha and eta in (0, 1), delta > 0.
# retain 0.99 keeps a write for ~70 tokens at half strength; 0.95 (~14) wiped a 128-token MQAR context before its
# queries, and Gated DeltaNet / Titans then sat at chance (0.11 / 0.12 recall after 600 steps, vs 0.93 / 0.54).
GATE_INIT = {"lr": 0.5, "retain": 0.99, "momentum": 0.9, "delta": 1.0}
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
                 rank: int = 16, max_lr: float = 1.0) -> None:
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
        init = GATE_INIT[name] / (max_lr if name == "lr" else 1.0)
        nn.init.constant_(last.bias, _inverse_activation(name, init))

    def forward(self, x: Tensor) -> Tensor:
        """(batch, seq, dim) -> (batch * heads, seq) or (batch * heads, seq, channels)."""
        raw = self.bias.expand(*x.shape[:-1], -1) if self.proj is None else self.proj(x)
        val = F.softplus(raw) if self.name == "delta" else raw.sigmoid()
        if self.name == "lr":
            val = val * self.max_lr
        if self.channels == 1:
            return rearrange(val, "b t h -> (b h) t")
        return rearrange(val, "b t (h c) -> (b h) t c", h=self.heads)
