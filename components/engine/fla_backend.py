"""Path 'fla': the linear rules flash-linear-attention (FLA) has Triton kernels for, run on those kernels (CUDA).

Conventions. Our matrix memory W is (d_out, d_in) and reads y_t = W_t q_t after the write; FLA's state h is
(K, V) = W^T and reads o_t = scale * q_t^T h_t, also after the write. So: scale = 1 (q is the layer's own
normalised query), h0 = W^T, W' = h_T^T, no in-kernel q/k normalisation (the layer normalises), a batch of
N = batch * heads sequences with one FLA head each. FLA computes the exact token-by-token recurrence.

The map, with theta the inner learning rate and alpha the retention gate, after the algorithm's `prepare`
(Longhorn's implicit step arrives as theta / (1 + theta ||k||^2), so Longhorn is a delta rule):

    dot bias, W_t = alpha_t W_{t-1} + theta_t v_t k_t^T
        no retention, or one alpha per head      -> simple_gla   v' = theta v, g = log alpha (or none)
        one alpha per key channel (GLA)          -> gla         (chunk_gla, g = log alpha per key channel)
        one alpha per value channel (output row) -> gla_value   (fused_recurrent_gla, gv = log alpha per value channel)
    l2 bias, W_t = W'_t (I - theta_t k_t k_t^T) + theta_t v_t k_t^T with W'_t = alpha_t W_{t-1}
        no retention                             -> delta_rule        beta = theta
        per-head decay, gradient at alpha W      -> gated_delta_rule  beta = theta, g = log alpha
        (Gated DeltaNet's 'decay then write')

Not mapped, each with its reason in `unsupported`: memories other than a matrix, non-identity links, other
biases, momentum (FLA 0.6.0's momentum_delta_rule is the same recurrence as Titans-linear, proved in
tests/components/test_fla_backend.py, but it ships no kernel: its chunk path is a PyTorch reference for bf16 only),
per-chunk and multi-step algorithms, a decay applied after the gradient point with the l2 bias (a delta rule only
after dividing by alpha_t), read-before-write, and the mini-batch form (exact=False) of the l2 bias.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor

from .execution import Backend, register_backend
from .state import MemoryState

INSTALL_HINT = "pip install 'mirasweep[gpu]' (flash-linear-attention and fla-core 0.6.0; CUDA's torch brings triton)"


@dataclass
class FlaCall:
    """One FLA operator call in FLA's layout: (B, T, H, D) with B = N sequences and H = 1."""

    op: str  # 'simple_gla' | 'gla' | 'gla_value' | 'delta_rule' | 'gated_delta_rule'
    q: Tensor
    k: Tensor
    v: Tensor
    h0: Tensor  # (N, 1, K, V) = W^T
    g: Tensor | None = None  # (N, T, 1) log decay per head
    gk: Tensor | None = None  # (N, T, 1, K) log decay per key channel
    gv: Tensor | None = None  # (N, T, 1, V) log decay per value channel
    beta: Tensor | None = None  # (N, T, 1) delta-rule step


def fla_op(rule) -> tuple[str | None, str | None]:
    """(operator, None) for a rule FLA has a kernel for, else (None, the reason)."""
    structure, bias, retention, algorithm = rule.structure, rule.bias, rule.retention, rule.algorithm
    if structure.name != "linear":
        return None, f"FLA's kernels hold a matrix memory; structure '{structure.name}' is not one"
    if algorithm.uses_momentum:
        return None, (f"algorithm '{algorithm.name}': FLA 0.6.0 has no momentum kernel (momentum_delta_rule is a "
                      "PyTorch reference)")
    if algorithm.per_chunk or algorithm.steps_per_token() > 1:
        return None, f"algorithm '{algorithm.name}' is not one gradient step per token"
    if not retention.identity_link:
        return None, f"retention '{retention.name}' has a non-identity link"
    if bias.gates() or bias.prediction_slope not in (0.0, 1.0):
        return None, f"bias '{bias.name}': FLA's kernels implement the dot (Hebbian) and l2 (delta rule) objectives"
    axis = retention.decay_axis if retention.uses_decay else None
    if bias.prediction_slope == 0.0:
        return {"key": "gla", "value": "gla_value"}.get(axis, "simple_gla"), None
    if axis is None:
        return "delta_rule", None
    if axis != "head":
        return None, f"a per-{axis}-channel decay with the l2 bias has no FLA kernel"
    if not retention.grad_after_decay:
        return None, ("a decay after the gradient point (grad_at: previous) with the l2 bias is a delta rule only "
                      "after dividing by alpha_t; FLA's gated delta rule decays first (grad_at: decayed)")
    return "gated_delta_rule", None


