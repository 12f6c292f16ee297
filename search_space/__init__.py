"""YAML search spaces over the MIRAS axes, compiled to Optuna define-by-run functions.

    space = load_space("quick")                 # conf/search_space/quick.yaml, a path, or a mapping
    plan = space.suggest(trial)                  # TrialPlan(model=spec mapping, train=..., params=...)
    reason = space.check(plan)                   # None, or why it must not be trained
    study.enqueue_trial(space.enqueue_params("titans"))
    print(space.size()); space.sample(4, seed=0)

The schema is documented in `search_space.schema`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from .compile import TrialPlan
from .dry_run import SpaceSize
from .space import SearchSpace

__all__ = ["SearchSpace", "SpaceSize", "TrialPlan", "list_spaces", "load_space", "spaces_dir"]


def spaces_dir() -> Path:
    """The shipped conf/search_space/ (a user's config folders are searched first: components.conf)."""
    from components.conf import package_conf_dir

    return package_conf_dir() / "search_space"


def list_spaces() -> list[str]:
    from components.conf import list_configs

    return list_configs("search_space")


def load_space(space: str | Path | Mapping[str, Any]) -> SearchSpace:
    """A space's name (the user's config folders, then the shipped ones), a YAML file's path, or a mapping (e.g. a
    composed Hydra config) -> SearchSpace."""
    from components.conf import config_path

    if isinstance(space, SearchSpace):
        return space
    if isinstance(space, Mapping):
        return SearchSpace.from_dict(space)
    text = str(space)
    path = Path(text).expanduser()
    if text.endswith((".yaml", ".yml")) or "/" in text or path.is_file():
        return SearchSpace.from_yaml(path)
    return SearchSpace.from_yaml(config_path("search_space", text, "search space"))
