from .base import ALGORITHMS, MemoryAlgorithm, StepInputs
from . import algorithms  # noqa: F401  (registers the built-in algorithms)

__all__ = ["ALGORITHMS", "MemoryAlgorithm", "StepInputs"]
