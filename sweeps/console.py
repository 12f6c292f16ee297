"""The console result tables print on: a terminal's width, else (a log, a pipe, CI) wide enough that no header
or value is cut to '…' at rich's default of 80 columns."""
from __future__ import annotations

import sys


def table_console():
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=240)
