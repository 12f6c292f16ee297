"""Invariants 1 and 4: the chunked engine equals the token-by-token reference, and streaming equals one pass.

Parametrised from the registries, so a newly registered component is covered automatically.
"""
from __future__ import annotations

import pytest
import torch

from components import ComponentError, memory_scan
from components.engine import MemoryRule, enumerate_rules
from components.engine.execution import exact_parallel_supported
from components.memory import StackMemory

from .helpers import engine_inputs, engine_outer, rel_err

# Non-default options worth covering on top of every component's defaults.
VARIANTS = {
    "mlp": [{}, {"depth": 1}, {"depth": 3, "residual": False, "activation": "silu"},
            {"bias": True, "norm_affine": True, "activation": "tanh"}],  # depth 1 (TTT-Linear): test_known_models
    "decay": [{}, {"granularity": "value"}, {"granularity": "key"}, {"grad_at": "decayed"}],
    "huber": [{}, {"delta_mode": "data", "variant": "norm"}, {"delta_mode": "data", "variant": "mixture"}],
    "lp": [{"p": 1.5}, {}],
}
RULES, REJECTED = enumerate_rules(VARIANTS)


def rule_id(rule) -> str:
    defaults = {(p.axis, o.name): o.default for p in rule.parts.values() for o in p.options}
    opts = [f"{k}={v}" for p in rule.parts.values() for k, v in sorted(p.opts.items())
            if (p.axis, k) in defaults and v != defaults[(p.axis, k)]]
    return rule.name + ("[" + ",".join(opts) + "]" if opts else "")


PARAMS = pytest.mark.parametrize("rule", RULES, ids=[rule_id(r) for r in RULES])


@PARAMS
@pytest.mark.parametrize("read", ["after", "before"])
@pytest.mark.parametrize("chunk", [1, 3], ids=["exact", "chunk3"])
def test_engine_equals_reference(rule, read, chunk):
    """chunk 1: the exact recurrence; chunk 3: the mini-batch recurrence, with a partial last chunk."""
    acc, k, v, q, gates = engine_inputs(rule, T=7)
    outer = engine_outer(rule)
    y_ref, s_ref = memory_scan(rule, k, v, q, gates, acc, chunk_size=chunk, read=read, path="reference", outer=outer)
    y, s = memory_scan(rule, k, v, q, gates, acc, chunk_size=chunk, read=read, outer=outer)
    assert rel_err(y, y_ref) < 1e-10
    # states pass through non-linear links (|A|^(p-1), softmax): allow their float64 rounding growth
    for a, b in zip(s.acc + s.read, s_ref.acc + s_ref.read):
        assert rel_err(a, b) < 1e-9


EXACT_RULES = [r for r in RULES if exact_parallel_supported(r)]


@pytest.mark.parametrize("rule", EXACT_RULES, ids=rule_id)
@pytest.mark.parametrize("read", ["after", "before"])
def test_exact_parallel_form_equals_token_recurrence_at_any_chunk(rule, read):
    """Linear memory + l2/dot: chunk_size is only a speed knob; exact=False keeps the mini-batch form."""
    acc, k, v, q, gates = engine_inputs(rule, T=7)
    y_tok, s_tok = memory_scan(rule, k, v, q, gates, acc, chunk_size=1, read=read, path="reference")
    for chunk in (3, 7):
        y, s = memory_scan(rule, k, v, q, gates, acc, chunk_size=chunk, read=read)
        assert rel_err(y, y_tok) < 1e-10
        for a, b in zip(s.acc + (s.momentum or []), s_tok.acc + (s_tok.momentum or [])):
            assert rel_err(a, b) < 1e-10
    y_mb, _ = memory_scan(rule, k, v, q, gates, acc, chunk_size=3, read=read, exact=False)
    y_mb_ref, _ = memory_scan(rule, k, v, q, gates, acc, chunk_size=3, read=read, path="reference", exact=False)
    assert rel_err(y_mb, y_mb_ref) < 1e-10


def test_exact_flag_is_checked():
    from components import ComponentError
    from components.engine import MemoryRule

    rule = MemoryRule("mlp", "l2")
    acc, k, v, q, gates = engine_inputs(rule, T=4)
    with pytest.raises(ComponentError, match="no exact parallel form"):
        memory_scan(rule, k, v, q, gates, acc, exact=True)
    linear = MemoryRule("linear", "l2")
    acc, k, v, q, gates = engine_inputs(linear, T=4)
    with pytest.raises(ComponentError, match="mini-batch"):
        memory_scan(linear, k, v, q, gates, acc, path="stack", exact=True)


