"""Language models assembled from an ArchitectureSpec: embedding -> residual blocks -> RMSNorm -> tied head."""
from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..engine import Execution
from ..layers import CausalSelfAttention, MemoryLayer, SwiGLU
from ..layers.norm import rms_norm
from .hybrids import MemoryAsContext, MemoryAsGate
from .spec import ArchitectureSpec


class Block(nn.Module):
    """Pre-norm residual block: x + mixer(RMSNorm(x)), then x + SwiGLU(RMSNorm(x))."""

    def __init__(self, dim: int, mixer: nn.Module, mlp_hidden: int | None) -> None:
        super().__init__()
        self.norm_mixer, self.mixer = rms_norm(dim), mixer
        self.norm_mlp, self.mlp = rms_norm(dim), SwiGLU(dim, mlp_hidden)

    def forward(self, x: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        y, state = self.mixer(self.norm_mixer(x), state)
        x = x + y
        return x + self.mlp(self.norm_mlp(x)), state


def build_mixer(kind: str, spec: ArchitectureSpec) -> nn.Module:
    """One token mixer of the spec: 'memory', 'attention', 'mac' or 'mag'."""
    backbone = spec.backbone_component()
    persistent = int(backbone.opts.get("persistent", 0))

    def memory(persistent_tokens: int | None = None) -> MemoryLayer:
        kw = spec.memory.layer_kwargs()
        kw["execution"] = Execution(exact=kw.pop("exact"))
        if persistent_tokens is not None:
            kw["persistent_tokens"] = persistent_tokens
        return MemoryLayer(spec.dim, spec.memory.rule(), **kw)

    def attention(window: int) -> CausalSelfAttention:
        return CausalSelfAttention(spec.dim, spec.attention.heads, window=window or None,
                                   rope_base=spec.attention.rope_base, conv_size=spec.attention.conv_size)

    if kind == "memory":
        # MAL prepends its persistent tokens to the memory layer's input
        return memory(persistent if backbone.name == "mal" and persistent else None)
    if kind == "attention":
        return attention(backbone.window())
    if kind == "mac":
        return MemoryAsContext(spec.dim, memory(), attention(0), backbone.segment, persistent)
    if kind == "mag":
        return MemoryAsGate(spec.dim, memory(), attention(backbone.window()), persistent)
    raise ValueError(f"unknown mixer kind {kind!r}")


class LanguageModel(nn.Module):
    def __init__(self, spec: ArchitectureSpec) -> None:
        super().__init__()
        self.spec = spec
        self.embed = nn.Embedding(spec.vocab_size, spec.dim)
        nn.init.normal_(self.embed.weight, std=0.02)
        kinds = spec.backbone_component().mixers(spec.layers)
        self.blocks = nn.ModuleList([Block(spec.dim, build_mixer(kind, spec), spec.mlp_hidden) for kind in kinds])
        self.norm = rms_norm(spec.dim)
        self.head = nn.Linear(spec.dim, spec.vocab_size, bias=False)
        self.head.weight = self.embed.weight  # tied

    def forward(self, tokens: Tensor, state: list | None = None) -> tuple[Tensor, list]:
        """tokens (batch, seq) -> logits (batch, seq, vocab) and the per-block state for the next piece."""
        x = self.embed(tokens)
        states = []
        for i, block in enumerate(self.blocks):
            x, s = block(x, None if state is None else state[i])
            states.append(s)
        return self.head(self.norm(x)), states

    @staticmethod
    def detach_state(state: list) -> list:
        return [s.detach() for s in state]
