"""ArchitectureSpec: a frozen, serialisable description of one architecture (like a model's config class).

    {dim, layers, vocab_size, mlp_hidden, backbone: {name, **options},
     memory: {structure, bias, retention, algorithm (each {name, **options}), heads, chunk_size, ...} | None,
     attention: {heads, rope_base, conv_size}}

`from_dict` validates every key (unknown keys are named with the closest valid one) and fills every
component's defaults, so `to_dict` is complete and two specs of the same model compare and hash equal.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Mapping

from ..engine import MemoryRule
from ..options import ComponentError, closest
from .backbones import BACKBONES, Backbone

AXIS_KEYS = ("structure", "bias", "retention", "algorithm")


def _check_keys(data: Mapping, allowed: list[str], where: str) -> None:
    for key in data:
        if key not in allowed:
            raise ComponentError(f"{where}: unknown key '{key}'{closest(key, allowed)}; allowed keys: {', '.join(allowed)}")


def _typed(cls, data: Mapping, where: str):
    """Build a small config dataclass from a mapping, checking keys and scalar types."""
    names = [f.name for f in fields(cls)]
    _check_keys(data, names, where)
    kwargs = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
        if kind.startswith("int") and not (isinstance(value, int) and not isinstance(value, bool)):
            if not (value is None and "None" in kind):
                raise ComponentError(f"{where}.{f.name} must be an integer, got {value!r}")
        if kind.startswith("float") and (isinstance(value, bool) or not isinstance(value, (int, float))):
            if not (value is None and "None" in kind):
                raise ComponentError(f"{where}.{f.name} must be a number, got {value!r}")
        kwargs[f.name] = float(value) if kind.startswith("float") and value is not None else value
    return cls(**kwargs)


@dataclass(frozen=True)
class MemorySpec:
    """The memory layer: one choice per MIRAS axis plus the layer's own settings."""

    structure: Mapping = field(default_factory=lambda: {"name": "linear"})
    bias: Mapping = field(default_factory=lambda: {"name": "l2"})
    retention: Mapping = field(default_factory=lambda: {"name": "none"})
    algorithm: Mapping = field(default_factory=lambda: {"name": "gd"})
    heads: int = 4
    head_dim: int | None = None
    chunk_size: int = 64
    read: str = "after"
    exact: bool | None = None
    conv_size: int = 4
    output: str = "gated"
    gate_projection: str = "linear"
    gate_rank: int = 16
    persistent_tokens: int = 0
    max_lr: float = 1.0
    gate_coupling: str = "independent"
    retain_init: float | None = None  # the retention gate's start; None: 0.99, or 0.9995 for x + LN(MLP) memories

    def rule(self) -> MemoryRule:
        return MemoryRule(*(dict(getattr(self, a)) for a in AXIS_KEYS))

    def layer_kwargs(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in AXIS_KEYS}


@dataclass(frozen=True)
class AttentionSpec:
    heads: int = 4
    rope_base: float = 10000.0
    conv_size: int = 0  # taps of a short causal convolution over q/k/v (0: none)


