"""Parsing and validating a search-space mapping into the SpaceData of `schema.py`: every error is one
ComponentError naming the YAML path and what is allowed."""
from __future__ import annotations

import importlib
from dataclasses import MISSING, dataclass, fields
from typing import Any, Mapping, Sequence

from components.engine.rule import AXES
from components.models.backbones import BACKBONES
from components.models.spec import AXIS_KEYS, ArchitectureSpec, AttentionSpec, MemorySpec
from components.options import ComponentError, Option, closest

from .compile import enqueue_params, named_nodes
from .schema import (
    BRANCH_MODEL_KEYS, COMPONENT_PATHS, DIST_KEYS, DIST_KINDS, MODEL_SECTIONS, SCALAR, TOP_KEYS, Branch, Budget,
    BudgetTask, Choice, Constraints, Dist, Fixed, Objective, Section, SpaceData, _is_int, _is_number, _same, _show,
)


@dataclass(frozen=True)
class Leaf:
    """What a leaf key accepts: an Option (type, range, choices), whether null is allowed, an extra check."""

    option: Option
    owner: str
    nullable: bool = False
    check: Any = None  # callable(value, path) raising ComponentError; e.g. TrainConfig's validation


def _dataclass_leaves(cls, skip: Sequence[str], ranges: dict, owner: str) -> dict[str, Leaf]:
    """Leaf specs from a spec dataclass: types from the annotations, defaults, plus declared ranges."""
    out = {}
    instance = cls()
    for f in fields(cls):
        if f.name in skip:
            continue
        ann = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        base = ann.split("|")[0].strip()
        typ = {"int": int, "float": float, "bool": bool, "str": str}.get(base)
        if typ is None:
            continue
        low, high, choices = ranges.get(f.name, (None, None, ()))
        default = getattr(instance, f.name) if f.default is not MISSING or f.default_factory is not MISSING else None
        out[f.name] = Leaf(Option(f.name, typ, default, "", low=low, high=high, choices=tuple(choices)),
                           owner=owner, nullable="None" in ann)
    return out


def _model_leaves() -> dict[str, dict[str, Leaf]]:
    from components.layers.couplings import GATE_COUPLINGS
    from components.layers.gates import PROJECTIONS
    from components.layers.memory import OUTPUTS

    top = _dataclass_leaves(ArchitectureSpec, ("backbone", "memory", "attention", "preset", "vocab_size"),
                            {"dim": (1, None, ()), "layers": (1, None, ()), "mlp_hidden": (1, None, ())}, "model")
    memory = _dataclass_leaves(MemorySpec, AXIS_KEYS, {
        "heads": (1, None, ()), "head_dim": (1, None, ()), "chunk_size": (1, None, ()),
        "read": (None, None, ("after", "before")), "conv_size": (0, None, ()), "output": (None, None, OUTPUTS),
        "gate_projection": (None, None, PROJECTIONS), "gate_rank": (1, None, ()),
        "persistent_tokens": (0, None, ()), "max_lr": (0.0, None, ()),
        "gate_coupling": (None, None, tuple(GATE_COUPLINGS)), "retain_init": (0.0, 1.0, ())}, "memory")
    attention = _dataclass_leaves(AttentionSpec, (), {"heads": (1, None, ()), "rope_base": (1.0, None, ())},
                                  "attention")
    return {"model": top, "memory": memory, "attention": attention}


def all_options(cls) -> dict:
    """`all`: every declared option over its declared range (options without a range keep their default)."""
    out = {}
    for opt in cls.options:
        if opt.choices:
            out[opt.name] = Dist("categorical", choices=tuple(opt.choices))
        elif opt.type is bool:
            out[opt.name] = Dist("categorical", choices=(False, True))
        elif opt.type is int and opt.low is not None and opt.high is not None:
            out[opt.name] = Dist("int", int(opt.low), int(opt.high), log=bool(opt.log and opt.low >= 1))
        elif opt.type is float and opt.low is not None and opt.high is not None:
            out[opt.name] = Dist("float", float(opt.low), float(opt.high), log=bool(opt.log and opt.low > 0))
    return out


