"""Registered memory learning algorithms (MIRAS Table 1, Titans section 3)."""
from __future__ import annotations

from dataclasses import replace

import torch

from ..options import Option
from .base import ALGORITHMS, MemoryAlgorithm, StepInputs


@ALGORITHMS.register("gd")
class GradientDescent(MemoryAlgorithm):
    summary = "one online gradient step per token, S_t = -theta_t u_t (DeltaNet, TTT, Moneta, Yaad, Memora)"


@ALGORITHMS.register("ttt_gd")
class TTTGradientDescent(MemoryAlgorithm):
    """TTT's mini-batch GD (Sun et al. 2024): every gradient of a mini-batch (the chunk) at its start weights, and the
    inner learning rate of the token at position i = 1, 2, ... of its mini-batch scaled by 1/i (ttt-lm-pytorch's
    token_idx, without its learnable offset), so later tokens of a mini-batch, which see the sum of more gradients,
    step less. The chunk size is part of the rule."""

    summary = "TTT's mini-batch GD: theta_t / (the token's position in its mini-batch, from 1)"
    uses_position = True

    def prepare(self, inputs: StepInputs, chunk_size: int = 1, offset: int = 0) -> StepInputs:
        lr = inputs.gates["lr"]
        position = (torch.arange(lr.shape[1], device=lr.device) + offset) % chunk_size + 1
        scale = (1.0 / position.to(lr.dtype)).view(1, -1, *([1] * (lr.dim() - 2)))
        return replace(inputs, gates={**inputs.gates, "lr": lr * scale})


@ALGORITHMS.register("momentum")
class MomentumGD(MemoryAlgorithm):
    summary = "GD with data-dependent momentum S_t = eta_t S_{t-1} - theta_t u_t (Titans' past surprise)"
    uses_momentum = True


@ALGORITHMS.register("chunk_momentum")
class ChunkMomentumGD(MemoryAlgorithm):
    """Titans' momentum with the chunk as the step: the chunk's gradients, all at its start weights and scaled by
    theta_t, are summed into one surprise; eta and alpha are the chunk's first step's gates (applied once per chunk);
    A_c = alpha A_{c-1} + S_c. Reads inside a chunk see its start weights (the last step, reading after its write, sees
    the new ones). With chunk_size 1 this is 'momentum'. It is titans-pytorch's NeuralMemory with batch_size =
    chunk_size (tests/components/test_titans_pytorch.py); NeuralMemory's default takes every chunk's gradient of a
    call at the call's start weights, so its result depends on where a stream is cut."""

    summary = ("one momentum step per chunk, S_c = eta S_{c-1} - sum_t theta_t u_t, reads at chunk-start weights "
               "(titans-pytorch's NeuralMemory with batch_size = chunk_size)")
    uses_momentum = True
    per_chunk = True

    def incompatible(self, parts: dict) -> tuple[str, str] | None:
        if parts["retention"].grad_after_decay:
            return "retention", "a per-chunk update takes every gradient at the chunk-start weights, not at alpha_t W"
        return None


@ALGORITHMS.register("implicit")
class ImplicitGD(MemoryAlgorithm):
    summary = "implicit (proximal) step, closed form theta/(1 + theta ||k||^2) for a linear L2 memory (Longhorn)"

    def incompatible(self, parts: dict) -> tuple[str, str] | None:
        if parts["structure"].name != "linear":
            return "structure", "the implicit step has a closed form only for a linear memory"
        if parts["bias"].name != "l2":
            return "bias", "the implicit step has a closed form only for the l2 bias"
        return None

    def prepare(self, inputs: StepInputs, chunk_size: int = 1, offset: int = 0) -> StepInputs:
        lr = inputs.gates["lr"]
        k2 = inputs.k.pow(2).sum(-1)
        k2 = k2.unsqueeze(-1) if lr.dim() == k2.dim() + 1 else k2
        return replace(inputs, gates={**inputs.gates, "lr": lr / (1.0 + lr * k2)})


@ALGORITHMS.register("multistep")
class MultiStepGD(MemoryAlgorithm):
    summary = "several GD sub-steps per token (DeltaProduct-style); keys/values may be given per sub-step"
    options = (Option("steps", int, 2, "inner GD sub-steps per token", low=1, high=8),)

    def label(self) -> str:
        return f"gd{self.steps}"

    def steps_per_token(self) -> int:
        return self.steps

    def prepare(self, inputs: StepInputs, chunk_size: int = 1, offset: int = 0) -> StepInputs:
        """Interleave sub-steps: decay applies on the first sub-step, reads use the last (or first)."""
        n = self.steps
        T = inputs.q.shape[1]

        def per_step(x):
            return x if x.shape[1] == T * n else x.repeat_interleave(n, dim=1)

        gates = {}
        for name, g in inputs.gates.items():
            g = g.repeat_interleave(n, dim=1)
            if name == "retain":
                first = torch.zeros(n, dtype=torch.bool, device=g.device)
                first[0] = True
                mask = first.repeat(T).view(1, T * n, *([1] * (g.dim() - 2)))
                g = torch.where(mask, g, torch.ones_like(g))
            gates[name] = g
        return replace(inputs, k=per_step(inputs.k), v=per_step(inputs.v), q=per_step(inputs.q), gates=gates)
