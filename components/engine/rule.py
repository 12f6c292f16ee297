"""A memory rule: one compatible choice per MIRAS axis, checked before any tensor is built."""
from __future__ import annotations

from typing import Any, Mapping

from ..bias import BIASES, AttentionalBias
from ..memory import STRUCTURES, MemoryStructure
from ..optim import ALGORITHMS, MemoryAlgorithm
from ..options import ComponentError
from ..retention import RETENTIONS, Retention

AXES = {"structure": STRUCTURES, "bias": BIASES, "retention": RETENTIONS, "algorithm": ALGORITHMS}


def make_component(axis: str, choice: Any):
    """Build a component from a name, a {'name': ..., **options} mapping, or pass an instance through."""
    registry = AXES[axis]
    if isinstance(choice, str):
        return registry.create(choice)
    if isinstance(choice, Mapping):
        opts = dict(choice)
        if "name" not in opts:
            raise ComponentError(f"{axis} needs a 'name'; known {axis} components: {', '.join(registry)}")
        return registry.create(opts.pop("name"), **opts)
    if getattr(choice, "axis", None) == axis:
        return choice
    raise ComponentError(f"{axis} must be a component name or a mapping with 'name', got {choice!r}")


class MemoryRule:
    """structure x bias x retention x algorithm, validated for compatibility."""

    def __init__(self, structure: Any, bias: Any, retention: Any = "none", algorithm: Any = "gd") -> None:
        self.structure: MemoryStructure = make_component("structure", structure)
        self.bias: AttentionalBias = make_component("bias", bias)
        self.retention: Retention = make_component("retention", retention)
        self.algorithm: MemoryAlgorithm = make_component("algorithm", algorithm)
        self.parts = {"structure": self.structure, "bias": self.bias, "retention": self.retention, "algorithm": self.algorithm}
        check_compatible(self.parts)

    @property
    def name(self) -> str:
        return "·".join(p.label() for p in self.parts.values())

    def gates(self) -> dict[str, str]:
        """Data-dependent gates the rule reads: 'lr' always, plus what the components ask for."""
        out = {"lr": "head"}
        for part in (self.bias, self.retention, self.algorithm):
            out.update(part.gates())
        return out

    def read_weights(self, acc: list) -> list:
        """The weights a non-identity link reads from the accumulator, in the structure's canonical form (for an
        identity link the weights are the state itself, kept as they are)."""
        if self.retention.identity_link:
            return acc
        return self.structure.canonical(self.retention.link(acc))

    def check_dims(self, d_in: int, d_out: int) -> None:
        reason = self.structure.check_dims(d_in, d_out)
        if reason:
            raise ComponentError(f"structure '{self.structure.name}': {reason}")

    def __repr__(self) -> str:
        return f"MemoryRule({self.name})"


def check_compatible(parts: dict) -> None:
    """Raise one error naming both components of the first incompatible pair."""
    for axis in ("algorithm", "retention", "bias", "structure"):
        part = parts[axis]
        conflict = part.incompatible(parts)
        if conflict:
            other_axis, reason = conflict
            other = parts[other_axis]
            raise ComponentError(
                f"{axis} '{part.name}' is incompatible with {other_axis} '{other.name}': {reason}"
            )


def enumerate_rules(variants: dict[str, list[dict]] | None = None) -> tuple[list[MemoryRule], list[tuple[tuple, str]]]:
    """Every combination of registered components (default options, plus `variants` per component name).

    Returns the compatible rules and the rejected combinations with the reason.
    """
    import itertools

    variants = variants or {}
    choices = {axis: [dict(name=n, **opts) for n in reg for opts in variants.get(n, [{}])] for axis, reg in AXES.items()}
    ok, rejected = [], []
    for combo in itertools.product(*(choices[a] for a in AXES)):
        try:
            ok.append(MemoryRule(*combo))
        except ComponentError as err:
            rejected.append((combo, str(err)))
    return ok, rejected
