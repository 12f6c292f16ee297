"""Numerics: long sequences stay finite, bf16 autocast is safe, tiny gates do not underflow to 0/0."""
from __future__ import annotations

import torch

from components import MemoryRule, memory_scan
from components.layers import MemoryLayer

from .helpers import engine_inputs


def titans_layer(chunk_size: int) -> MemoryLayer:
    torch.manual_seed(0)
    return MemoryLayer(32, dict(structure="mlp", bias="l2", retention="decay", algorithm="momentum"), heads=2,
                        chunk_size=chunk_size)


def test_ten_thousand_tokens_forward_and_backward_stay_finite():
    layer = titans_layer(chunk_size=64)
    x = torch.randn(1, 10_000, 32)
    y, state = layer(x)
    y.pow(2).mean().backward()
    assert torch.isfinite(y).all()
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters())
    assert all(torch.isfinite(a).all() for a in state.memory.acc)


def test_bf16_autocast_runs_the_inner_loop_in_fp32():
    layer = titans_layer(chunk_size=16)
    x = torch.randn(2, 64, 32)
    y32, _ = layer(x)
    with torch.autocast(torch.get_default_device().type, dtype=torch.bfloat16):
        y16, state = layer(x)
    assert y16.dtype == torch.bfloat16 and state.memory.acc[0].dtype == torch.float32
    assert torch.isfinite(y16).all()
    # bf16 projections carry ~3 significant digits into the memory; the fp32 inner loop adds no blow-up
    assert (y16.float() - y32).abs().mean() < 0.03 * y32.abs().mean()


def test_tiny_gates_inside_a_chunk_do_not_produce_nan():
    rule = MemoryRule("mlp", "l2", "decay", "momentum")
    acc, k, v, q, gates = engine_inputs(rule, T=64, dtype=torch.float32)
    gates["retain"] = torch.full_like(gates["retain"], 1e-6)  # cumulative product underflows within a chunk
    gates["momentum"] = torch.full_like(gates["momentum"], 1e-8)
    acc = [a.requires_grad_() for a in acc]
    y, _ = memory_scan(rule, k, v, q, gates, acc, chunk_size=64)
    y.sum().backward()
    assert torch.isfinite(y).all() and all(torch.isfinite(a.grad).all() for a in acc)
