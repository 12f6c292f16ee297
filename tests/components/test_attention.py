"""Attention and feed-forward layers against a naive reference, plus causality and streaming."""
from __future__ import annotations

import math

import pytest
import torch

from components.layers import CausalSelfAttention, KVCache, RotaryEmbedding, SwiGLU

B, T, DIM, HEADS = 2, 11, 16, 2
WINDOWS = [None, 4]


CONVS = [0, 3]


def _layer(window: int | None, rope: bool = True, bias: bool = False, seed: int = 0, conv: int = 0) -> CausalSelfAttention:
    torch.manual_seed(seed)
    layer = CausalSelfAttention(DIM, HEADS, window=window, rope=rope, bias=bias, conv_size=conv).double()
    if layer.conv is not None:  # random taps: the near-identity init would hide a wrong tap order
        with torch.no_grad():
            layer.conv.conv.weight.normal_()
    return layer


def _x(t: int = T, seed: int = 1) -> torch.Tensor:
    return torch.randn(B, t, DIM, generator=torch.Generator(device=torch.get_default_device()).manual_seed(seed), dtype=torch.float64)


def _rope_ref(x: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """RoPE as complex rotation: channel i and i + d/2 form one complex number, turned by pos * base^(-2i/d)."""
    d = x.shape[-1]
    pos = torch.arange(x.shape[-2], dtype=torch.float64)
    theta = pos[:, None] * base ** (-torch.arange(d // 2, dtype=torch.float64) * 2 / d)
    z = torch.complex(x[..., : d // 2], x[..., d // 2:]) * torch.polar(torch.ones_like(theta), theta)
    return torch.cat((z.real, z.imag), dim=-1)


def _attention_ref(layer: CausalSelfAttention, x: torch.Tensor) -> torch.Tensor:
    """Explicit scores, mask and softmax; qkv laid out as (three, heads, head_dim) along the features."""
    b, t, _ = x.shape
    h, d = layer.heads, layer.head_dim
    qkv = x @ layer.qkv.weight.T + (layer.qkv.bias if layer.qkv.bias is not None else 0)
    if layer.conv is not None:  # y_t = sum_i w[c, kernel - 1 - i] * x_{t - i}, zeros before the start
        w = layer.conv.conv.weight[:, 0]  # (channels, kernel)
        kernel = w.shape[1]
        qkv = sum(w[:, kernel - 1 - i] * torch.nn.functional.pad(qkv, (0, 0, i, 0))[:, :t] for i in range(kernel))
    q, k, v = qkv.view(b, t, 3, h, d).permute(2, 0, 3, 1, 4)  # each (b, h, t, d)
    if layer.rope is not None:
        q, k = _rope_ref(q), _rope_ref(k)
    scores = q @ k.transpose(-1, -2) / math.sqrt(d)
    i, j = torch.arange(t)[:, None], torch.arange(t)[None, :]
    allowed = (j <= i) if layer.window is None else (j <= i) & (j > i - layer.window)
    scores = scores.masked_fill(~allowed, float("-inf"))
    y = scores.softmax(dim=-1) @ v
    y = y.permute(0, 2, 1, 3).reshape(b, t, h * d)
    return y @ layer.out.weight.T + (layer.out.bias if layer.out.bias is not None else 0)


def test_rope_matches_reference_and_offset():
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64)
    rope = RotaryEmbedding(8)
    torch.testing.assert_close(rope(x, 0), _rope_ref(x), rtol=0, atol=1e-12)
    # offset = absolute position of the first token: a slice rotated alone equals the slice of the whole
    torch.testing.assert_close(rope(x[:, :, 5:], 5), rope(x)[:, :, 5:], rtol=0, atol=1e-12)
    # the cache follows the input dtype
    assert rope(x.float(), 3).dtype == torch.float32


@pytest.mark.parametrize("conv", CONVS)
@pytest.mark.parametrize("window", WINDOWS + [1])
@pytest.mark.parametrize("rope,bias", [(True, False), (False, True)])
def test_matches_naive_reference(window, rope, bias, conv):
    layer, x = _layer(window, rope, bias, conv=conv), _x()
    y, _ = layer(x)
    torch.testing.assert_close(y, _attention_ref(layer, x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("conv", CONVS)
@pytest.mark.parametrize("window", WINDOWS)
def test_causal(window, conv):
    layer, x = _layer(window, conv=conv), _x()
    y, _ = layer(x)
    for s in (3, 7):
        x2 = x.clone()
        x2[:, s] += 1.0
        y2, _ = layer(x2)
        torch.testing.assert_close(y2[:, :s], y[:, :s], rtol=0, atol=0)  # earlier outputs untouched
        assert (y2[:, s] - y[:, s]).abs().max() > 1e-6  # sanity: the perturbation is visible
        if window is not None and not conv:
            # positions s + window and later no longer see token s (with a convolution: s + window + conv - 1)
            torch.testing.assert_close(y2[:, s + window:], y[:, s + window:], rtol=0, atol=1e-12)
            assert (y2[:, s + window - 1] - y[:, s + window - 1]).abs().max() > 1e-6


@pytest.mark.parametrize("conv", CONVS)
@pytest.mark.parametrize("window", WINDOWS + [1])
def test_streaming_in_pieces_equals_one_pass(window, conv):
    layer, x = _layer(window, conv=conv), _x(t=16)
    full, _ = layer(x)
    state, outs, seen = None, [], 0
    for n in (1, 3, 2, 5, 1, 4):
        y, state = layer(x[:, seen:seen + n], state)
        seen += n
        outs.append(y)
        assert isinstance(state, KVCache) and state.offset == seen
        assert state.k.shape == state.v.shape == (B, HEADS, layer.cache_len(seen), layer.head_dim)
    torch.testing.assert_close(torch.cat(outs, dim=1), full, rtol=0, atol=1e-12)


def test_state_numel_full_vs_window():
    full, win = _layer(None), _layer(4)
    per_token = 2 * HEADS * (DIM // HEADS)
    assert full.state_numel(100) == per_token * 100
    assert win.state_numel(100) == per_token * 3  # window - 1 past tokens suffice
    assert win.state_numel(2) == per_token * 2
    _, state = win(_x())
    assert (state.k.numel() + state.v.numel()) // B == win.state_numel(T)
    conv = _layer(4, conv=3)
    assert conv.state_numel(100) == per_token * 3 + 2 * 3 * DIM  # plus kernel - 1 inputs of q, k and v
    _, state = conv(_x())
    assert (state.k.numel() + state.v.numel() + state.conv.numel()) // B == conv.state_numel(T)


def test_flops_per_token():
    full, win = _layer(None), _layer(4)
    proj = 2 * DIM * 3 * DIM + 2 * DIM * DIM
    assert full.flops_per_token(1) == proj + 4 * DIM  # one key per query
    assert full.flops_per_token(9) == proj + 4 * DIM * 5  # mean keys (L + 1) / 2
    assert win.flops_per_token(4) == full.flops_per_token(4)
    assert win.flops_per_token(10_000) == pytest.approx(proj + 4 * DIM * 4, rel=1e-3)
    assert _layer(None, conv=3).flops_per_token(9) == full.flops_per_token(9) + 2 * 3 * 3 * DIM


def test_swiglu_hidden_rounding_and_shapes():
    assert SwiGLU(64).hidden == 176  # 170.67 -> 176
    assert SwiGLU(48).hidden == 128  # exactly 8/3 * 48, already a multiple of 16
    assert SwiGLU(64, multiple_of=64).hidden == 192
    assert SwiGLU(64, hidden=100).hidden == 100
    ff = SwiGLU(64)
    assert ff.w_gate_up.weight.shape == (2 * 176, 64) and ff.w_down.weight.shape == (64, 176)
    assert all(m.bias is None for m in (ff.w_gate_up, ff.w_down))
    assert ff(torch.randn(2, 5, 64)).shape == (2, 5, 64)
    assert ff.flops_per_token() == 6 * 64 * 176


@pytest.mark.parametrize("conv", CONVS)
@pytest.mark.parametrize("window", WINDOWS)
def test_gradients_flow(window, conv):
    torch.manual_seed(0)
    attn, ff = CausalSelfAttention(DIM, HEADS, window=window, conv_size=conv), SwiGLU(DIM)
    x = torch.randn(B, T, DIM, requires_grad=True)
    y, _ = attn(x)
    ff(y).square().mean().backward()
    for p in [x, *attn.parameters(), *ff.parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
