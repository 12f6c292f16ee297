"""Axis 3, retention gate: how much of the past the memory keeps, as decay + a link (mirror map).

The engine keeps an accumulator A (A_t = alpha_t A_{t-1} + S_t) and reads weights W = link(A).
The link is the identity for L2 / weight-decay retention, and a non-linear mirror map for
Lq (Moneta), KL (Memora) and elastic net; in the chunked form it is applied at chunk ends.
"""
from __future__ import annotations

from torch import Tensor

from ..registry import Component, Registry

RETENTIONS = Registry("retention", "retention gate: decay of the past plus the mirror map of the weights")


class Retention(Component):
    identity_link: bool = True
    uses_decay: bool = True  # reads the data-dependent retain gate alpha_t
    # The gradient of step t is taken at alpha_t W_{t-1} (decay, then write: Gated DeltaNet) rather than
    # at W_{t-1} (write on the undecayed weights: Titans, Mamba2-style decays).
    grad_after_decay: bool = False

    # Which side of a matrix memory W (d_out x d_in) a per-channel alpha scales: its output (value) rows, or its
    # input (key) columns (GLA's S_t = Diag(alpha_t) S_{t-1} + k_t^T v_t, with S = W^T). 'head': one alpha per head.
    decay_axis: str = "head"
    # Initial gate values this retention needs beyond GATE_INIT (components/layers/gates.py), e.g. {"lr": 0.1}: a
    # fraction of max_lr for the inner learning rate, the value itself for the others.
    gate_starts: dict[str, float] = {}

    def gates(self) -> dict[str, str]:
        if not self.uses_decay:
            return {}
        return {"retain": "head" if self.decay_axis == "head" else "channel"}

    def decay(self, w: Tensor, alpha: Tensor) -> Tensor:
        """alpha_t applied to weights w (N, out, in): per head (N,), per output row or per input column (N, c)."""
        if alpha.dim() == 1:
            return w * alpha[:, None, None]
        return w * (alpha[:, None, :] if self.decay_axis == "key" else alpha[:, :, None])

    def link(self, acc: list[Tensor]) -> list[Tensor]:
        return acc
