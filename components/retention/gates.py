"""Registered retention gates (MIRAS sections 4 and 5.2)."""
from __future__ import annotations

import torch
from torch import Tensor

from ..options import Option
from .base import RETENTIONS, Retention


@RETENTIONS.register("none")
class NoRetention(Retention):
    summary = "keep everything (alpha = 1): linear attention, DeltaNet, Longhorn, TTT"
    uses_decay = False


@RETENTIONS.register("decay")
class DecayRetention(Retention):
    summary = "L2 retention / weight decay W_t = alpha_t W_{t-1} + ...: RetNet, Mamba2, GLA, Gated DeltaNet, Titans"
    options = (
        Option("granularity", str, "head", "one alpha_t per head; per value channel (the output rows of a linear "
               "memory); or per key channel (its input columns: GLA)", choices=("head", "value", "key")),
        Option("grad_at", str, "previous", "gradient at W_{t-1} (Titans, Mamba2) or at alpha_t W_{t-1} "
               "(decay then write: Gated DeltaNet)", choices=("previous", "decayed")),
    )

    @property
    def grad_after_decay(self) -> bool:  # type: ignore[override]
        return self.opts["grad_at"] == "decayed"

    @property
    def decay_axis(self) -> str:  # type: ignore[override]
        return self.opts["granularity"]

    def label(self) -> str:
        return "predecay" if self.grad_after_decay else "decay"

    def incompatible(self, parts: dict) -> tuple[str, str] | None:
        if self.granularity != "head" and parts["structure"].name != "linear":
            return "structure", f"{self.granularity}-channel decay scales the {'rows' if self.granularity == 'value' else 'columns'} of a linear memory"
        if self.granularity == "key":
            if parts["bias"].prediction_slope is None or parts["bias"].gates():
                return "bias", ("key-channel decay runs in its exact chunked form, which needs a bias whose gradient "
                                "is affine in the prediction (dot, l2)")
            if parts["algorithm"].per_chunk:
                return "algorithm", "key-channel decay runs token by token; a per-chunk update has no such form"
        if self.grad_after_decay and parts["structure"].name != "linear":
            return "structure", "the gradient at the decayed weights alpha_t W is supported for a linear memory"
        return None



@RETENTIONS.register("lq")
class LqRetention(Retention):
    summary = "Lq memory stability (Moneta): W = p-norm link of A, p = q/(q-1), plus decay"
    identity_link = False
    options = (
        Option("q", float, 4.0, "retention norm exponent (q = 2 is plain decay)", low=1.1, high=8.0),
        Option("smoothing", float, 0.1, "|A| read as sqrt(A^2 + (s rms(A))^2), MIRAS sec. 5.4's smoothing relative to "
               "the weights' scale (0: the exact link)", low=0.0, high=1.0),
    )

    def label(self) -> str:
        return f"lq{self.q:g}"

    def link(self, acc: list[Tensor]) -> list[Tensor]:
        # Gradient of 1/2 ||A||_p^2 (the p-norm link of FTRL with 1/2 ||W||_q^2, Shalev-Shwartz sec. 2.6):
        # sign(A) |A|^(p-1) / ||A||_p^(p-2). The norm is the mean-normalised one, so a weight matrix whose
        # entries share one magnitude maps to itself whatever its size (the regulariser's scale is a free
        # constant that the papers leave open; with the plain sum the weights grow like sqrt(numel)).
        # |A|^(p-1) = |A|^(1/3) at q = 4 has an unbounded slope at 0: entries crossing zero amplified rounding until
        # fp32 parted from float64 by 2e-2..2e-1 over 2048 tokens (3 seeds). MIRAS smooths |x| as sqrt(x^2 + eps)
        # (sec. 5.4, eps = 1e-6, still 1e-2 here); eps relative to the weights' RMS bounds the slope at any scale,
        # and sign(A) |A|^(p-1) becomes A |A|^(p-2) with the same smoothed |A|.
        p = self.q / (self.q - 1.0)
        out = []
        for a in acc:
            mean_square = a.pow(2).flatten(-2).mean(-1)[..., None, None]
            mag = (a * a + self.smoothing**2 * mean_square + 1e-24).sqrt()
            norm = mag.flatten(-2).pow(p).mean(-1).pow(1.0 / p)[..., None, None]
            out.append(a * mag.pow(p - 2.0) / norm.pow(p - 2.0))
        return out


@RETENTIONS.register("kl")
class KLRetention(Retention):
    summary = "KL retention on a scaled simplex (Memora): A holds log-weights, W = c * softmax(A) per row"
    identity_link = False
    # The step on the log-weights is exponentiated: at theta 0.5 (GATE_INIT) and alpha 0.9995 fp32 parted from float64
    # by 7e-2 over 2048 tokens (Memora, three seeds); starting at theta 0.1 and alpha 0.999, by at most 5e-4 over five.
    # Lower starts cost more than they save: the log-weights stay so flat that the softmax loses precision (1.5e-3
    # at theta 0.05). Not a scale-invariant memory (the softmax fixes the weights' scale), so 0.9995 buys nothing.
    gate_starts = {"lr": 0.1, "retain": 0.999}
    options = (Option("scale", float, 1.0, "c / fan-in: the mean weight of a row", low=1e-3, high=100.0, log=True),)

    def link(self, acc: list[Tensor]) -> list[Tensor]:
        return [self.scale * a.shape[-1] * torch.softmax(a, dim=-1) for a in acc]


@RETENTIONS.register("elastic")
class ElasticNetRetention(Retention):
    summary = "elastic net (FTRL with l1 + l2): decay plus soft-thresholding W = S_gamma(A)"
    identity_link = False
    options = (Option("threshold", float, 1e-3, "soft threshold gamma", low=0.0, high=1.0),)

    def link(self, acc: list[Tensor]) -> list[Tensor]:
        return [torch.sign(a) * torch.clamp(a.abs() - self.threshold, min=0.0) for a in acc]
