"""Axis 2, attentional bias: the inner objective l(M(k), v) the memory minimises online.

A bias is defined by its gradient with respect to the memory output, `output_grad(yhat, v, gates)`;
`loss` is the objective itself where it has a closed form (used for reporting and in tests).
"""
from __future__ import annotations

from torch import Tensor

from ..registry import Component, Registry

BIASES = Registry("bias", "attentional bias: the inner objective of the memory")


class AttentionalBias(Component):
    # c where output_grad(yhat, v) = c * yhat + b(v), if the gradient is affine in the prediction with that
    # slope (l2: 1, dot: 0). Such a bias on a linear memory has an exact parallel form inside a chunk.
    prediction_slope: float | None = None

    def gates(self) -> dict[str, str]:
        """Data-dependent inputs this bias reads, name -> 'head' or 'channel'."""
        return {}

    def output_grad(self, yhat: Tensor, v: Tensor, gates: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError

    def loss(self, yhat: Tensor, v: Tensor, gates: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError


def gate_like(gate: Tensor, ref: Tensor) -> Tensor:
    """Broadcast a (…, n) head gate or (…, n, d) channel gate against (…, n, d)."""
    return gate.unsqueeze(-1) if gate.dim() == ref.dim() - 1 else gate
