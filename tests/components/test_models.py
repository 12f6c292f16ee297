"""Models: every preset builds and learns, known presets equal their textbook recurrences, streaming equals
one pass, and every backbone is causal."""
from __future__ import annotations

import pytest
import torch

from components import ComponentError, memory_scan
from components.models import build_layer, build_model, list_presets, resolve_spec

from .helpers import engine_inputs, rel_err
from .test_known_models import matvec, outer

PRESETS = list_presets()
ATTENTION_ONLY = {"transformer", "swa_transformer"}


def tiny(preset: str, *extra: str) -> list[str]:
    """Overrides that make a preset tiny but still exercise chunks, segments and windows."""
    o = ["dim=32", "layers=2", "attention.heads=2"]
    if preset not in ATTENTION_ONLY:
        o += ["memory.heads=2", "memory.chunk_size=8"]
    spec = resolve_spec(preset)
    bb = spec.backbone["name"]
    if bb == "mac":
        o.append("backbone.segment=8")
    if bb in ("mag", "mal") or (bb == "transformer" and spec.backbone["window"]):
        o.append("backbone.window=6")
    return o + list(extra)


def test_all_eighteen_presets_are_shipped_with_provenance():
    from components.models import preset_provenance

    expected = {"linear_attention", "retnet", "mamba2", "gla", "deltanet", "gated_deltanet", "longhorn",
                "ttt_linear", "ttt_mlp", "titans", "titans_mac", "titans_mag", "titans_mal", "moneta", "yaad",
                "memora", "transformer", "swa_transformer"}
    assert expected <= set(PRESETS)
    for p in PRESETS:
        assert len(preset_provenance(p)) > 20, p


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_trains_a_few_steps_on_a_fixed_batch(preset):
    torch.manual_seed(0)
    model = build_model(preset, tiny(preset))
    tokens = torch.randint(0, 256, (2, 24))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)

    def loss_fn():
        logits, _ = model(tokens[:, :-1])
        return torch.nn.functional.cross_entropy(logits.reshape(-1, 256), tokens[:, 1:].reshape(-1))

    first = loss_fn()
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        opt.step()
        losses.append(loss.item())
    assert loss_fn().item() < first.item() - 0.05


@pytest.mark.parametrize("preset", PRESETS)
def test_streaming_in_pieces_equals_one_pass(preset):
    torch.manual_seed(0)
    model = build_model(preset, tiny(preset)).double()
    tokens = torch.randint(0, 256, (2, 29))
    full, _ = model(tokens)
    outs, state = [], None
    for piece in tokens.split([5, 1, 11, 12], dim=1):  # cuts inside chunks, segments and windows
        y, state = model(piece, state)
        outs.append(y)
    assert rel_err(torch.cat(outs, dim=1), full) < 1e-10


@pytest.mark.parametrize("preset", PRESETS)
def test_causal_a_future_token_never_changes_an_earlier_output(preset):
    torch.manual_seed(0)
    model = build_model(preset, tiny(preset)).double()
    tokens = torch.randint(0, 256, (1, 26))
    base, _ = model(tokens)
    for pos in (3, 12, 25):
        changed = tokens.clone()
        changed[0, pos] = (changed[0, pos] + 7) % 256
        out, _ = model(changed)
        assert torch.equal(out[:, :pos], base[:, :pos]), f"position {pos} leaked into earlier outputs"
        assert not torch.equal(out[:, pos], base[:, pos])


def test_layer_api_maps_batch_seq_dim_and_streams():
    layer = build_layer("titans", ["memory.heads=2", "memory.chunk_size=4"], dim=16).double()
    x = torch.randn(2, 11, 16, dtype=torch.float64)
    y, state = layer(x)
    assert y.shape == x.shape
    y1, s = layer(x[:, :6])
    y2, _ = layer(x[:, 6:], s)
    assert rel_err(torch.cat([y1, y2], 1), y) < 1e-10


