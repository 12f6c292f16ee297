"""Whether fp32 can reproduce a model: its fp32 outputs against float64 outputs of the same weights.

A memory whose inner optimisation is chaotic (bounded but sensitive to rounding) gives fp32 outputs that part from
the float64 ones after some hundreds of tokens; a model trained that way trains on rounding noise. The drift is the
relative error of the logits over each prefix length, on random byte sequences; FP32_BOUND is the bound a model is
held to over DRIFT_TOKENS tokens.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

DRIFT_TOKENS = 2048
FP32_BOUND = 1e-3
# A chaotic inner optimisation passes at one seed of weights and data and parts at the next (titans_mac at alpha
# 0.999: 9e-5 at seed 0, 2.6e-2 at seed 1), so a verdict is the worst of these seeds.
DRIFT_SEEDS = (0, 1, 2)


@torch.no_grad()
def fp32_drift(model: nn.Module, tokens: int = DRIFT_TOKENS, batch: int = 2, seed: int = 0,
               lengths: tuple[int, ...] = (256, 512, 1024, 2048)) -> dict[int, float]:
    """{prefix length: relative error of fp32 logits against float64 logits (the same weights)}, each over the
    last 64 positions of the prefix (the error grows with position: the last ones are the ones that drift)."""
    vocab = getattr(getattr(model, "spec", None), "vocab_size", 256)
    gen = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    x = torch.randint(0, vocab, (batch, tokens), generator=gen).to(device)
    fp32 = copy.deepcopy(model).float().eval()
    fp64 = copy.deepcopy(model).double().eval()
    a = fp64(x)[0]
    b = fp32(x)[0].double()
    err = (a - b).norm(dim=-1).mean(0) / a.norm(dim=-1).mean(0)  # per position
    out = {}
    for n in sorted({min(n, tokens) for n in lengths}):
        window = err[max(0, n - 64):n]
        out[n] = float(window.max())
    return out


def worst_fp32_drift(build, tokens: int = DRIFT_TOKENS, seeds: tuple[int, ...] = DRIFT_SEEDS,
                     lengths: tuple[int, ...] = (512, DRIFT_TOKENS), bound: float = FP32_BOUND) -> dict[int, float]:
    """The worst drift per prefix length over `seeds`, each seeding both `build()` (the weights) and the data; stops
    at the first seed that parts by more than `bound` (its drift is then the verdict's evidence)."""
    worst: dict[int, float] = {}
    for seed in seeds:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            drift = fp32_drift(build(), tokens, batch=2, seed=seed, lengths=lengths)
        worst = {n: max(worst.get(n, 0.0), e) for n, e in drift.items()}
        if max(drift.values()) > bound:
            break
    return worst


def drift_verdict(drift: dict[int, float], bound: float = FP32_BOUND) -> str:
    """'' when every prefix stays within the bound, else one line saying where fp32 parts from float64."""
    over = [n for n, e in drift.items() if e > bound]
    if not over:
        return ""
    first = min(over)
    return (f"fp32 parts from float64 by {drift[first]:.1e} (> {bound:g}) by token {first} and by {max(drift.values()):.1e} "
            f"over {max(drift)} tokens: the inner optimisation is chaotic at these gates, so fp32 training past "
            f"~{first} tokens fits rounding noise")
