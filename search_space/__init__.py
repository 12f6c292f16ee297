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

from components.options import ComponentError, closest

from .compile import TrialPlan
from .dry_run import SpaceSize
from .schema import SearchSpace

__all__ = ["SearchSpace", "SpaceSize", "TrialPlan", "list_spaces", "load_space", "spaces_dir"]


def spaces_dir() -> Path:
    """conf/search_space/ (follows $MIRASWEEP_CONF like the model presets)."""
    from components.models import conf_dir

    return Path(conf_dir()) / "search_space"


def list_spaces() -> list[str]:
    return sorted(p.stem for p in spaces_dir().glob("*.yaml"))


def load_space(space: str | Path | Mapping[str, Any]) -> SearchSpace:
    """A shipped space's name, a YAML file's path, or a mapping (e.g. a composed Hydra config) -> SearchSpace."""
    if isinstance(space, SearchSpace):
        return space
    if isinstance(space, Mapping):
        return SearchSpace.from_dict(space)
    text = str(space)
    path = Path(text).expanduser()
    if text.endswith((".yaml", ".yml")) or "/" in text or path.is_file():
        return SearchSpace.from_yaml(path)
    named = spaces_dir() / f"{text}.yaml"
    if not named.is_file():
        known = list_spaces()
        raise ComponentError(f"unknown search space '{text}'{closest(text, known)}; known search spaces: "
                             f"{', '.join(known) or 'none'} (in {spaces_dir()}), or give a path to a YAML file")
    return SearchSpace.from_yaml(named)
