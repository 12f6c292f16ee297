"""Random inputs for engine tests: unit-norm keys and queries, gates in their natural ranges."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from components import MemoryRule


def engine_inputs(rule: MemoryRule, N: int = 2, T: int = 7, d: int = 4, seed: int = 0, dtype=torch.float64,
                  channel_lr: bool = False):
    g = torch.Generator(device=torch.get_default_device()).manual_seed(seed)
    steps = rule.algorithm.steps_per_token()
    rand = lambda *s: torch.rand(*s, generator=g, dtype=dtype)  # noqa: E731
    randn = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    acc = [randn(N, *s) * 0.3 for s in rule.structure.param_shapes(d, d)]
    k = F.normalize(randn(N, T * steps, d), dim=-1)
    v = randn(N, T * steps, d)
    q = F.normalize(randn(N, T, d), dim=-1)
    gates = {}
    for name, gran in rule.gates().items():
        shape = (N, T, d) if gran == "channel" or (name == "lr" and channel_lr) else (N, T)
        gates[name] = {
            "lr": lambda: 0.02 + 0.18 * rand(*shape),
            "retain": lambda: 0.5 + 0.5 * rand(*shape),
            "momentum": lambda: 0.9 * rand(*shape),
            "delta": lambda: 0.1 + rand(*shape),
        }[name]()
    return acc, k, v, q, gates


def engine_outer(rule: MemoryRule, N: int = 2, d: int = 4, seed: int = 0, dtype=torch.float64) -> list[torch.Tensor]:
    """The structure's outer parameters (N, *shape), away from their initial values so that they matter (TTT's LN
    scale around 1, shift around 0); empty for a structure without any."""
    g = torch.Generator(device=torch.get_default_device()).manual_seed(10_000 + seed)
    return [init.to(dtype).expand(N, *init.shape) + 0.5 * torch.randn(N, *init.shape, generator=g, dtype=dtype)
            for init in rule.structure.init_outer(d, d)]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    assert torch.isfinite(b).all(), "the reference diverged on these inputs"
    return ((a - b).abs().max() / (1.0 + b.abs().max())).item()
