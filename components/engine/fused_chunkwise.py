"""A per-chunk algorithm's chunk step (one update per chunk: titans-pytorch's rule) as one autograd node.

Every read and every gradient of the chunk is at the chunk-start weights W_l, so the key pass and the reads are one
forward over the chunk's keys and queries stacked (x = [k; q], 2n tokens per matmul), and the update is one
gradient sum per layer used twice:

    z_l = a_l W_l^T over x,   delta_l: the key half's per-token output gradients (as in fused_stack.py)
    U_l = sum_j delta_lj a_lj^T,   S_l' = eta S_l - U_l,   W_l' = alpha W_l + S_l'      (eta, alpha per head)

The backward mirrors it: per layer one matmul over the stacked tokens for dL/d(input) and one for the weight
gradient (k = 3n: key pass, read, delta backprop), and three weight-sized passes for the update
(dS' + dW', alpha dW', eta (dS' + dW')); autograd would add a fresh weight-sized gradient per use of W and a
multiply per gate product. The saved tensors are the inputs and the stacked pre-activations.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..memory.stack import ACTIVATIONS
from .fused_stack import (GradientPool, _add_pairs, _dots, _head, _Meta, add_grads, backprop_deltas, delta_chain,
                          read_output_backward, recompute_deltas, scaled_owned)
from .ops import scale_weights


def _add_outer(g: Tensor | None, own: bool, x: Tensor, y: Tensor) -> Tensor:
    """g + x^T y as a tensor this backward owns (in place where it already does)."""
    if g is None:
        return torch.bmm(x.mT, y)
    return g.baddbmm_(x.mT, y) if own else torch.baddbmm(g, x.mT, y)


def _key_half(z: list[Tensor], n: int) -> list[Tensor]:
    """The key tokens' pre-activations, contiguous: the activation's kernels ran 1.5-2x slower on the strided half."""
    return [t[:, :n].contiguous() for t in z]


class ChunkwiseStackChunk(torch.autograd.Function):
    @staticmethod
    def forward(ctx, meta: _Meta, read_last: bool, k, v, q, alpha, eta, *rest):
        L, G, O = meta.layers, len(meta.gate_names), meta.n_outer
        gates = dict(zip(meta.gate_names, rest[:G]))
        outer = rest[G:G + O]
        W, S = list(rest[G + O:G + O + L]), list(rest[G + O + L:])
        structure = meta.rule.structure
        act = ACTIVATIONS[structure.activation_name] if L > 1 else None
        n = k.shape[1]
        y_kq, cache = structure.run(W, torch.cat([k, q], dim=1), cache=True, outer=outer)
        a, z = cache.inputs, cache.pre  # the inputs augmented with the bias column's 1 where the layers have biases
        z_key = _key_half(z, n)
        deltas, _ = delta_chain(act, [structure.weight_in(w) for w in W], z_key,
                                _head(meta.rule, z_key[-1], k, v, gates, outer))
        y = y_kq[:, n:].contiguous()
        new_W, new_S = [], []
        for l in range(L):
            s = scale_weights(S[l], eta).baddbmm_(deltas[l].mT, a[l][:, :n], alpha=-1.0)
            new_S.append(s)
            new_W.append(W[l] + s if alpha is None else torch.addcmul(s, W[l], alpha[:, None, None]))  # one pass
        z_last = []
        if read_last:  # the chunk's last step reads after the chunk's write
            y_last, last_cache = structure.run(new_W, q[:, -1:], cache=True, outer=outer)
            y = torch.cat([y[:, :-1], y_last], dim=1)
            z_last = last_cache.pre  # one token's pre-activations, kept: recomputing them would stream W' again
        ctx.meta, ctx.read_last = meta, read_last
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(k, v, q, alpha, eta, *rest, *z, *(new_W if read_last else ()), *z_last)
        return (y, *new_W, *new_S)

    @staticmethod
    @once_differentiable  # the backward updates gradients in place: no graph through it
    def backward(ctx, gy, *g_new):
        meta: _Meta = ctx.meta
        L, G, O = meta.layers, len(meta.gate_names), meta.n_outer
        k, v, q, alpha, eta, *rest = ctx.saved_tensors
        gate_vals, outer = rest[:G], rest[G:G + O]
        rest = rest[G + O:]
        W, S, z = list(rest[:L]), list(rest[L:2 * L]), list(rest[2 * L:3 * L])
        need = ctx.needs_input_grad
        structure = meta.rule.structure
        act = ACTIVATIONS[structure.activation_name] if L > 1 else None
        pool, N, n = meta.pool, k.shape[0], k.shape[1]
        # Incoming gradients of W' and S', and whether this backward may write to them (the scan handed them out).
        gW_new, gS_new = list(g_new[:L]), list(g_new[L:])
        ownW = [g is not None and pool.take(g) for g in gW_new]
        ownS = [g is not None and pool.take(g) for g in gS_new]

        aug, strip = structure.augment, structure.strip
        gq_last, g_outer = None, [None] * O
        if ctx.read_last and gy is not None:  # the last step's read at W': its gradient joins dW'
            new_W, zl = list(rest[3 * L:4 * L]), list(rest[4 * L:])
            bl = [aug(q[:, -1:])] + [aug(act.fn(zl[l])) for l in range(L - 1)]
            g_res, gz, g_outer = read_output_backward(structure, q[:, -1:], zl[-1], gy[:, -1:], outer)
            for l in range(L - 1, -1, -1):
                gW_new[l], ownW[l] = _add_outer(gW_new[l], ownW[l], gz, bl[l]), True
                ga = strip(gz @ new_W[l])
                gz = act.vjp(ga, zl[l - 1]) if l > 0 else None
            gq_last = ga + g_res if g_res is not None else ga
            gy = torch.cat([gy[:, :-1], torch.zeros_like(gy[:, -1:])], dim=1)

        a = [aug(torch.cat([k, q], dim=1))] + [aug(act.fn(z[l])) for l in range(L - 1)]
        z_key = _key_half(z, n)
        head_in, head_out, deltas, ts = recompute_deltas(meta, W, z_key, k, v, gate_vals, outer)

        # dL/dS' + dL/dW' (S' feeds W'); None where neither new state is used (the last chunk's, mostly).
        g_sum, own = [], []  # own: a tensor this backward may write to (not a caller's, not dW' itself)
        for gw, gs, own_s in zip(gW_new, gS_new, ownS):
            if gs is None:
                g_sum.append(gw)
                own.append(False)
            elif gw is None:
                g_sum.append(gs)
                own.append(own_s)
            else:
                g_sum.append(gs.add_(gw) if own_s else gs + gw)
                own.append(True)
        galpha = _dots(gW_new, W, N, k) if alpha is not None and need[5] else None
        geta = _dots(g_sum, S, N, k) if need[6] else None

        # U_l = sum_j delta_j a_j^T enters S' with sign -1.
        gdelta = [torch.zeros_like(d) for d in deltas]
        ga_key = [torch.zeros_like(d[:, :n]) for d in a]
        for l, g in enumerate(g_sum):
            if g is not None:
                gdelta[l] -= a[l][:, :n] @ g.mT
                ga_key[l].baddbmm_(deltas[l], g, alpha=-1.0)

        w_pairs = [[] for _ in range(L)]
        gz_extra, gz_key, gk_head, gv, g_head = backprop_deltas(structure, act, W, z_key, ts, deltas, gdelta, w_pairs,
                                                                head_in, head_out)
        g_gates, g_outer = g_head[:G], add_grads(g_outer, g_head[G:])

        # Key pass and reads together, last layer first, on the stacked tokens.
        g_res = None
        if gy is not None:
            g_res, gzq, g_read = read_output_backward(structure, q, z[-1][:, n:], gy, outer)
            g_outer = add_grads(g_outer, g_read)
        else:
            gzq = torch.zeros_like(z[-1][:, n:])
        gz = torch.cat([gz_key, gzq], dim=1)
        for l in range(L - 1, -1, -1):
            w_pairs[l].append((gz, a[l]))
            ga = gz @ W[l]
            ga[:, :n] += ga_key[l]
            ga = strip(ga)
            if l > 0:
                gz = act.vjp(ga, z[l - 1])
                gz[:, :n] += gz_extra[l - 1]
        gk, gq = ga[:, :n], ga[:, n:]
        if gk_head is not None:
            gk = gk + gk_head
        if g_res is not None:
            gq = gq + g_res
        if gq_last is not None:
            gq = gq.clone()
            gq[:, -1:] += gq_last

        # Weight gradients: S first (g_sum may be the incoming dW', which W's scaling below may write to in place).
        gS, gW = [], []
        for l in range(L):
            g = g_sum[l]
            if g is None:
                gS.append(None)
            else:
                gS.append(pool.give(g.mul_(eta[:, None, None]) if own[l] else scale_weights(g, eta)))
            base = None if gW_new[l] is None else scaled_owned(gW_new[l], ownW[l], alpha)
            gW.append(pool.give(_add_pairs(base, w_pairs[l])))
        return (None, None, gk, gv, gq, galpha, geta, *g_gates, *g_outer, *gW, *gS)


def chunkwise_stack_chunk(rule, W: list[Tensor], S: list[Tensor], k: Tensor, v: Tensor, q: Tensor,
                          gates: dict[str, Tensor], pool: GradientPool, read_last: bool, outer=()
                          ) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """One chunk of a per-chunk algorithm through ChunkwiseStackChunk: y (reads at W; with read_last, the last step at
    the new weights), the new weights and momentum. The chunk's eta and alpha are its first step's gates (per head)."""
    names = tuple(n for n in gates if n not in ("retain", "momentum"))
    meta = _Meta(rule, names, len(W), True, pool, len(outer))
    alpha = gates["retain"][:, 0] if "retain" in gates else None
    out = ChunkwiseStackChunk.apply(meta, read_last, k, v, q, alpha, gates["momentum"][:, 0], *(gates[n] for n in names),
                                    *outer, *W, *S)
    L = len(W)
    return out[0], list(out[1:1 + L]), list(out[1 + L:])
