"""The recurrent state of a memory, carried across calls for streaming and truncated BPTT."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class MemoryState:
    """Per sequence and head (leading dim N = batch * heads).

    acc:      accumulator A (the weights themselves for an identity link)
    momentum: S, or None for algorithms without momentum
    read:     weights used for reads inside the current chunk (link(A) at chunk start, then the
              linear in-chunk update); the same tensors as `acc` for an identity link
    grad_at:  chunk-start weights where every gradient of the current chunk is taken
    offset:   tokens (inner steps) already consumed in the current chunk
    """

    acc: list[Tensor]
    momentum: list[Tensor] | None
    read: list[Tensor]
    grad_at: list[Tensor]
    offset: int = 0

    @classmethod
    def start(cls, rule, acc: list[Tensor]) -> "MemoryState":
        weights = rule.read_weights(acc)
        momentum = [torch.zeros_like(a) for a in acc] if rule.algorithm.uses_momentum else None
        return cls(list(acc), momentum, weights, weights, 0)

    def detach(self) -> "MemoryState":
        """Cut the graph here (truncated BPTT); values are kept."""
        d = lambda xs: None if xs is None else [x.detach() for x in xs]  # noqa: E731
        return MemoryState(d(self.acc), d(self.momentum), d(self.read), d(self.grad_at), self.offset)

    def numel_per_sequence(self) -> int:
        """Numbers held per sequence (all heads): what a recurrent state costs."""
        n = self.acc[0].shape[0]
        tensors = list(self.acc) + list(self.momentum or [])
        return sum(t.numel() for t in tensors) // n
