"""Where the YAML configs live: the user's config folders first, then the ones mirasweep ships.

Groups are folders (model/, search_space/, task/, launcher/, sampler/, pruner/) of NAME.yaml files. A user's
folder shadows the shipped one file by file, so `conf/model/mine.yaml` in the working directory is preset
`mine`, and `conf/search_space/quick.yaml` there replaces the shipped quick space. The folders searched:

1. every folder in $MIRASWEEP_CONFIG_DIR (os.pathsep-separated; `--config-dir` sets it, so the workers a sweep
   starts see the same files),
2. ./conf in the working directory, if there is one,
3. the shipped configs: the installed package `mirasweep_conf` (the repository's conf/), or $MIRASWEEP_CONF.
"""
from __future__ import annotations

import os
from pathlib import Path

from .options import ComponentError, closest

PACKAGE_ENV = "MIRASWEEP_CONF"  # replaces the shipped folder (tests, a site-wide copy)
USER_ENV = "MIRASWEEP_CONFIG_DIR"  # the user's folders, searched first


def package_conf_dir() -> Path:
    """The configs mirasweep ships (or $MIRASWEEP_CONF)."""
    if os.environ.get(PACKAGE_ENV):
        return Path(os.environ[PACKAGE_ENV])
    try:
        from importlib.resources import files

        return Path(str(files("mirasweep_conf")))
    except ModuleNotFoundError:  # a checkout on sys.path, not installed
        return Path(__file__).resolve().parents[1] / "conf"


def user_conf_dirs() -> list[Path]:
    dirs = [Path(d).expanduser().resolve() for d in os.environ.get(USER_ENV, "").split(os.pathsep) if d]
    local = Path.cwd() / "conf"
    if local.is_dir():
        dirs.append(local.resolve())
    return dirs


def config_dirs() -> list[Path]:
    """Every folder searched, first match wins, without repeats (./conf of a checkout is the shipped folder)."""
    out: list[Path] = []
    for d in [*user_conf_dirs(), package_conf_dir().resolve()]:
        if d not in out:
            out.append(d)
    return out


def use_config_dirs(dirs: list[str | Path]) -> None:
    """Search these folders first (the CLI's --config-dir), in this process and the ones it starts."""
    for d in dirs:
        if not Path(d).expanduser().is_dir():
            raise ComponentError(f"--config-dir {d}: no such folder")
    os.environ[USER_ENV] = os.pathsep.join(str(Path(d).expanduser().resolve()) for d in dirs)


def list_configs(group: str) -> list[str]:
    return sorted({p.stem for d in config_dirs() for p in (d / group).glob("*.yaml")})


def find_config(group: str, name: str) -> Path | None:
    for d in config_dirs():
        path = d / group / f"{name}.yaml"
        if path.is_file():
            return path
    return None


def config_path(group: str, name: str, what: str) -> Path:
    """The file of `group/name`, or ComponentError naming `what`, the known names and the folders searched."""
    path = find_config(group, name)
    if path is None:
        known = list_configs(group)
        raise ComponentError(f"unknown {what} '{name}'{closest(name, known)}; known: {', '.join(known) or 'none'} "
                             f"(searched {', '.join(str(d / group) for d in config_dirs())}), or give a path to "
                             "a YAML file")
    return path
