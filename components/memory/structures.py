"""Registered memory structures."""
from __future__ import annotations

import torch
from torch import Tensor

from ..options import ComponentError, Option
from .base import STRUCTURES, MemoryStructure
from .stack import ACTIVATIONS, StackMemory


@STRUCTURES.register("linear")
class LinearMemory(StackMemory):
    summary = "matrix memory M(k) = W k (linear attention, DeltaNet, Gated DeltaNet, Longhorn, TTT-Linear)"

    def layer_dims(self, d_in: int, d_out: int) -> list[tuple[int, int]]:
        return [(d_out, d_in)]


@STRUCTURES.register("mlp")
class MLPMemory(StackMemory):
    summary = "deep memory: depth linear layers with an activation, optionally x + LN(MLP(x)) (Titans, TTT-MLP, MIRAS)"
    options = (
        Option("depth", int, 2, "number of linear layers", low=1, high=6),
        Option("expansion", float, 4.0, "hidden width / key size", low=0.25, high=8.0),
        Option("activation", str, "gelu", "activation between layers", choices=tuple(ACTIVATIONS)),
        Option("residual", bool, True, "wrap as x + LN(MLP(x)) with a parameter-free LN"),
        Option("bias", bool, False, "affine layers W a + b, the biases inner (fast) weights with learnable initial "
               "values (TTT's inner biases)"),
        Option("norm_affine", bool, False, "the residual's LN with a learnable scale and shift per channel and head, "
               "x + gamma LN(MLP(x)) + beta: outer parameters, not updated by inner steps (TTT); needs residual"),
    )

    def __init__(self, **opts) -> None:
        super().__init__(**opts)
        if self.norm_affine and not self.residual:
            raise ComponentError("structure 'mlp': norm_affine is the scale and shift of the residual's LN; it needs "
                                 "residual: true")

    @property
    def activation_name(self) -> str:  # type: ignore[override]
        return self.opts["activation"]

    @property
    def has_residual(self) -> bool:  # type: ignore[override]
        return self.opts["residual"]

    @property
    def has_bias(self) -> bool:  # type: ignore[override]
        return self.opts["bias"]

    @property
    def has_norm_affine(self) -> bool:  # type: ignore[override]
        return self.opts["norm_affine"]

    def label(self) -> str:
        return f"mlp{self.depth}"

    def layer_dims(self, d_in: int, d_out: int) -> list[tuple[int, int]]:
        hidden = max(1, round(self.expansion * d_in))
        sizes = [d_in] + [hidden] * (self.depth - 1) + [d_out]
        return [(sizes[i + 1], sizes[i]) for i in range(self.depth)]


@STRUCTURES.register("swiglu")
class SwiGLUMemory(MemoryStructure):
    summary = "gated memory W_o (silu(W_a x) * W_b x); not a plain stack, so it runs on the generic torch.func path"
    options = (Option("expansion", float, 2.0, "hidden width / key size", low=0.25, high=8.0),)

    def param_shapes(self, d_in: int, d_out: int) -> list[tuple[int, ...]]:
        hidden = max(1, round(self.expansion * d_in))
        return [(hidden, d_in), (hidden, d_in), (d_out, hidden)]

    def forward(self, params: list[Tensor], x: Tensor, outer: list[Tensor] | tuple = ()) -> Tensor:
        wa, wb, wo = params
        return (torch.nn.functional.silu(x @ wa.mT) * (x @ wb.mT)) @ wo.mT
