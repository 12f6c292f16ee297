"""Invariant 3: the outer loss differentiates through the inner updates (gradcheck, float64), per component."""
from __future__ import annotations

import pytest
import torch

from components import ALGORITHMS, BIASES, RETENTIONS, STRUCTURES, MemoryRule, memory_scan
from components.options import ComponentError

from .helpers import engine_inputs

BASE = {"structure": "mlp", "bias": "l2", "retention": "decay", "algorithm": "momentum"}
FALLBACK = {"structure": "linear", "bias": "l2", "retention": "decay", "algorithm": "gd"}


def rule_with(axis: str, name: str) -> MemoryRule:
    """The component under test on a small base rule (a compatible one, since some need linear + l2)."""
    for base in (BASE, FALLBACK):
        try:
            return MemoryRule(**{**base, axis: {"name": name, **({"depth": 1, "expansion": 1.0} if name == "mlp" else {})}})
        except ComponentError:
            continue
    raise AssertionError(f"no compatible small rule for {axis} {name}")


CASES = [(axis, name) for axis, reg in (("structure", STRUCTURES), ("bias", BIASES), ("retention", RETENTIONS),
                                        ("algorithm", ALGORITHMS)) for name in reg]


@pytest.mark.parametrize("axis,name", CASES, ids=[f"{a}={n}" for a, n in CASES])
def test_gradcheck_through_inner_updates(axis, name):
    rule = rule_with(axis, name)
    acc, k, v, q, gates = engine_inputs(rule, N=1, T=4, d=2, seed=3)
    names = list(gates)

    def run(k, v, q, *rest):
        g = dict(zip(names, rest[: len(names)]))
        init = list(rest[len(names):])
        y, state = memory_scan(rule, k, v, q, g, init, chunk_size=2)
        return y, *state.read

    args = [t.clone().requires_grad_() for t in (k, v, q, *gates.values(), *acc)]
    assert torch.autograd.gradcheck(run, args, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_gradients_reach_every_input_of_the_layer():
    from components.layers import MemoryLayer

    layer = MemoryLayer(8, dict(structure="mlp", bias="huber", retention="decay", algorithm="momentum"), heads=2,
                         chunk_size=4)
    x = torch.randn(2, 10, 8)
    y, _ = layer(x)
    y.pow(2).mean().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_detached_state_cuts_the_graph():
    rule = MemoryRule("mlp", "l2", "decay", "momentum")
    acc, k, v, q, gates = engine_inputs(rule)
    acc = [a.requires_grad_() for a in acc]
    _, state = memory_scan(rule, k, v, q, gates, acc, chunk_size=3)
    assert state.acc[0].requires_grad
    assert not any(t.requires_grad for t in state.detach().acc + state.detach().momentum)
