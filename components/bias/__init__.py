from .base import BIASES, AttentionalBias
from . import biases  # noqa: F401  (registers the built-in biases)

__all__ = ["BIASES", "AttentionalBias"]
