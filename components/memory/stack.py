"""Memories that are stacks of linear layers and per-token functions.

For these the engine never needs per-token weight copies: each layer's per-token gradient is an
outer product delta_t a_t^T, so weighted sums over a chunk are matmuls and in-chunk reads use the
dual form. This module holds the forward with a cache and the hand-written backward to the deltas.
"""
from __future__ import annotations

import math

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import MemoryStructure

LN_EPS = 1e-5


@dataclass(frozen=True)
class Activation:
    """sigma with its first and second derivatives: the engine's hand backward needs sigma', and the
    outer gradient through that backward needs sigma''."""

    fn: Callable[[Tensor], Tensor]
    d1: Callable[[Tensor], Tensor]
    d2: Callable[[Tensor], Tensor]
    # g * sigma'(z) in one kernel (ATen's own activation backward), where there is one
    fused_vjp: Callable[[Tensor, Tensor], Tensor] | None = None

    def vjp(self, g: Tensor, z: Tensor) -> Tensor:
        """g * sigma'(z)."""
        return self.fused_vjp(g, z) if self.fused_vjp is not None else g * self.d1(z)


_SQRT_HALF = 1.0 / math.sqrt(2.0)


# exp below about -87 underflows float32 to subnormals and zero, which the vectorised exp computes 15-25x slower (a
# fifth of the chunkwise step's elementwise time at the benchmark's sizes); exp(-87) ~ 1.6e-38 is zero for any sum.
_EXP_FLOOR = -87.0


def _gauss(z: Tensor) -> Tensor:
    return torch.exp((-0.5 * z * z).clamp_(min=_EXP_FLOOR)) * (1.0 / math.sqrt(2.0 * math.pi))


def _gelu_d1(z: Tensor) -> Tensor:
    return 0.5 * (1.0 + torch.erf(z * _SQRT_HALF)) + z * _gauss(z)


def _gelu_d2(z: Tensor) -> Tensor:
    return _gauss(z) * (2.0 - z * z)


def _silu_d1(z: Tensor) -> Tensor:
    s = torch.sigmoid(z)
    return s * (1.0 + z * (1.0 - s))


def _silu_d2(z: Tensor) -> Tensor:
    s = torch.sigmoid(z)
    return s * (1.0 - s) * (2.0 + z * (1.0 - 2.0 * s))


def _tanh_d1(z: Tensor) -> Tensor:
    return 1.0 - torch.tanh(z) ** 2


def _tanh_d2(z: Tensor) -> Tensor:
    t = torch.tanh(z)
    return -2.0 * t * (1.0 - t * t)


ACTIVATIONS: dict[str, Activation] = {
    "gelu": Activation(F.gelu, _gelu_d1, _gelu_d2, torch.ops.aten.gelu_backward),
    "silu": Activation(F.silu, _silu_d1, _silu_d2, torch.ops.aten.silu_backward),
    "tanh": Activation(torch.tanh, _tanh_d1, _tanh_d2),
    "relu": Activation(F.relu, lambda z: (z > 0).to(z.dtype), torch.zeros_like,
                       lambda g, z: torch.ops.aten.threshold_backward(g, z, 0)),
}


class _ActivationBackward(torch.autograd.Function):
    """g * sigma'(z), saving only g and z: written out through autograd it kept every intermediate of
    sigma' per token (a third of the engine's saved activations for gelu)."""

    @staticmethod
    def forward(ctx, g: Tensor, z: Tensor, act: Activation) -> Tensor:
        ctx.save_for_backward(g, z)
        ctx.act = act
        return act.vjp(g, z)

    @staticmethod
    def backward(ctx, grad: Tensor):
        g, z = ctx.saved_tensors
        gg = ctx.act.vjp(grad, z) if ctx.needs_input_grad[0] else None
        gz = grad * g * ctx.act.d2(z) if ctx.needs_input_grad[1] else None
        return gg, gz, None


def activation_backward(act: Activation, g: Tensor, z: Tensor) -> Tensor:
    return _ActivationBackward.apply(g, z, act)


