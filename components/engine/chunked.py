"""The chunked parallel form: every gradient of a chunk at the chunk-start weights, momentum and decay
in closed form inside the chunk, the retention's link at chunk ends.

Two paths:
* stack memories (linear layers + per-token functions): per-token gradients are outer products
  delta_t a_t^T, so chunk sums are one matmul per layer and in-chunk reads use the exact dual form
      z_t = beta_t W a~_t + f_t S a~_t - sum_{j} G[t, j] (a_j . a~_t) delta_j
  (matmuls plus one masked (n x n) matrix; no weight copy per token or per chunk is stored).
  Written in autograd ops ('stack', also what torch.compile traces) and, for an identity link and per-head
  gates, as one node per chunk with a hand-written backward ('fused', fused_stack.py: the default there);
* any other registered module: per-token gradients with torch.func (vmap of vjp) and per-token
  weights inside the chunk. Slower; also an oracle for the stack path in tests.
"""
from __future__ import annotations

import math
from dataclasses import replace

import torch
import torch.utils.checkpoint
from torch import Tensor

from ..memory import StackMemory
from ..optim import StepInputs
from .execution import auto_chunked_path
from .fused import decay_update
from .fused_chunkwise import chunkwise_stack_chunk
from .fused_stack import GradientPool, fused_stack_chunk
from .key_decay import KeyDecayStep
from .ops import dual_read, linear_wt, scale_tokens, scale_weights, scaled_output_grad
from .state import MemoryState
from .step import ChunkStep


def _mix(P: Tensor, G: Tensor, delta: Tensor) -> Tensor:
    """sum_j P[t, j] G[t, j] delta_j, with head (N, n, n) or channel (N, n, n, c) coefficients."""
    if G.dim() == 3:
        return (P * G) @ delta
    return torch.einsum("ntj,ntjc,njc->ntc", P, G, delta)


def _weighted_outer(delta: Tensor, w: Tensor, a: Tensor) -> tuple[Tensor, Tensor]:
    """sum_j w_j delta_j a_j^T = X @ Y; the weight goes on the narrower side (per-channel ones on delta)."""
    if w.dim() == 3 or a.shape[-1] > delta.shape[-1]:
        return scale_tokens(delta, w).mT, a
    return delta.mT, scale_tokens(a, w)


class StackStep(ChunkStep):
    def __call__(self, st: MemoryState, inp: StepInputs, chunk_size: int):
        structure: StackMemory = self.rule.structure
        n = inp.k.shape[1]
        alpha = self.grad_point_scale(inp.gates)
        if alpha is None:
            key_linear = lambda l, a: linear_wt(a, st.grad_at[l])  # noqa: E731
        else:  # M_{alpha W}(k) = alpha * (W k) for the linear memory this retention allows
            key_linear = lambda l, a: scale_tokens(linear_wt(a, st.grad_at[l]), alpha)  # noqa: E731
        yk, cache = structure.run(st.grad_at, inp.k, cache=True, linear=key_linear, outer=inp.outer)
        g = scaled_output_grad(self.rule.bias, yk, inp.v, inp.gates)
        deltas = structure.backward(st.grad_at, cache, g, inp.outer)
        co = self.coefficients(inp.gates, n, inp.k)
        mom = st.momentum

        def dual_linear(l: int, a: Tensor) -> Tensor:
            mix = _mix(a @ cache.inputs[l].mT, co.G_r, deltas[l])
            if co.beta_r.dim() == 3:  # per-channel coefficients scale the output rows
                z = scale_tokens(linear_wt(a, st.read[l]), co.beta_r)
                if mom is not None:
                    z = z + scale_tokens(linear_wt(a, mom[l]), co.f_r)
                return z - mix
            return dual_read(a, co.beta_r, st.read[l], co.f_r, None if mom is None else mom[l]) - mix

        y = structure.run(st.read, inp.q, linear=dual_linear, outer=inp.outer)
        sums_G = [_weighted_outer(d, co.G_e, a) for d, a in zip(deltas, cache.inputs)]
        sums_N = None if mom is None else [_weighted_outer(d, co.N_e, a) for d, a in zip(deltas, cache.inputs)]
        new = self.advance(st, co, sums_G, sums_N, n, chunk_size)
        return self.fix_chunk_end_read(y, new, inp), new


