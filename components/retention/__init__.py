from .base import RETENTIONS, Retention
from . import gates  # noqa: F401  (registers the built-in retention gates)

__all__ = ["RETENTIONS", "Retention"]
