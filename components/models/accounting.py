"""What a model costs: parameters, recurrent state per sequence, and forward FLOPs per token.

* params: every trainable number once (the tied embedding/head counts once).
* state: numbers one sequence carries from one piece to the next: memory weights (+ momentum) and short-conv
  inputs for memory layers (constant in length), keys and values for attention (growing with length up to
  the window), unfinished-segment inputs for MAC. Computed from each layer's declared state (state_numel),
  and tested against the tensors a forward pass actually returns.
* FLOPs: matmul FLOPs of one forward pass, counted by torch.utils.flop_counter.FlopCounterMode over a
  sequence of seq_len tokens (batch 1) and divided by seq_len: what the engine actually runs (chunked dual
  form, triangular solves), multiply-add = 2. Attention counts the query-key pairs its mask allows
  (4 * head_dim per pair: scores and the weighted sum of values), so causal and sliding-window attention
  are not charged for the masked-out part. Element-wise work is not counted.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from ..options import ComponentError
from .lm import LanguageModel
from .spec import ArchitectureSpec


@dataclass(frozen=True)
class Cost:
    params: int
    state: int  # numbers per sequence after seq_len tokens
    flops_per_token: float
    seq_len: int


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def state_numel(model: LanguageModel, seq_len: int) -> int:
    return sum(block.mixer.state_numel(seq_len) for block in model.blocks)


def actual_state_numel(state) -> int:
    """Numbers in a state as a forward pass returned it (batch 1): an independent check of state_numel."""
    if state is None:
        return 0
    if isinstance(state, Tensor):
        return state.numel()
    if isinstance(state, (list, tuple)):
        return sum(actual_state_numel(s) for s in state)
    if hasattr(state, "__dataclass_fields__"):
        from ..engine import MemoryState

        if isinstance(state, MemoryState):  # read / grad_at are derived from acc at chunk ends
            return actual_state_numel(state.acc) + actual_state_numel(state.momentum)
        return sum(actual_state_numel(getattr(state, f)) for f in state.__dataclass_fields__ if f != "offset")
    return 0


aten = torch.ops.aten


def _sdpa_flops(query, key, value, dropout_p=0.0, is_causal=False, *args, attn_mask=None, out_val=None, **kwargs) -> int:
    n_q, n_k = query.shape[-2], key.shape[-2]
    if attn_mask is not None:  # every (batch, head, query, key) score the mask lets through
        allowed = attn_mask if attn_mask.dtype == torch.bool else attn_mask > float("-inf")
        pairs = int(allowed.expand(*query.shape[:-1], n_k).sum())
    else:
        per_head = sum(min(n_k, n_k - n_q + i + 1) for i in range(n_q)) if is_causal else n_q * n_k
        pairs = per_head * (query.numel() // (n_q * query.shape[-1]))
    return 4 * query.shape[-1] * pairs


def _sdpa_bias_flops(query, key, value, attn_bias=None, compute_log_sumexp=False, dropout_p=0.0, is_causal=False,
                     *args, out_val=None, **kwargs) -> int:
    """CUDA's memory-efficient and cuDNN kernels take the mask as `attn_bias`, fourth."""
    return _sdpa_flops(query, key, value, dropout_p, is_causal, attn_mask=attn_bias)


_sdpa_flops._get_raw = _sdpa_bias_flops._get_raw = True  # FlopCounterMode passes tensors, so masks can be read
# every fused kernel SDPA may dispatch to, counted by the score pairs the mask lets through (not n_q·n_k)
SDPA_KERNELS = {getattr(aten, name): fn for name, fn in (
    ("_scaled_dot_product_flash_attention_for_cpu", _sdpa_flops),
    ("_scaled_dot_product_flash_attention", _sdpa_flops),
    ("_scaled_dot_product_efficient_attention", _sdpa_bias_flops),
    ("_scaled_dot_product_cudnn_attention", _sdpa_bias_flops),
) if hasattr(aten, name)}


def forward_flops_per_token(model: LanguageModel, seq_len: int) -> float:
    tokens = torch.zeros(1, seq_len, dtype=torch.long)
    # with grad enabled: FlopCounterMode's module tracker rejects views of parameters made under no_grad
    with FlopCounterMode(display=False, custom_mapping=SDPA_KERNELS) as counter:
        model(tokens)
    return counter.get_total_flops() / seq_len


def cost(model: LanguageModel, seq_len: int = 512) -> Cost:
    return Cost(count_params(model), state_numel(model, seq_len), forward_flops_per_token(model, seq_len), seq_len)


def spec_size(spec: ArchitectureSpec, seq_len: int = 512) -> tuple[int, int]:
    """(parameters, state numbers per sequence after seq_len tokens) of the model a spec builds, without building it:
    one block of each kind is made on the meta device (shapes, no storage), and a model is the embedding, the final
    norm and its blocks. So a width of 1e9 or a million layers is counted in milliseconds and never allocated."""
    from .lm import Block, build_mixer

    with torch.device("meta"), torch.random.fork_rng(devices=[]):
        params = spec.vocab_size * spec.dim + spec.dim  # tied embedding/head, final RMSNorm
        state = 0
        for kind, count in spec.backbone_component().mixer_counts(spec.layers).items():
            try:
                block = Block(spec.dim, build_mixer(kind, spec), spec.mlp_hidden)
            except RuntimeError as err:  # a single weight past 2^63 bytes: torch cannot even describe it
                raise ComponentError(f"dim={spec.dim}: a weight of this model would be larger than a tensor can "
                                     f"be ({str(err).splitlines()[0]})") from None
            params += count * count_params(block)
            state += count * block.mixer.state_numel(seq_len)
    return params, state


def spec_flops_per_token(spec: ArchitectureSpec, seq_len: int) -> float:
    """Forward matmul FLOPs per token at seq_len of the model a spec builds, counted on the meta device (shapes
    only: nothing is allocated or computed, so a 170M-parameter model at 4096 tokens is counted in about a second):
    one block of each kind times its count, plus the tied output head. Equals forward_flops_per_token of the built
    model for memory layers; attention is counted without its mask (a meta tensor has no values to count the pairs
    a causal or window mask lets through), so for attention this is an upper bound: every query against every key
    (tests/components/test_accounting.py). For cost estimates; a run's MFU counts the built model."""
    from .lm import Block, build_mixer

    total = 2.0 * spec.dim * spec.vocab_size  # the head; the embedding is a lookup and the final norm no matmul
    with torch.device("meta"), torch.random.fork_rng(devices=[]):
        for kind, count in spec.backbone_component().mixer_counts(spec.layers).items():
            block = Block(spec.dim, build_mixer(kind, spec), spec.mlp_hidden)
            with FlopCounterMode(display=False, custom_mapping=SDPA_KERNELS) as counter:
                block(torch.zeros(1, seq_len, spec.dim))
            total += count * counter.get_total_flops() / seq_len
    return total


def training_bytes(params: int, bytes_per_number: int = 4) -> int:
    """Memory the weights alone take in training: the weights, their gradients and AdamW's two moments."""
    return 4 * params * bytes_per_number