class FusedStep(StackStep):
    """StackStep's math as one autograd node per chunk (fused_stack.py): chunk-aligned steps of rules with an identity
    link and per-head gates; anything else (a partial first chunk of a stream, per-channel gates) goes to StackStep."""

    def __init__(self, rule, read_after: bool):
        super().__init__(rule, read_after)
        self.pool = GradientPool()

    def __call__(self, st: MemoryState, inp: StepInputs, chunk_size: int):
        aligned = st.offset == 0 and all(g is r for g, r in zip(st.grad_at, st.read))
        per_head = all(inp.gates[name].dim() == 2 for name in ("retain", "momentum") if name in inp.gates)
        if not (aligned and per_head):
            return super().__call__(st, inp, chunk_size)
        n = inp.k.shape[1]
        co = self.coefficients(inp.gates, n, inp.k)
        y, weights, momentum = fused_stack_chunk(self.rule, st.read, st.momentum, inp.k, inp.v, inp.q, inp.gates, co, self.pool,
                                                  inp.outer)
        full = n == chunk_size  # a short last chunk keeps its gradient point for the rest of the chunk
        return y, MemoryState(weights, momentum, weights, weights if full else st.grad_at, 0 if full else n)


class FuncStep(ChunkStep):
    """Generic path for any registered module: torch.func per-token gradients and per-token reads."""

    def __call__(self, st: MemoryState, inp: StepInputs, chunk_size: int):
        structure = self.rule.structure
        n = inp.k.shape[1]
        alpha = self.grad_point_scale(inp.gates)
        if alpha is None:
            yk = structure.forward(st.grad_at, inp.k, inp.outer)
            alpha = inp.k.new_ones(inp.k.shape[:2])
        else:
            yk = scale_tokens(structure.forward(st.grad_at, inp.k, inp.outer), alpha)
        g = scaled_output_grad(self.rule.bias, yk, inp.v, inp.gates)

        def token_grad(params, k, gt, a, outer):
            point = [w * (a if a.dim() == 0 else a[:, None]) for w in params]
            _, vjp = torch.func.vjp(lambda *w: structure.forward(list(w), k, outer), *point)
            return vjp(gt)

        per_seq = torch.func.vmap(token_grad, in_dims=(None, 0, 0, 0, None))
        u = torch.func.vmap(per_seq, in_dims=(0, 0, 0, 0, 0))(tuple(st.grad_at), inp.k, g, alpha, inp.outer)  # each (N, n, *shape)
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
        read_token = lambda w, q, outer: structure.forward(list(w), q, outer)  # noqa: E731
        y = torch.func.vmap(torch.func.vmap(read_token, in_dims=(0, 0, None)))(tuple(weights), inp.q, inp.outer)
        new = self.advance(st, co, [combine(co.G_e, ul) for ul in u],
                           None if mom is None else [combine(co.N_e, ul) for ul in u], n, chunk_size)
        return self.fix_chunk_end_read(y, new, inp), new


class ChunkUpdateStep(ChunkStep):
    """A per-chunk algorithm (the memory changes once per chunk): reads are plain forwards at the chunk-start weights,
    and the chunk's gradients, all at those weights, are summed: one matmul per layer for a stack memory (its
    hand-written backward gives per-token deltas), one vjp of the batched forward for any other module.

    The state keeps S and A current after every step (alpha and eta act at the chunk's first step), so a stream cut
    inside a chunk resumes with the plain sum of the remaining gradients."""

    def __init__(self, rule, read_after: bool, stack: bool):
        super().__init__(rule, read_after)
        self.stack = stack

    def surprise(self, weights: list[Tensor], inp: StepInputs) -> list:
        """Per layer sum_t theta_t grad_W l_t at `weights`: a pair (X, Y) with sum = X @ Y, or the tensor itself."""
        structure = self.rule.structure
        if self.stack:
            yk, cache = structure.run(weights, inp.k, cache=True, outer=inp.outer)
            deltas = structure.backward(weights, cache, scaled_output_grad(self.rule.bias, yk, inp.v, inp.gates),
                                        inp.outer)
            return [(d.mT, a) for d, a in zip(deltas, cache.inputs)]
        yk, vjp = torch.func.vjp(lambda *w: structure.forward(list(w), inp.k, inp.outer), *weights)
        return list(vjp(scaled_output_grad(self.rule.bias, yk, inp.v, inp.gates)))

    def __call__(self, st: MemoryState, inp: StepInputs, chunk_size: int):
        structure, n = self.rule.structure, inp.k.shape[1]
        sums = self.surprise(st.grad_at, inp)
        y = structure.forward(st.read, inp.q, inp.outer)
        as_tensor = lambda xy: torch.bmm(*xy) if isinstance(xy, tuple) else xy  # noqa: E731
        if st.offset == 0:  # the chunk's gates, once: S = eta S - U, A = alpha A + S
            eta = inp.gates["momentum"][:, 0]
            alpha = inp.gates["retain"][:, 0] if "retain" in inp.gates else None
            mom = [decay_update(s, eta, None, None, *xy) if isinstance(xy, tuple) else scale_weights(s, eta) - xy
                   for s, xy in zip(st.momentum, sums)]
            acc = [s + (a if alpha is None else scale_weights(a, alpha)) for a, s in zip(st.acc, mom)]
        else:  # a stream resumed inside the chunk: the remaining surprise only
            sums = [as_tensor(xy) for xy in sums]
            mom = [s - u for s, u in zip(st.momentum, sums)]
            acc = [a - u for a, u in zip(st.acc, sums)]
        offset = st.offset + n
        if offset < chunk_size:
            return y, MemoryState(acc, mom, st.read, st.grad_at, offset)
        new = self.rule.read_weights(acc)
        state = MemoryState(acc, mom, new, new, 0)
        return self.fix_chunk_end_read(y, state, inp), state


