"""The memory engine: one recurrence behind every component (see DESIGN.md)."""
from .rule import AXES, MemoryRule, check_compatible, enumerate_rules, make_component
from .scan import memory_scan
from .state import MemoryState

__all__ = ["AXES", "MemoryRule", "MemoryState", "check_compatible", "enumerate_rules", "make_component", "memory_scan"]
