"""Tasks a trial trains and is scored on: language modelling, MQAR, needle in a haystack."""
from .base import IGNORE, TASKS, Batch, Task
from . import lm, mqar, niah  # noqa: F401  (registers the built-in tasks)

__all__ = ["IGNORE", "TASKS", "Batch", "Task"]
