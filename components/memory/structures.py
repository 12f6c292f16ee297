"""Registered memory structures."""
from __future__ import annotations

import torch
from torch import Tensor

from ..options import Option
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
    )

    @property
    def activation_name(self) -> str:  # type: ignore[override]
        return self.opts["activation"]

    @property
    def has_residual(self) -> bool:  # type: ignore[override]
        return self.opts["residual"]

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

    def forward(self, params: list[Tensor], x: Tensor) -> Tensor:
        wa, wb, wo = params
        return (torch.nn.functional.silu(x @ wa.mT) * (x @ wb.mT)) @ wo.mT