class FusedChunkUpdateStep(ChunkUpdateStep):
    """ChunkUpdateStep's stack math as one autograd node per chunk (fused_chunkwise.py), for a chunk-aligned state, an
    identity link and per-head gates; anything else goes to ChunkUpdateStep."""

    def __init__(self, rule, read_after: bool):
        super().__init__(rule, read_after, stack=True)
        self.pool = GradientPool()

    def __call__(self, st: MemoryState, inp: StepInputs, chunk_size: int):
        aligned = st.offset == 0 and all(a is r and g is r for a, g, r in zip(st.acc, st.grad_at, st.read))
        if not (aligned and "channel" not in self.rule.gates().values()):
            return super().__call__(st, inp, chunk_size)
        n = inp.k.shape[1]
        full = n == chunk_size
        y, acc, mom = chunkwise_stack_chunk(self.rule, st.read, st.momentum, inp.k, inp.v, inp.q, inp.gates, self.pool,
                                            read_last=full and self.read_after, outer=inp.outer)
        return y, (MemoryState(acc, mom, acc, acc, 0) if full else MemoryState(acc, mom, st.read, st.grad_at, n))


class ExactStep(ChunkStep):
    """The exact token-by-token recurrence, in parallel inside a chunk, for a linear memory whose bias has an
    output gradient affine in the prediction (l2 with slope c = 1: DeltaNet, Gated DeltaNet, Longhorn,
    Titans-linear), per-head gates and an identity link.

    The prediction at W_{t-1} is the read-before dual form at the key, P = B - L g with
    L[t, j] = G_b[t, j] (k_j . k_t) strictly lower; g_t = theta_t * grad(P_t) is affine in P, so
        (I + c diag(theta) L) g = theta * grad(B)
    is one unit-lower-triangular solve per chunk (the WY/UT form of DeltaNet's chunked algorithm, here with
    momentum and decay through the same coefficients). Reads and the chunk-end update are the stack path's.
    """

    def __call__(self, st: MemoryState, inp: StepInputs, chunk_size: int):
        n = inp.k.shape[1]
        k, mom = inp.k, st.momentum
        W0, S0 = st.read[0], None if mom is None else mom[0]
        co = self.coefficients(inp.gates, n, k)
        before = self.coefficients(inp.gates, n, k, read_after=False)
        beta_b, f_b, G_b = before.beta_r, before.f_r, before.G_r
        alpha = self.grad_point_scale(inp.gates)
        if alpha is not None:  # the gradient point is alpha_t W_{t-1}
            beta_b, G_b = beta_b * alpha, G_b * alpha[..., None]
            f_b = None if f_b is None else f_b * alpha
        B = dual_read(k, beta_b, W0, f_b, S0)
        rhs = scaled_output_grad(self.rule.bias, B, inp.v, inp.gates)
        slope = self.rule.bias.prediction_slope
        if slope:
            L = (G_b * (k @ k.mT)) * (slope * inp.gates["lr"])[..., None]
            g = torch.linalg.solve_triangular(L, rhs, upper=False, unitriangular=True)
        else:
            g = rhs
        y = dual_read(inp.q, co.beta_r, W0, co.f_r, S0) - _mix(inp.q @ k.mT, co.G_r, g)
        sums_G = [_weighted_outer(g, co.G_e, k)]
        sums_N = None if mom is None else [_weighted_outer(g, co.N_e, k)]
        # No mini-batch inside an exact chunk: every segment ends at a chunk boundary.
        return y, self.advance(replace(st, offset=0), co, sums_G, sums_N, n, n)


