"""Invariant 3: the outer loss differentiates through the inner updates (gradcheck, float64), per component."""
from __future__ import annotations

import pytest
import torch

from components import ALGORITHMS, BIASES, RETENTIONS, STRUCTURES, MemoryRule, memory_scan
from components.options import ComponentError

from .helpers import engine_inputs, engine_outer

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
# TTT's memory: inner biases (fast weights) and the LN's learnable scale and shift (outer parameters)
TTT_STRUCTURES = [{"name": "mlp", "depth": 1, "bias": True, "norm_affine": True},
                  {"name": "mlp", "depth": 2, "expansion": 1.0, "bias": True, "norm_affine": True}]


def gradcheck_rule(rule: MemoryRule, d: int = 2, **engine) -> bool:
    acc, k, v, q, gates = engine_inputs(rule, N=1, T=4, d=d, seed=3)
    outer = engine_outer(rule, N=1, d=d, seed=3)
    names, n_acc = list(gates), len(acc)

    def run(k, v, q, *rest):
        g = dict(zip(names, rest[: len(names)]))
        init = list(rest[len(names):len(names) + n_acc])
        y, state = memory_scan(rule, k, v, q, g, init, chunk_size=2, outer=list(rest[len(names) + n_acc:]), **engine)
        return y, *state.read

    args = [t.clone().requires_grad_() for t in (k, v, q, *gates.values(), *acc, *outer)]
    return torch.autograd.gradcheck(run, args, eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("axis,name", CASES, ids=[f"{a}={n}" for a, n in CASES])
def test_gradcheck_through_inner_updates(axis, name):
    assert gradcheck_rule(rule_with(axis, name))


@pytest.mark.parametrize("structure", TTT_STRUCTURES, ids=["ttt_linear", "ttt_mlp"])
@pytest.mark.parametrize("algorithm,path", [("ttt_gd", "fused"), ("ttt_gd", "stack"), ("ttt_gd", "reference"),
                                            ("chunk_momentum", "fused")])
def test_gradcheck_through_inner_biases_and_ln_scale_and_shift(structure, algorithm, path):
    """The inner biases (state) and the LN's scale and shift (outer parameters) get exact gradients on every path."""
    assert gradcheck_rule(MemoryRule(structure, "l2", "none", algorithm), d=3, path=path)


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
