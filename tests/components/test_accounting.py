"""Invariant 5: parameter counts, recurrent-state sizes and FLOPs per token equal hand counts."""
from __future__ import annotations

import pytest
import torch

from components.models import build_model, list_presets
from components.models.accounting import actual_state_numel, cost

D, L, H, V = 32, 2, 2, 256  # dim, layers, heads, vocab
SMALL = [f"dim={D}", f"layers={L}", f"attention.heads={H}"]
SWIGLU_HIDDEN = 96  # 8/3 * 32 rounded up to a multiple of 16
BLOCK_COMMON = 2 * D + 3 * D * SWIGLU_HIDDEN  # two RMSNorms + SwiGLU (gate+up, down)
MODEL_COMMON = V * D + D  # tied embedding/head + final norm


def test_deltanet_params_and_state_by_hand():
    model = build_model("deltanet", SMALL + [f"memory.heads={H}"])
    hd = D // H
    memory_layer = (
        D * 3 * D  # q, k, v projections
        + 4 * 3 * D  # depthwise short conv, kernel 4, over q, k, v
        + (D * H + H)  # theta gate: Linear(dim, heads)
        + hd  # per-head output RMSNorm weight
        + D * D  # output gate
        + D * D  # output projection
        + H * hd * hd  # learned initial memory W_0 per head
    )
    c = cost(model, 64)
    assert c.params == MODEL_COMMON + L * (BLOCK_COMMON + memory_layer)
    # state per layer: W (hd x hd) per head + the conv's last 3 inputs of q, k, v
    assert c.state == L * (H * hd * hd + 3 * 3 * D)


def test_titans_params_and_state_by_hand():
    model = build_model("titans", SMALL + [f"memory.heads={H}"])
    hd, hidden = D // H, 4 * (D // H)
    mlp_memory = hidden * hd + hd * hidden  # W1 (hidden x hd), W2 (hd x hidden)
    gates = 3 * (D * H + H)  # theta, alpha, eta
    memory_layer = D * 3 * D + 4 * 3 * D + gates + hd + 2 * D * D + H * mlp_memory
    c = cost(model, 64)
    assert c.params == MODEL_COMMON + L * (BLOCK_COMMON + memory_layer)
    assert c.state == L * (H * 2 * mlp_memory + 3 * 3 * D)  # weights + momentum, conv inputs


@pytest.mark.parametrize("preset, depth", [("ttt_linear", 1), ("ttt_mlp", 2)])
def test_ttt_params_and_state_by_hand(preset, depth):
    """TTT's inner biases are fast weights (state, with learnable initial values b_0: parameters); the LN's scale and
    shift are outer parameters only (per head and channel), never state."""
    model = build_model(preset, SMALL + [f"memory.heads={H}"])
    hd, hidden = D // H, 4 * (D // H)
    sizes = [hd] + [hidden] * (depth - 1) + [hd]
    fast = sum(sizes[i + 1] * (sizes[i] + 1) for i in range(depth))  # W_l (out x in) and b_l (out) per layer
    ln_affine = 2 * hd  # gamma, beta per head
    gates = D * H + H  # theta
    memory_layer = D * 3 * D + 4 * 3 * D + gates + hd + 2 * D * D + H * (fast + ln_affine)
    c = cost(model, 64)
    assert c.params == MODEL_COMMON + L * (BLOCK_COMMON + memory_layer)
    assert c.state == L * (H * fast + 3 * 3 * D)  # the fast weights (no momentum), conv inputs


@pytest.mark.parametrize("conv", [0, 4])  # the preset's short convolution over q/k/v, and none
@pytest.mark.parametrize("window", [0, 16])
def test_transformer_flops_and_state_by_hand(window, conv):
    model = build_model("transformer", SMALL + [f"backbone.window={window}", f"attention.conv_size={conv}"])
    T = 64
    w = window or T
    pairs = sum(min(i + 1, w) for i in range(T))  # keys each query attends to
    conv_flops = 2 * conv * 3 * D  # one multiply-add per tap and q/k/v channel
    per_token = L * (2 * D * 3 * D + conv_flops + 2 * D * D + 4 * D * pairs / T + 6 * D * SWIGLU_HIDDEN) + 2 * D * V
    c = cost(model, T)
    assert c.flops_per_token == pytest.approx(per_token)
    conv_state = max(conv - 1, 0) * 3 * D  # the last conv - 1 inputs of q, k, v
    assert c.state == L * (2 * D * (min(T, w - 1) if window else T) + conv_state)


@pytest.mark.parametrize("preset", list_presets())
def test_declared_state_equals_the_tensors_a_forward_returns(preset):
    model = build_model(preset, SMALL + ([] if preset.endswith("transformer") else [f"memory.heads={H}"]))
    for T in (64, 77):  # past the first MAC segment, whose memory is the initial weights until then
        _, state = model(torch.zeros(1, T, dtype=torch.long))
        assert cost(model, T).state == actual_state_numel(state)


def test_memory_models_state_is_constant_attention_grows():
    titans, transformer = build_model("titans", SMALL), build_model("transformer", SMALL + ["attention.conv_size=0"])
    assert cost(titans, 512).state == cost(titans, 2048).state
    assert cost(transformer, 2048).state == 4 * cost(transformer, 512).state


@pytest.mark.parametrize("preset", list_presets())
def test_flops_counted_on_the_meta_device_equal_the_built_model_s(preset):
    """spec_flops_per_token never builds the model (cost estimates at paper scale); memory layers count exactly as
    the built model, attention as an upper bound (all T^2 pairs: a meta mask has no values to count)."""
    from components.models import resolve_spec
    from components.models.accounting import forward_flops_per_token, spec_flops_per_token

    T = 64
    spec = resolve_spec(preset, SMALL)
    torch.manual_seed(0)
    built = forward_flops_per_token(build_model(preset, SMALL), T)
    counted = spec_flops_per_token(spec, T)
    if any(kind != "memory" for kind in spec.backbone_component().mixer_counts(spec.layers)):
        assert built <= counted <= 1.5 * built  # the masked-out score pairs, counted
    else:
        assert counted == built