def test_spec_identity_and_errors():
    a = resolve_spec("titans")
    b = resolve_spec({"memory": {"structure": {"name": "mlp", "residual": True}, "bias": "l2", "retention": "decay",
                                 "algorithm": "momentum"}})
    assert a == b and a.content_hash == b.content_hash and a.name == "mlp2·l2·decay·momentum"
    assert resolve_spec("titans", ["memory.structure.depth=3"]).name == "mlp3·l2·decay·momentum"
    with pytest.raises(ComponentError, match="did you mean 'titans'"):
        resolve_spec("titan")
    with pytest.raises(ComponentError, match=r"model 'titans'\.memory: unknown key 'chunk'"):
        resolve_spec("titans", ["memory.chunk=3"])
    with pytest.raises(ComponentError, match="implicit"):
        resolve_spec("longhorn", ["memory.structure.name=mlp"])


# ---------------------------------------------------------------- textbook recurrences of presets


def textbook(W0, k, v, q, step):
    W, ys = W0.clone(), []
    for t in range(k.shape[1]):
        W = step(W, k[:, t], v[:, t], t)
        ys.append(matvec(W, q[:, t]))
    return torch.stack(ys, dim=1)


def _eye(k):
    return torch.eye(k.shape[-1], dtype=k.dtype)


TEXTBOOK = {
    # S_t = S_{t-1} + b v k^T
    "linear_attention": lambda g, k: lambda W, kt, vt, t: W + g["lr"][:, t, None, None] * outer(vt, kt),
    # S_t = a S_{t-1} + b v k^T (Mamba2's a = exp(-Delta a_h), b = Delta: test_mamba2_couples_decay_and_write_...)
    "mamba2": lambda g, k: lambda W, kt, vt, t: g["retain"][:, t, None, None] * W + g["lr"][:, t, None, None] * outer(vt, kt),
    # S_t = a S_{t-1} + b v k^T
    "retnet": lambda g, k: lambda W, kt, vt, t: g["retain"][:, t, None, None] * W + g["lr"][:, t, None, None] * outer(vt, kt),
    # S_t = S_{t-1} (I - b k k^T) + b v k^T
    "deltanet": lambda g, k: lambda W, kt, vt, t: W @ (_eye(k) - g["lr"][:, t, None, None] * outer(kt, kt))
    + g["lr"][:, t, None, None] * outer(vt, kt),
    # S_t = a S_{t-1} (I - b k k^T) + b v k^T
    "gated_deltanet": lambda g, k: lambda W, kt, vt, t: g["retain"][:, t, None, None] * W
    @ (_eye(k) - g["lr"][:, t, None, None] * outer(kt, kt)) + g["lr"][:, t, None, None] * outer(vt, kt),
    # S_t = S_{t-1} - e (S_{t-1} k - v) k^T with e = b / (1 + b k^T k)
    "longhorn": lambda g, k: lambda W, kt, vt, t: W - (g["lr"][:, t] / (1 + g["lr"][:, t] * (kt * kt).sum(-1)))[:, None, None]
    * outer(matvec(W, kt) - vt, kt),
}


@pytest.mark.parametrize("preset", sorted(TEXTBOOK))
def test_preset_equals_its_textbook_recurrence(preset):
    """At the preset's own chunk size, over several chunks (its rule and engine settings, not chunk 1)."""
    spec = resolve_spec(preset)
    rule = spec.memory.rule()
    acc, k, v, q, gates = engine_inputs(rule, T=2 * spec.memory.chunk_size + 5, d=6)
    y, _ = memory_scan(rule, k, v, q, gates, acc, chunk_size=spec.memory.chunk_size, exact=spec.memory.exact)
    assert rel_err(y, textbook(acc[0], k, v, q, TEXTBOOK[preset](gates, k))) < 1e-11


@pytest.mark.parametrize("axis_choice", [(axis, name) for axis, reg in __import__("components").AXES.items()
                                         for name in reg])
