"""Path 'fla': the mapping of our rules, gates and state onto flash-linear-attention's operators, checked on the CPU
against FLA's own pure-torch references (`fla.ops.<op>.naive`) run through memory_scan, and on a GPU against FLA's
kernels. Also: which path the planner picks for a rule, a device and a dtype, and why it refuses one."""
from __future__ import annotations

import pytest
import torch

from components import MemoryRule, memory_scan
from components.engine import BACKENDS, Execution, plan, register_backend
from components.engine.fla_backend import FlaBackend, FlaCall, fla_op
from components.models import resolve_spec
from components.options import ComponentError

from .helpers import engine_inputs, rel_err

# FLA-backed presets and the operator each maps to.
MAPPED = {"linear_attention": "simple_gla", "retnet": "simple_gla", "mamba2": "simple_gla", "gla": "gla",
          "gla_value": "gla_value",
          "deltanet": "delta_rule", "gated_deltanet": "gated_delta_rule", "longhorn": "delta_rule"}
NOT_MAPPED = {
    "titans": "matrix memory",
    "ttt_linear": "matrix memory",
    "moneta": "matrix memory",
    "titans_pytorch": "matrix memory",
}


def preset_rule(name: str) -> MemoryRule:
    return resolve_spec(name).memory.rule()


def gla_value_decay_reference(q, k, v, gv, scale, initial_state):
    """fused_recurrent_gla's documented gv semantics, token by token: h_t = h_{t-1} * exp(gv_t)[None, :] + k_t v_t^T,
    o_t = scale * q_t^T h_t. (FLA 0.6.0 ships no pure-torch reference with gv; on a GPU the kernel is checked too.)"""
    q, k, v, gv = (x.transpose(1, 2).float() for x in (q, k, v, gv))
    h, outs = initial_state.float().clone(), []
    for t in range(q.shape[2]):
        h = h * gv[:, :, t].exp()[..., None, :] + k[:, :, t, :, None] * v[:, :, t, None, :]
        outs.append(scale * (q[:, :, t, :, None] * h).sum(-2))
    return torch.stack(outs, dim=2).transpose(1, 2), h


def run_naive(call: FlaCall):
    """FLA's pure-torch reference for the call's operator, with the call's conventions (scale 1, FLA layout)."""
    from fla.ops.delta_rule.naive import delta_rule_recurrence
    from fla.ops.gated_delta_rule.naive import naive_recurrent_gated_delta_rule
    from fla.ops.simple_gla.naive import naive_recurrent_simple_gla

    if call.op == "simple_gla":
        g = call.g if call.g is not None else call.q.new_zeros(call.q.shape[:3])
        return naive_recurrent_simple_gla(call.q, call.k, call.v, g, scale=1.0, initial_state=call.h0.float(),
                                          output_final_state=True)
    if call.op == "gla":  # naive_recurrent_gla scales q by d_k^-1/2 itself: undo it
        from fla.ops.gla.naive import naive_recurrent_gla

        q = call.q * call.q.shape[-1] ** 0.5
        return naive_recurrent_gla(q, call.k, call.v, call.gk, initial_state=call.h0, output_final_state=True)
    if call.op == "gla_value":
        return gla_value_decay_reference(call.q, call.k, call.v, call.gv, 1.0, call.h0)
    if call.op == "delta_rule":
        # head-first layout and a fixed d_k^-1/2 query scale: undo the scale on q
        head_first = lambda x: x.transpose(1, 2)  # noqa: E731
        q = call.q * call.q.shape[-1] ** 0.5
        o, h = delta_rule_recurrence(head_first(q), head_first(call.k), head_first(call.v), head_first(call.beta),
                                     initial_state=call.h0.float(), output_final_state=True)
        return head_first(o), h
    return naive_recurrent_gated_delta_rule(call.q, call.k, call.v, call.beta, call.g, scale=1.0,
                                            initial_state=call.h0, output_final_state=True)


class NaiveFla(FlaBackend):
    """The 'fla' backend with FLA's pure-torch references in place of its kernels, on any device and dtype."""

    name, auto = "fla-naive", False
    run = staticmethod(run_naive)

    def unavailable(self, device, dtype):
        return None


@pytest.fixture(scope="module", autouse=True)
def naive_backend():
    register_backend(NaiveFla())
    yield
    BACKENDS.pop("fla-naive")


def both(rule, T=11, N=3, d=5, seed=0, path_ours="reference", **kw):
    """(ours, FLA's) outputs and final weights for the same float64 inputs; gradients of a loss wrt all inputs."""
    acc, k, v, q, gates = engine_inputs(rule, N=N, T=T, d=d, seed=seed)
    results = []
    for path in (path_ours, "fla-naive"):
        leaves = [x.clone().requires_grad_() for x in (acc[0], k, v, q, *gates.values())]
        W0, kk, vv, qq, *gs = leaves
        y, state = memory_scan(rule, kk, vv, qq, dict(zip(gates, gs)), [W0], chunk_size=4, path=path, **kw)
        (y.pow(2).sum() + state.acc[0].pow(2).sum()).backward()
        results.append((y.detach(), state.acc[0].detach(), [x.grad for x in leaves]))
    return results


