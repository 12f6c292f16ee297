"""The reference: the recurrence of docs/design.md, one token (inner step) at a time, for any rule.

    u_t = grad_W bias(M_W(k_t), v_t) at the chunk-start weights (W_{t-1} when chunk_size == 1),
          times alpha_t for a retention that decays before the write (Gated DeltaNet)
    S_t = eta_t S_{t-1} - theta_t u_t            (S_t = -theta_t u_t without momentum)
    A_t = alpha_t A_{t-1} + S_t,  W_t = link(A_t) at chunk ends (linear in-chunk update otherwise)
    (a per-chunk algorithm: S_c = eta S_{c-1} - sum of the chunk's theta_t u_t, A_c = alpha A_{c-1} + S_c with
    the gates of the chunk's first step, W = link(A) at chunk ends only)
    y_t = M_{W_t}(q_t)  (read after write) or M_{W_{t-1}}(q_t) (read before write)

Gradients come from torch.func.vjp through the structure's plain forward, independently of the
fast path's hand-written backward. Slow by design: it is the oracle.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..optim import StepInputs
from .ops import scaled_output_grad
from .state import MemoryState


def _gate(gates: dict[str, Tensor], name: str, t: int) -> Tensor | None:
    g = gates.get(name)
    return None if g is None else g[:, t]


def reference_scan(rule, state: MemoryState, inputs: StepInputs, chunk_size: int, read_after: bool):
    structure, bias = rule.structure, rule.bias
    acc, mom, read, grad_at, offset = list(state.acc), state.momentum, list(state.read), list(state.grad_at), state.offset
    identity = rule.retention.identity_link
    per_chunk = rule.algorithm.per_chunk
    outs = []
    for t in range(inputs.k.shape[1]):
        k, v, q = inputs.k[:, t : t + 1], inputs.v[:, t : t + 1], inputs.q[:, t : t + 1]
        gates_t = {name: g[:, t : t + 1] for name, g in inputs.gates.items()}
        if not read_after:
            outs.append(structure.forward(read, q, inputs.outer))
        alpha = _gate(inputs.gates, "retain", t)
        decay = rule.retention.decay  # per head, per output row or per input column
        point = [decay(w, alpha) for w in grad_at] if rule.retention.grad_after_decay else grad_at
        yk, vjp = torch.func.vjp(lambda *w: structure.forward(list(w), k, inputs.outer), *point)
        g = scaled_output_grad(bias, yk, v, gates_t)
        u = vjp(g)
        keep = (lambda w: w) if alpha is None else (lambda w: decay(w, alpha))
        if per_chunk:
            # A = alpha A + eta S once, at the chunk's first step; then every step's surprise goes into S and A
            # alike, so A is always the weights the chunk would end with; reads keep the chunk-start weights.
            if offset == 0:
                eta = _gate(inputs.gates, "momentum", t)
                mom = [eta[:, None, None] * s for s in mom]
                acc = [keep(a) + s for a, s in zip(acc, mom)]
            mom = [s - ui for s, ui in zip(mom, u)]
            acc = [a - ui for a, ui in zip(acc, u)]
        else:
            if mom is not None:
                eta = _gate(inputs.gates, "momentum", t)
                step = [eta[:, None, None] * s - ui for s, ui in zip(mom, u)]
                mom = step
            else:
                step = [-ui for ui in u]
            acc = [keep(a) + s for a, s in zip(acc, step)]
            read = acc if identity else [keep(r) + s for r, s in zip(read, step)]
        offset += 1
        if offset == chunk_size:
            read = grad_at = rule.read_weights(acc)
            offset = 0
        if read_after:
            outs.append(structure.forward(read, q, inputs.outer))
    return torch.cat(outs, dim=1), MemoryState(acc, mom, read, grad_at, offset)
