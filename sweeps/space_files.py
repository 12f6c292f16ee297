"""`mirasweep space`: start a search space of your own in a config folder, list the spaces a sweep can name."""
from __future__ import annotations

import re
from pathlib import Path

from components.conf import config_path, find_config, list_configs, user_conf_dirs
from components.options import ComponentError

NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def starter_text(name: str, source: str) -> str:
    """The source space's YAML with its name set to `name`, how to run it, and the schema reference appended."""
    import search_space.schema as schema

    body = config_path("search_space", source, "search space").read_text()
    body = re.sub(r"^name:.*$", f"name: {name}", body, count=1, flags=re.M)
    if not re.search(r"^name:", body, flags=re.M):
        body = f"name: {name}\n" + body
    header = (f"# Search space '{name}', started from '{source}' by `mirasweep space new`.\n"
              f"#   check it:  mirasweep sweep search_space={name} --dry-run   (size, feasibility, samples; trains nothing)\n"
              f"#   run it:    mirasweep sweep search_space={name} sweep.n_trials=16\n"
              "#   what can go in it: mirasweep components (every component per axis, its options and ranges);\n"
              "#   the format is at the end of this file.\n")
    reference = "\n".join(f"# {line}".rstrip() for line in schema.__doc__.strip().splitlines())
    return f"{header}\n{body.rstrip()}\n\n# ---------------------------------------------------------------- reference\n{reference}\n"


def new_space(name: str, source: str = "quick", folder: Path | None = None) -> Path:
    """Write <folder>/search_space/<name>.yaml (folder: the first user config folder, else ./conf); refuses to
    overwrite a file or to shadow a shipped space by accident."""
    if not NAME.fullmatch(name):
        raise ComponentError(f"space new {name!r}: a name is letters, digits, '_', '-' and '.', e.g. my_space")
    folder = Path(folder) if folder is not None else (user_conf_dirs() or [Path.cwd() / "conf"])[0]
    target = folder / "search_space" / f"{name}.yaml"
    if target.exists():
        raise ComponentError(f"space new {name}: {target} exists; pick another name or edit that file")
    existing = find_config("search_space", name)
    if existing is not None:
        raise ComponentError(f"space new {name}: a search space '{name}' exists ({existing}) and this file would "
                             "shadow it; pick another name")
    text = starter_text(name, source)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return target


def spaces() -> list[tuple[str, Path]]:
    """Every space a sweep can name, with the file that name resolves to."""
    return [(name, find_config("search_space", name)) for name in list_configs("search_space")]
