"""Backbones: how memory and attention layers are arranged into a model (a registry, like the four axes).

    memory       every layer a memory layer (the LMM / memory-only model; DeltaNet, Titans LMM, Moneta...)
    transformer  every layer softmax attention (window > 0: sliding-window attention)
    hybrid       a repeating pattern of memory ('m') and attention ('a') layers, e.g. 'mma'
    mac          Titans memory-as-context: per segment retrieve -> attend (with persistent tokens) -> update
    mag          Titans memory-as-gate: sliding-window attention and the memory in parallel, gated together
    mal          Titans memory-as-layer: a memory layer, then sliding-window attention, in every layer
"""
from __future__ import annotations

from ..options import Option
from ..registry import Component, Registry

BACKBONES = Registry("backbone", "how memory and attention layers are arranged")


class Backbone(Component):
    needs_memory: bool = True
    needs_attention: bool = False

    def mixers(self, layers: int) -> list[str]:
        """One entry per residual block: 'memory', 'attention', 'mac' or 'mag'."""
        raise NotImplementedError

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

    def mixers(self, layers: int) -> list[str]:
        names = {"m": "memory", "a": "attention"}
        return [names[self.pattern[i % len(self.pattern)]] for i in range(layers)]

    def label(self, rule: str | None) -> str:  # type: ignore[override]
        return f"{self.pattern}({rule})"


@BACKBONES.register("mac")
class MemoryAsContext(Backbone):
    summary = "Titans MAC: per segment, retrieved memory and persistent tokens are the context of attention"
    needs_attention = True
    options = (
        Option("segment", int, 64, "segment length: attention runs within a segment", low=1, high=1 << 16),
        Option("persistent", int, 4, "learned persistent-memory tokens prepended to every segment", low=0, high=1024),
    )

    def mixers(self, layers: int) -> list[str]:
        return ["mac"] * layers

    def label(self, rule: str | None) -> str:  # type: ignore[override]
        return f"mac({rule})"


@BACKBONES.register("mag")
class MemoryAsGate(Backbone):
    summary = "Titans MAG: sliding-window attention and the memory branch in parallel, combined by a gate"
    needs_attention = True
    options = (
        Option("window", int, 64, "sliding-window size of the attention branch", low=1, high=1 << 20),
        Option("persistent", int, 4, "learned persistent tokens every query of the attention branch sees", low=0, high=1024),
    )

    def mixers(self, layers: int) -> list[str]:
        return ["mag"] * layers

    def label(self, rule: str | None) -> str:  # type: ignore[override]
        return f"mag({rule})"


@BACKBONES.register("mal")
class MemoryAsLayer(Backbone):
    summary = "Titans MAL: a memory layer, then sliding-window attention, in every layer"
    needs_attention = True
    options = (
        Option("window", int, 64, "sliding-window size of the attention layers", low=1, high=1 << 20),
        Option("persistent", int, 4, "learned persistent tokens prepended to each memory layer's input", low=0, high=1024),
    )

    def mixers(self, layers: int) -> list[str]:
        return ["memory", "attention"] * layers

    def label(self, rule: str | None) -> str:  # type: ignore[override]
        return f"mal({rule})"