def test_every_component_round_trips_through_a_spec(axis_choice):
    """A resolved spec lists exactly the options each component can be built with (l1 once failed here)."""
    from components.engine import enumerate_rules

    axis, name = axis_choice
    rule = next(r for r in enumerate_rules()[0] if r.parts[axis].name == name)
    memory = {a: {"name": p.name, **p.opts} for a, p in rule.parts.items()}
    spec = resolve_spec({"dim": 16, "layers": 1, "memory": {"heads": 2, **memory}})
    assert resolve_spec(spec.to_dict()) == spec and spec.memory.rule().name == rule.name


def test_mamba2_couples_decay_and_write_through_one_step_size():
    """Mamba2's gates: Delta_t = softplus(x w + dt_bias) per head, alpha_t = exp(-Delta_t a_h), the write Delta_t; at
    Mamba2's initialisation (a in [1, 16], Delta in [1e-3, 0.1]); a and dt_bias learn."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    layer = build_layer("mamba2", dim=32)
    x = torch.randn(2, 9, 32)
    gates = layer.make_gates(x)
    step = layer.gates
    dt = F.softplus(step.dt_proj(x) + step.dt_bias)  # (b, t, h)
    a = step.A_log.exp()
    assert ((1.0 <= a) & (a <= 16.0)).all()
    assert ((1e-3 <= dt) & (dt <= 0.1 + 1e-6)).all()  # the projection starts at zero: Delta is each head's start
    heads = layer.heads
    assert torch.allclose(gates["lr"], dt.permute(0, 2, 1).reshape(2 * heads, 9))
    assert torch.allclose(gates["retain"], torch.exp(-gates["lr"] * a.repeat(2)[:, None]))
    layer(x)[0].square().mean().backward()
    assert step.A_log.grad.abs().sum() > 0 and step.dt_bias.grad.abs().sum() > 0 and step.dt_proj.weight.grad.abs().sum() > 0
    with pytest.raises(ComponentError, match=r"gate_coupling 'mamba2' couples .* granularity 'head'"):
        resolve_spec("mamba2", ["memory.retention.granularity=value"])


@pytest.mark.parametrize("max_lr", [1e-3, 0.3, 1.0, 4.0])
def test_any_positive_max_lr_builds_and_theta_starts_at_half_of_it(max_lr):
    layer = build_layer("titans", [f"memory.max_lr={max_lr}"], dim=16)
    theta = layer.make_gates(torch.randn(1, 3, 16))["lr"]
    assert torch.allclose(theta, torch.full_like(theta, max_lr / 2))
    with pytest.raises(ComponentError, match=r"memory\.max_lr must be > 0"):
        resolve_spec("titans", ["memory.max_lr=0"])


@pytest.mark.parametrize("preset", ["moneta", "yaad", "memora"])
def test_miras_models_draw_eta_and_delta_per_channel_from_low_rank_projections(preset):
    """MIRAS sec. 5.4: eta_t, delta_t in R^d from rank-32 projections (alpha per head: the preset's stated reading)."""
    torch.manual_seed(0)
    layer = build_layer(preset, dim=32)
    gates = layer.make_gates(torch.randn(2, 5, 32))
    N, d = 2 * layer.heads, layer.head_dim
    assert gates["lr"].shape == (N, 5, d) and gates["retain"].shape == (N, 5)
    assert preset != "yaad" or gates["delta"].shape == (N, 5, d)
    channel_wise = layer.gates.parts[0].each
    assert all(proj.proj[0].weight.shape == (32, 32) for proj in channel_wise.values())  # x -> R^32 -> R^(h d)
    y, _ = layer(torch.randn(2, 5, 32))
    y.square().mean().backward()
    with pytest.raises(ComponentError, match="gate_coupling 'miras'.*MLP memories"):
        resolve_spec("deltanet", ["memory.gate_coupling=miras"])