@pytest.mark.parametrize("preset", sorted(MAPPED))
def test_preset_maps_to_its_fla_operator(preset):
    op, reason = fla_op(preset_rule(preset))
    assert (op, reason) == (MAPPED[preset], None)


@pytest.mark.parametrize("preset", sorted(MAPPED))
@pytest.mark.parametrize("seed", [0, 1])
def test_fla_reference_equals_our_recurrence(preset, seed):
    """Outputs, final state and every input's gradient (q, k, v, W0, each gate) equal the token-by-token reference."""
    (y0, W0, g0), (y1, W1, g1) = both(preset_rule(preset), seed=seed)
    assert rel_err(y1, y0) < 1e-5
    assert rel_err(W1, W0) < 1e-5
    for a, b in zip(g1, g0):
        assert rel_err(a, b) < 1e-5


@pytest.mark.parametrize("preset", sorted(MAPPED))
def test_fla_streaming_carries_the_state(preset):
    """Two calls with the state carried through FLA's final state equal one call (and equal our chunked engine)."""
    rule = preset_rule(preset)
    acc, k, v, q, gates = engine_inputs(rule, T=12, seed=3)
    whole, _ = memory_scan(rule, k, v, q, gates, acc, path="fla-naive")
    cut = 5
    first, state = memory_scan(rule, k[:, :cut], v[:, :cut], q[:, :cut], {n: g[:, :cut] for n, g in gates.items()},
                               acc, path="fla-naive")
    second, _ = memory_scan(rule, k[:, cut:], v[:, cut:], q[:, cut:], {n: g[:, cut:] for n, g in gates.items()},
                            state, chunk_size=4)  # continued on our own engine
    assert rel_err(torch.cat([first, second], 1), whole) < 1e-5


@pytest.mark.parametrize("grad_at", ["previous", "decayed"])
def test_titans_linear_is_fla_momentum_delta_rule(grad_at):
    """FLA's momentum delta rule is Titans-linear's recurrence (linear memory, l2, decay, momentum):
    with M = -S^T, mu = eta, FLA's eta = theta, beta = 1, log_alpha = log alpha and p = k (gradient at W_{t-1}) or
    p = alpha k (at alpha W_{t-1}), FLA's M_t = mu M + eta k (S^T p - v)^T and S_t = alpha S - beta M_t are our
    S_t = eta S - theta u_t and W_t = alpha W + S_t. FLA 0.6.0 ships no kernel for it, so it is not mapped."""
    from fla.ops.momentum_delta_rule.naive import recurrent_momentum_delta_rule_ref

    rule = MemoryRule("linear", "l2", {"name": "decay", "grad_at": grad_at}, "momentum")
    acc, k, v, q, gates = engine_inputs(rule, N=3, T=10, d=5, seed=4)
    ours, state = memory_scan(rule, k, v, q, gates, acc, path="reference")
    lr, a, eta = gates["lr"], gates["retain"], gates["momentum"]
    fla = lambda x: x.unsqueeze(2)  # noqa: E731  (N, T, ...) -> (N, T, 1, ...)
    p = k if grad_at == "previous" else k * a.unsqueeze(-1)
    o, final = recurrent_momentum_delta_rule_ref(
        fla(q), fla(k), fla(v), log_alpha=fla(a.log()), log_mu=fla(eta.log()), p=fla(p), beta=fla(torch.ones_like(lr)),
        eta=fla(lr), scale=1.0, initial_S=acc[0].mT.unsqueeze(1), output_final_state=True)
    assert rel_err(o.squeeze(2).double(), ours) < 1e-5
    assert rel_err(final[0].squeeze(1).mT.double(), state.acc[0]) < 1e-5
    assert rel_err(-final[1].squeeze(1).mT.double(), state.momentum[0]) < 1e-5


# ------------------------------------------------------------------ the planner


@pytest.mark.parametrize("preset", sorted(MAPPED))
def test_auto_takes_fla_on_cuda_only_for_fp32_and_bf16(preset):
    rule = preset_rule(preset)
    assert plan(rule, Execution(), "cuda").path == "fla"
    assert plan(rule, Execution(), "cuda", dtype=torch.bfloat16).path == "fla"
    assert plan(rule, Execution(), "cuda", dtype=torch.float64).path != "fla"  # float64 runs (tests) stay exact
    assert plan(rule, Execution(), "cpu").path != "fla"