def to_fla(op: str, state: MemoryState, k: Tensor, v: Tensor, q: Tensor, gates: dict[str, Tensor],
           io_dtype: torch.dtype | None = None) -> FlaCall:
    """Our inputs (N, T, d), gates (N, T[, c]) and state -> one FLA call; q, k, v in io_dtype (autocast) if given."""
    heads = lambda x: rearrange(x, "n t ... -> n t 1 ...")  # noqa: E731
    io = (lambda x: x.to(io_dtype)) if io_dtype is not None else (lambda x: x)  # noqa: E731
    lr, retain = gates["lr"], gates.get("retain")
    h0 = rearrange(state.acc[0], "n dv dk -> n 1 dk dv")
    call = FlaCall(op, heads(io(q)), heads(io(k)), heads(io(v)), h0)
    if op in ("simple_gla", "gla", "gla_value"):
        call.v = heads(io(v * lr.unsqueeze(-1)))
        if op == "gla":
            call.gk = heads(retain.log())
        elif op == "gla_value":
            call.gv = heads(retain.log())
        elif retain is not None:
            call.g = heads(retain.log())
    else:
        call.beta = heads(lr)
        if retain is not None:
            call.g = heads(retain.log())
    return call


def from_fla(o: Tensor, ht: Tensor, dtype: torch.dtype) -> tuple[Tensor, MemoryState]:
    """FLA's output (N, T, 1, V) and final state (N, 1, K, V) -> y (N, T, d_out) and our state."""
    W = rearrange(ht, "n 1 dk dv -> n dv dk").to(dtype)
    return rearrange(o, "n t 1 d -> n t d").to(dtype), MemoryState([W], None, [W], [W], 0)


def run_kernel(call: FlaCall) -> tuple[Tensor, Tensor]:
    """The FLA kernel for the call: (o, final state)."""
    common = dict(scale=1.0, initial_state=call.h0, output_final_state=True)
    if call.op == "simple_gla":
        from fla.ops.simple_gla import chunk_simple_gla

        return chunk_simple_gla(call.q, call.k, call.v, g=call.g, **common)
    if call.op == "gla":
        from fla.ops.gla import chunk_gla

        return chunk_gla(call.q, call.k, call.v, call.gk, **common)
    if call.op == "gla_value":
        from fla.ops.gla import fused_recurrent_gla

        return fused_recurrent_gla(call.q, call.k, call.v, gv=call.gv, **common)
    if call.op == "delta_rule":
        from fla.ops.delta_rule import chunk_delta_rule

        return chunk_delta_rule(call.q, call.k, call.v, call.beta, use_qk_l2norm_in_kernel=False, **common)
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule

    return chunk_gated_delta_rule(call.q, call.k, call.v, call.g, call.beta, use_qk_l2norm_in_kernel=False, **common)


class FlaBackend(Backend):
    name = "fla"
    device_types = ("cuda",)
    run = staticmethod(run_kernel)  # FlaCall -> (o, final state); tests swap in FLA's pure-torch references

    def unavailable(self, device: torch.device, dtype: torch.dtype) -> str | None:
        if device.type not in self.device_types:
            return f"FLA's Triton kernels run on CUDA devices, not on '{device.type}'"
        if dtype == torch.float64:
            return "FLA's kernels compute in float32 or bfloat16, and these inputs are float64"
        if importlib.util.find_spec("fla") is None:
            return f"flash-linear-attention is not installed ({INSTALL_HINT})"
        return None

    def unsupported(self, rule, exact: bool, read_after: bool) -> str | None:
        op, reason = fla_op(rule)
        if reason:
            return reason
        if not read_after:
            return "read='before': FLA's kernels read after the write"
        if op in ("delta_rule", "gated_delta_rule") and not exact:
            return "exact=False asks for the mini-batch form; FLA computes the token-by-token recurrence"
        return None

    def scan(self, rule, state: MemoryState, inputs, read_after: bool, io_dtype: torch.dtype | None):
        op, _ = fla_op(rule)
        call = to_fla(op, state, inputs.k, inputs.v, inputs.q, inputs.gates, io_dtype)
        o, ht = self.run(call)
        return from_fla(o, ht, inputs.k.dtype)


register_backend(FlaBackend())