@dataclass(frozen=True)
class ArchitectureSpec:
    dim: int = 128
    layers: int = 4
    vocab_size: int = 256
    mlp_hidden: int | None = None
    backbone: Mapping = field(default_factory=lambda: {"name": "memory"})
    memory: MemorySpec | None = field(default_factory=MemorySpec)
    attention: AttentionSpec = field(default_factory=AttentionSpec)
    preset: str | None = field(default=None, compare=False)  # where it came from; not part of the identity

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "model") -> "ArchitectureSpec":
        data = dict(data)
        _check_keys(data, [f.name for f in fields(cls)], where)
        backbone = cls._backbone(data.get("backbone", {"name": "memory"}), f"{where}.backbone")
        memory = data.get("memory", MISSING)
        if backbone.needs_memory:
            if memory is None:
                raise ComponentError(f"{where}.memory: backbone '{backbone.name}' needs a memory layer")
            memory = cls._memory(memory if memory is not MISSING else {}, f"{where}.memory")
        else:
            memory = None
        top = {k: v for k, v in data.items() if k in ("dim", "layers", "vocab_size", "mlp_hidden", "preset")}
        spec = _typed(cls, top, where)
        attention = _typed(AttentionSpec, data.get("attention") or {}, f"{where}.attention")
        spec = cls(**{**{f.name: getattr(spec, f.name) for f in fields(cls)},
                      "backbone": {"name": backbone.name, **backbone.opts}, "memory": memory, "attention": attention})
        spec.validate(where)
        return spec

    @staticmethod
    def _backbone(value: Any, where: str) -> Backbone:
        try:
            if isinstance(value, str):
                return BACKBONES.create(value)
            opts = dict(value)
            return BACKBONES.create(opts.pop("name", "memory"), **opts)
        except ComponentError as err:
            raise ComponentError(f"{where}: {err}") from None

    @staticmethod
    def _memory(value: Mapping, where: str) -> MemorySpec:
        value = dict(value)
        axes = {}
        for axis in AXIS_KEYS:
            choice = value.pop(axis, getattr(MemorySpec(), axis))
            choice = {"name": choice} if isinstance(choice, str) else dict(choice)
            axes[axis] = choice
        try:
            rule = MemoryRule(*(axes[a] for a in AXIS_KEYS))
        except ComponentError as err:
            raise ComponentError(f"{where}: {err}") from None
        resolved = {axis: {"name": part.name, **part.opts} for axis, part in rule.parts.items()}
        layer = _typed(MemorySpec, value, where)
        return MemorySpec(**{**layer.layer_kwargs(), **resolved})

    def validate(self, where: str = "model") -> None:
        if self.dim < 1 or self.layers < 1 or self.vocab_size < 2:
            raise ComponentError(f"{where}: dim and layers must be >= 1 and vocab_size >= 2")
        if self.memory is not None:
            m = self.memory
            if m.head_dim is None and self.dim % m.heads:
                raise ComponentError(f"{where}.memory.heads: dim {self.dim} is not divisible by {m.heads} heads; set head_dim")
            head_dim = m.head_dim or self.dim // m.heads
            self.memory.rule().check_dims(head_dim, head_dim)
            from ..layers.couplings import GATE_COUPLINGS

            try:  # an unknown coupling, or one the rule's gates cannot take, is refused before any tensor
                coupling = GATE_COUPLINGS.create(m.gate_coupling)
                reason = coupling.check(self.memory.rule())
                if reason:
                    raise ComponentError(reason)
            except ComponentError as err:
                raise ComponentError(f"{where}.memory.gate_coupling: {err}") from None
            if m.retain_init is not None and not 0 < m.retain_init < 1:
                raise ComponentError(f"{where}.memory.retain_init must be in (0, 1) or null, got {m.retain_init}")
            if not m.max_lr > 0:
                raise ComponentError(f"{where}.memory.max_lr must be > 0 (the inner learning rate's ceiling), "
                                     f"got {m.max_lr}")
        if self.backbone_component().needs_attention and self.dim % self.attention.heads:
            raise ComponentError(f"{where}.attention.heads: dim {self.dim} is not divisible by {self.attention.heads} heads")
        if self.attention.conv_size < 0:
            raise ComponentError(f"{where}.attention.conv_size must be >= 0 (0: no convolution), got {self.attention.conv_size}")

    def backbone_component(self) -> Backbone:
        opts = dict(self.backbone)
        return BACKBONES.create(opts.pop("name"), **opts)

    # ---------------------------------------------------------------- identity
    def to_dict(self) -> dict:
        out = asdict(self)
        out["backbone"] = dict(self.backbone)
        if self.memory is not None:
            out["memory"] = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in asdict(self.memory).items()}
        return out

    @property
    def name(self) -> str:
        """Short and stable: the memory rule's name (e.g. mlp2·huber·decay·momentum), wrapped by the backbone."""
        rule = None if self.memory is None else self.memory.rule().name
        return self.backbone_component().label(rule)

    @property
    def content_hash(self) -> str:
        data = self.to_dict()
        data.pop("preset", None)
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:12]

    def __hash__(self) -> int:
        return hash(self.content_hash)
