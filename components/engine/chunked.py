"""The chunked parallel form: every gradient of a chunk at the chunk-start weights, momentum and decay
in closed form inside the chunk, the retention's link at chunk ends.

Two paths:
* stack memories (linear layers + per-token functions): per-token gradients are outer products
  delta_t a_t^T, so chunk sums are one matmul per layer and in-chunk reads use the exact dual form
      z_t = beta_t W a~_t + f_t S a~_t - sum_{j} G[t, j] (a_j . a~_t) delta_j
  (matmuls plus one masked (n x n) matrix; no weight copy per token or per chunk is stored);
* any other registered module: per-token gradients with torch.func (vmap of vjp) and per-token
  weights inside the chunk. Slower; also an oracle for the stack path in tests.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..memory import StackMemory
from ..optim import StepInputs
from .coefficients import ChunkCoefficients, chunk_coefficients
from .ops import lr_scaled, scale_tokens, scale_weights
from .state import MemoryState


def _mix(P: Tensor, G: Tensor, delta: Tensor) -> Tensor:
    """sum_j P[t, j] G[t, j] delta_j, with head (N, n, n) or channel (N, n, n, c) coefficients."""
    if G.dim() == 3:
        return (P * G) @ delta
    return torch.einsum("ntj,ntjc,njc->ntc", P, G, delta)


def _weighted_outer(delta: Tensor, w: Tensor, a: Tensor) -> Tensor:
    """sum_j w_j delta_j a_j^T as one matmul: (delta * w)^T @ a -> (N, out, in)."""
    return scale_tokens(delta, w).mT @ a


class _Step:
    """One chunk segment for one rule; returns outputs and the new state."""

    def __init__(self, rule, read_after: bool):
        self.rule = rule
        self.read_after = read_after

    def coefficients(self, gates: dict[str, Tensor], n: int, like: Tensor) -> ChunkCoefficients:
        return chunk_coefficients(gates.get("retain"), gates.get("momentum"), n, like, self.read_after)

    def advance(self, st: MemoryState, co: ChunkCoefficients, sums_G: list[Tensor], sums_N: list[Tensor] | None,
                n: int, chunk_size: int) -> MemoryState:
        """Chunk-end state from the weighted gradient sums: A, S, the read weights, and the link."""
        mom = st.momentum
        inc = [-sg for sg in sums_G]
        if mom is not None:
            inc = [scale_weights(s, co.f_e) + i for s, i in zip(mom, inc)]
            mom = [scale_weights(s, co.m_e) - sn for s, sn in zip(mom, sums_N)]
        acc = [scale_weights(a, co.beta_e) + i for a, i in zip(st.acc, inc)]
        identity = self.rule.retention.identity_link
        read = acc if identity else [scale_weights(r, co.beta_e) + i for r, i in zip(st.read, inc)]
        offset = st.offset + n
        grad_at = st.grad_at
        if offset == chunk_size:
            read = grad_at = self.rule.retention.link(acc)
            offset = 0
        return MemoryState(acc, mom, read, grad_at, offset)


class StackStep(_Step):
    def __call__(self, st: MemoryState, inp: StepInputs, chunk_size: int):
        structure: StackMemory = self.rule.structure
        n = inp.k.shape[1]
        yk, cache = structure.run(st.grad_at, inp.k, cache=True)
        g = lr_scaled(self.rule.bias.output_grad(yk, inp.v, inp.gates), inp.gates["lr"])
        deltas = structure.backward(st.grad_at, cache, g)
        co = self.coefficients(inp.gates, n, inp.k)
        mom = st.momentum

        def dual_linear(l: int, a: Tensor) -> Tensor:
            z = scale_tokens(a @ st.read[l].mT, co.beta_r)
            if mom is not None:
                z = z + scale_tokens(a @ mom[l].mT, co.f_r)
            return z - _mix(a @ cache.inputs[l].mT, co.G_r, deltas[l])

        y = structure.run(st.read, inp.q, linear=dual_linear)
        sums_G = [_weighted_outer(d, co.G_e, a) for d, a in zip(deltas, cache.inputs)]
        sums_N = None if mom is None else [_weighted_outer(d, co.N_e, a) for d, a in zip(deltas, cache.inputs)]
        new = self.advance(st, co, sums_G, sums_N, n, chunk_size)
        return self.fix_chunk_end_read(y, new, inp), new

    def fix_chunk_end_read(self, y: Tensor, new: MemoryState, inp: StepInputs) -> Tensor:
        # A non-identity link is applied at the chunk end, so the chunk's last read-after-write sees it.
        if self.read_after and new.offset == 0 and not self.rule.retention.identity_link:
            last = self.rule.structure.forward(new.read, inp.q[:, -1:])
            y = torch.cat([y[:, :-1], last], dim=1)
        return y


class FuncStep(StackStep):
    """Generic path for any registered module: torch.func per-token gradients and per-token reads."""

    def __call__(self, st: MemoryState, inp: StepInputs, chunk_size: int):
        structure = self.rule.structure
        n = inp.k.shape[1]
        yk = structure.forward(st.grad_at, inp.k)
        g = lr_scaled(self.rule.bias.output_grad(yk, inp.v, inp.gates), inp.gates["lr"])

        def token_grad(params, k, gt):
            _, vjp = torch.func.vjp(lambda *w: structure.forward(list(w), k), *params)
            return vjp(gt)

        per_seq = torch.func.vmap(token_grad, in_dims=(None, 0, 0))
        u = torch.func.vmap(per_seq, in_dims=(0, 0, 0))(tuple(st.grad_at), inp.k, g)  # each (N, n, *shape)
        co = self.coefficients(inp.gates, n, inp.k)
        mom = st.momentum

        def combine(coef: Tensor, ui: Tensor) -> Tensor:
            return torch.einsum("ntj,nj...->nt...", coef, ui) if coef.dim() == 3 else torch.einsum("nj,nj...->n...", coef, ui)

        weights = []
        for l, ul in enumerate(u):
            w = st.read[l].unsqueeze(1) * co.beta_r.view(*co.beta_r.shape, *([1] * (ul.dim() - 2)))
            if mom is not None:
                w = w + mom[l].unsqueeze(1) * co.f_r.view(*co.f_r.shape, *([1] * (ul.dim() - 2)))
            weights.append(w - combine(co.G_r, ul))
        read_token = lambda w, q: structure.forward(list(w), q)  # noqa: E731
        y = torch.func.vmap(torch.func.vmap(read_token))(tuple(weights), inp.q)
        sums_G = [combine(co.G_e, ul) for ul in u]
        sums_N = None if mom is None else [combine(co.N_e, ul) for ul in u]
        new = self.advance(st, co, sums_G, sums_N, n, chunk_size)
        return self.fix_chunk_end_read(y, new, inp), new


def chunked_scan(rule, state: MemoryState, inputs: StepInputs, chunk_size: int, read_after: bool, path: str = "auto"):
    if path == "auto":
        path = "stack" if isinstance(rule.structure, StackMemory) else "func"
    step = (StackStep if path == "stack" else FuncStep)(rule, read_after)
    T = inputs.k.shape[1]
    outs, pos = [], 0
    while pos < T:
        n = min(chunk_size - state.offset, T - pos)
        sl = slice(pos, pos + n)
        seg = StepInputs(inputs.k[:, sl], inputs.v[:, sl], inputs.q[:, sl], {k: g[:, sl] for k, g in inputs.gates.items()})
        y, state = step(state, seg, chunk_size)
        outs.append(y)
        pos += n
    return torch.cat(outs, dim=1), state
