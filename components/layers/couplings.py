"""Gate couplings: how the memory layer draws its gates from the token (memory.gate_coupling). Each is a registered
class: every gate from its own projection (`independent`), Mamba2's one step size for decay and write (`mamba2`),
GLA's low-rank key-channel decay (`gla`), MIRAS's channel-wise eta and delta (`miras`)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..options import Option
from ..registry import Component, Registry
from .gates import GateProjection

GATE_COUPLINGS = Registry("gate_coupling", "how the layer's gates are drawn from the token")


class GateCoupling(Component):
    """Builds the module that turns x into the engine's gates {name: (N, T) or (N, T, c)}."""

    axis = "gate_coupling"

    def check(self, rule) -> str | None:
        """Why this coupling cannot draw the gates `rule` asks for, or None (checked before anything is built)."""
        return None

    def build(self, dim: int, heads: int, head_dim: int, specs: dict[str, str], projection: str, rank: int,
              max_lr: float, inits: dict[str, float]) -> nn.Module:
        """The gates module for gate specs {name: granularity}; by default one projection per gate."""
        return _Gates(dim, heads, head_dim, specs, projection, rank, max_lr, inits)


class _Gates(nn.Module):
    """One GateProjection per gate (the names and granularities the rule asks for)."""

    def __init__(self, dim, heads, head_dim, specs, projection, rank, max_lr, inits) -> None:
        super().__init__()
        self.each = nn.ModuleDict({
            name: GateProjection(name, dim, heads, head_dim if granularity == "channel" else 1, projection, rank,
                                 max_lr, inits.get(name))
            for name, granularity in specs.items()
        })

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {name: proj(x) for name, proj in self.each.items()}


@GATE_COUPLINGS.register("independent")
class IndependentGates(GateCoupling):
    summary = "every gate from its own projection of the token (sigmoid or softplus), theta capped by max_lr"


class _Mamba2Step(nn.Module):
    """Mamba2's step size: Delta_t = softplus(x w + dt_bias) per head, retention exp(-Delta_t a) with a = exp(A_log)
    learned per head, write strength Delta_t (SSD's h_t = exp(Delta_t A) h_{t-1} + Delta_t B_t x_t). Initialised
    as Mamba2's reference: a ~ U[a_low, a_high], Delta ~ log-uniform on [dt_min, dt_max] through dt_bias; the
    projection's weights start at zero (every token starts at its head's Delta, as the other gates here)."""

    def __init__(self, dim, heads, others: nn.Module, a_range, dt_range) -> None:
        super().__init__()
        self.heads, self.others = heads, others
        self.dt_proj = nn.Linear(dim, heads, bias=False)
        nn.init.zeros_(self.dt_proj.weight)
        low, high = math.log(dt_range[0]), math.log(dt_range[1])
        dt = torch.exp(torch.rand(heads) * (high - low) + low)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1(dt)
        self.A_log = nn.Parameter(torch.log(torch.empty(heads).uniform_(*a_range)))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        dt = F.softplus(self.dt_proj(x) + self.dt_bias)  # (b, t, h)
        retain = torch.exp(-dt * self.A_log.exp())
        gates = self.others(x)
        gates["lr"] = rearrange(dt, "b t h -> (b h) t")
        gates["retain"] = rearrange(retain, "b t h -> (b h) t")
        return gates


@GATE_COUPLINGS.register("mamba2")
class Mamba2Gates(GateCoupling):
    summary = ("Mamba2's coupled step: one Delta_t = softplus(.) per head gives the decay exp(-Delta_t a) (a > 0 "
               "learned per head) and the write strength Delta_t; needs per-head decay")
    options = (
        Option("a_low", float, 1.0, "a starts uniform between a_low and a_high (Mamba2: 1 and 16)", low=1e-3, high=100.0),
        Option("a_high", float, 16.0, "upper end of a's initial range", low=1e-3, high=100.0),
        Option("dt_min", float, 1e-3, "Delta starts log-uniform between dt_min and dt_max (Mamba2: 1e-3 and 0.1)",
               low=1e-5, high=1.0, log=True),
        Option("dt_max", float, 0.1, "upper end of Delta's initial range", low=1e-5, high=1.0, log=True),
    )

    def check(self, rule):
        if rule.gates().get("retain") != "head":
            return "gate_coupling 'mamba2' couples the write strength to a per-head decay: it needs retention 'decay' " \
                   "with granularity 'head'"
        if self.a_low > self.a_high or self.dt_min > self.dt_max:
            return "gate_coupling 'mamba2': a_low <= a_high and dt_min <= dt_max"
        return None

    def build(self, dim, heads, head_dim, specs, projection, rank, max_lr, inits):
        others = {k: g for k, g in specs.items() if k not in ("lr", "retain")}
        return _Mamba2Step(dim, heads, _Gates(dim, heads, head_dim, others, projection, rank, max_lr, inits),
                           (self.a_low, self.a_high), (self.dt_min, self.dt_max))


