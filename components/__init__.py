"""mirasweep components: the MIRAS axis registries, the memory engine and the model zoo."""
from .bias import BIASES
from .engine import AXES, MemoryRule, MemoryState, memory_scan
from .memory import STRUCTURES
from .optim import ALGORITHMS
from .options import ComponentError, Option
from .registry import Component, Registry
from .retention import RETENTIONS

__all__ = [
    "ALGORITHMS", "AXES", "BIASES", "RETENTIONS", "STRUCTURES", "Component", "ComponentError",
    "MemoryRule", "MemoryState", "Option", "Registry", "memory_scan",
]
