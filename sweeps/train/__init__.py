"""Training one architecture on one task."""
from components.training import TrainConfig
from .errors import NonFiniteLoss, Preempted, Pruned, TrainingStopped
from .loop import TrainResult, train

__all__ = ["NonFiniteLoss", "Preempted", "Pruned", "TrainConfig", "TrainResult", "TrainingStopped", "train"]
