"""Compile a SearchSpace to an Optuna define-by-run function: `suggest(trial) -> TrialPlan`, `check(plan)`,
and the mapping of model presets onto the space's parameters (`enqueue_params`).

One walker visits the space in a fixed order (backbone first, so memory and attention keys are only visited
when the chosen backbone uses them; then the model's keys; then `train`). At every distribution or
multi-branch choice it asks a `pick(name, dist, loc, combo)` callback for the value: Optuna's `suggest_*` for
a trial, the plan's recorded value when re-checking a plan, the preset's value when enqueueing, and every
value in turn for the dry run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from components.models.backbones import BACKBONES
from components.models.spec import AXIS_KEYS
from components.options import ComponentError

from .schema import Branch, Choice, Dist, Fixed, Section, SpaceData, _same, _show

Pick = Callable[[str, Dist, tuple, bool], Any]


@dataclass
class TrialPlan:
    """One trial's sample: what to build and how to train it."""

    model: dict  # a spec mapping for components.models.resolve_spec (unmentioned keys take their defaults)
    train: dict  # training settings from the space's `train` section (searched and fixed), for every task
    params: dict  # Optuna parameters as suggested: name -> value
    values: dict = field(default_factory=dict, repr=False)  # params plus the space's fixed values, by name

    def spec(self):
        from components.models import resolve_spec

        return resolve_spec(self.model)


# ---------------------------------------------------------------------------------------------- walker
class _Walker:
    def __init__(self, space: SpaceData, pick: Pick) -> None:
        self.space, self.pick = space, pick
        self.params: dict[str, Any] = {}
        self.values: dict[str, Any] = {}

    def run(self) -> TrialPlan:
        model = self.model()
        train = {key: self.leaf(node, f"train.{key}", ("train", key)) for key, node in self.space.train.items()}
        return TrialPlan(model, train, dict(self.params), dict(self.values))

    def leaf(self, node, name: str, loc: tuple, combo: bool = False) -> Any:
        if isinstance(node, Fixed):
            self.values[name] = node.value
            return node.value
        value = self.pick(name, node, loc, combo)
        self.params[name] = self.values[name] = value
        return value

    def component(self, node: Choice, name: str, loc: tuple) -> tuple[str, dict, Branch]:
        if node.fixed:
            (bname,) = node.branches
            self.values[name] = bname
        else:
            bname = self.leaf(Dist("categorical", choices=tuple(node.branches)), name, loc, combo=True)
        branch = node.branches[bname]
        opts = {key: self.leaf(onode, f"{name}.{bname}.{key}", loc + (key,),
                               combo=isinstance(onode, Dist) and onode.kind == "categorical")
                for key, onode in branch.options.items()}
        return bname, opts, branch

    def model(self) -> dict:
        top: Section = self.space.model
        out: dict[str, Any] = {}
        over, prefix = None, ""
        node = top.children.get("backbone")
        if node is not None:
            bname, opts, branch = self.component(node, "backbone", ("backbone",))
            out["backbone"] = {"name": bname, **opts}
            over, prefix = branch.model, f"backbone.{bname}."
        else:
            bname = "memory"
        backbone = BACKBONES[bname]
        keys = [k for k in top.children if k != "backbone"]
        keys += [k for k in (over.children if over else {}) if k not in keys]
        for key in keys:
            if key == "memory" and not backbone.needs_memory or key == "attention" and not backbone.needs_attention:
                continue
            mine = top.children.get(key)
            theirs = over.children.get(key) if over is not None else None
            if key in ("memory", "attention"):
                out[key] = self.section(key, mine, theirs, prefix)
            elif theirs is not None:
                out[key] = self.leaf(theirs, prefix + key, (key,))
            else:
                out[key] = self.leaf(mine, key, (key,))
        return out

    def section(self, key: str, mine, theirs, prefix: str) -> dict | None:
        if theirs is not None and not isinstance(theirs, Section):  # memory: null under this backbone
            self.values[prefix + key] = None
            return None
        if not isinstance(mine, Section):
            if theirs is None:  # memory: null at the top
                self.values[key] = None
                return None
            mine = Section({})
        out = {}
        children = list(mine.children) + [k for k in (theirs.children if theirs else {}) if k not in mine.children]
        for child in children:
            if theirs is not None and child in theirs.children:
                node, name = theirs.children[child], f"{prefix}{key}.{child}"
            else:
                node, name = mine.children[child], f"{key}.{child}"
            loc = (key, child)
            if isinstance(node, Choice):
                cname, opts, _ = self.component(node, name, loc)
                out[child] = {"name": cname, **opts}
            else:
                out[child] = self.leaf(node, name, loc)
        return out


