"""Shape helpers shared by the engine paths: per-head (N, n) or per-channel (N, n, c) coefficients."""
from __future__ import annotations

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
