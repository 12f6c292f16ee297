"""Axis 4, memory learning algorithm: how the surprise u_t = grad l becomes the update S_t."""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ..registry import Component, Registry

ALGORITHMS = Registry("algorithm", "memory learning algorithm: the online optimiser of the memory")


@dataclass
class StepInputs:
    """Per-position inputs of the engine, (N, T, d) and gates (N, T) or (N, T, d); and the structure's outer parameters
    (N, *shape), the same for every position (empty where the structure has none)."""

    k: Tensor
    v: Tensor
    q: Tensor
    gates: dict[str, Tensor]
    outer: tuple[Tensor, ...] = ()


class MemoryAlgorithm(Component):
    uses_momentum: bool = False
    # One memory update per chunk (the chunk's summed surprise; gates of its first step) instead of one per step:
    # the weights stay at their chunk-start value until the chunk ends, so chunk_size is part of the rule.
    per_chunk: bool = False

    def gates(self) -> dict[str, str]:
        return {"momentum": "head"} if self.uses_momentum else {}

    def steps_per_token(self) -> int:
        return 1

    # Whether the algorithm's steps depend on where a token sits in its chunk (then exact=True has no meaning for it).
    uses_position: bool = False

    def prepare(self, inputs: StepInputs, chunk_size: int = 1, offset: int = 0) -> StepInputs:
        """Map token inputs to inner-step inputs (identity unless the algorithm rewrites them). chunk_size and offset
        (tokens of the current chunk consumed before this call) place each token in its chunk."""
        return inputs