class _GlaDecay(nn.Module):
    """GLA's key-channel decay: alpha_t = sigmoid(x W_1 W_2 + b)^(1/tau), a rank-r projection (GLA's gk_proj, with
    torch's default initialisation as in the paper's code), computed as exp(logsigmoid(.) / tau)."""

    def __init__(self, dim: int, heads: int, head_dim: int, others: nn.Module, rank: int, tau: float) -> None:
        super().__init__()
        self.heads, self.others, self.tau = heads, others, tau
        self.proj = nn.Sequential(nn.Linear(dim, rank, bias=False), nn.Linear(rank, heads * head_dim))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        gates = self.others(x)
        log_alpha = F.logsigmoid(self.proj(x)) / self.tau
        gates["retain"] = rearrange(log_alpha.exp(), "b t (h c) -> (b h) t c", h=self.heads)
        return gates


@GATE_COUPLINGS.register("gla")
class GlaGates(GateCoupling):
    summary = ("GLA's decay: alpha_t = sigmoid(low-rank projection of x)^(1/tau) per key channel (tau = 16); the "
               "other gates independent")
    options = (Option("tau", float, 16.0, "GLA's temperature: alpha = sigmoid(.)^(1/tau)", low=1.0, high=256.0, log=True),)

    def check(self, rule):
        if rule.gates().get("retain") != "channel":
            return "gate_coupling 'gla' draws a decay per channel: it needs retention 'decay' with granularity 'key' " \
                   "(GLA) or 'value'"
        return None

    def build(self, dim, heads, head_dim, specs, projection, rank, max_lr, inits):
        others = {k: g for k, g in specs.items() if k != "retain"}
        return _GlaDecay(dim, heads, head_dim, _Gates(dim, heads, head_dim, others, projection, rank, max_lr, inits),
                         rank, self.tau)


@GATE_COUPLINGS.register("miras")
class MirasGates(GateCoupling):
    summary = ("MIRAS sec. 5.4: the inner learning rate eta_t and the Huber threshold delta_t per value channel, "
               "each from a rank-r projection (r = 32); retention and momentum per head (a channel-wise alpha on a "
               "2-layer MLP has no single reading: its hidden layer has 4d rows); MLP memories")
    options = (Option("rank", int, 32, "rank of the channel-wise projections (MIRAS: 32 or 64)", low=1, high=1024),)
    CHANNEL_WISE = ("lr", "delta")

    def check(self, rule):
        if rule.structure.name == "linear":
            return ("gate_coupling 'miras' draws eta_t per channel for MLP memories (Moneta, Yaad, Memora); a linear "
                    "memory's exact form takes eta per head: use 'independent'")
        return None

    def build(self, dim, heads, head_dim, specs, projection, rank, max_lr, inits):
        channel = {k: g for k, g in specs.items() if k in self.CHANNEL_WISE}
        others = {k: g for k, g in specs.items() if k not in self.CHANNEL_WISE}
        return _Split(
            _Gates(dim, heads, head_dim, {k: "channel" for k in channel}, "lowrank", self.rank, max_lr, inits),
            _Gates(dim, heads, head_dim, others, projection, rank, max_lr, inits))


class _Split(nn.Module):
    """Gates drawn by two gate sets (e.g. channel-wise ones and per-head ones)."""

    def __init__(self, *parts: nn.Module) -> None:
        super().__init__()
        self.parts = nn.ModuleList(parts)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        for part in self.parts:
            out.update(part(x))
        return out