# ---------------------------------------------------------------------------------------------- parser
class _Parser:
    def __init__(self, name: str, source: str | None) -> None:
        self.name = name
        self.source = source
        self.leaves = _model_leaves()

    # ------------------------------------------------------------------------ errors
    def fail(self, path: str, message: str):
        where = f"{path}: " if path else ""
        raise ComponentError(f"search_space '{self.name}': {where}{message}")

    def keys(self, data: Mapping, allowed: Sequence[str], path: str, what: str = "") -> None:
        for key in data:
            if not isinstance(key, str) or key not in allowed:
                self.fail(_join(path, str(key)), f"unknown key '{key}'{closest(str(key), list(allowed))}; "
                                                 f"allowed {what or 'keys'}: {', '.join(allowed)}")

    def mapping(self, value: Any, path: str, what: str = "a mapping") -> Mapping:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail(path, f"expected {what}, got {value!r}")
        return value

    def wrap(self, path: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ComponentError as err:
            self.fail(path, str(err))

    # ------------------------------------------------------------------------ top level
    def space(self, data: Any) -> SpaceData:
        if not isinstance(data, Mapping):
            self.fail("", f"a search space is a mapping with keys {', '.join(TOP_KEYS)}; got {type(data).__name__}")
        if "name" in data:
            if not isinstance(data["name"], str) or not data["name"]:
                self.fail("name", f"expected a non-empty string, got {data['name']!r}")
            self.name = data["name"]
        self.keys(data, TOP_KEYS, "")
        for key in ("objectives", "budget"):
            if key not in data:
                self.fail(key, f"missing; a search space needs {key}" +
                          (" (e.g. [{metric: val/bpb, direction: minimize}])" if key == "objectives"
                           else " (e.g. {tasks: {lm: {train: {steps: 200}}}})"))
        description = data.get("description") or ""
        if not isinstance(description, str):
            self.fail("description", f"expected a string, got {description!r}")
        plugins = self.plugins(data.get("plugins"))
        model = self.model(data.get("model"), "model", top=True)
        train = self.train(data.get("train"))
        budget, task_metrics, vocab, seq = self.budget(data["budget"], train)
        objectives = self.objectives(data["objectives"], task_metrics)
        space = SpaceData(name=self.name, description=description, objectives=objectives, budget=budget,
                            model=model, train=train, constraints=Constraints(), plugins=plugins,
                            source=self.source, task_metrics=task_metrics, vocab_size=vocab, state_seq_len=seq)
        constraints = self.constraints(data.get("constraints"), space)
        space = _replace(space, constraints=constraints)
        enqueue = self.enqueue(data.get("enqueue"), space)
        return _replace(space, enqueue=enqueue)

    def plugins(self, value: Any) -> tuple:
        if value is None:
            return ()
        if isinstance(value, str) or not isinstance(value, Sequence):
            self.fail("plugins", f"expected a list of module names, got {value!r}")
        for i, module in enumerate(value):
            if not isinstance(module, str):
                self.fail(f"plugins[{i}]", f"expected a module name, got {module!r}")
            try:
                importlib.import_module(module)
            except Exception as err:  # ImportError, or the module's own error while registering
                self.fail(f"plugins[{i}]", f"cannot import '{module}': {type(err).__name__}: {err}")
        return tuple(value)

    # ------------------------------------------------------------------------ model
    def model(self, value: Any, path: str, top: bool, allowed: Sequence[str] | None = None) -> Section:
        data = self.mapping(value, path, "a mapping of model keys")
        leaves = self.leaves["model"]
        allowed = list(allowed or (["backbone", *leaves, *MODEL_SECTIONS]))
        if "vocab_size" in data:
            self.fail(_join(path, "vocab_size"), "not searched: each budget task sets the model's vocabulary")
        self.keys(data, allowed, path, "model keys")
        children: dict[str, Any] = {}
        for key, val in data.items():
            where = _join(path, key)
            if key == "backbone":
                children[key] = self.component(val, where, "backbone", BACKBONES)
            elif key in MODEL_SECTIONS:
                children[key] = self.section(val, where, key)
            else:
                children[key] = self.leaf(val, where, leaves[key])
        return Section(children)

    def section(self, value: Any, path: str, kind: str) -> Section | Fixed:
        if value is None:
            if kind == "memory":
                return Fixed(None)
            self.fail(path, "expected a mapping of attention keys (heads, rope_base)")
        if isinstance(value, Mapping) and set(value) & {*DIST_KINDS, "choice"}:
            self.fail(path, f"{kind} is a group of settings, not one value: put distributions on its keys "
                            f"({', '.join((list(AXIS_KEYS) if kind == 'memory' else []) + list(self.leaves[kind]))})")
        data = self.mapping(value, path, f"a mapping of {kind} keys" + (" or null" if kind == "memory" else ""))
        leaves = self.leaves[kind]
        allowed = (list(AXIS_KEYS) if kind == "memory" else []) + list(leaves)
        self.keys(data, allowed, path, f"{kind} keys")
        children = {}
        for key, val in data.items():
            where = _join(path, key)
            if key in AXIS_KEYS:
                children[key] = self.component(val, where, key, AXES[key])
            else:
                children[key] = self.leaf(val, where, leaves[key])
        return Section(children)

    # ------------------------------------------------------------------------ components
    def component(self, value: Any, path: str, axis: str, registry) -> Choice:
        forms = (f"a {axis} is a name ({', '.join(registry)}), {{name: NAME, option: value, ...}} "
                 f"or {{choice: [...] | {{NAME: options}} | all}}")
        if isinstance(value, str):
            return Choice(axis, {value: self.branch(value, {}, path, axis, registry)})
        if not isinstance(value, Mapping):
            self.fail(path, f"expected a component, got {value!r}; {forms}")
        dists = [k for k in DIST_KINDS if k in value]
        if dists:
            self.fail(path, f"{axis} is a component axis: a {{{dists[0]}: ...}} distribution cannot choose it; "
                            f"use {{choice: [...]}} (int/float/categorical are for options and sizes)")
        if "choice" in value:
            extra = [k for k in value if k != "choice"]
            if extra:
                self.fail(_join(path, str(extra[0])), f"unknown key '{extra[0]}' next to 'choice'; {forms}")
            return self.choice(value["choice"], _join(path, "choice"), axis, registry)
        if "name" in value:
            name = value["name"]
            if not isinstance(name, str):
                self.fail(_join(path, "name"), f"expected a {axis} name ({', '.join(registry)}), got {name!r}; "
                                               f"to search over components use {{choice: [...]}}")
            opts = {k: v for k, v in value.items() if k != "name"}
            return Choice(axis, {name: self.branch(name, opts, path, axis, registry)})
        key = next(iter(value), "")
        self.fail(_join(path, str(key)), f"unknown key '{key}'{closest(str(key), ['name', 'choice'])}; {forms}")

    def choice(self, value: Any, path: str, axis: str, registry) -> Choice:
        if value == "all":
            return Choice(axis, {n: Branch(n, all_options(registry[n]), None, all=True) for n in registry}, all=True)
        items: list[tuple[str, Any, str]] = []
        if isinstance(value, Mapping):
            for name, opts in value.items():
                items.append((str(name), opts, _join(path, str(name))))
        elif isinstance(value, Sequence) and not isinstance(value, str):
            for i, item in enumerate(value):
                if isinstance(item, str):
                    items.append((item, {}, _join(path, item)))
                elif isinstance(item, Mapping) and "name" in item:
                    if not isinstance(item["name"], str):
                        self.fail(f"{path}[{i}].name", f"expected a {axis} name, got {item['name']!r}")
                    items.append((item["name"], {k: v for k, v in item.items() if k != "name"},
                                  _join(path, item["name"])))
                elif isinstance(item, Mapping) and len(item) == 1:
                    (name, opts), = item.items()
                    items.append((str(name), opts, _join(path, str(name))))
                else:
                    self.fail(f"{path}[{i}]", f"expected a {axis} name or {{NAME: {{option: value}}}}, got {item!r}")
        else:
            self.fail(path, f"expected a list of {axis} components, a mapping NAME -> options, or 'all'; "
                            f"got {value!r}; known {axis} components: {', '.join(registry)}")
        if not items:
            self.fail(path, f"an empty choice; known {axis} components: {', '.join(registry)}")
        branches: dict[str, Branch] = {}
        for name, opts, where in items:
            if name in branches:
                self.fail(where, f"{axis} '{name}' appears twice in this choice")
            branches[name] = self.branch(name, opts, where, axis, registry)
        return Choice(axis, branches)

    def branch(self, name: str, opts: Any, path: str, axis: str, registry) -> Branch:
        if name not in list(registry):  # (Registry's `in` raises its own error for unknown names)
            self.wrap(path, registry.__getitem__, name)  # raises the registry's message (known names)
        cls = registry[name]
        if opts == "all":
            return Branch(name, all_options(cls), None, all=True)
        if opts is None:
            opts = {}
        if not isinstance(opts, Mapping):
            self.fail(path, f"options of {axis} '{name}' must be a mapping option -> value or distribution, "
                            f"or 'all'; got {opts!r}")
        declared = {o.name: o for o in cls.options}
        model_keys = BRANCH_MODEL_KEYS if axis == "backbone" else ()
        options: dict[str, Any] = {}
        overrides: dict[str, Any] = {}
        for key, val in opts.items():
            where = _join(path, str(key))
            if key in declared:
                options[key] = self.leaf(val, where, Leaf(declared[key], f"{axis} '{name}'"))
            elif key in model_keys:
                overrides[key] = val
            else:
                known = ", ".join(declared) or "none"
                extra = f"; model keys that may go under a backbone: {', '.join(model_keys)}" if model_keys else ""
                self.fail(where, f"unknown option '{key}'{closest(str(key), list(declared) + list(model_keys))}; "
                                 f"options of {axis} '{name}': {known}{extra}")
        model = self.model(overrides, path, top=False, allowed=BRANCH_MODEL_KEYS) if overrides else None
        return Branch(name, options, model)

    # ------------------------------------------------------------------------ leaves
    def leaf(self, value: Any, path: str, leaf: Leaf) -> Fixed | Dist:
        if isinstance(value, Mapping):
            if "choice" in value:
                self.fail(path, f"'choice' is for component axes ({', '.join(COMPONENT_PATHS)}); "
                                f"{self.takes(leaf)}: use {{categorical: [...]}} for a set of values")
            kinds = [k for k in DIST_KINDS if k in value]
            if not kinds:
                key = next(iter(value), "")
                self.fail(path, f"expected a value or a distribution ({{int: [lo, hi]}}, {{float: [lo, hi]}}, "
                                f"{{categorical: [...]}}); unknown key '{key}'{closest(str(key), list(DIST_KINDS))}; "
                                f"{self.takes(leaf)}")
            if len(kinds) > 1:
                self.fail(path, f"one distribution per key, got {', '.join(kinds)}")
            return self.dist(value, kinds[0], path, leaf)
        if isinstance(value, (list, tuple)):
            self.fail(path, f"a list is not a value here; for a set of values use {{categorical: [...]}}; "
                            f"{self.takes(leaf)}")
        return Fixed(self.value(value, path, leaf))

    def takes(self, leaf: Leaf) -> str:
        opt = leaf.option
        kind = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}[opt.type]
        rng = opt.describe_range()
        return (f"option '{opt.name}' of {leaf.owner} takes {kind}" + (f" in {rng}" if rng != "any" else "")
                + (" or null" if leaf.nullable else ""))

    def value(self, value: Any, path: str, leaf: Leaf) -> Any:
        if value is None and leaf.nullable:
            return None
        if not isinstance(value, SCALAR) or value is None:
            self.fail(path, f"expected a value, got {value!r}; {self.takes(leaf)}")
        value = self.wrap(path, leaf.option.validate, value, leaf.owner)
        if leaf.check is not None:
            leaf.check(value, path)
        return value

    def dist(self, data: Mapping, kind: str, path: str, leaf: Leaf) -> Dist:
        opt = leaf.option
        self.keys(data, DIST_KEYS[kind], path, f"keys of {'an' if kind == 'int' else 'a'} {kind} distribution")
        where = f"option '{opt.name}' of {leaf.owner}"
        if kind == "categorical":
            values = data["categorical"]
            if isinstance(values, str) or not isinstance(values, Sequence) or not values:
                self.fail(path, f"categorical needs a non-empty list of values; {self.takes(leaf)}")
            out = []
            for i, v in enumerate(values):
                if isinstance(v, (Mapping, list, tuple)):
                    self.fail(f"{path}.categorical[{i}]", f"categorical values are plain values, got {v!r}")
                v = self.value(v, f"{path}.categorical[{i}]", leaf)
                if any(_same(v, o) for o in out):
                    self.fail(f"{path}.categorical[{i}]", f"value {_show(v)} appears twice")
                out.append(v)
            return Dist("categorical", choices=tuple(out))
        if opt.type in (str, bool):
            self.fail(path, f"{'an' if kind == 'int' else 'a'} {kind} distribution cannot set {where}: it takes "
                            f"{'true or false' if opt.type is bool else 'a string'}"
                            + (f" in {opt.describe_range()}" if opt.choices else "") + "; use {categorical: [...]}")
        if kind == "float" and opt.type is int:
            self.fail(path, f"{where} is an integer: use {{int: [lo, hi]}}")
        bounds = data[kind]
        if not isinstance(bounds, Sequence) or isinstance(bounds, str) or len(bounds) != 2:
            self.fail(path, f"{kind} needs [lo, hi], got {bounds!r}")
        lo, hi = bounds
        ok = _is_int if kind == "int" else _is_number
        if not (ok(lo) and ok(hi)):
            self.fail(path, f"{kind} bounds must be {'integers' if kind == 'int' else 'numbers'}, got [{lo!r}, {hi!r}]")
        if kind == "float":
            lo, hi = float(lo), float(hi)
        if lo > hi:
            self.fail(path, f"bad range [{_show(lo)}, {_show(hi)}]: lo > hi")
        log = data.get("log", False)
        if not isinstance(log, bool):
            self.fail(_join(path, "log"), f"expected true or false, got {log!r}")
        step = data.get("step", 1)
        if kind == "int":
            if not _is_int(step) or step < 1:
                self.fail(_join(path, "step"), f"expected an integer >= 1, got {step!r}")
            if log and step != 1:
                self.fail(path, "an int distribution cannot have both log: true and a step")
            if (hi - lo) % step:
                self.fail(path, f"bad range [{lo}, {hi}] with step {step}: hi - lo must be a multiple of step")
        if log and lo <= 0:
            self.fail(path, f"bad range [{_show(lo)}, {_show(hi)}]: log scale needs lo > 0")
        below = opt.low is not None and lo < opt.low
        above = opt.high is not None and hi > opt.high
        if below or above:
            self.fail(path, f"bad range [{_show(lo)}, {_show(hi)}]: {where} is declared in {opt.describe_range()}")
        if leaf.check is not None:
            leaf.check(lo, path)
            leaf.check(hi, path)
        return Dist(kind, lo, hi, step=step, log=log)

    # ------------------------------------------------------------------------ train
    def train(self, value: Any) -> dict:
        from components.training import TrainConfig

        data = self.mapping(value, "train", "a mapping of TrainConfig keys")
        defaults = TrainConfig()
        allowed = [f.name for f in fields(TrainConfig)]
        self.keys(data, allowed, "train", "keys (TrainConfig)")
        out = {}
        for key, val in data.items():
            where = f"train.{key}"
            default = getattr(defaults, key)

            def check(v, path, key=key):
                self.wrap("", TrainConfig.from_dict, {key: v}, path)

            leaf = Leaf(Option(key, type(default), default, ""), owner="train", check=check)
            node = self.leaf(val, where, leaf)
            if key == "steps" and isinstance(node, Dist):
                self.fail(where, "steps is the budget, not a searched value: set budget.tasks.<task>.train.steps "
                                 "(and budget.rungs for multi-fidelity)")
            out[key] = node
        return out

    # ------------------------------------------------------------------------ budget and objectives
    def budget(self, value: Any, train: dict) -> tuple[Budget, dict, int, int]:
        from components.tasks import TASKS
        from components.training import TrainConfig

        data = self.mapping(value, "budget", "a mapping {tasks: {...}, rungs: [...]}")
        self.keys(data, ("tasks", "rungs"), "budget")
        tasks_data = data.get("tasks")
        if not isinstance(tasks_data, Mapping) or not tasks_data:
            self.fail("budget.tasks", f"expected a mapping task -> {{train: ..., task: ...}} with at least one "
                                      f"task; known tasks: {', '.join(TASKS)}")
        tasks, metrics, vocab, seq = {}, {}, 0, None
        for name, entry in tasks_data.items():
            where = f"budget.tasks.{name}"
            if name not in list(TASKS):
                self.wrap(where, TASKS.__getitem__, name)
            entry = self.mapping(entry, where, "a mapping {train: {...}, task: {...}}")
            self.keys(entry, ("train", "task"), where)
            train_cfg = dict(self.mapping(entry.get("train"), f"{where}.train", "a mapping of TrainConfig keys"))
            task_cfg = dict(self.mapping(entry.get("task"), f"{where}.task", "a mapping of task options"))
            for key in train_cfg:
                if key in train:
                    self.fail(f"{where}.train.{key}", f"also set in the top-level train section (train.{key}), "
                                                      f"which applies to every task; keep one")
            fixed_train = {k: v.value for k, v in train.items() if isinstance(v, Fixed)}
            self.wrap("", TrainConfig.from_dict, {**train_cfg, **fixed_train}, f"{where}.train")
            if "name" in task_cfg:
                self.fail(f"{where}.task.name", f"the task is named by its key ('{name}'); remove 'name'")
            task = self.wrap(f"{where}.task", TASKS.create, name, **task_cfg)
            metrics[name] = dict(task.metrics())
            vocab = max(vocab, int(task.vocab_size))
            if name == "lm":
                seq = int(task.seq_len)
            tasks[name] = BudgetTask(name, train_cfg, task_cfg)
        rungs = data.get("rungs") or []
        if isinstance(rungs, str) or not isinstance(rungs, Sequence):
            self.fail("budget.rungs", f"expected a list of training steps, got {rungs!r}")
        last = 0
        for i, r in enumerate(rungs):
            if not _is_int(r) or r <= last:
                self.fail(f"budget.rungs[{i}]", f"rungs are strictly increasing positive steps, got {list(rungs)}")
            for name, t in tasks.items():
                steps = train["steps"].value if "steps" in train else t.train.get("steps", TrainConfig().steps)
                if r > steps:
                    self.fail(f"budget.rungs[{i}]", f"rung {r} is beyond the {steps} training steps of task '{name}'")
            last = r
        return Budget(tasks, tuple(rungs)), metrics, vocab or 256, seq or 512

    def objectives(self, value: Any, task_metrics: dict) -> tuple:
        produced = "; ".join(f"{t}: {', '.join(m)}" for t, m in task_metrics.items())
        if isinstance(value, (str, Mapping)) or not isinstance(value, Sequence) or not value:
            self.fail("objectives", f"expected a non-empty list of {{metric: NAME, direction: minimize|maximize}}; "
                                    f"the budget tasks produce {produced}")
        out, seen = [], set()
        for i, item in enumerate(value):
            where = f"objectives[{i}]"
            if isinstance(item, str):
                item = {"metric": item}
            item = self.mapping(item, where, "{metric: NAME, direction: minimize|maximize}")
            self.keys(item, ("metric", "direction", "task"), where)
            metric = item.get("metric")
            if not isinstance(metric, str):
                self.fail(f"{where}.metric", f"expected a metric name; the budget tasks produce {produced}")
            task = item.get("task")
            if task is not None:
                if task not in task_metrics:
                    self.fail(f"{where}.task", f"'{task}' is not a budget task{closest(str(task), list(task_metrics))};"
                                               f" budget tasks: {', '.join(task_metrics)}")
                owners = [task] if metric in task_metrics[task] else []
                if not owners:
                    self.fail(f"{where}.metric", f"task '{task}' does not produce '{metric}'"
                                                 f"{closest(metric, list(task_metrics[task]))}; it produces "
                                                 f"{', '.join(task_metrics[task])}")
            else:
                owners = [t for t, m in task_metrics.items() if metric in m]
                if not owners:
                    every = [m for ms in task_metrics.values() for m in ms]
                    self.fail(f"{where}.metric", f"'{metric}' is not produced by any budget task"
                                                 f"{closest(metric, every)};"
                                                 f" the budget tasks produce {produced}")
                if len(owners) > 1:
                    self.fail(f"{where}", f"'{metric}' is produced by several budget tasks ({', '.join(owners)}); "
                                          f"say which with task: {owners[0]}")
            owner = owners[0]
            declared = task_metrics[owner][metric]
            direction = item.get("direction", declared)
            if direction not in ("minimize", "maximize"):
                self.fail(f"{where}.direction", f"expected minimize or maximize, got {direction!r}")
            if direction != declared:
                self.fail(f"{where}.direction", f"'{metric}' of task '{owner}' is to {declared}, not {direction}")
            if (owner, metric) in seen:
                self.fail(where, f"objective '{metric}' of task '{owner}' is listed twice")
            seen.add((owner, metric))
            out.append(Objective(metric, direction, owner))
        return tuple(out)

    # ------------------------------------------------------------------------ constraints and enqueue
    def constraints(self, value: Any, space: SpaceData) -> Constraints:
        data = self.mapping(value, "constraints", "a mapping {max_params, max_state, forbid}")
        self.keys(data, ("max_params", "max_state", "forbid"), "constraints")
        limits = {}
        for key in ("max_params", "max_state"):
            v = data.get(key)
            if isinstance(v, float) and v.is_integer():
                v = int(v)
            if v is not None and (not _is_int(v) or v < 1):
                self.fail(f"constraints.{key}", f"expected a positive integer or null, got {v!r}")
            limits[key] = v
        forbid = data.get("forbid") or []
        if isinstance(forbid, (str, Mapping)) or not isinstance(forbid, Sequence):
            self.fail("constraints.forbid", f"expected a list of {{parameter: value, ...}} mappings, got {forbid!r}")
        names = named_nodes(space)
        rules = []
        for i, rule in enumerate(forbid):
            where = f"constraints.forbid[{i}]"
            if not isinstance(rule, Mapping) or not rule:
                self.fail(where, f"expected a non-empty mapping {{parameter: value, ...}}, got {rule!r}")
            out = {}
            for key, val in rule.items():
                if key not in names:
                    self.fail(f"{where}.{key}", f"no parameter '{key}' in this space{closest(str(key), list(names))};"
                                                f" its parameters: {', '.join(names)}")
                node = names[key]
                values = tuple(val) if isinstance(val, (list, tuple)) else (val,)
                for v in values:
                    if isinstance(node, Fixed):
                        if not _same(v, node.value):
                            self.fail(f"{where}.{key}", f"'{key}' is fixed to {_show(node.value)} in this space, "
                                                        f"so {_show(v)} never occurs")
                    elif not node.contains(v):
                        self.fail(f"{where}.{key}", f"{_show(v)} is not a value of '{key}': {node.describe()}")
                out[key] = values if isinstance(val, (list, tuple)) else val
            rules.append(out)
        return Constraints(limits["max_params"], limits["max_state"], tuple(rules))

    def enqueue(self, value: Any, space: SpaceData) -> tuple:
        from components.models import list_presets

        if value is None:
            return ()
        if isinstance(value, str) or not isinstance(value, Sequence):
            self.fail("enqueue", f"expected a list of model presets; known presets: {', '.join(list_presets())}")
        for i, preset in enumerate(value):
            where = f"enqueue[{i}]"
            if not isinstance(preset, str):
                self.fail(where, f"expected a preset name, got {preset!r}")
            if preset not in list_presets():
                self.fail(where, f"unknown model preset '{preset}'{closest(preset, list_presets())}; "
                                 f"known presets: {', '.join(list_presets())}")
            self.wrap(where, enqueue_params, space, preset)
        return tuple(value)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _replace(space: SpaceData, **changes) -> SpaceData:
    from dataclasses import replace

    return replace(space, **changes)
