"""The stack path's chunk step as one autograd node with a hand-written backward.

Same math as StackStep (every gradient of the chunk at the chunk-start weights W_l, momentum S_l and decay
in closed form, exact in-chunk reads in the dual form), for the common case: an identity link, per-head
gates and the gradient taken at W itself. Per layer l (a_0 = k, b_0 = q, z / zq the key / query
pre-activations, delta_l the memory's per-token output gradients):

    z_l  = a_l W_l^T,                   a_{l+1} = sigma(z_l)
    delta_{L-1} = head(z_{L-1}, k, v)   (bias gradient, through x + LN(.) if the stack has it)
    delta_{l-1} = (delta_l W_l) * sigma'(z_{l-1})
    zq_l = beta_r * b_l W_l^T + f_r * b_l S_l^T - ((b_l a_l^T) * G_r) delta_l,   b_{l+1} = sigma(zq_l)
    W_l' = beta_e W_l + f_e S_l - sum_j G_e[j] delta_lj a_lj^T,   S_l' = m_e S_l - sum_j N_e[j] delta_lj a_lj^T

Why by hand: autograd gives each of the four uses of W_l (key pass, delta backprop, read, chunk-end
update) its own fresh weight-sized gradient and then adds them, plus a weight-sized multiply per gate
product. Here every weight gradient of a chunk is one scaling of the incoming gradient and one
matmul over the chunk's tokens stacked (k = 3n instead of three k = n products), and the saved tensors
are the pre-activations only (activations are recomputed: they are token-sized). The per-token head
(bias and output norm) is differentiated by autograd on token-sized tensors.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..memory.stack import ACTIVATIONS, StackMemory
from .fused import _bdot
from .ops import scale_tokens, scale_weights, scaled_output_grad


class GradientPool:
    """The weight gradients one scan's fused backward handed out, so the previous chunk's backward may update them in
    place instead of allocating a fresh weight-sized tensor per chunk. Identity through a weak reference: a tensor that
    is not one of ours (a caller's gradient of the final state, a sum autograd made) is never written to."""

    def __init__(self) -> None:
        self._refs: dict[int, weakref.ref] = {}

    def give(self, t: Tensor) -> Tensor:
        self._refs[id(t)] = weakref.ref(t)
        return t

    def take(self, t: Tensor) -> bool:
        """True if t is a gradient we handed out (and nobody else holds it as such any more)."""
        ref = self._refs.pop(id(t), None)
        return ref is not None and ref() is t


@dataclass(frozen=True)
class _Meta:
    rule: object
    gate_names: tuple[str, ...]
    layers: int
    momentum: bool
    pool: GradientPool
    n_outer: int = 0  # the structure's outer parameters (after the gates among the node's inputs)


def _head(rule, z_last: Tensor, k: Tensor, v: Tensor, gates: dict[str, Tensor], outer=()) -> Tensor:
    """The last layer's per-token output gradient from its pre-activation (token-sized, autograd-friendly)."""
    structure = rule.structure
    g = scaled_output_grad(rule.bias, structure.output(k, z_last, outer), v, gates)
    return structure.output_delta(z_last, g, outer)


def read_output_backward(structure, x: Tensor, z_last: Tensor, gy: Tensor, outer) -> tuple:
    """Back through a read's output y = structure.output(x, z_last, outer): (dL/dx or None, dL/dz_last, dL/d outer
    per outer parameter). By hand without outer parameters; through autograd on the token-sized output with them."""
    if not outer:
        return (gy if structure.has_residual else None), structure.output_delta(z_last, gy), []
    with torch.enable_grad():
        leaves = [t.detach().requires_grad_(True) for t in (x, z_last, *outer)]
        out = structure.output(leaves[0], leaves[1], leaves[2:])
    gx, gz, *g_outer = torch.autograd.grad(out, leaves, gy, allow_unused=True)
    return gx, gz, g_outer


def add_grads(a: list, b: list) -> list:
    """Elementwise sum of two gradient lists where an entry may be None."""
    return [y if x is None else x if y is None else x + y for x, y in zip(a, b)]


def pad_bias(structure, y: Tensor) -> Tensor:
    """A token factor of an input-weight gradient widened to the augmented input (zero in the bias column)."""
    return torch.nn.functional.pad(y, (0, 1)) if structure.has_bias else y


def _dots(grads: list, states: list[Tensor], N: int, like: Tensor) -> Tensor:
    """sum_l <grads_l, states_l> per sequence, skipping absent gradients."""
    out = like.new_zeros(N)
    for g, x in zip(grads, states):
        if g is not None:
            out += _bdot(g, x)
    return out


def scaled_owned(g: Tensor, own: bool, coef: Tensor | None) -> Tensor:
    """coef * g (g itself without coef) as a tensor the backward may write to: in place if it owns g."""
    if own:
        return g if coef is None else g.mul_(coef[:, None, None])
    # contiguous: a strided base would send the weight gradient's baddbmm_ to a per-matrix loop with copies
    return g.clone(memory_format=torch.contiguous_format) if coef is None else scale_weights(g, coef).contiguous()


def _scaled(pool: GradientPool, g: Tensor | None, coef: Tensor) -> Tensor | None:
    """coef * g, in place if g is a gradient this scan handed out."""
    return None if g is None else scaled_owned(g, pool.take(g), coef)


def _add_pairs(base: Tensor | None, pairs: list[tuple[Tensor, Tensor]]) -> Tensor:
    """base + sum_i X_i^T Y_i as one matmul over the stacked tokens."""
    xs, ys = zip(*pairs)
    x, y = torch.cat(xs, dim=1).mT, torch.cat(ys, dim=1)
    return torch.bmm(x, y) if base is None else base.baddbmm_(x, y)


def delta_chain(act, W: list[Tensor], z: list[Tensor], top: Tensor) -> tuple[list, list]:
    """Per-token output gradients of every layer from the top one: delta_{l-1} = (delta_l W_l) * sigma'(z_{l-1});
    returns the deltas and t_l = delta_l W_l."""
    L = len(W)
    deltas, ts = [None] * L, [None] * L
    deltas[-1] = top
    for l in range(L - 1, 0, -1):
        ts[l] = deltas[l] @ W[l]
        deltas[l - 1] = act.vjp(ts[l], z[l - 1])
    return deltas, ts


def recompute_deltas(meta: _Meta, W: list[Tensor], z: list[Tensor], k: Tensor, v: Tensor, gate_vals, outer=()) -> tuple:
    """Backward's recomputation of the key pass's per-token output gradients from the saved pre-activations: the head
    with a graph (its inputs and output: z, k, v, the gates, the outer parameters), deltas_l and t_l = delta_l W_l
    (W_l without its bias column)."""
    L = len(W)
    structure = meta.rule.structure
    act = ACTIVATIONS[structure.activation_name] if L > 1 else None
    head_in = [t.detach().requires_grad_(True) for t in (z[-1], k, v, *gate_vals, *outer)]
    G = len(meta.gate_names)
    with torch.enable_grad():
        head_out = _head(meta.rule, head_in[0], head_in[1], head_in[2], dict(zip(meta.gate_names, head_in[3:3 + G])),
                         head_in[3 + G:])
    return (head_in, head_out, *delta_chain(act, [structure.weight_in(w) for w in W], z, head_out.detach()))


def backprop_deltas(structure, act, W, z, ts, deltas, gdelta, w_pairs, head_in, head_out) -> tuple:
    """Given dL/d delta_l, back through delta_{l-1} = (delta_l W_l) * sigma'(z_{l-1}) and the head: adds the weight
    gradients' token pairs to w_pairs; returns the extra key pre-activation gradients (per layer below the top), the
    top layer's key pre-activation gradient, and the head's gradients for k, v, and the gates then the outer
    parameters."""
    L = len(W)
    gz_extra = [None] * L
    for l in range(1, L):
        gt = act.vjp(gdelta[l - 1], z[l - 1])
        gz_extra[l - 1] = gdelta[l - 1] * ts[l] * act.d2(z[l - 1])
        gdelta[l].baddbmm_(gt, structure.weight_in(W[l]).mT)
        w_pairs[l].append((deltas[l], pad_bias(structure, gt)))
    # The head: bias gradient (and output norm) at the last pre-activation.
    head_grads = torch.autograd.grad(head_out, head_in, gdelta[-1], allow_unused=True)
    gz = head_grads[0] if head_grads[0] is not None else torch.zeros_like(z[-1])  # e.g. a dot bias
    return gz_extra, gz, head_grads[1], head_grads[2], head_grads[3:]


class FusedStackChunk(torch.autograd.Function):
    @staticmethod
    def forward(ctx, meta: _Meta, k, v, q, beta_r, f_r, G_r, beta_e, f_e, G_e, m_e, N_e, *rest):
        L, G, O = meta.layers, len(meta.gate_names), meta.n_outer
        gates = dict(zip(meta.gate_names, rest[:G]))
        outer = rest[G:G + O]
        W = list(rest[G + O:G + O + L])
        S = list(rest[G + O + L:]) if meta.momentum else None
        structure = meta.rule.structure
        aug = structure.augment  # a layer's input with the constant 1 of its bias column (itself without biases)
        act = ACTIVATIONS[structure.activation_name] if L > 1 else None
        a, z = [aug(k)], []
        for l in range(L):
            z.append(a[l] @ W[l].mT)
            if l < L - 1:
                a.append(aug(act.fn(z[l])))
        deltas, _ = delta_chain(act, [structure.weight_in(w) for w in W], z, _head(meta.rule, z[-1], k, v, gates, outer))
        b, zq = aug(q), []
        for l in range(L):
            out = scale_tokens(b, beta_r) @ W[l].mT
            if S is not None:
                out.baddbmm_(scale_tokens(b, f_r), S[l].mT)
            out.baddbmm_((b @ a[l].mT) * G_r, deltas[l], alpha=-1.0)
            zq.append(out)
            if l < L - 1:
                b = aug(act.fn(out))
        y = structure.output(q, zq[-1], outer)
        new_W, new_S = [], []
        for l in range(L):
            w = scale_weights(W[l], beta_e)
            if S is not None:
                w.addcmul_(S[l], f_e[:, None, None])
            new_W.append(w.baddbmm_(scale_tokens(deltas[l], G_e).mT, a[l], alpha=-1.0))
            if S is not None:
                new_S.append(scale_weights(S[l], m_e).baddbmm_(scale_tokens(deltas[l], N_e).mT, a[l], alpha=-1.0))
        ctx.meta = meta
        ctx.set_materialize_grads(False)
        # delta_l W_l is recomputed in backward (one token-by-weight product) rather than kept: memory is the scarcer
        ctx.save_for_backward(k, v, q, beta_r, f_r, G_r, beta_e, f_e, G_e, m_e, N_e, *rest, *z, *zq)
        return (y, *new_W, *new_S)

    @staticmethod
    @once_differentiable  # the hand-written backward updates gradients in place: no graph through it
    def backward(ctx, gy, *g_new):
        meta: _Meta = ctx.meta
        L, G, O = meta.layers, len(meta.gate_names), meta.n_outer
        saved = ctx.saved_tensors
        k, v, q, beta_r, f_r, G_r, beta_e, f_e, G_e, m_e, N_e = saved[:11]
        gate_vals = saved[11:11 + G]
        outer = saved[11 + G:11 + G + O]
        W = list(saved[11 + G + O:11 + G + O + L])
        nS = L if meta.momentum else 0
        S = list(saved[11 + G + O + L:11 + G + O + L + nS]) if meta.momentum else None
        rest = saved[11 + G + O + L + nS:]
        z, zq = list(rest[:L]), list(rest[L:2 * L])
        gW_new = list(g_new[:L])
        gS_new = list(g_new[L:]) if meta.momentum else [None] * L
        need = ctx.needs_input_grad
        structure = meta.rule.structure
        act = ACTIVATIONS[structure.activation_name] if L > 1 else None

        # Recompute the token-sized forward: activations, the head (with a graph), deltas, read inputs.
        aug, strip = structure.augment, structure.strip
        a = [aug(k)] + [aug(act.fn(z[l])) for l in range(L - 1)]
        head_in, head_out, deltas, ts = recompute_deltas(meta, W, z, k, v, gate_vals, outer)
        bs = [aug(q)] + [aug(act.fn(zq[l])) for l in range(L - 1)]

        # Chunk-end update: W' = beta_e W + f_e S - sum G_e delta a^T, S' = m_e S - sum N_e delta a^T.
        # An incoming gradient is None where the new state is unused (the last chunk's, mostly): its terms vanish.
        N = k.shape[0]
        gbeta_e = _dots(gW_new, W, N, k) if need[7] else None
        gf_e = _dots(gW_new, S, N, k) if S is not None and need[8] else None
        gm_e = _dots(gS_new, S, N, k) if S is not None and need[10] else None
        gdelta = [torch.zeros_like(d) for d in deltas]
        ga = [torch.zeros_like(x) for x in a]
        gG_e = torch.zeros_like(G_e)
        gN_e = torch.zeros_like(N_e) if S is not None else None
        for l in range(L):
            for g_state, coef, g_coef in ((gW_new[l], G_e, gG_e), (gS_new[l] if S is not None else None, N_e, gN_e)):
                if g_state is None:
                    continue
                proj = a[l] @ g_state.mT
                g_coef -= torch.linalg.vecdot(proj, deltas[l])
                gdelta[l] -= scale_tokens(proj, coef)
                ga[l].baddbmm_(scale_tokens(deltas[l], coef), g_state, alpha=-1.0)

        # Reads, last layer first. Weight gradients are collected as token pairs (X, Y), summed as X^T Y.
        w_pairs = [[] for _ in range(L)]
        s_pairs = [[] for _ in range(L)]
        if gy is None:
            gy = torch.zeros_like(zq[-1])
        gq, gzq, g_outer = read_output_backward(structure, q, zq[-1], gy, outer)
        gbeta_r = torch.zeros_like(beta_r)
        gf_r = torch.zeros_like(f_r) if S is not None else None
        gG_r = torch.zeros_like(G_r)
        for l in range(L - 1, -1, -1):
            b = bs[l]
            gzW = gzq @ W[l]
            gbeta_r += torch.linalg.vecdot(gzW, b)
            gb = scale_tokens(gzW, beta_r)
            w_pairs[l].append((scale_tokens(gzq, beta_r), b))
            if S is not None:
                gzS = gzq @ S[l]
                gf_r += torch.linalg.vecdot(gzS, b)
                gb += scale_tokens(gzS, f_r)
                s_pairs[l].append((scale_tokens(gzq, f_r), b))
            P = b @ a[l].mT
            gM = -(gzq @ deltas[l].mT)
            gdelta[l].baddbmm_((P * G_r).mT, gzq, alpha=-1.0)
            gG_r += gM * P
            gP = gM * G_r
            gb.baddbmm_(gP, a[l])
            ga[l].baddbmm_(gP.mT, b)
            gb = strip(gb)
            if l > 0:
                gzq = act.vjp(gb, zq[l - 1])
            else:
                gq = gb if gq is None else gq + gb

        gz_extra, gz, gk_head, gv, g_head = backprop_deltas(structure, act, W, z, ts, deltas, gdelta, w_pairs, head_in,
                                                            head_out)
        g_gates, g_outer = g_head[:G], add_grads(g_outer, g_head[G:])

        # The key pass, last layer first.
        gk = None
        for l in range(L - 1, -1, -1):
            w_pairs[l].append((gz, a[l]))
            g_a = strip(ga[l].baddbmm_(gz, W[l]))
            if l > 0:
                gz = act.vjp(g_a, z[l - 1]).add_(gz_extra[l - 1])
            else:
                gk = g_a if gk_head is None else g_a + gk_head

        # Weight gradients last (the chunk-end terms above read the incoming ones): one scaling pass, in place on an
        # incoming gradient this scan handed out, and one matmul over the chunk's stacked token pairs.
        pool = meta.pool
        gW, gS = [], ([] if S is not None else None)
        for l in range(L):
            if S is not None:
                gs = _scaled(pool, gS_new[l], m_e)
                if gW_new[l] is not None:
                    gs = scale_weights(gW_new[l], f_e) if gs is None else gs.addcmul_(gW_new[l], f_e[:, None, None])
                gS.append(pool.give(_add_pairs(gs, s_pairs[l])))
            gW.append(pool.give(_add_pairs(_scaled(pool, gW_new[l], beta_e), w_pairs[l])))

        return (None, gk, gv, gq, gbeta_r, gf_r, gG_r, gbeta_e, gf_e, gG_e, gm_e, gN_e,
                *g_gates, *g_outer, *gW, *(gS or []))


def fused_supported(rule) -> bool:
    """Rule-level conditions of the fused step: a stack memory, an identity link, the gradient at W itself.
    (Per-head gates and a chunk-aligned state are checked per call.)"""
    retention = rule.retention
    return (isinstance(rule.structure, StackMemory) and retention.identity_link and not retention.grad_after_decay
            and getattr(retention, "granularity", "head") == "head")


def fused_stack_chunk(rule, W: list[Tensor], S: list[Tensor] | None, k: Tensor, v: Tensor, q: Tensor,
                      gates: dict[str, Tensor], co, pool: GradientPool, outer=()
                      ) -> tuple[Tensor, list[Tensor], list[Tensor] | None]:
    """One chunk of the stack step through FusedStackChunk; returns y, the new weights and the new momentum.
    pool: shared by the chunks of one scan. outer: the structure's outer parameters."""
    names = tuple(n for n in gates if n not in ("retain", "momentum"))
    meta = _Meta(rule, names, len(W), S is not None, pool, len(outer))
    out = FusedStackChunk.apply(meta, k, v, q, co.beta_r, co.f_r, co.G_r, co.beta_e, co.f_e, co.G_e, co.m_e, co.N_e,
                                *[gates[n] for n in names], *outer, *W, *(S or []))
    L = len(W)
    return out[0], list(out[1:1 + L]), (list(out[1 + L:]) if S is not None else None)