def walk(space: SpaceData, pick: Pick) -> TrialPlan:
    return _Walker(space, pick).run()


def named_nodes(space: SpaceData) -> dict:
    """Every name the space can assign: parameters (Dist: a multi-branch choice is categorical over its
    branch names) and fixed values (Fixed), in visiting order, whatever branch they sit under."""
    out: dict[str, Any] = {}

    def visit_component(node: Choice, name: str) -> None:
        names = tuple(node.branches)
        out[name] = Fixed(names[0]) if node.fixed else Dist("categorical", choices=names)
        for bname, branch in node.branches.items():
            for key, onode in branch.options.items():
                out[f"{name}.{bname}.{key}"] = onode
            if branch.model is not None:
                visit_section(branch.model, f"{name}.{bname}.")

    def visit_section(section: Section, prefix: str) -> None:
        for key, node in section.children.items():
            name = prefix + key
            if isinstance(node, Choice):
                visit_component(node, name)
            elif isinstance(node, Section):
                visit_section(node, name + ".")
            else:
                out[name] = node

    visit_section(space.model, "")
    for key, node in space.train.items():
        out[f"train.{key}"] = node
    return out


# ---------------------------------------------------------------------------------------------- suggest
def _suggest(trial) -> Pick:
    def pick(name: str, dist: Dist, loc: tuple, combo: bool) -> Any:
        if dist.kind == "int":
            return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
        if dist.kind == "float":
            return trial.suggest_float(name, dist.low, dist.high, log=dist.log)
        return trial.suggest_categorical(name, list(dist.choices))

    return pick


def suggest(space: SpaceData, trial) -> TrialPlan:
    """Define-by-run: one plan from an Optuna trial (Trial, FixedTrial, or anything with suggest_*)."""
    return walk(space, _suggest(trial))


def replay(space: SpaceData, params: dict) -> TrialPlan:
    """The plan that `params` (a plan's or a finished trial's parameters) describe."""

    def pick(name: str, dist: Dist, loc: tuple, combo: bool) -> Any:
        if name not in params:
            raise ComponentError(f"search_space '{space.name}': parameter '{name}' is missing")
        return params[name]

    return walk(space, pick)


# ---------------------------------------------------------------------------------------------- check
def forbidden(space: SpaceData, values: dict, unknown: Any = None) -> str | None:
    """The first forbid rule every name of which is present in `values` with a listed value, as a reason."""
    for i, rule in enumerate(space.constraints.forbid):
        hit = True
        for key, allowed in rule.items():
            allowed = allowed if isinstance(allowed, tuple) else (allowed,)
            if key not in values or (unknown is not None and values[key] is unknown):
                hit = False
                break
            if not any(_same(values[key], a) for a in allowed):
                hit = False
                break
        if hit:
            shown = ", ".join(f"{k}={_show(v) if not isinstance(v, tuple) else '|'.join(map(_show, v))}"
                              for k, v in rule.items())
            return f"forbidden by constraints.forbid[{i}]: {shown}"
    return None


