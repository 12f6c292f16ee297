"""Hydra composition of the primary configs (sweep.yaml, train.yaml) with command-line overrides.

Configs are searched in the user's folders first, then in the shipped ones (components.conf). A config group
may also be given a YAML file's path, e.g. `search_space=./my_space.yaml` or `model=~/models/mine.yaml`: the
file becomes that group's option named after the file's stem.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from components.conf import config_dirs, config_path
from components.options import ComponentError, closest
from components.yaml_files import read_yaml, yaml_problem

GROUPS = ("model", "task", "search_space", "launcher", "sampler", "pruner")


def _is_path(value: str) -> bool:
    return value.endswith((".yaml", ".yml")) or "/" in value


def _group_files(overrides: list[str], into: Path) -> list[str]:
    """Overrides with every `group=path/to/file.yaml` copied into `into`/group/ and replaced by `group=stem`."""
    out = []
    for item in overrides:
        key, eq, value = item.partition("=")
        group = key.lstrip("+~")
        if eq and group in GROUPS and _is_path(value):
            path = Path(value).expanduser()
            if not path.is_file():
                raise ComponentError(f"{item}: no such file {path.resolve()} (a {group} is a name from "
                                     f"{group}/ in the config folders or a path to a YAML file)")
            data = read_yaml(path, item)
            if not isinstance(data, dict):
                raise ComponentError(f"{item}: {path} must hold a mapping, got {type(data).__name__}")
            (into / group).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, into / group / f"{path.stem}.yaml")
            item = f"{key}={path.stem}"
        elif eq and group in GROUPS and value not in ("", "null"):
            config_path(group, value, group)  # unknown: the known names and the folders searched
        out.append(item)
    return out


def _broken_yaml(dirs: list[Path]) -> str | None:
    """The first config file in these folders that is not valid YAML, as read_yaml's message."""
    for d in dirs:
        for path in sorted(d.rglob("*.yaml")):
            try:
                read_yaml(path, str(path.relative_to(d).with_suffix("")))
            except ComponentError as err:
                return str(err)
    return None


def compose(config_name: str, overrides: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """-> (the resolved config as a dict, the chosen option of each config group, e.g. {'model': 'titans'})."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    with tempfile.TemporaryDirectory(prefix="mirasweep-conf-") as tmp:
        main = Path(tmp)
        overrides = _group_files(list(overrides), main)
        dirs = config_dirs()
        # Hydra reads the primary config from its main folder only: the first one found goes there, beside the
        # files given by path; the config folders follow, in order (first match wins)
        primary = next((d / f"{config_name}.yaml" for d in dirs if (d / f"{config_name}.yaml").is_file()), None)
        if primary is None:
            raise ComponentError(f"no {config_name}.yaml in the config folders {', '.join(map(str, dirs))}")
        shutil.copyfile(primary, main / primary.name)
        # Dotted keys are forced in (++): presets omit defaulted keys (sizes, options), and our own validation of
        # the composed config names an unknown key with its closest valid one, which Hydra's struct check does not.
        overrides = [o if o[0] in "+~" or "=" not in o or "." not in o.split("=", 1)[0] else "++" + o for o in overrides]
        search = [f"hydra.searchpath=[{','.join('file://' + str(d) for d in dirs)}]"]
        try:
            with initialize_config_dir(config_dir=str(main), version_base=None):
                cfg = hydra_compose(config_name, overrides=overrides + search, return_hydra_config=True)
        except (HydraException, OmegaConfBaseException) as err:
            raise ComponentError(f"{' '.join(overrides) or config_name}: {err}") from None
        except Exception as err:
            if yaml_problem(err) is None:
                raise
            raise ComponentError(_broken_yaml([main, *dirs]) or f"a config file is not valid YAML: {yaml_problem(err)}") from None
    choices = {k: v for k, v in cfg.hydra.runtime.choices.items() if not k.startswith("hydra")}
    data = OmegaConf.to_container(cfg, resolve=False)
    data.pop("hydra")
    config = OmegaConf.to_container(OmegaConf.create(data), resolve=True)
    _check_top_level(config, set(choices), primary)
    return config, choices


def _section_fields() -> dict[str, tuple[str, ...]]:
    """Keys a section may take beyond the ones its file writes (presets leave defaulted sizes out)."""
    from dataclasses import fields

    from components.models.spec import ArchitectureSpec
    from components.training import TrainConfig

    return {"model": tuple(f.name for f in fields(ArchitectureSpec)), "train": tuple(f.name for f in fields(TrainConfig))}


def _check_top_level(config: dict, groups: set[str], primary: Path) -> None:
    """A key `+key=value` added at the top (Hydra's own hint for an unknown key) that the config does not have is
    an error naming the section that has it (`+dim=-3` -> model.dim), not a silently ignored value."""
    more = _section_fields()
    written = read_yaml(primary, primary.stem) or {}
    allowed = groups | {k for k in written if k != "defaults"}
    for key in config:
        if key in allowed:
            continue
        homes = [f"{section}.{key}" for section, value in config.items() if section in allowed and
                 isinstance(value, dict) and (key in value or key in more.get(section, ()))]
        hint = f"did you mean {' or '.join(homes)}? " if homes else ""
        raise ComponentError(f"{key}: {primary.stem}.yaml has no top-level key '{key}'; {hint}"
                             f"top-level keys: {', '.join(sorted(allowed))}")
    for section, defaults in written.items():
        if isinstance(defaults, dict) and section not in groups and section not in more:
            _check_section(section, config.get(section), defaults)


def _check_section(section: str, values: Any, defaults: dict) -> None:
    """A section the primary file writes out in full (sweep, tracking): no key it lacks, and a value of the type
    its default has (an int where the default is an int...), so a typo is never a silently ignored setting."""
    if not isinstance(values, dict):
        raise ComponentError(f"{section}={values!r}: expected a mapping with keys {', '.join(defaults)}")
    for key, value in values.items():
        if key not in defaults:
            raise ComponentError(f"{section}.{key}: unknown key{closest(key, list(defaults))}; keys of {section}: "
                                 f"{', '.join(defaults)}")
        default = defaults[key]
        if default is None or value is None or isinstance(value, type(default)) and (
                isinstance(value, bool) == isinstance(default, bool)):
            continue
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            continue
        kind = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(type(default), type(default).__name__)
        raise ComponentError(f"{section}.{key}={value!r}: expected {kind} (default {default!r})")
