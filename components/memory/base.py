"""Axis 1, memory structure: the parametric map M_W(k) whose weights W learn at test time."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..registry import Component, Registry

STRUCTURES = Registry("structure", "memory structure: the map M_W(k) trained at test time")


class MemoryStructure(Component):
    """A memory map with functional weights.

    `forward(params, x, outer)` takes weights with any leading batch dims matching x's (or none) and
    x of shape (..., n, d_in) or (d_in,). Subclasses that are not a `StackMemory` are run by the
    engine's generic torch.func path.

    `outer` are the structure's outer parameters (`outer_shapes`): weights inside the map that the outer loop trains
    and inner steps never update (TTT's LN scale and shift), with the same leading dims as `params`; empty where the
    structure declares none. The engine passes them to every forward; omitted, they take their initial values.
    """

    def param_shapes(self, d_in: int, d_out: int) -> list[tuple[int, ...]]:
        raise NotImplementedError

    def init_params(self, d_in: int, d_out: int, generator: torch.Generator | None = None) -> list[Tensor]:
        # Xavier-normal: keeps M(k) at unit scale for unit-norm keys.
        out = []
        for shape in self.param_shapes(d_in, d_out):
            std = math.sqrt(2.0 / (shape[-1] + shape[-2]))
            out.append(torch.randn(shape, generator=generator) * std)
        return out

    def outer_shapes(self, d_in: int, d_out: int) -> list[tuple[int, ...]]:
        """Shapes of the outer parameters (per head): none by default."""
        return []

    def init_outer(self, d_in: int, d_out: int) -> list[Tensor]:
        return []

    def forward(self, params: list[Tensor], x: Tensor, outer: list[Tensor] | tuple = ()) -> Tensor:
        raise NotImplementedError

    def canonical(self, params: list[Tensor]) -> list[Tensor]:
        """An equivalent set of weights (the same function, the same gradients) that rounds better; by default the
        weights themselves."""
        return params

    def check_dims(self, d_in: int, d_out: int) -> str | None:
        """A reason these key/value sizes cannot be used, or None."""
        return None