def check(space: SpaceData, plan: TrialPlan) -> str | None:
    """The reason a plan must not be trained, or None: incompatible components or sizes (ArchitectureSpec
    validation, MemoryRule), a forbid rule, or over max_params / max_state (counted, never built)."""
    from components.models import ArchitectureSpec, resolve_spec

    try:
        spec = resolve_spec(plan.model)
    except ComponentError as err:
        return str(err)
    try:
        values = replay(space, plan.params).values
    except ComponentError as err:
        return str(err)
    reason = forbidden(space, values)
    if reason:
        return reason
    limits = space.constraints
    if limits.max_params is None and limits.max_state is None:
        return None
    sized = ArchitectureSpec(**{**{k: getattr(spec, k) for k in spec.__dataclass_fields__},
                                "vocab_size": space.vocab_size})
    try:
        params, state = _cost(space, sized)
    except ComponentError as err:
        return str(err)
    if limits.max_params is not None and params > limits.max_params:
        return f"{params:,} parameters exceed constraints.max_params = {limits.max_params:,}"
    if limits.max_state is not None and state > limits.max_state:
        return (f"a recurrent state of {state:,} numbers per sequence (at {space.state_seq_len} tokens) exceeds "
                f"constraints.max_state = {limits.max_state:,}")
    return None


def _cost(space: SpaceData, spec) -> tuple[int, int]:
    """(parameters, state numbers per sequence at the space's state length), counted without building the model
    (accounting.spec_size), cached by content hash."""
    from components.models.accounting import spec_size

    key = (spec.content_hash, space.state_seq_len)
    cache = space._cache.setdefault("cost", {})
    if key not in cache:
        cache[key] = spec_size(spec, space.state_seq_len)
    return cache[key]


def trial_settings(space: SpaceData, plan: TrialPlan) -> dict:
    """Per budget task: {'train': its TrainConfig settings with the plan's train values on top,
    'task': {'name': task, **options}} (what sweeps hands to TrainConfig.from_dict and build_task)."""
    return {name: {"train": {**t.train, **plan.train}, "task": {"name": name, **t.task}}
            for name, t in space.budget.tasks.items()}


# ---------------------------------------------------------------------------------------------- enqueue
def _lookup(data: Any, loc: tuple) -> tuple[bool, Any]:
    for key in loc:
        if not isinstance(data, dict) or key not in data:
            return False, None
        data = data[key]
    return True, data


def enqueue_params(space: SpaceData, preset: str) -> dict:
    """The preset's values on this space's parameter names, for `study.enqueue_trial(params)`.

    The preset decides its backbone, the four memory axes with every option (defaults filled), its gate coupling, and every
    other key its file sets (e.g. a chunk_size or gate_projection); sizes the preset leaves out (dim,
    layers, heads...) and the `train` values are not mapped, so the sampler picks them. Raises one
    ComponentError naming the parameter whose preset value this space cannot take."""
    from components.models import resolve_spec
    from components.models.presets import preset_dict

    target = resolve_spec(preset).to_dict()  # unknown preset: the registry-style message with known presets
    raw = preset_dict(preset)  # what the file itself sets

    def decided(loc: tuple) -> tuple[bool, Any]:
        """(whether the preset decides this location, its value there)."""
        if loc[0] == "train":
            return False, None
        if loc == ("backbone",):
            return True, target["backbone"]["name"]
        if loc[0] == "backbone":
            return _lookup(target, loc)
        if loc == ("memory", "gate_coupling") and target.get("memory") is not None:  # how its gates are made
            return True, target["memory"]["gate_coupling"]
        if loc[0] == "memory" and len(loc) > 1 and loc[1] in AXIS_KEYS:
            if target.get("memory") is None:
                return False, None
            return (True, target["memory"][loc[1]]["name"]) if len(loc) == 2 else _lookup(target, loc)
        found, _ = _lookup(raw, loc)
        return (True, _lookup(target, loc)[1]) if found else (False, None)

    params: dict[str, Any] = {}

    def pick(name: str, dist: Dist, loc: tuple, combo: bool) -> Any:
        known, value = decided(loc)
        if not known:
            return dist.representative()
        if not dist.contains(value):
            allowed = (f"among its choices {', '.join(map(_show, dist.choices))}" if dist.kind == "categorical"
                       else f"inside {dist.describe()}")
            raise ComponentError(f"preset '{preset}' is outside this space: {name} = {_show(value)} is not {allowed}")
        if dist.kind == "float":
            value = float(value)
        params[name] = value
        return value

    plan = walk(space, pick)
    try:
        got = _components_view(plan.model)
    except ComponentError as err:
        raise ComponentError(f"preset '{preset}' maps onto components this space rejects: {err}") from None
    # everything the preset decides must come out the same (fixed values and defaults included)
    for loc in _decided_locations(target, raw):
        want, have = _lookup(target, loc)[1], _lookup(got, loc)[1]
        if not _same(want, have):
            raise ComponentError(f"preset '{preset}' is outside this space: {_loc_name(loc, target)} is {_show(want)} "
                                 f"in the preset but {_show(have)} here (fixed, or left at its default, in this space)")
    return params