@PARAMS
def test_two_calls_with_carried_state_equal_one_call(rule):
    acc, k, v, q, gates = engine_inputs(rule, T=8)
    outer = engine_outer(rule)
    y, _ = memory_scan(rule, k, v, q, gates, acc, chunk_size=3, outer=outer)
    steps = rule.algorithm.steps_per_token()
    cut = 5  # inside a chunk: the state carries the chunk offset and its gradient point
    part = lambda x, sl, s=1: x[:, sl.start * s : (sl.stop * s if sl.stop else None)]  # noqa: E731
    first, rest = slice(0, cut), slice(cut, None)
    y1, state = memory_scan(rule, part(k, first, steps), part(v, first, steps), part(q, first),
                            {n: part(g, first) for n, g in gates.items()}, acc, chunk_size=3, outer=outer)
    y2, _ = memory_scan(rule, part(k, rest, steps), part(v, rest, steps), part(q, rest),
                        {n: part(g, rest) for n, g in gates.items()}, state, chunk_size=3, outer=outer)
    assert rel_err(torch.cat([y1, y2], dim=1), y) < 1e-10


# Channel-wise coefficients are a stack-path feature (checked against the reference above).
STACK_RULES = [r for r in RULES if r.structure.name in ("mlp", "linear") and "channel" not in r.gates().values()]


@pytest.mark.parametrize("rule", STACK_RULES[::3], ids=rule_id)
def test_stack_path_equals_generic_torch_func_path(rule):
    acc, k, v, q, gates = engine_inputs(rule, T=8)
    outer = engine_outer(rule)
    y, _ = memory_scan(rule, k, v, q, gates, acc, chunk_size=3, path="stack", outer=outer)
    y_func, _ = memory_scan(rule, k, v, q, gates, acc, chunk_size=3, path="func", outer=outer)
    assert rel_err(y, y_func) < 1e-10


def test_space_has_rejections_and_many_rules():
    assert len(RULES) > 300
    assert any("implicit" in reason for _, reason in REJECTED)


@PARAMS
def test_checkpointed_segments_give_the_same_outputs_state_and_gradients(rule):
    """Activation checkpointing (memory_scan(checkpoint=...)) recomputes segments of chunks in backward: the
    forward values and every input's gradient are the same as keeping all activations."""
    if not isinstance(rule.structure, StackMemory) and not exact_parallel_supported(rule):
        acc, k, v, q, gates = engine_inputs(rule)
        with pytest.raises(ComponentError, match="cannot run under activation checkpointing"):
            memory_scan(rule, k, v, q, gates, acc, checkpoint=2)
        return
    results = {}
    for checkpoint in (None, 2, "auto"):
        acc, k, v, q, gates = engine_inputs(rule, T=7)
        outer = engine_outer(rule)
        leaves = [*acc, k, v, q, *gates.values(), *outer]
        for t in leaves:
            t.requires_grad_(True)
        y, s = memory_scan(rule, k, v, q, gates, acc, chunk_size=2, checkpoint=checkpoint, outer=outer)  # 4 chunks
        loss = y.pow(2).sum() + sum(a.pow(2).sum() for a in s.acc)
        results[checkpoint] = (y.detach(), torch.autograd.grad(loss, leaves, allow_unused=True))
    y0, g0 = results[None]
    for checkpoint in (2, "auto"):
        y, g = results[checkpoint]
        assert rel_err(y, y0) < 1e-12
        for a, b in zip(g, g0):
            assert (a is None) == (b is None) and (a is None or rel_err(a, b) < 1e-10)


def test_checkpoint_setting_is_checked():
    rule = RULES[0]
    acc, k, v, q, gates = engine_inputs(rule)
    with pytest.raises(ComponentError, match="checkpoint must be null, 'auto' or a number of chunks"):
        memory_scan(rule, k, v, q, gates, acc, checkpoint="sqrt")


def test_outer_parameters_are_checked():
    """The LN's scale and shift belong to the residual's LN; outer parameters must have the declared shapes."""
    with pytest.raises(ComponentError, match="norm_affine .* needs residual: true"):
        MemoryRule({"name": "mlp", "residual": False, "norm_affine": True}, "l2")
    rule = MemoryRule({"name": "mlp", "depth": 1, "bias": True, "norm_affine": True}, "l2", "none", "ttt_gd")
    acc, k, v, q, gates = engine_inputs(rule, T=4)
    with pytest.raises(ComponentError, match=r"outer parameters of shapes \[\(2, 4\), \(2, 4\)\]"):
        memory_scan(rule, k, v, q, gates, acc, outer=[torch.ones(4), torch.zeros(4)])
    # omitted, they take their initial values (gamma = 1, beta = 0)
    y, _ = memory_scan(rule, k, v, q, gates, acc)
    y1, _ = memory_scan(rule, k, v, q, gates, acc, outer=[torch.ones(2, 4, dtype=k.dtype), torch.zeros(2, 4, dtype=k.dtype)])
    assert torch.equal(y, y1)
