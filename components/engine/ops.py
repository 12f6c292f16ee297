"""Shape helpers shared by the engine paths: per-head (N, n) or per-channel (N, n, c) coefficients."""
from __future__ import annotations

import torch
from torch import Tensor


def scale_tokens(x: Tensor, coef: Tensor) -> Tensor:
    """x (N, n, c) times a per-token (N, n) or per-token-channel (N, n, c) coefficient."""
    return x * (coef.unsqueeze(-1) if coef.dim() == x.dim() - 1 else coef)


def scale_weights(w: Tensor, coef: Tensor) -> Tensor:
    """w (N, out, in) times a per-head (N,) or per-output-row (N, out) coefficient."""
    return w * (coef[:, None, None] if coef.dim() == 1 else coef[:, :, None])


def scaled_output_grad(bias, yhat: Tensor, v: Tensor, gates: dict[str, Tensor]) -> Tensor:
    """theta_t * d bias / d M(k): the inner learning rate (scalar or channel-wise) folded into the output gradient."""
    return scale_tokens(bias.output_grad(yhat, v, gates), gates["lr"])


class _LinearWT(torch.autograd.Function):
    """a @ W^T whose weight gradient comes out contiguous (out, in).

    Autograd's own backward returns the transpose of an (in, out) product, and every later weight-sized
    pass over that strided gradient (the decay update's backward, gradient accumulation) copies or
    runs strided: on CPU that was a third of the engine's time.
    """

    @staticmethod
    def forward(ctx, a: Tensor, w: Tensor) -> Tensor:
        ctx.save_for_backward(a, w)
        return a @ w.mT

    @staticmethod
    def backward(ctx, g: Tensor):
        a, w = ctx.saved_tensors
        ga = g @ w if ctx.needs_input_grad[0] else None
        gw = g.mT @ a if ctx.needs_input_grad[1] else None
        return ga, gw


def linear_wt(a: Tensor, w: Tensor) -> Tensor:
    """(N, n, in) @ (N, out, in)^T -> (N, n, out), with a contiguous weight gradient."""
    return _LinearWT.apply(a, w)


class _DualRead(torch.autograd.Function):
    """(beta * a) @ W^T + (f * a) @ S^T with per-token scalars beta, f (S optional).

    Saves a and the coefficients instead of the two scaled copies of a (recomputed in the backward: they
    are token-sized), and returns contiguous weight gradients.
    """

    @staticmethod
    def forward(ctx, a, beta, w, f, s):
        ctx.save_for_backward(a, beta, w, f, s)
        out = scale_tokens(a, beta) @ w.mT
        return out if s is None else out.baddbmm_(scale_tokens(a, f), s.mT)

    @staticmethod
    def backward(ctx, g):
        a, beta, w, f, s = ctx.saved_tensors
        need = ctx.needs_input_grad
        gw_a = g @ w
        ga = scale_tokens(gw_a, beta)
        gbeta = (gw_a * a).sum(-1) if need[1] else None
        gw = g.mT @ scale_tokens(a, beta) if need[2] else None
        gf = gs = None
        if s is not None:
            gs_a = g @ s
            ga = ga + scale_tokens(gs_a, f)
            gf = (gs_a * a).sum(-1) if need[3] else None
            gs = g.mT @ scale_tokens(a, f) if need[4] else None
        return (ga if need[0] else None), gbeta, gw, gf, gs


def dual_read(a: Tensor, beta: Tensor, w: Tensor, f: Tensor | None = None, s: Tensor | None = None) -> Tensor:
    """The chunk-start part of an in-chunk read: beta_t W a_t + f_t S a_t for every token t, (N, n, out)."""
    return _DualRead.apply(a, beta, w, f, s)
