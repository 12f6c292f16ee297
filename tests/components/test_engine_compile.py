"""memory_scan(compile=True): each chunk step through torch.compile gives the eager engine's outputs, state and
gradients. Compiling costs seconds per rule and chunk length, so a few rules stand for the three paths' kinds:
an MLP memory with momentum and decay (Titans, stack path), the same with one update per chunk (titans-pytorch's
rule), the exact linear path (Gated DeltaNet), and a retention with a non-identity link applied at chunk ends
(Memora's KL); and TTT-MLP's inner biases with the LN's scale and shift (outer parameters)."""
from __future__ import annotations

import pytest
import torch

from components import ComponentError, memory_scan
from components.engine import MemoryRule

from .helpers import engine_inputs, engine_outer, rel_err

RULES = {
    "titans": MemoryRule({"name": "mlp", "depth": 2}, "l2", "decay", "momentum"),
    "titans_pytorch": MemoryRule({"name": "mlp", "depth": 2}, "l2", "decay", "chunk_momentum"),
    "gated_deltanet": MemoryRule("linear", "l2", {"name": "decay", "grad_at": "decayed"}, "gd"),
    "memora": MemoryRule("linear", "l2", "kl", "gd"),
    "ttt_mlp": MemoryRule({"name": "mlp", "depth": 2, "bias": True, "norm_affine": True}, "l2", "none", "ttt_gd"),
}


def _run(rule, compile: bool, checkpoint=None):
    acc, k, v, q, gates = engine_inputs(rule, T=7)
    outer = engine_outer(rule)
    leaves = [*acc, k, v, q, *gates.values(), *outer]
    for t in leaves:
        t.requires_grad_(True)
    y, s = memory_scan(rule, k, v, q, gates, acc, chunk_size=3, compile=compile, checkpoint=checkpoint,  # 3, 3, 1
                       outer=outer)
    loss = y.pow(2).sum() + sum(a.pow(2).sum() for a in s.acc)
    return y.detach(), [a.detach() for a in s.acc], torch.autograd.grad(loss, leaves, allow_unused=True)


@pytest.mark.parametrize("name", RULES)
def test_compiled_steps_equal_eager(name):
    rule = RULES[name]
    y0, s0, g0 = _run(rule, compile=False)
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    # titans also under activation checkpointing, which recomputes compiled steps in backward
    for checkpoint in (None, 2) if name == "titans" else (None,):
        y, s, g = _run(rule, compile=True, checkpoint=checkpoint)
        assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > graphs  # compiled, not silently eager
        assert rel_err(y, y0) < 1e-10
        assert all(rel_err(a, b) < 1e-10 for a, b in zip(s, s0))
        for a, b in zip(g, g0):
            assert (a is None) == (b is None) and (a is None or rel_err(a, b) < 1e-9)


def test_compile_is_refused_where_it_does_not_apply():
    rule = MemoryRule("linear", "l2", "none", "gd")
    acc, k, v, q, gates = engine_inputs(rule)
    with pytest.raises(ComponentError, match="compile must be true or false"):
        memory_scan(rule, k, v, q, gates, acc, compile="yes")
    with pytest.raises(ComponentError, match="path 'reference' runs eagerly"):
        memory_scan(rule, k, v, q, gates, acc, compile=True, path="reference")
