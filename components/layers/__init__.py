"""Transformer building blocks of the model zoo: attention and feed-forward layers."""
from .attention import CausalSelfAttention, KVCache, RotaryEmbedding
from .feedforward import SwiGLU

__all__ = ["CausalSelfAttention", "KVCache", "RotaryEmbedding", "SwiGLU"]
