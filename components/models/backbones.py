"""Backbones: how memory and attention layers are arranged into a model (a registry, like the four axes).

    memory       every layer a memory layer (the LMM / memory-only model; DeltaNet, Titans LMM, Moneta...)
    transformer  every layer softmax attention (window > 0: sliding-window attention)
    hybrid       a repeating pattern of memory ('m') and attention ('a') layers, e.g. 'mma'
    mac          Titans memory-as-context: per segment retrieve -> attend (with persistent tokens) -> update
    mag          Titans memory-as-gate: sliding-window attention and the memory in parallel, gated together
    mal          Titans memory-as-layer: a memory layer, then sliding-window attention, in every layer
"""
from __future__ import annotations

import abc
from collections import Counter

from ..options import Option
from ..registry import Component, Registry

BACKBONES = Registry("backbone", "how memory and attention layers are arranged")


class Backbone(Component, abc.ABC):
    needs_memory: bool = True
    needs_attention: bool = False

    @abc.abstractmethod
    def mixers(self, layers: int) -> list[str]:
        """One entry per residual block: 'memory', 'attention', 'mac' or 'mag'."""

    def period(self) -> int:
        """Blocks after which the pattern of mixers repeats: mixers(n) is mixers(period) repeated, then cut."""
        return 1

    def mixer_counts(self, layers: int) -> Counter:
        """How many blocks of each mixer kind `layers` makes, without listing them (a million layers is a count)."""
        p = self.period()
        return Counter({k: v * (layers // p) for k, v in Counter(self.mixers(p)).items()}) + Counter(self.mixers(layers % p))

    def window(self) -> int:
        """Attention window in tokens; 0 is full causal attention."""
        return int(self.opts.get("window", 0))

    def label(self, rule: str | None) -> str:  # type: ignore[override]
        return rule or self.name


@BACKBONES.register("memory")
class MemoryOnly(Backbone):
    summary = "memory layers only (pre-norm RMSNorm, memory mixer, SwiGLU MLP in each block)"

    def mixers(self, layers: int) -> list[str]:
        return ["memory"] * layers


@BACKBONES.register("transformer")
class Transformer(Backbone):
    summary = "softmax attention in every layer (the baseline); window > 0 for sliding-window attention"
    needs_memory = False
    needs_attention = True
    options = (Option("window", int, 0, "attention window in tokens (0: full causal attention)", low=0, high=1 << 20),)

    def mixers(self, layers: int) -> list[str]:
        return ["attention"] * layers

    def label(self, rule: str | None) -> str:  # type: ignore[override]
        return f"swa{self.window()}" if self.window() else "transformer"


@BACKBONES.register("hybrid")
class Hybrid(Backbone):
    summary = "a repeating pattern of memory (m) and attention (a) layers, e.g. 'mma'"
    needs_attention = True
    options = (
        Option("pattern", str, "mma", "layer pattern of 'm' (memory) and 'a' (attention), repeated to the depth"),
        Option("window", int, 0, "attention window in tokens (0: full causal attention)", low=0, high=1 << 20),
    )

    def __init__(self, **opts) -> None:
        super().__init__(**opts)
        from ..options import ComponentError

        if not self.pattern or set(self.pattern) - {"m", "a"}:
            raise ComponentError(f"backbone 'hybrid' option 'pattern' must be letters m and a, got {self.pattern!r}")

    def period(self) -> int:
        return len(self.pattern)

    def mixers(self, layers: int) -> list[str]:
        names = {"m": "memory", "a": "attention"}
        return [names[self.pattern[i % len(self.pattern)]] for i in range(layers)]

    def label(self, rule: str | None) -> str:  # type: ignore[override]
        return f"{self.pattern}({rule})"


def _persistent(what: str) -> Option:
    return Option("persistent", int, 4, f"learned persistent-memory tokens {what}", low=0, high=1024)


class TitansHybrid(Backbone):
    """Titans' three ways of combining the memory with attention; named mac(rule), mag(rule), mal(rule)."""

    needs_attention = True

    def label(self, rule: str | None) -> str:  # type: ignore[override]
        return f"{self.name}({rule})"


@BACKBONES.register("mac")
class MemoryAsContext(TitansHybrid):
    summary = "Titans MAC: per segment, retrieved memory and persistent tokens are the context of attention"
    options = (
        Option("segment", int, 64, "segment length: attention runs within a segment", low=1, high=1 << 16),
        _persistent("prepended to every segment"),
    )

    def mixers(self, layers: int) -> list[str]:
        return ["mac"] * layers


@BACKBONES.register("mag")
class MemoryAsGate(TitansHybrid):
    summary = "Titans MAG: sliding-window attention and the memory branch in parallel, combined by a gate"
    options = (
        Option("window", int, 64, "sliding-window size of the attention branch", low=1, high=1 << 20),
        _persistent("every query of the attention branch sees"),
    )

    def mixers(self, layers: int) -> list[str]:
        return ["mag"] * layers


@BACKBONES.register("mal")
class MemoryAsLayer(TitansHybrid):
    summary = "Titans MAL: a memory layer, then sliding-window attention, in every layer"
    options = (
        Option("window", int, 64, "sliding-window size of the attention layers", low=1, high=1 << 20),
        _persistent("prepended to each memory layer's input"),
    )

    def mixers(self, layers: int) -> list[str]:
        return ["memory", "attention"] * layers
