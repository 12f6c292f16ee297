"""Dry runs: how big a space is, and what its trials look like, without training anything.

`size(space)` counts the distinct component combinations: one branch per component choice (`backbone`,
`memory.structure|bias|retention|algorithm`, at any depth) times the categorical values of the chosen
components' options (e.g. huber's `delta_mode`). Each combination is checked for component compatibility
(backbone options, MemoryRule) and against the `forbid` rules that name only such component parameters
(a rule that also names a size, an int/float option or a train value cannot be decided here and is left to
`check`). Int/float options take their range's low end for the compatibility check.

`sample(space, n, seed)` asks `n` trials of Optuna's RandomSampler on an in-memory study.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from components.engine.rule import MemoryRule
from components.models.backbones import BACKBONES
from components.models.spec import AXIS_KEYS, MemorySpec
from components.options import ComponentError

from .compile import TrialPlan, forbidden, named_nodes, suggest, walk
from .schema import Dist, SpaceData

UNKNOWN = object()  # a non-combination parameter's value in the enumeration


@dataclass
class SpaceSize:
    combinations: int  # distinct component combinations
    valid: int
    rejected: int
    reasons: dict = field(default_factory=dict)  # reason -> how many combinations it rejects
    parameters: int = 0  # Optuna parameters the space can suggest (every branch)

    def __str__(self) -> str:
        lines = [f"{self.combinations} component combinations: {self.valid} valid, {self.rejected} rejected; "
                 f"{self.parameters} parameters"]
        lines += [f"  {count:>5} x {reason}" for reason, count in
                  sorted(self.reasons.items(), key=lambda kv: (-kv[1], kv[0]))]
        return "\n".join(lines)


def combinations(space: SpaceData):
    """Every distinct component combination, as (plan with representative sizes, values with UNKNOWN)."""
    path: list[int] = []
    while True:
        sizes: list[int] = []

        def pick(name: str, dist: Dist, loc: tuple, combo: bool) -> Any:
            if not combo:
                unknown.add(name)
                return dist.representative()
            i = len(sizes)
            if i == len(path):
                path.append(0)
            sizes.append(len(dist.choices))
            return dist.choices[path[i]]

        unknown: set[str] = set()
        plan = walk(space, pick)
        yield plan, {k: (UNKNOWN if k in unknown else v) for k, v in plan.values.items()}
        del path[len(sizes):]
        while path and path[-1] + 1 >= sizes[len(path) - 1]:
            path.pop()
        if not path:
            return
        path[-1] += 1


def incompatible(plan: TrialPlan) -> str | None:
    """Component compatibility only: the backbone's options and the memory rule (MemoryRule's message)."""
    model = plan.model
    try:
        opts = dict(model.get("backbone") or {"name": "memory"})
        backbone = BACKBONES.create(opts.pop("name"), **opts)
    except ComponentError as err:
        return f"backbone: {err}"
    memory = model.get("memory", {})
    if not backbone.needs_memory:
        return None
    if memory is None:
        return f"backbone '{backbone.name}' needs a memory layer (memory: null)"
    defaults = MemorySpec()
    axes = [memory.get(a, dict(getattr(defaults, a))) for a in AXIS_KEYS]
    try:
        rule = MemoryRule(*axes)
        MemoryRule(*({"name": p.name, **p.opts} for p in rule.parts.values()))  # as a resolved spec rebuilds it
    except ComponentError as err:
        return str(err)
    return None


def size(space: SpaceData) -> SpaceSize:
    reasons: Counter = Counter()
    total = valid = 0
    for plan, values in combinations(space):
        total += 1
        reason = incompatible(plan) or forbidden(space, values, unknown=UNKNOWN)
        if reason:
            reasons[reason] += 1
        else:
            valid += 1
    return SpaceSize(total, valid, total - valid, dict(reasons), parameters=sum(isinstance(n, Dist) for n in named_nodes(space).values()))


def sample(space: SpaceData, n: int, seed: int = 0, enqueued: tuple[dict, ...] = ()) -> list[TrialPlan]:
    """`n` plans from Optuna's RandomSampler(seed) on an in-memory study (nothing trained or stored), after one plan
    per `enqueued` parameter set (what the sweep enqueues for presets; the sampler fills what they leave open)."""
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(directions=space.directions, sampler=optuna.samplers.RandomSampler(seed=seed))
        for params in enqueued:
            study.enqueue_trial(params)
        plans = []
        for _ in range(n + len(enqueued)):
            trial = study.ask()
            plans.append(suggest(space, trial))
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        return plans
    finally:
        optuna.logging.set_verbosity(verbosity)


DRAWS = 256  # random plans checked for feasibility: a few seconds, and a space valid 2% of the time is missed
             # with probability 0.98^256 < 1%


@dataclass
class Feasibility:
    """Of `draws` random plans, how many pass every check, and why the others fail."""

    draws: int
    valid: int
    reasons: dict = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"{self.valid} of {self.draws} random draws pass every check (sizes, constraints, forbid)"]
        lines += [f"  {count:>5} x {reason}" for reason, count in _top(self.reasons)]
        return "\n".join(lines)


def _top(reasons: dict, n: int = 5) -> list[tuple[str, int]]:
    return sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


def feasibility(space: SpaceData, check, draws: int = DRAWS, seed: int = 0) -> Feasibility:
    """Check `draws` RandomSampler plans with `check(plan) -> reason | None` (the full check: sizes, memory rule,
    forbid, max_params/max_state counted without building). Reasons that differ only in their numbers count as
    one (shown by their first example)."""
    cache = space._cache.setdefault("feasibility", {})  # the sweep's check and its dry run's report: one measurement
    if (draws, seed) in cache:
        return cache[draws, seed]
    reasons: Counter = Counter()
    example: dict[str, str] = {}
    valid = 0
    for plan in sample(space, draws, seed):
        reason = check(plan)
        if reason:
            key = re.sub(r"\d[\d,.]*", "#", reason)
            shown = example.setdefault(key, reason)
            if shown != reason and not shown.endswith(_VARIES):
                example[key] = shown + _VARIES
            reasons[key] += 1
        else:
            valid += 1
    cache[draws, seed] = Feasibility(draws, valid, {example[k]: n for k, n in reasons.items()})
    return cache[draws, seed]


_VARIES = " (values vary)"


def require_valid(space: SpaceData, check, draws: int = DRAWS, seed: int = 0) -> Feasibility | None:
    """Raise ComponentError, with the most common rejection reasons counted, for a space with no valid trial:
    no valid component combination, or none of `draws` random plans passing `check`."""
    combos = size(space)
    where = f"search_space '{space.name}'"
    if combos.valid == 0:
        raise ComponentError(f"{where}: no valid architecture: all {combos.combinations} component combinations are "
                             "rejected:\n" + "\n".join(f"  {c} x {r}" for r, c in _top(combos.reasons)))
    found = feasibility(space, check, draws, seed)
    if found.valid == 0:
        raise ComponentError(f"{where}: no valid architecture: none of {draws} random draws passes every check "
                             "(sizes, constraints, forbid):\n" + "\n".join(f"  {c} x {r}" for r, c in _top(found.reasons))
                             + "\nwiden the ranges or the constraints that reject them")
    return found
