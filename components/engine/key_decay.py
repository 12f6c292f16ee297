"""The exact chunk step of a matrix memory whose decay scales its key (input) columns: GLA's
S_t = Diag(alpha_t) S_{t-1} + k_t^T v_t (S = W^T), and the delta rule with key gates.

With W (d_out x d_in), momentum S, per-key-channel alpha_t (c = d_in), and g_j = theta_j dbias/dM at token j:

    S_t = eta_t S_{t-1} - g_t k_t^T,    A_t = A_{t-1} Diag(alpha_t) + S_t
 => A_t = W_0 Diag(beta_t) + S_0 Diag(f_t) - sum_j g_j (k_j * G[t, j])^T

with the per-channel coefficients of coefficients.py (beta_t = prod alpha, G[t, j, c] = sum_k D[t, k, c] N[k, j],
f_t = sum_k D[t, k] m_k). So a read is q's channels scaled before they meet the chunk-start weights, and the
in-chunk part is one (n x n) matrix P[t, j] = sum_c q_tc G[t, j, c] k_jc: the GLA form, in log-space segment sums
(no ratio of cumulative products, which underflows once a gate is small). For a bias whose gradient is affine in
the prediction (l2), the prediction at W_{t-1} is B_t - sum_{j<t} L[t, j] g_j with L[t, j] = sum_c k_tc G_b[t, j, c]
k_jc, and one unit-lower-triangular solve per chunk gives every g_j, as in ExactStep.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .step import ChunkStep
from .coefficients import LOG_FLOOR
from .ops import linear_wt, scaled_output_grad
from .state import MemoryState


def factor_limit(dtype: torch.dtype) -> float:
    """How far a chunk's log-decay may fall before exp(-cum) nears the dtype's largest number (half its range)."""
    return math.log(torch.finfo(dtype).max) / 2


def _read(x: Tensor, beta: Tensor, W: Tensor, f: Tensor | None, S: Tensor | None) -> Tensor:
    """W (beta_t * x_t) + S (f_t * x_t) for every token: the chunk-start part of a read at x (N, n, c)."""
    out = linear_wt(x * beta, W)
    return out if S is None else out + linear_wt(x * f, S)


def _pairs(x: Tensor, G: Tensor, k: Tensor) -> Tensor:
    """P[t, j] = sum_c x_tc G[t, j, c] k_jc, (N, n, n)."""
    return torch.einsum("ntc,ntjc,njc->ntj", x, G, k)


class KeyDecayStep(ChunkStep):
    """exact: the token-by-token recurrence (every segment ends where a chunk would); otherwise the mini-batch form,
    every gradient of a chunk at its start weights (grad_at), which the state keeps until the chunk ends."""

    def __init__(self, rule, read_after: bool, exact: bool = True):
        super().__init__(rule, read_after)
        self.exact = exact

    def __call__(self, st: MemoryState, inp, chunk_size: int):
        if st.momentum is None:
            cum = torch.cumsum(torch.log(inp.gates["retain"].clamp_min(LOG_FLOOR)), dim=1)
            # (on the meta device, shapes only, the factored form stands for both: same matmuls)
            if cum.is_meta or float(-cum[:, -1].detach().min()) < factor_limit(cum.dtype):
                return self.factored(st, inp, chunk_size, cum)
        return self.segment_sums(st, inp, chunk_size)

    def factored(self, st: MemoryState, inp, chunk_size: int, cum: Tensor):
        """Without momentum every coefficient is exp(cum_t - cum_j) per channel: scale q (and a gradient point) by
        exp(cum_t) and k by exp(-cum_j), and the pairs are one masked matmul (GLA's chunk form). Used while the
        chunk's decay stays inside the dtype's range (factor_limit); no (n, n, c) tensor."""
        k, q = inp.k, inp.q
        W0 = st.read[0]
        up, down = cum.exp(), (-cum).exp()
        before = torch.cat([torch.ones_like(up[:, :1]), up[:, :-1]], dim=1)  # token t's coefficients of step t-1
        k_down = k * down
        alpha = self.grad_point_scale(inp.gates)
        point = k if alpha is None else k * alpha
        if self.exact:
            p_before = point * before
            rhs = scaled_output_grad(self.rule.bias, linear_wt(p_before, W0), inp.v, inp.gates)
            slope = self.rule.bias.prediction_slope
            if slope:
                L = (p_before @ k_down.mT).tril(-1) * (slope * inp.gates["lr"])[..., None]
                g = torch.linalg.solve_triangular(L, rhs, upper=False, unitriangular=True)
            else:
                g = rhs
        else:
            g = scaled_output_grad(self.rule.bias, linear_wt(point, st.grad_at[0]), inp.v, inp.gates)
        q_up = q * (up if self.read_after else before)
        pairs = (q_up @ k_down.mT).tril(0 if self.read_after else -1)
        y = linear_wt(q_up, W0) - pairs @ g
        W = W0 * up[:, -1][:, None, :] - g.mT @ (k * (cum[:, -1:] - cum).exp())
        return y, self.next_state(st, W, None, k.shape[1], chunk_size)

    def next_state(self, st: MemoryState, W: Tensor, S: Tensor | None, n: int, chunk_size: int) -> MemoryState:
        S = None if S is None else [S]
        offset = 0 if self.exact else st.offset + n
        if offset in (0, chunk_size):
            return MemoryState([W], S, [W], [W], 0)
        return MemoryState([W], S, [W], st.grad_at, offset)

    def segment_sums(self, st: MemoryState, inp, chunk_size: int):
        """Any gates, momentum included: the per-channel coefficients as (n, n, c) segment sums."""
        n = inp.k.shape[1]
        k, q, mom = inp.k, inp.q, st.momentum
        W0, S0 = st.read[0], None if mom is None else mom[0]
        co = self.coefficients(inp.gates, n, k)
        alpha = self.grad_point_scale(inp.gates)
        if self.exact:
            g = self.exact_gradients(inp, W0, S0, alpha)
        else:  # at the chunk-start weights, decayed by this token's alpha where the rule says so
            point = k if alpha is None else k * alpha
            g = scaled_output_grad(self.rule.bias, linear_wt(point, st.grad_at[0]), inp.v, inp.gates)
        y = _read(q, co.beta_r, W0, co.f_r, S0) - _pairs(q, co.G_r, k) @ g
        W = W0 * co.beta_e[:, None, :] - g.mT @ (k * co.G_e)
        S = None
        if S0 is not None:
            W = W + S0 * co.f_e[:, None, :]
            S = S0 * co.m_e[:, None, None] - g.mT @ (k * co.N_e[..., None])
        return y, self.next_state(st, W, S, n, chunk_size)

    def exact_gradients(self, inp, W0: Tensor, S0: Tensor | None, alpha: Tensor | None) -> Tensor:
        """g_j = theta_j dbias/dM at W_{j-1} (its prediction B_j - sum_{i<j} L[j, i] g_i): one triangular solve."""
        k, n = inp.k, inp.k.shape[1]
        before = self.coefficients(inp.gates, n, k, read_after=False)
        beta_b, f_b, G_b = before.beta_r, before.f_r, before.G_r
        if alpha is not None:  # the gradient point is W_{t-1} Diag(alpha_t): alpha scales the key's channels
            beta_b, G_b = beta_b * alpha, G_b * alpha[:, :, None, :]
            f_b = None if f_b is None else f_b * alpha
        rhs = scaled_output_grad(self.rule.bias, _read(k, beta_b, W0, f_b, S0), inp.v, inp.gates)
        slope = self.rule.bias.prediction_slope
        if not slope:
            return rhs
        L = _pairs(k, G_b, k) * (slope * inp.gates["lr"])[..., None]
        return torch.linalg.solve_triangular(L, rhs, upper=False, unitriangular=True)
