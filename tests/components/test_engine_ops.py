"""The engine's hand-written autograd functions against torch's own derivatives (float64 gradcheck)."""
from __future__ import annotations

import pytest
import torch

from components.engine.fused import decay_update
from components.engine.ops import dual_read, linear_wt
from components.memory.stack import ACTIVATIONS, activation_backward


def _rand(*shape):
    return torch.randn(*shape, dtype=torch.float64, requires_grad=True)


def test_linear_wt_gradcheck_and_contiguous_weight_grad():
    a, w = _rand(2, 5, 3), _rand(2, 4, 3)
    assert torch.autograd.gradcheck(linear_wt, (a, w))
    linear_wt(a, w).sum().backward()
    assert w.grad.is_contiguous()


@pytest.mark.parametrize("with_momentum", [False, True])
def test_dual_read_gradcheck(with_momentum):
    a, beta, w = _rand(2, 5, 3), _rand(2, 5), _rand(2, 4, 3)
    f, s = (_rand(2, 5), _rand(2, 4, 3)) if with_momentum else (None, None)
    assert torch.autograd.gradcheck(dual_read, (a, beta, w, f, s))
    expected = (beta[..., None] * a) @ w.mT + ((f[..., None] * a) @ s.mT if with_momentum else 0)
    torch.testing.assert_close(dual_read(a, beta, w, f, s), expected)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_backward_first_and_second_derivative(name):
    act = ACTIVATIONS[name]
    z = torch.randn(3, 7, dtype=torch.float64) + 0.1  # relu: keep away from the kink at exactly 0
    g = _rand(3, 7)
    zz = z.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(act.fn(zz), zz, g, create_graph=True)
    torch.testing.assert_close(activation_backward(act, g, z), expected)
    assert torch.autograd.gradcheck(lambda g, z: activation_backward(act, g, z), (g, z.requires_grad_(True)))


def test_decay_update_gradcheck():
    args = (_rand(2, 4, 3), _rand(2), _rand(2, 4, 3), _rand(2), _rand(2, 4, 5), _rand(2, 5, 3))
    assert torch.autograd.gradcheck(decay_update, args)
