"""Reading the project's YAML files (spaces, presets, configs) with one clear message for a broken file."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .options import ComponentError


def yaml_problem(err: Exception) -> str | None:
    """PyYAML's error as one line, 'line L, column C: what' (duplicate keys included), or None if not YAML's."""
    import yaml

    if not isinstance(err, yaml.YAMLError):
        return None
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    context = getattr(err, "context", None)
    context_mark = getattr(err, "context_mark", None)
    if context and context_mark is not None and context_mark.line != getattr(mark, "line", None):
        problem += f" ({context} at line {context_mark.line + 1})"
    return where + problem


def read_yaml(path: str | Path, what: str) -> Any:
    """The plain data of a YAML file (interpolations resolved); a missing or broken file raises ComponentError
    naming `what` (e.g. "search_space 'mine'"), the file and, for a syntax error or duplicate key, its line."""
    from omegaconf import OmegaConf

    path = Path(path)
    if not path.is_file():
        raise ComponentError(f"{what}: no such file {path}")
    try:
        return OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except Exception as err:  # YAML syntax, duplicate keys, interpolation
        problem = yaml_problem(err) or f"{type(err).__name__}: {err}"
        raise ComponentError(f"{what}: {path} is not valid YAML: {problem}") from None
