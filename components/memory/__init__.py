from .base import STRUCTURES, MemoryStructure
from .stack import StackMemory
from . import structures  # noqa: F401  (registers the built-in structures)

__all__ = ["STRUCTURES", "MemoryStructure", "StackMemory"]
