"""RMSNorm with one epsilon for every dtype.

torch's nn.RMSNorm defaults to the input dtype's machine epsilon (1.2e-7 in fp32, 2.2e-16 in float64), so the same
weights compute two different functions in the two dtypes: where a memory's output is small (a small write strength,
as Mamba2's step size at its initialisation) the fp32 and float64 outputs differed by 1e-2. A fixed epsilon makes
float64 a true reference for fp32 (components/models/numerics.py).
"""
from __future__ import annotations

from torch import nn

NORM_EPS = 1e-6


def rms_norm(dim: int) -> nn.RMSNorm:
    return nn.RMSNorm(dim, eps=NORM_EPS)
