"""Typed options that components declare; they become search-space parameters and CLI docs."""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Sequence


class ComponentError(ValueError):
    """Bad component name, option or combination; the message says what is allowed."""


def closest(name: str, candidates: Sequence[str]) -> str:
    match = difflib.get_close_matches(str(name), list(candidates), n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


@dataclass(frozen=True)
class Option:
    """One declared option of a component: type, default and allowed range or choices."""

    name: str
    type: type
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple = field(default=())
    log: bool = False

    def describe_range(self) -> str:
        if self.choices:
            return "{" + ", ".join(map(str, self.choices)) + "}"
        if self.low is not None or self.high is not None:
            lo = "-inf" if self.low is None else f"{self.low:g}"
            hi = "inf" if self.high is None else f"{self.high:g}"
            return f"[{lo}, {hi}]" + (" log" if self.log else "")
        return "any"

    def validate(self, value: Any, owner: str) -> Any:
        where = f"option '{self.name}' of {owner}"
        if self.type is bool:
            if not isinstance(value, bool):
                raise ComponentError(f"{where} must be true or false, got {value!r}")
        elif self.type is int:
            if isinstance(value, bool) or not isinstance(value, int):
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
                else:
                    raise ComponentError(f"{where} must be an integer in {self.describe_range()}, got {value!r}")
        elif self.type is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ComponentError(f"{where} must be a number in {self.describe_range()}, got {value!r}")
            value = float(value)
        elif self.type is str and not isinstance(value, str):
            raise ComponentError(f"{where} must be one of {self.describe_range()}, got {value!r}")
        if self.choices and value not in self.choices:
            raise ComponentError(f"{where} must be one of {self.describe_range()}, got {value!r}")
        if self.low is not None and value < self.low or self.high is not None and value > self.high:
            raise ComponentError(f"{where} must be in {self.describe_range()}, got {value!r}")
        return value

    def to_dict(self) -> dict:
        out = {"name": self.name, "type": self.type.__name__, "default": self.default, "help": self.help}
        if self.choices:
            out["choices"] = list(self.choices)
        if self.low is not None:
            out["low"] = self.low
        if self.high is not None:
            out["high"] = self.high
        if self.log:
            out["log"] = True
        return out
