"""The memory engine: one recurrence behind every component, and the paths that run it."""
from . import fla_backend  # noqa: F401  (registers path 'fla': flash-linear-attention's kernels on CUDA)
from .execution import BACKENDS, Backend, Execution, Plan, plan, register_backend
from .rule import AXES, MemoryRule, check_compatible, enumerate_rules, make_component
from .scan import memory_scan
from .state import MemoryState

__all__ = ["AXES", "BACKENDS", "Backend", "Execution", "MemoryRule", "MemoryState", "Plan", "check_compatible",
           "enumerate_rules", "make_component", "memory_scan", "plan", "register_backend"]
