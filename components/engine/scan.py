"""Entry point of the memory engine: validate inputs, pick a path, run, pick the read positions."""
from __future__ import annotations

import contextlib

from typing import Any, Mapping

import torch
from torch import Tensor

from ..optim import StepInputs
from ..options import ComponentError
from .chunked import chunked_scan
from .execution import Execution, plan
from .reference import reference_scan
from .rule import MemoryRule
from .state import MemoryState


def memory_scan(
    rule: MemoryRule,
    k: Tensor,
    v: Tensor,
    q: Tensor,
    gates: dict[str, Tensor],
    state: MemoryState | list[Tensor],
    chunk_size: int = 64,
    read: str = "after",
    execution: Execution | Mapping[str, Any] | None = None,
    outer: list[Tensor] | tuple[Tensor, ...] | None = None,
    **how: Any,
) -> tuple[Tensor, MemoryState]:
    """Run the memory over a sequence.

    k, v: (N, T, d) (or (N, T * steps, d) for per-sub-step keys of a multi-step algorithm); q: (N, T, d);
    gates: 'lr' and whatever `rule.gates()` names, each (N, T) per head or (N, T, c) per channel;
    state: a MemoryState to continue from, or the initial accumulator (list of (N, *shape)).
    chunk_size counts inner steps. Returns y (N, T, d_out) and the new state.
    outer: the structure's outer parameters (`structure.outer_shapes`, each (N, *shape): TTT's LN scale and shift),
    trained by the outer loop and never updated by inner steps; None gives them their initial values.

    How it runs is an `Execution` (execution.py), given whole or as its fields (path=, exact=, checkpoint=,
    compile=) that override it; `execution.plan` picks the path for the rule and the device:

    exact: the inner recurrence token by token (True), or the mini-batch recurrence of the chunked form with
    every gradient of a chunk at the chunk-start weights (False; TTT/Titans semantics). Both are the same
    for chunk_size 1. Default: exact where a parallel exact form exists (linear memory, l2 or dot bias, per-head
    gates: DeltaNet, Gated DeltaNet, Longhorn, Titans-linear), so chunk_size is then only a speed knob;
    the paths 'fused', 'stack' and 'func' compute the mini-batch form ('fused' and 'stack' are the same math,
    'fused' with a hand-written backward: faster and leaner; 'auto' takes it where it applies). On CUDA, 'auto'
    runs the rules flash-linear-attention has kernels for on those kernels (path 'fla', fla_backend.py).

    checkpoint: trade compute for memory in training: None keeps every chunk's activations for backward;
    an integer n recomputes segments of n chunks in backward (activation checkpointing), 'auto' uses
    segments of ceil(sqrt(chunks)). Results and gradients are the same either way.

    compile: run each chunk step through torch.compile (stack and exact paths): the first call of each chunk
    length compiles (tens of seconds on a CPU), later ones run fused elementwise code around the matmuls.
    Results equal the eager step to float rounding.
    """
    execution = Execution.of(execution, **how)
    if read not in ("after", "before"):
        raise ComponentError(f"read must be 'after' or 'before', got {read!r}")
    if chunk_size < 1:
        raise ComponentError(f"chunk_size must be >= 1, got {chunk_size}")
    read_after = read == "after"
    chosen = plan(rule, execution, k.device, read_after, k.dtype)
    missing = set(rule.gates()) - set(gates)
    if missing:
        raise ComponentError(f"rule {rule.name} needs gates {sorted(rule.gates())}; missing {sorted(missing)}")
    device_type = k.device.type
    # the meta device (shapes only: FLOP counts of a model never built) has no autocast
    autocast = torch.amp.is_autocast_available(device_type)
    io_dtype = torch.get_autocast_dtype(device_type) if autocast and torch.is_autocast_enabled(device_type) else None
    dtype = torch.float64 if k.dtype == torch.float64 else torch.float32
    # The inner loop runs in fp32 even under bf16 autocast: state updates accumulate over the sequence.
    with torch.autocast(device_type=device_type, enabled=False) if autocast else contextlib.nullcontext():
        cast = lambda x: x.to(dtype)  # noqa: E731
        if not isinstance(state, MemoryState):
            state = MemoryState.start(rule, [cast(a) for a in state])
        # Only the gates this rule reads: a stray 'retain' must not decay a memory with no retention.
        used = {n: cast(gates[n]) for n in rule.gates()}
        inputs = StepInputs(cast(k), cast(v), cast(q), used, tuple(cast(p) for p in outer_parameters(rule, k, v, outer)))
        inputs = rule.algorithm.prepare(inputs, chunk_size, state.offset)
        if chosen.backend is not None:
            y, state = chosen.backend.scan(rule, state, inputs, read_after, io_dtype)
        elif chosen.path == "reference":
            y, state = reference_scan(rule, state, inputs, 1 if chosen.exact else chunk_size, read_after)
        else:
            y, state = chunked_scan(rule, state, inputs, chunk_size, read_after, chosen.path,
                                    execution.checkpoint, execution.compile)
        steps = rule.algorithm.steps_per_token()
        if steps > 1:
            y = y[:, steps - 1 :: steps] if read_after else y[:, ::steps]
    return y, state


def outer_parameters(rule: MemoryRule, k: Tensor, v: Tensor, outer) -> list[Tensor]:
    """The structure's outer parameters for this call, checked against its declared shapes: the given ones, or their
    initial values for every sequence-head when None."""
    N, d_in, d_out = k.shape[0], k.shape[-1], v.shape[-1]
    shapes = rule.structure.outer_shapes(d_in, d_out)
    if outer is None:
        return [p.to(k.device, k.dtype).expand(N, *p.shape) for p in rule.structure.init_outer(d_in, d_out)]
    outer = list(outer)
    got = [tuple(p.shape) for p in outer]
    want = [(N, *s) for s in shapes]
    if got != want:
        raise ComponentError(f"structure '{rule.structure.name}' takes outer parameters of shapes {want} "
                             f"(sequence-heads first), got {got}")
    return outer
