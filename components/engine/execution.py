"""How a memory rule is executed, kept apart from what it computes.

The rule (structure x bias x retention x algorithm), the chunk size and the read position fix the math. An
`Execution` says how to run it: which path or backend, whether a rule with an exact parallel form runs it exactly,
activation checkpointing, torch.compile. `plan` is the one place that turns both, and the device, into a concrete
path; the components never see it. A device backend (FLA's Triton kernels on CUDA) is one file that subclasses
`Backend` and calls `register_backend`.
"""
from __future__ import annotations

import abc
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

import torch

from ..memory import StackMemory
from ..options import ComponentError, closest

CHUNKED_PATHS = ("exact", "fused", "stack", "func")
MINI_BATCH_PATHS = ("fused", "stack", "func")


class Backend(abc.ABC):
    """A device backend: runs the rules it supports on kernels of its own, token by token exact."""

    name = ""
    auto = True  # whether path 'auto' takes it on a device where it is available

    @abc.abstractmethod
    def unavailable(self, device: torch.device, dtype: torch.dtype) -> str | None:
        """Why this backend cannot run on `device` with inputs of `dtype` (device type, library missing), or None."""

    @abc.abstractmethod
    def unsupported(self, rule, exact: bool, read_after: bool) -> str | None:
        """Why this backend cannot compute `rule` with these semantics, or None."""

    @abc.abstractmethod
    def scan(self, rule, state, inputs, read_after: bool, io_dtype: torch.dtype | None):
        """(y, new state) for the whole sequence. io_dtype: the autocast dtype of the call, if any."""


BACKENDS: dict[str, Backend] = {}


def register_backend(backend: Backend) -> Backend:
    BACKENDS[backend.name] = backend
    return backend


def known_paths() -> tuple[str, ...]:
    return ("auto", *CHUNKED_PATHS, "reference", *BACKENDS)


