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
    inputs: list[Tensor]  # a_l: input of linear layer l, per token (with its constant 1 appended under `bias`)
    pre: list[Tensor]  # z_l: output of linear layer l (before the next per-token function)


Linear = Callable[[int, Tensor], Tensor]


def per_token(p: Tensor, x: Tensor) -> Tensor:
    """An outer weight (leading batch dims matching x's without its token dim, or none) broadcast over x's tokens."""
    return p.unsqueeze(-2) if x.dim() == p.dim() + 1 and p.dim() > 1 else p


class StackMemory(MemoryStructure):
    """Linear layers W_l with an activation between them, optionally `x + LN(.)` around the stack.

    has_bias: every layer is affine, W_l a + b_l, its bias b_l an inner (fast) weight stored as the last column of
    W_l (shape (out, in + 1)) acting on a constant 1 appended to the layer's input: the per-token gradient stays the
    outer product delta_t [a_t; 1]^T, so every path of the engine runs it as one more input column.
    has_norm_affine: the output's LN has a learnable scale and shift, x + gamma * LN(.) + beta: outer parameters
    (`outer_shapes`, trained by the outer loop, never by inner steps), passed to the engine per sequence-head.
    """

    activation_name: str | None = None
    has_residual: bool = False
    has_bias: bool = False
    has_norm_affine: bool = False

    def layer_dims(self, d_in: int, d_out: int) -> list[tuple[int, int]]:
        raise NotImplementedError

    def param_shapes(self, d_in: int, d_out: int) -> list[tuple[int, ...]]:
        return [(o, i + 1) if self.has_bias else (o, i) for o, i in self.layer_dims(d_in, d_out)]

    def init_params(self, d_in: int, d_out: int, generator: torch.Generator | None = None) -> list[Tensor]:
        """Xavier-normal weights; biases (the last columns under `bias`) start at zero, as TTT's."""
        if not self.has_bias:
            return super().init_params(d_in, d_out, generator)
        out = []
        for o, i in self.layer_dims(d_in, d_out):
            w = torch.randn(o, i, generator=generator) * math.sqrt(2.0 / (o + i))
            out.append(torch.cat([w, w.new_zeros(o, 1)], dim=-1))
        return out

    def outer_shapes(self, d_in: int, d_out: int) -> list[tuple[int, ...]]:
        return [(d_out,), (d_out,)] if self.has_norm_affine else []

    def init_outer(self, d_in: int, d_out: int) -> list[Tensor]:
        """The LN's scale at 1 and shift at 0: the parameter-free LN at initialisation."""
        return [torch.ones(d_out), torch.zeros(d_out)] if self.has_norm_affine else []

    def augment(self, a: Tensor) -> Tensor:
        """A layer's input with the constant 1 its bias column multiplies (a itself without `bias`)."""
        return torch.cat([a, a.new_ones(*a.shape[:-1], 1)], dim=-1) if self.has_bias else a

    def strip(self, g: Tensor) -> Tensor:
        """A gradient w.r.t. an augmented input without the constant's column."""
        return g[..., :-1] if self.has_bias else g

    def weight_in(self, w: Tensor) -> Tensor:
        """The part of a layer's weights that multiplies its input (without the bias column)."""
        return w[..., :-1] if self.has_bias else w

    def canonical(self, params: list[Tensor]) -> list[Tensor]:
        """x + LN(a W^T) sees W only through W minus its mean over the output rows (the LN removes that mean from
        every output), and the gradients of W are row-centred too. Positive weights (KL retention's simplex) carry a
        large common row: computed with it, LN subtracted two nearly equal numbers and fp32 lost up to 1e-2 of a
        token's output. So the last layer is read centred (its bias column too: the same holds for b, and for the LN's
        scale and shift, which act after the normalisation)."""
        if not self.has_residual:
            return params
        last = params[-1]
        return [*params[:-1], last - last.mean(-2, keepdim=True)]

    def check_dims(self, d_in: int, d_out: int) -> str | None:
        if self.has_residual and d_in != d_out:
            return f"the residual x + LN(...) needs key size == value size, got {d_in} and {d_out}"
        return None

    def run(self, params: list[Tensor], x: Tensor, linear: Linear | None = None, cache: bool = False,
            outer: list[Tensor] | tuple = ()):
        """Forward; `linear(l, a)` replaces `a @ W_l^T` (the engine passes its dual-form reader; `a` is augmented)."""
        act = ACTIVATIONS[self.activation_name].fn if self.activation_name else None
        inputs, pre = [], []
        a = x
        for l, w in enumerate(params):
            a = self.augment(a)
            inputs.append(a)
            z = linear(l, a) if linear is not None else a @ w.mT
            pre.append(z)
            a = act(z) if l < len(params) - 1 else z
        y = self.output(x, a, outer)
        return (y, StackCache(inputs, pre)) if cache else y

    def output(self, x: Tensor, z_last: Tensor, outer: list[Tensor] | tuple = ()) -> Tensor:
        """The memory's output from its input and last pre-activation: x + LN(z) (x + gamma LN(z) + beta with the
        affine norm) with the residual, else z."""
        if not self.has_residual:
            return z_last
        if not self.has_norm_affine or not outer:
            return x + layer_norm(z_last)
        gamma, beta = outer
        return x + layer_norm(z_last) * per_token(gamma, z_last) + per_token(beta, z_last)

    def output_delta(self, z_last: Tensor, g: Tensor, outer: list[Tensor] | tuple = ()) -> Tensor:
        """dL/dz of the last layer given dL/dy = g (through the output's LN, and its scale, when there is one)."""
        if not self.has_residual:
            return g
        if self.has_norm_affine and outer:
            g = g * per_token(outer[0], z_last)
        return layer_norm_backward(z_last, g)

    def forward(self, params: list[Tensor], x: Tensor, outer: list[Tensor] | tuple = ()) -> Tensor:
        return self.run(params, x, outer=outer)

    def backward(self, params: list[Tensor], cache: StackCache, g: Tensor, outer: list[Tensor] | tuple = ()) -> list[Tensor]:
        """Per-token gradients of the loss w.r.t. each layer's output z_l, given dL/dy = g."""
        act = ACTIVATIONS[self.activation_name] if self.activation_name else None
        delta = self.output_delta(cache.pre[-1], g, outer)
        deltas = [delta]
        for l in range(len(params) - 1, 0, -1):
            delta = activation_backward(act, self.strip(delta @ params[l]), cache.pre[l - 1])
            deltas.append(delta)
        return deltas[::-1]