@pytest.mark.parametrize("preset", sorted(NOT_MAPPED))
def test_rules_without_a_kernel_stay_on_our_engine(preset):
    rule = preset_rule(preset)
    assert plan(rule, Execution(), "cuda").path == plan(rule, Execution(), "cpu").path != "fla"
    with pytest.raises(ComponentError, match=NOT_MAPPED[preset]):
        plan(rule, Execution(path="fla"), "cuda")


@pytest.mark.parametrize("rule, reason", [
    (MemoryRule("linear", "l2", "decay", "gd"), "grad_at: previous"),
    (MemoryRule("linear", "l2", "decay", "momentum"), "no momentum kernel"),
    (MemoryRule("linear", "huber", "none", "gd"), "bias 'huber'"),
    (MemoryRule("linear", "l2", "kl", "gd"), "non-identity link"),
    (MemoryRule("linear", "l2", "none", {"name": "multistep", "steps": 2}), "one gradient step per token"),
    (MemoryRule("linear", "l2", {"name": "decay", "granularity": "value"}, "gd"), "per-value-channel decay"),
    (MemoryRule("linear", "l2", {"name": "decay", "granularity": "key", "grad_at": "decayed"}, "gd"), "per-key-channel decay"),
])
def test_unmapped_rules_name_the_reason(rule, reason):
    assert fla_op(rule)[0] is None
    with pytest.raises(ComponentError, match=reason):
        plan(rule, Execution(path="fla", exact=False), "cuda")


def test_semantics_fla_does_not_compute_fall_back_or_are_refused():
    delta = preset_rule("deltanet")
    assert plan(delta, Execution(exact=False), "cuda").path == "fused"  # the mini-batch form: our engine
    with pytest.raises(ComponentError, match="mini-batch"):
        plan(delta, Execution(path="fla", exact=False), "cuda")
    with pytest.raises(ComponentError, match="read='before'"):
        plan(delta, Execution(path="fla"), "cuda", read_after=False)
    assert plan(delta, Execution(), "cuda", read_after=False).path == "exact"
    # the dot bias's update does not depend on W, so its mini-batch form is the recurrence itself
    assert plan(preset_rule("mamba2"), Execution(exact=False), "cuda").path == "fla"


def test_explicit_fla_on_cpu_or_float64_says_why():
    rule = preset_rule("deltanet")
    with pytest.raises(ComponentError, match="CUDA devices, not on 'cpu'"):
        plan(rule, Execution(path="fla"), "cpu")
    with pytest.raises(ComponentError, match="float64"):
        plan(rule, Execution(path="fla"), "cuda", dtype=torch.float64)
    with pytest.raises(ComponentError, match="runs its own kernels"):
        plan(rule, Execution(path="fla", compile=True), "cuda")


def test_execution_settings_are_checked_by_name():
    assert Execution.of({"checkpoint": "auto"}, compile=True) == Execution(checkpoint="auto", compile=True)
    with pytest.raises(ComponentError, match="unknown setting 'pth'.*did you mean 'path'"):
        Execution.of(pth="fla")
    with pytest.raises(ComponentError, match="path must be one of auto, exact, fused, stack, func, reference, fla"):
        Execution(path="triton")


def test_memory_layer_reports_its_plan():
    from components.models import build_layer

    layer = build_layer("gated_deltanet", ["memory.heads=2"], dim=16)
    assert layer.plan("cuda").path == "fla" and layer.plan("cpu").path == "exact"
    titans = build_layer("titans", ["memory.heads=2"], dim=16)
    assert titans.plan("cuda").path == titans.plan("cpu").path == "fused"


# ------------------------------------------------------------------ on a GPU: FLA's kernels themselves


@pytest.mark.skipif(not torch.cuda.is_available(), reason="FLA's kernels need a CUDA device")
@pytest.mark.parametrize("preset", sorted(MAPPED))
def test_fla_kernels_equal_our_engine_on_cuda(preset):
    """Kernel against our exact float64 recurrence: fp32 inputs (FLA's dots may run in tf32)."""
    rule = preset_rule(preset)
    with torch.device("cuda"):
        acc, k, v, q, gates = engine_inputs(rule, N=4, T=200, d=64, seed=5, dtype=torch.float32)
        ours, s_ours = memory_scan(rule, *(x.double() for x in (k, v, q)), {n: g.double() for n, g in gates.items()},
                                   [acc[0].double()], chunk_size=32)
        fla, s_fla = memory_scan(rule, k, v, q, gates, acc, path="fla")
        naive, _ = memory_scan(rule, k, v, q, gates, acc, path="fla-naive")
    assert rel_err(fla.double(), ours) < 5e-3
    assert rel_err(s_fla.acc[0].double(), s_ours.acc[0]) < 5e-3
    assert rel_err(naive.double(), ours) < 1e-4