@dataclass(frozen=True)
class Execution:
    """path: 'auto' (by rule and device), a chunked path ('exact', 'fused', 'stack', 'func'), 'reference' (token by
    token, the oracle) or a registered backend ('fla').
    exact: run a rule that has an exact parallel form exactly (True), or in the mini-batch form with every gradient of
    a chunk at its start weights (False); None: exact where such a form exists. (This one changes the math of rules
    with the l2 bias; it lives here because it is the same choice of algorithm for one rule.)
    checkpoint: None keeps every chunk's activations for backward; n recomputes segments of n chunks; 'auto' segments
    of ceil(sqrt(chunks)). compile: each chunk step through torch.compile."""

    path: str = "auto"
    exact: bool | None = None
    checkpoint: int | str | None = None
    compile: bool = False

    def __post_init__(self) -> None:
        if self.path not in known_paths():
            raise ComponentError(f"path must be one of {', '.join(known_paths())}, got {self.path!r}")
        if self.exact not in (None, True, False):
            raise ComponentError(f"exact must be true, false or null, got {self.exact!r}")
        c = self.checkpoint
        if not (c in (None, "auto") or (isinstance(c, int) and not isinstance(c, bool) and c >= 0)):
            raise ComponentError(f"checkpoint must be null, 'auto' or a number of chunks >= 0, got {c!r}")
        if not isinstance(self.compile, bool):
            raise ComponentError(f"compile must be true or false, got {self.compile!r}")
        if self.compile and self.path == "reference":
            raise ComponentError("compile applies to the chunked paths; path 'reference' runs eagerly, token by token")

    @classmethod
    def of(cls, base: "Execution | Mapping[str, Any] | None" = None, **overrides: Any) -> "Execution":
        """An Execution from another, a mapping of its fields, or None, with keyword overrides."""
        if isinstance(base, Execution):
            values = asdict(base)
        else:
            values = dict(base or {})
        values.update(overrides)
        names = [f.name for f in fields(cls)]
        for key in values:
            if key not in names:
                raise ComponentError(f"execution: unknown setting '{key}'{closest(key, names)}; "
                                     f"allowed: {', '.join(names)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Plan:
    """The concrete path a call runs on, and the semantics it computes."""

    path: str  # 'reference', a chunked path, or a backend name
    exact: bool

    @property
    def backend(self) -> Backend | None:
        return BACKENDS.get(self.path)


def exact_parallel_supported(rule) -> bool:
    """Whether ExactStep (or KeyDecayStep) computes this rule: linear memory, affine bias, identity link, per-head
    gates or a decay per key channel."""
    retention = rule.retention
    return (
        not rule.algorithm.per_chunk
        and not rule.algorithm.uses_position
        and rule.structure.name == "linear"
        and rule.bias.prediction_slope is not None
        and retention.identity_link
        and retention.decay_axis in ("head", "key")
        and not rule.bias.gates()
    )


def auto_chunked_path(rule) -> str:
    """The chunked mini-batch path a rule takes by default: 'fused' where it applies, 'stack' for other stacks of
    linear layers, else the generic 'func'."""
    from .fused_stack import fused_supported

    if fused_supported(rule):
        return "fused"
    return "stack" if isinstance(rule.structure, StackMemory) else "func"


def plan(rule, execution: Execution, device: torch.device | str = "cpu", read_after: bool = True,
         dtype: torch.dtype = torch.float32) -> Plan:
    """Pick the path for a rule, its execution settings, a device and the input dtype; every refusal names the
    setting and why."""
    from .fused_stack import fused_supported

    device = torch.device(device)
    path, compile, checkpoint = execution.path, execution.compile, execution.checkpoint
    supported = exact_parallel_supported(rule)
    exact = execution.exact
    if exact is None:
        exact = supported and path not in MINI_BATCH_PATHS and not rule.algorithm.uses_position
    if exact and rule.algorithm.uses_position:
        raise ComponentError(f"exact=True: algorithm '{rule.algorithm.name}' scales each step by its position in the "
                             "chunk (its mini-batch), so chunk_size is part of its rule; use exact=False")
    if exact and rule.algorithm.per_chunk:
        raise ComponentError(f"exact=True: algorithm '{rule.algorithm.name}' updates the memory once per chunk, so "
                             "chunk_size is part of its rule and there is no token-by-token form; use exact=False")
    if exact and not supported:
        raise ComponentError(f"exact=True: rule {rule.name} has no exact parallel form (it needs a linear memory, "
                             "an l2 or dot bias, per-head gates and an identity link); use exact=False")
    if exact and path in MINI_BATCH_PATHS:
        raise ComponentError(f"path '{path}' computes the mini-batch form; pass exact=False or path='exact'")
    if not exact and path == "exact":
        raise ComponentError("path 'exact' computes the exact recurrence; it cannot run with exact=False")

    if path in BACKENDS:
        backend = BACKENDS[path]
        reason = backend.unavailable(device, dtype) or backend.unsupported(rule, exact, read_after)
        if reason:
            raise ComponentError(f"path '{path}': {reason}; use path 'auto'")
        if compile:
            raise ComponentError(f"compile: path '{path}' runs its own kernels; use compile=false")
        return Plan(path, exact)
    if path == "auto":
        for backend in BACKENDS.values():
            if backend.auto and not (backend.unavailable(device, dtype) or backend.unsupported(rule, exact, read_after)):
                return Plan(backend.name, exact)
        if exact:
            path = "exact"
        else:
            path = auto_chunked_path(rule)
            if compile and path == "fused":  # dynamo compiles the autograd-traced step, not a hand-written backward
                path = "stack"
    if path == "reference":
        return Plan(path, exact)
    if path == "fused" and not fused_supported(rule):
        raise ComponentError(f"path 'fused': rule {rule.name} needs a stack memory, an identity link, per-head gates "
                             "and the gradient at the weights themselves; use path 'stack' or 'auto'")
    if compile and path == "fused":
        raise ComponentError("compile: path 'fused' has a hand-written backward and runs eagerly; use path 'stack' "
                             "or 'auto' with compile")
    if path == "func" and rule.retention.decay_axis == "key":
        raise ComponentError(f"path 'func': rule {rule.name} decays its key channels, which the stack and exact paths "
                             "run (key_decay.py); use path 'auto'")
    if checkpoint and path == "func":
        raise ComponentError(f"checkpoint: rule {rule.name} runs on the torch.func path (a memory that is not a stack "
                             "of linear layers), which cannot run under activation checkpointing; use checkpoint=null")
    if compile and path == "func":
        raise ComponentError(f"compile: rule {rule.name} runs on the torch.func path (a memory that is not a stack of "
                             "linear layers), which is not compiled; use compile=false")
    return Plan(path, exact)