def segment_length(checkpoint: int | str | None, n_chunks: int) -> int:
    """Chunks per recomputed segment: 0 = keep everything for backward; 'auto' = ceil(sqrt(chunks))."""
    if not checkpoint:
        return 0
    return math.isqrt(n_chunks - 1) + 1 if checkpoint == "auto" else int(checkpoint)


_COMPILED: dict[type, object] = {}


def compilable(rule) -> bool:
    """Whether memory_scan(compile=True) applies: the stack and exact paths, not the generic torch.func one (every
    rule with an exact form has a linear memory, a stack)."""
    return auto_chunked_path(rule) != "func"


def compiled_step(step: ChunkStep):
    """The step's __call__ through torch.compile, built once per step class. dynamic=False: every full chunk has the
    same shapes, so a sequence costs one compile per distinct chunk length; the graph fuses the chunk's elementwise
    work (decay scalings, activations and their derivatives, coefficient math) around the matmuls."""
    call = _COMPILED.get(type(step))
    if call is None:
        import torch._dynamo

        # Each rule, chunk length and grad mode is its own graph of this one function: a sweep worker meets many,
        # and past dynamo's default of 8 it would fall back to eager without a word.
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 128)
        call = _COMPILED[type(step)] = torch.compile(type(step).__call__, dynamic=False)
    return lambda st, inp, chunk_size: call(step, st, inp, chunk_size)


def chunked_scan(rule, state: MemoryState, inputs: StepInputs, chunk_size: int, read_after: bool, path: str,
                 checkpoint: int | str | None = None, compile: bool = False):
    """Run a concrete chunked path ('exact', 'fused', 'stack' or 'func', as execution.plan picked and checked it)."""
    if rule.algorithm.per_chunk:
        step = FusedChunkUpdateStep(rule, read_after) if path == "fused" else ChunkUpdateStep(rule, read_after, path == "stack")
    else:
        if rule.retention.decay_axis == "key":  # the stack and exact paths of a key-channel decay: its own step
            step = KeyDecayStep(rule, read_after, exact=path == "exact")
        else:
            step = {"stack": StackStep, "fused": FusedStep, "func": FuncStep, "exact": ExactStep}[path](rule, read_after)
    if compile:
        step = compiled_step(step)
    T = inputs.k.shape[1]
    first = min(chunk_size - state.offset, T)
    sizes = [first] + [chunk_size] * ((T - first) // chunk_size)
    sizes = [s for s in sizes + [T - first - chunk_size * (len(sizes) - 1)] if s > 0]
    # split, not per-chunk slicing: each slice's backward would allocate and zero a full-sequence tensor
    split = lambda x: x.split(sizes, dim=1)  # noqa: E731
    gates = {name: split(g) for name, g in inputs.gates.items()}
    chunks = [StepInputs(k, v, q, {name: g[i] for name, g in gates.items()}, inputs.outer)
              for i, (k, v, q) in enumerate(zip(split(inputs.k), split(inputs.v), split(inputs.q)))]

    def run(state: MemoryState, segment: list[StepInputs]):
        outs = []
        for inp in segment:
            y, state = step(state, inp, chunk_size)
            outs.append(y)
        return outs, state

    every = segment_length(checkpoint, len(chunks)) if torch.is_grad_enabled() else 0
    if not every:
        outs, state = run(state, chunks)
        return torch.cat(outs, dim=1), state
    # Activation checkpointing over segments of chunks: backward keeps only each segment's start state and
    # recomputes the segment's chunks (states and token activations) when it gets there; about one more
    # forward of the memory buys roughly (1 - 1/segments) of its saved activations.
    outs = []
    for start in range(0, len(chunks), every):
        ys, state = torch.utils.checkpoint.checkpoint(run, state, chunks[start:start + every], use_reentrant=False)
        outs += ys
    return torch.cat(outs, dim=1), state
