"""The fused stack steps (one autograd node per chunk, hand-written backward: fused_stack.py for per-step algorithms,
fused_chunkwise.py for per-chunk ones) against the autograd stack steps.

The stack step is itself checked against the token-by-token reference (test_engine_equivalence), so equality of
outputs, states and every gradient here ties the hand-written backward to the textbook recurrence. Parametrised
from the registries: every rule the fused step takes is covered.
"""
from __future__ import annotations

import pytest
import torch

from components import ComponentError, MemoryRule, memory_scan
from components.engine.execution import auto_chunked_path as auto_path
from components.engine.fused_stack import fused_supported

from .helpers import engine_inputs, engine_outer, rel_err
from .test_engine_equivalence import RULES, rule_id

FUSED_RULES = [r for r in RULES if fused_supported(r)]


def run(rule, path, read="after", chunk=3, T=7, final_state_loss=True, seed=0):
    acc, k, v, q, gates = engine_inputs(rule, T=T, seed=seed)
    outer = engine_outer(rule, seed=seed)
    leaves = [*acc, k, v, q, *gates.values(), *outer]
    for t in leaves:
        t.requires_grad_(True)
    y, s = memory_scan(rule, k, v, q, gates, acc, chunk_size=chunk, read=read, path=path, outer=outer)
    loss = (y * torch.linspace(-1, 1, y.shape[-1], dtype=y.dtype)).pow(2).sum()
    if final_state_loss:  # gradients into the last chunk's new weights and momentum as well
        loss = loss + sum((a * a.detach().sin()).sum() for a in s.acc + (s.momentum or []))
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    return y.detach(), [a.detach() for a in s.acc + (s.momentum or [])], grads, s


def test_the_fused_step_covers_the_common_deep_memories():
    assert len(FUSED_RULES) > 100
    assert auto_path(MemoryRule("mlp", "l2", "decay", "momentum")) == "fused"
    names = {r.structure.name for r in FUSED_RULES}
    assert {"mlp", "linear"} <= names
    assert {"momentum", "chunk_momentum"} <= {r.algorithm.name for r in FUSED_RULES}


@pytest.mark.parametrize("algorithm, node", [("momentum", "FusedStackChunkBackward"),
                                             ("chunk_momentum", "ChunkwiseStackChunkBackward")])
def test_a_chunk_aligned_state_runs_through_the_hand_written_node(algorithm, node):
    """Otherwise fused == stack above would hold trivially (the fused steps fall back to the autograd ones)."""
    rule = MemoryRule("mlp", "l2", "decay", algorithm)
    acc, k, v, q, gates = engine_inputs(rule, T=6)
    k.requires_grad_(True)
    _, s = memory_scan(rule, k, v, q, gates, acc, chunk_size=3, path="fused")
    assert type(s.momentum[0].grad_fn).__name__ == node


@pytest.mark.parametrize("rule", FUSED_RULES, ids=rule_id)
@pytest.mark.parametrize("read", ["after", "before"])
def test_fused_equals_stack_outputs_states_and_gradients(rule, read):
    """chunk 3 over 7 tokens: full chunks and a short last one (which keeps its gradient point: the state ends mid-chunk)."""
    y0, s0, g0, st0 = run(rule, "stack", read)
    y1, s1, g1, st1 = run(rule, "fused", read)
    assert rel_err(y1, y0) < 1e-12
    assert st1.offset == st0.offset != 0
    for a, b in zip(s1, s0):
        assert rel_err(a, b) < 1e-12
    for a, b in zip(g1, g0):
        assert (a is None) == (b is None) and (a is None or rel_err(a, b) < 1e-10)


@pytest.mark.parametrize("rule", FUSED_RULES[::7], ids=rule_id)
def test_fused_gradients_when_the_final_state_is_unused(rule):
    """Autograd hands the last chunk no gradient for its new state (None, not zeros): those terms must vanish."""
    _, _, g0, _ = run(rule, "stack", final_state_loss=False, chunk=4, T=8)
    _, _, g1, _ = run(rule, "fused", final_state_loss=False, chunk=4, T=8)
    for a, b in zip(g1, g0):
        assert (a is None) == (b is None) and (a is None or rel_err(a, b) < 1e-10)


@pytest.mark.parametrize("algorithm", ["momentum", "chunk_momentum"])
def test_fused_gradcheck_deep_memory_with_momentum_and_decay(algorithm):
    rule = MemoryRule(dict(name="mlp", depth=2, expansion=1.0), "huber", "decay", algorithm)
    acc, k, v, q, gates = engine_inputs(rule, N=1, T=5, d=2, seed=5)
    names = list(gates)

    def f(k, v, q, *rest):
        y, state = memory_scan(rule, k, v, q, dict(zip(names, rest[:len(names)])), list(rest[len(names):]),
                               chunk_size=2, path="fused")
        return y, *state.acc, *state.momentum

    args = [t.clone().requires_grad_() for t in (k, v, q, *gates.values(), *acc)]
    assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("algorithm", ["momentum", "chunk_momentum"])
@pytest.mark.parametrize("read", ["after", "before"])
def test_a_callers_gradient_of_the_final_state_is_never_written_to(algorithm, read):
    """The backward updates weight gradients in place only when it handed them out itself."""
    rule = MemoryRule("mlp", "l2", "decay", algorithm)
    acc, k, v, q, gates = engine_inputs(rule, T=9)
    k.requires_grad_(True)
    y, s = memory_scan(rule, k, v, q, gates, acc, chunk_size=3, path="fused", read=read)
    outs = [y, *s.acc, *s.momentum]
    grad_outs = [torch.randn_like(o) for o in outs]
    kept = [g.clone() for g in grad_outs]
    torch.autograd.grad(outs, [k], grad_outs)
    for g, c in zip(grad_outs, kept):
        assert torch.equal(g, c)


def test_fused_path_is_checked():
    acc, k, v, q, gates = engine_inputs(MemoryRule("mlp", "l2", "decay", "momentum"), T=4)
    channel = MemoryRule("linear", "l2", {"name": "decay", "granularity": "value"})
    acc_c, k_c, v_c, q_c, gates_c = engine_inputs(channel, T=4)
    with pytest.raises(ComponentError, match="path 'fused'.*per-head gates"):
        memory_scan(channel, k_c, v_c, q_c, gates_c, acc_c, path="fused", exact=False)
    with pytest.raises(ComponentError, match="hand-written backward"):
        memory_scan(MemoryRule("mlp", "l2", "decay", "momentum"), k, v, q, gates, acc, path="fused", compile=True)


@pytest.mark.parametrize("algorithm", ["momentum", "chunk_momentum"])
def test_a_second_order_gradient_through_the_fused_step_is_refused(algorithm):
    """Its backward is not itself differentiable: an error, never a silently wrong second derivative."""
    rule = MemoryRule("mlp", "l2", "decay", algorithm)
    acc, k, v, q, gates = engine_inputs(rule, T=6)
    k.requires_grad_(True)
    y, _ = memory_scan(rule, k, v, q, gates, acc, chunk_size=3, path="fused")
    (gk,) = torch.autograd.grad(y.pow(2).sum(), k, create_graph=True)
    with pytest.raises(RuntimeError, match="marked with @once_differentiable"):
        gk.sum().backward()
