"""Layers of the model zoo: the memory layer, attention, feed-forward, short convolution and gates."""
from .attention import CausalSelfAttention, KVCache, RotaryEmbedding
from .conv import ShortConv
from .feedforward import SwiGLU
from .gates import GateProjection
from .memory import MemoryLayer, MemoryLayerState

__all__ = ["CausalSelfAttention", "GateProjection", "KVCache", "MemoryLayer", "MemoryLayerState", "RotaryEmbedding",
           "ShortConv", "SwiGLU"]
