"""Experiment tracking in MLflow."""
from .mlflow_run import Tracker, default_uri, flatten

__all__ = ["Tracker", "default_uri", "flatten"]
