"""A small generic registry: register classes by name, look them up with helpful errors, describe them."""
from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping

from .options import ComponentError, Option, closest


class Component:
    """Base of every registered component: declared options, validated at construction."""

    name: str = ""
    axis: str = ""
    summary: str = ""
    options: tuple[Option, ...] = ()

    def __init__(self, **opts: Any) -> None:
        declared = {o.name: o for o in self.options}
        for key in opts:
            if key not in declared:
                allowed = ", ".join(declared) or "none"
                raise ComponentError(
                    f"{self.axis} '{self.name}' has no option '{key}'{closest(key, list(declared))}; "
                    f"its options are: {allowed}"
                )
        self.opts = {
            name: opt.validate(opts.get(name, opt.default), f"{self.axis} '{self.name}'")
            for name, opt in declared.items()
        }

    def __getattr__(self, key: str) -> Any:
        opts = self.__dict__.get("opts")
        if opts is not None and key in opts:
            return opts[key]
        raise AttributeError(key)

    def incompatible(self, parts: dict) -> tuple[str, str] | None:
        """(axis of a conflicting component among `parts`, reason), or None when compatible."""
        return None

    def label(self) -> str:
        """Short name used in architecture names (e.g. 'mlp2')."""
        return self.name

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.opts.items())
        return f"{type(self).__name__}({args})"


class Registry(Mapping[str, type]):
    """Name -> component class, for one axis."""

    def __init__(self, axis: str, what: str) -> None:
        self.axis = axis
        self.what = what
        self._classes: dict[str, type[Component]] = {}

    def register(self, name: str) -> Callable[[type[Component]], type[Component]]:
        def deco(cls: type[Component]) -> type[Component]:
            if name in self._classes and self._classes[name] is not cls:
                raise ComponentError(f"{self.axis} '{name}' is already registered by {self._classes[name]!r}")
            cls.name = name
            cls.axis = self.axis
            self._classes[name] = cls
            return cls

        return deco

    def __getitem__(self, name: str) -> type[Component]:
        try:
            return self._classes[name]
        except KeyError:
            known = ", ".join(sorted(self._classes))
            raise ComponentError(
                f"unknown {self.axis} '{name}'{closest(name, list(self._classes))}; known {self.axis} components: {known}"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._classes))

    def __len__(self) -> int:
        return len(self._classes)

    def create(self, name: str, **opts: Any) -> Component:
        return self[name](**opts)

    def describe(self) -> list[dict]:
        return [
            {"name": n, "summary": c.summary, "options": [o.to_dict() for o in c.options]}
            for n, c in sorted(self._classes.items())
        ]
