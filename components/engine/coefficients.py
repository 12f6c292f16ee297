"""Closed-form decay and momentum coefficients inside one chunk (Titans eq. 16-18, MIRAS eq. 28).

With u_j the gradients at the chunk-start weights, S_t = eta_t S_{t-1} - u_t and
A_t = alpha_t A_{t-1} + S_t unroll to
    S_t = m_t S_0 - sum_j N[t, j] u_j,        A_t = beta_t A_0 + f_t S_0 - sum_j G[t, j] u_j,
with beta_t = prod alpha, m_t = prod eta, N[t, j] = prod_{j<l<=t} eta_l, D[t, k] = prod_{k<l<=t} alpha_l,
G = D @ N and f = D @ m. Every product is exp of a masked difference of cumulative log-sums (the
"segment sum"), never a ratio of cumulative products, which underflows to 0/0 once a gate is small.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

LOG_FLOOR = 1e-30


@dataclass
class ChunkCoefficients:
    # reads (per token t of the chunk): y_t uses beta_r[t] * W_read + f_r[t] * S - sum_j G_r[t, j] u_j
    beta_r: Tensor  # (N, n) or (N, n, c)
    f_r: Tensor | None
    G_r: Tensor  # (N, n, n) or (N, n, n, c)
    # chunk end
    beta_e: Tensor  # (N,) or (N, c)
    f_e: Tensor | None
    G_e: Tensor  # (N, n) or (N, n, c)
    m_e: Tensor | None  # (N,)
    N_e: Tensor | None  # (N, n)


def _segsum(log_x: Tensor) -> Tensor:
    """exp(sum_{k<l<=t} log_x[l]) for k <= t, else 0; over dim 1. Shape (N, n, n, ...)."""
    cum = torch.cumsum(log_x, dim=1)
    diff = cum.unsqueeze(2) - cum.unsqueeze(1)  # [t, k] = cum_t - cum_k
    n = log_x.shape[1]
    mask = torch.ones(n, n, dtype=torch.bool, device=log_x.device).tril()
    mask = mask.view(1, n, n, *([1] * (log_x.dim() - 2)))
    return torch.exp(diff.masked_fill(~mask, float("-inf")))


def chunk_coefficients(retain: Tensor | None, momentum: Tensor | None, n: int, like: Tensor, read_after: bool) -> ChunkCoefficients:
    N = like.shape[0]
    if retain is None:
        log_a = like.new_zeros(N, n)
    else:
        log_a = torch.log(retain.clamp_min(LOG_FLOOR))
    D = _segsum(log_a)
    beta = torch.exp(torch.cumsum(log_a, dim=1))
    channel = log_a.dim() == 3
    if momentum is None:
        G, f, m, Nm = D, None, None, None
    else:
        log_m = torch.log(momentum.clamp_min(LOG_FLOOR))
        Nm = _segsum(log_m)
        m = torch.exp(torch.cumsum(log_m, dim=1))
        if channel:
            G = torch.einsum("ntkc,nkj->ntjc", D, Nm)
            f = torch.einsum("ntkc,nk->ntc", D, m)
        else:
            G = D @ Nm
            f = (D @ m.unsqueeze(-1)).squeeze(-1)
    if read_after:
        beta_r, f_r, G_r = beta, f, G
    else:
        # token t reads the weights before its own write: coefficients of step t-1
        beta_r = torch.cat([torch.ones_like(beta[:, :1]), beta[:, :-1]], dim=1)
        f_r = None if f is None else torch.cat([torch.zeros_like(f[:, :1]), f[:, :-1]], dim=1)
        G_r = torch.cat([torch.zeros_like(G[:, :1]), G[:, :-1]], dim=1)
    return ChunkCoefficients(
        beta_r=beta_r, f_r=f_r, G_r=G_r,
        beta_e=beta[:, -1], f_e=None if f is None else f[:, -1], G_e=G[:, -1],
        m_e=None if m is None else m[:, -1], N_e=None if Nm is None else Nm[:, -1],
    )
