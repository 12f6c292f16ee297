"""The `mirasweep` command line."""
from __future__ import annotations

import argparse
import json
import sys

from components.engine import AXES
from components.options import ComponentError


def _describe_all() -> dict:
    return {axis: {"what": reg.what, "components": reg.describe()} for axis, reg in AXES.items()}


def _print_components(axes: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for axis, info in axes.items():
        table = Table(title=f"{axis} — {info['what']}", title_justify="left", show_lines=False)
        table.add_column("name", style="bold cyan", no_wrap=True)
        table.add_column("description")
        table.add_column("options (type, default, range)")
        for comp in info["components"]:
            opts = "\n".join(
                f"{o['name']}: {o['type']} = {o['default']!r} in {_range(o)} — {o['help']}" for o in comp["options"]
            ) or "—"
            table.add_row(comp["name"], comp["summary"], opts)
        console.print(table)
    console.print("Combine one per axis, e.g. structure=mlp bias=huber retention=decay algorithm=momentum (Yaad-like).")


def _range(opt: dict) -> str:
    if "choices" in opt:
        return "{" + ", ".join(map(str, opt["choices"])) + "}"
    lo, hi = opt.get("low", "-inf"), opt.get("high", "inf")
    return f"[{lo}, {hi}]" + (" log" if opt.get("log") else "")


def cmd_components(args: argparse.Namespace) -> int:
    axes = _describe_all()
    if args.axis:
        if args.axis not in axes:
            raise ComponentError(f"--axis must be one of {', '.join(axes)}, got {args.axis!r}")
        axes = {args.axis: axes[args.axis]}
    if args.json:
        json.dump(axes, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print_components(axes)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mirasweep", description=__doc__.strip() + " — search the MIRAS design space.")
    sub = parser.add_subparsers(dest="command", required=True)
    comp = sub.add_parser("components", help="list every registered component per MIRAS axis with its options")
    comp.add_argument("--json", action="store_true", help="machine-readable output")
    comp.add_argument("--axis", help=f"only one axis: {', '.join(AXES)}")
    comp.set_defaults(func=cmd_components)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ComponentError as err:
        print(f"mirasweep: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