def _components_view(model: dict) -> dict:
    """A spec mapping with every default and every component's options filled in, like
    `resolve_spec(model).to_dict()`, but without size checks (the sizes a preset leaves to the space were picked
    arbitrarily, and a combination of them such as dim 32 with 3 heads must not fail the mapping)."""
    from components.engine.rule import MemoryRule
    from components.models import ArchitectureSpec

    out = ArchitectureSpec().to_dict()
    out.pop("preset", None)
    opts = dict(model.get("backbone") or {"name": "memory"})
    backbone = BACKBONES.create(opts.pop("name"), **opts)
    out["backbone"] = {"name": backbone.name, **backbone.opts}
    for key in ("dim", "layers", "mlp_hidden"):
        if key in model:
            out[key] = model[key]
    out["attention"].update(model.get("attention") or {})
    memory = model.get("memory", {})
    if not backbone.needs_memory or memory is None:
        out["memory"] = None
        return out
    rule = MemoryRule(*(memory.get(a, out["memory"][a]) for a in AXIS_KEYS))
    out["memory"].update({k: v for k, v in memory.items() if k not in AXIS_KEYS})
    out["memory"].update({a: {"name": p.name, **p.opts} for a, p in rule.parts.items()})
    return out


def _decided_locations(target: dict, raw: dict) -> list[tuple]:
    locs: list[tuple] = [("backbone", k) for k in target["backbone"]]
    if target.get("memory") is not None:
        locs += [("memory", a, k) for a in AXIS_KEYS for k in target["memory"][a]]
    else:
        locs.append(("memory",))

    def leaves(data: Any, loc: tuple) -> None:
        if isinstance(data, dict):
            for k, v in data.items():
                leaves(v, loc + (k,))
        else:
            locs.append(loc)

    for key, value in raw.items():
        if key in ("backbone", "preset"):
            continue
        if key == "memory" and isinstance(value, dict):
            for k, v in value.items():
                if k not in AXIS_KEYS:
                    leaves(v, ("memory", k))
        elif key != "memory":
            leaves(value, (key,))
    return locs


def _loc_name(loc: tuple, target: dict) -> str:
    """A spec location named like the space's parameters (memory.structure.expansion -> ...structure.mlp.expansion)."""
    if loc[0] == "backbone" and len(loc) == 2 and loc[1] != "name":
        return f"backbone.{target['backbone']['name']}.{loc[1]}"
    if loc[0] == "memory" and len(loc) == 3 and loc[1] in AXIS_KEYS:
        if loc[2] == "name":
            return f"memory.{loc[1]}"
        return f"memory.{loc[1]}.{target['memory'][loc[1]]['name']}.{loc[2]}"
    if loc == ("backbone", "name"):
        return "backbone"
    return ".".join(loc)