def layer_norm(h: Tensor) -> Tensor:
    """Parameter-free layer norm over the last dim."""
    return F.layer_norm(h, h.shape[-1:], eps=LN_EPS)


def layer_norm_backward(h: Tensor, g: Tensor) -> Tensor:
    centred = h - h.mean(-1, keepdim=True)
    # the variance as a mean of squares: torch.var's kernel ran 7x slower on these (tokens, 256) rows
    inv = torch.rsqrt((centred * centred).mean(-1, keepdim=True) + LN_EPS)
    hat = centred * inv
    return inv * (g - g.mean(-1, keepdim=True) - hat * (g * hat).mean(-1, keepdim=True))


@dataclass
class StackCache:
    inputs: list[Tensor]  # a_l: input of linear layer l, per token
    pre: list[Tensor]  # z_l: output of linear layer l (before the next per-token function)


Linear = Callable[[int, Tensor], Tensor]


class StackMemory(MemoryStructure):
    """Linear layers W_l with an activation between them, optionally `x + LN(.)` around the stack."""

    def layer_dims(self, d_in: int, d_out: int) -> list[tuple[int, int]]:
        raise NotImplementedError

    def param_shapes(self, d_in: int, d_out: int) -> list[tuple[int, ...]]:
        return [tuple(s) for s in self.layer_dims(d_in, d_out)]

    activation_name: str | None = None
    has_residual: bool = False

    def canonical(self, params: list[Tensor]) -> list[Tensor]:
        """x + LN(a W^T) sees W only through W minus its mean over the output rows (the LN removes that mean from
        every output), and the gradients of W are row-centred too. Positive weights (KL retention's simplex) carry a
        large common row: computed with it, LN subtracted two nearly equal numbers and fp32 lost up to 1e-2 of a
        token's output. So the last layer is read centred."""
        if not self.has_residual:
            return params
        last = params[-1]
        return [*params[:-1], last - last.mean(-2, keepdim=True)]

    def check_dims(self, d_in: int, d_out: int) -> str | None:
        if self.has_residual and d_in != d_out:
            return f"the residual x + LN(...) needs key size == value size, got {d_in} and {d_out}"
        return None

    def run(self, params: list[Tensor], x: Tensor, linear: Linear | None = None, cache: bool = False):
        """Forward; `linear(l, a)` replaces `a @ W_l^T` (the engine passes its dual-form reader)."""
        act = ACTIVATIONS[self.activation_name].fn if self.activation_name else None
        inputs, pre = [], []
        a = x
        for l, w in enumerate(params):
            inputs.append(a)
            z = linear(l, a) if linear is not None else a @ w.mT
            pre.append(z)
            a = act(z) if l < len(params) - 1 else z
        y = self.output(x, a)
        return (y, StackCache(inputs, pre)) if cache else y

    def output(self, x: Tensor, z_last: Tensor) -> Tensor:
        """The memory's output from its input and last pre-activation: x + LN(z) with the residual, else z."""
        return x + layer_norm(z_last) if self.has_residual else z_last

    def output_delta(self, z_last: Tensor, g: Tensor) -> Tensor:
        """dL/dz of the last layer given dL/dy = g (through the output's LN when there is one)."""
        return layer_norm_backward(z_last, g) if self.has_residual else g

    def forward(self, params: list[Tensor], x: Tensor) -> Tensor:
        return self.run(params, x)

    def backward(self, params: list[Tensor], cache: StackCache, g: Tensor) -> list[Tensor]:
        """Per-token gradients of the loss w.r.t. each layer's output z_l, given dL/dy = g."""
        act = ACTIVATIONS[self.activation_name] if self.activation_name else None
        delta = self.output_delta(cache.pre[-1], g)
        deltas = [delta]
        for l in range(len(params) - 1, 0, -1):
            delta = activation_backward(act, delta @ params[l], cache.pre[l - 1])
            deltas.append(delta)
        return deltas[::-1]
