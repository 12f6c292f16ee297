"""Registered attentional biases (MIRAS section 5.1)."""
from __future__ import annotations

import torch
from torch import Tensor

from ..options import Option
from .base import BIASES, AttentionalBias, gate_like


@BIASES.register("dot")
class DotProductBias(AttentionalBias):
    summary = "Hebbian dot product -<M(k), v>: linear attention, RetNet, Mamba2, GLA"
    prediction_slope = 0.0

    def output_grad(self, yhat, v, gates):
        return -v.expand_as(yhat)

    def loss(self, yhat, v, gates):
        return -(yhat * v).sum(-1)


@BIASES.register("l2")
class L2Bias(AttentionalBias):
    summary = "delta rule 1/2 ||M(k) - v||^2: DeltaNet, Gated DeltaNet, TTT, Titans"
    prediction_slope = 1.0

    def output_grad(self, yhat, v, gates):
        return yhat - v

    def loss(self, yhat, v, gates):
        return 0.5 * (yhat - v).pow(2).sum(-1)


@BIASES.register("lp")
class LpBias(AttentionalBias):
    summary = "||M(k) - v||_p^p with tanh-smoothed sign and sqrt-smoothed |.| (Moneta, p=3)"
    options = (
        Option("p", float, 3.0, "norm exponent", low=1.0, high=6.0),
        Option("sharpness", float, 10.0, "slope a of the smooth sign tanh(a x)", low=0.1, high=1000.0, log=True),
        Option("eps", float, 1e-6, "smoothing of |x| as sqrt(x^2 + eps)", low=1e-12, high=1e-1, log=True),
    )

    def label(self) -> str:
        return f"l{self.p:g}"

    def output_grad(self, yhat, v, gates):
        e = yhat - v
        sign = torch.tanh(self.sharpness * e)
        if self.p == 1.0:
            return sign
        return self.p * sign * (e * e + self.eps).pow(0.5 * (self.p - 1.0))

    def loss(self, yhat, v, gates):
        return (yhat - v).abs().pow(self.p).sum(-1)


@BIASES.register("l1")
class L1Bias(LpBias):
    summary = "value-less memory ||M(k) - v||_1 with a tanh-smoothed sign (MIRAS eq. 12)"
    options = (LpBias.options[1],)
    p, eps = 1.0, 0.0  # fixed, not options: a spec lists only the options it can set

    def label(self) -> str:
        return "l1"


def _delta(bias: AttentionalBias, gates: dict[str, Tensor], ref: Tensor) -> Tensor | float:
    return gate_like(gates["delta"], ref) if bias.delta_mode == "data" else bias.delta


@BIASES.register("huber")
class HuberBias(AttentionalBias):
    summary = "Huber loss: l2 near the target, l1 beyond delta (Yaad); delta fixed or data-dependent"
    options = (
        Option("delta", float, 1.0, "threshold (fixed mode) between the l2 and l1 pieces", low=1e-4, high=100.0, log=True),
        Option("delta_mode", str, "fixed", "fixed delta, or a data-dependent delta_t from the input", choices=("fixed", "data")),
        Option("variant", str, "coordinate", "per coordinate (eq. 14), on the error norm (eq. 15), or Yaad's smooth "
               "mixture (eq. 16): the l2 step while ||M(k) - v|| <= delta, else delta times the l1 step",
               choices=("coordinate", "norm", "mixture")),
    )

    def gates(self):
        return {"delta": "head"} if self.delta_mode == "data" else {}

    def output_grad(self, yhat, v, gates):
        e = yhat - v
        d = _delta(self, gates, e)
        if self.variant == "coordinate":
            return torch.where(e.abs() <= d, e, d * torch.sign(e))
        norm = e.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        if self.variant == "mixture":  # eq. 16: the whole error's norm picks the piece; the l1 piece is sign(e)
            return torch.where(norm <= d, e, d * torch.sign(e))
        return torch.where(norm <= d, e, d * e / norm)

    def loss(self, yhat, v, gates):
        e = yhat - v
        d = _delta(self, gates, e)
        if self.variant == "coordinate":
            a = e.abs()
            return torch.where(a <= d, 0.5 * a * a, d * (a - 0.5 * d)).sum(-1)
        a = e.norm(dim=-1, keepdim=True)
        if self.variant == "mixture":  # piecewise 1/2||e||^2 | delta ||e||_1: its gradient is output_grad a.e.
            return torch.where(a <= d, 0.5 * a * a, d * e.abs().sum(-1, keepdim=True)).squeeze(-1)
        return torch.where(a <= d, 0.5 * a * a, d * (a - 0.5 * d)).squeeze(-1)


@BIASES.register("robust_l2")
class RobustL2Bias(AttentionalBias):
    summary = "l2 robust to value shifts max_{|dv|<=Delta} 1/2||M(k) - v - dv||^2 (MIRAS eq. 17)"
    options = (
        Option("shift", float, 0.1, "radius Delta of the worst-case value shift", low=0.0, high=10.0),
        Option("eps", float, 1e-6, "smoothing of ||e|| as sqrt(||e||^2 + eps)", low=1e-12, high=1e-1, log=True),
    )

    def output_grad(self, yhat, v, gates):
        e = yhat - v
        norm = (e.pow(2).sum(-1, keepdim=True) + self.eps).sqrt()
        return e + self.shift * e / norm

    def loss(self, yhat, v, gates):
        e = yhat - v
        norm = (e.pow(2).sum(-1) + self.eps).sqrt()
        return 0.5 * norm.pow(2) + self.shift * norm + 0.5 * self.shift**2
