"""The base of every chunk step: coefficients of a chunk's gates and the chunk-end state update."""
from __future__ import annotations

import torch
from torch import Tensor

from ..optim import StepInputs
from .coefficients import ChunkCoefficients, chunk_coefficients
from .fused import decay_update
from .ops import scale_weights
from .state import MemoryState


class ChunkStep:
    """One chunk segment for one rule; returns outputs and the new state. The chunked paths (chunked.py,
    key_decay.py) subclass it; this holds what they share: the chunk coefficients and the chunk-end state."""

    def __init__(self, rule, read_after: bool):
        self.rule = rule
        self.read_after = read_after

    def coefficients(self, gates: dict[str, Tensor], n: int, like: Tensor, read_after: bool | None = None) -> ChunkCoefficients:
        after = self.read_after if read_after is None else read_after
        return chunk_coefficients(gates.get("retain"), gates.get("momentum"), n, like, after)

    def grad_point_scale(self, gates: dict[str, Tensor]) -> Tensor | None:
        """alpha_t for a retention that takes the gradient at the decayed weights (linear memories only)."""
        return gates["retain"] if self.rule.retention.grad_after_decay else None

    def advance(self, st: MemoryState, co: ChunkCoefficients, sums_G: list, sums_N: list | None,
                n: int, chunk_size: int) -> MemoryState:
        """Chunk-end state: A, S and the read weights, then the link at a chunk end.

        sums_* are per layer either the weighted gradient sum itself or a pair (X, Y) with sum = X @ Y; each
        new weight is one scaling pass, an optional fused multiply-add, and the sum subtracted in place (for
        pairs inside the matmul), so no extra weight-sized passes.
        """
        mom = st.momentum

        def update(w: Tensor, decay: Tensor, carry: Tensor | None, xy) -> Tensor:
            if isinstance(xy, tuple) and decay.dim() == 1:
                return decay_update(w, decay, carry, co.f_e if carry is not None else None, *xy)
            out = scale_weights(w, decay)
            if carry is not None:  # per-channel f_e: rows scaled; per-head: one fused multiply-add
                out = out + scale_weights(carry, co.f_e) if co.f_e.dim() > 1 else out.addcmul_(carry, co.f_e[:, None, None])
            return out.baddbmm_(*xy, alpha=-1.0) if isinstance(xy, tuple) else out.sub_(xy)

        acc = [update(a, co.beta_e, s, xy) for a, s, xy in zip(st.acc, mom or [None] * len(st.acc), sums_G)]
        identity = self.rule.retention.identity_link
        read = acc if identity else [update(r, co.beta_e, s, xy) for r, s, xy in zip(st.read, mom or [None] * len(st.read), sums_G)]
        if mom is not None:
            mom = [update(s, co.m_e, None, xy) for s, xy in zip(mom, sums_N)]
        offset = st.offset + n
        grad_at = st.grad_at
        if offset == chunk_size:
            read = grad_at = self.rule.read_weights(acc)
            offset = 0
        return MemoryState(acc, mom, read, grad_at, offset)

    def fix_chunk_end_read(self, y: Tensor, new: MemoryState, inp: StepInputs) -> Tensor:
        # A non-identity link is applied at the chunk end, and a per-chunk algorithm writes only there: the chunk's
        # last read-after-write sees the new weights.
        rereads = not self.rule.retention.identity_link or self.rule.algorithm.per_chunk
        if self.read_after and new.offset == 0 and rereads:
            last = self.rule.structure.forward(new.read, inp.q[:, -1:], inp.outer)
            y = torch.cat([y[:, :-1], last], dim=1)
        return y
