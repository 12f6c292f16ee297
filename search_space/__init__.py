"""YAML search spaces over the MIRAS axes, compiled to Optuna define-by-run functions."""
