"""Search spaces in YAML: the schema, its validation, and the parsed `SearchSpace`.

A search space is one YAML file (``conf/search_space/<name>.yaml``) or the same mapping in Python::

    name: quick                      # optional; defaults to the file name
    description: tiny space for the quick start and tests
    objectives:                      # 1 -> single objective; several -> multi-objective (Pareto)
      - {metric: val/bpb, direction: minimize}
      - {metric: recall/mqar, direction: maximize}
      # direction may be left out (the metric's declared direction; a contrary one is an error); a metric
      # that several budget tasks produce (val/loss) needs `task: lm`; `- val/bpb` is short for {metric: val/bpb}
    budget:                          # per trial: each task trained separately with these settings
      tasks:                         # task name (lm, mqar, niah) -> {train: TrainConfig keys, task: task options}
        lm:   {train: {steps: 40, batch_size: 8}, task: {seq_len: 64, max_bytes: 1000000}}
        mqar: {train: {steps: 40, batch_size: 16}, task: {seq_len: 64, pairs: 4, ladder: ""}}
      rungs: [10, 40]                # optional multi-fidelity: evaluation steps reported as intermediate values
                                     # (strictly increasing, each at most every task's steps)
    model:                           # mirrors the ArchitectureSpec; leaves are fixed values or distributions
      dim: 32
      layers: {int: [1, 2]}
      backbone: memory               # or {choice: [memory, {mac: {segment: {categorical: [16, 32]}}}]}
      memory:                        # or null (for backbones without memory)
        heads: 2
        chunk_size: {categorical: [8, 16]}
        structure:
          choice:                    # conditional sub-spaces: options exist only under their parent choice
            linear: {}
            mlp: {depth: {int: [1, 2]}, expansion: {float: [1.0, 4.0], log: true}}
        bias: {choice: [dot, l2, {huber: {delta_mode: {categorical: [fixed, data]}}}]}
        retention: {choice: all}     # every registered component, every option over its declared range
        algorithm: {choice: [gd, momentum]}
      attention: {heads: 2}          # used only by backbones with attention
    train:                           # training hyper-parameters searched (applied to every budget task)
      lr: {float: [1.0e-3, 1.0e-2], log: true}
    constraints:
      max_params: 2000000            # parameters (counted at the largest budget task vocabulary)
      max_state: 1000000             # numbers per sequence (accounting.state_numel at the lm seq_len or 512)
      forbid:                        # combinations never trained (pruned with the reason)
        - {memory.structure: linear, memory.algorithm: momentum}
    enqueue: [titans, deltanet]      # presets tried first (their values mapped onto this space's parameters)

Top-level keys: name, description, plugins, objectives, budget, model, train, constraints, enqueue
(objectives and budget are required). ``plugins: [my_project.components]`` lists modules imported before
validation; they register extra components, which the space can then name (no import strings elsewhere).

Leaves
    A fixed value (checked against the key's type and range), or a distribution:
    ``{int: [lo, hi]}`` (optional ``step: 2``, ``log: true``), ``{float: [lo, hi]}`` (optional ``log: true``),
    ``{categorical: [a, b, ...]}``. Bounds must lie inside a component option's declared range (and its
    choices); ``log`` needs ``lo > 0``. Model leaves: ``dim layers mlp_hidden``; ``memory.``: ``heads head_dim
    chunk_size read exact conv_size output gate_projection gate_rank persistent_tokens max_lr gate_coupling
    retain_init``;
    ``attention.``: ``heads rope_base``. ``vocab_size`` is not searched: each task sets it.

Components
    ``backbone`` and the four axes ``memory.structure | bias | retention | algorithm`` take a component:
    a name (``l2``), ``{name: huber, delta_mode: data}`` (options may be distributions), or
    ``{choice: ...}`` whose value is a list of names / ``{name: {option: value-or-distribution}}``, a mapping
    ``name -> options``, or ``all`` (every registered component). A branch's options may be ``all`` too
    (``{mlp: all}``: every option over its declared range). Unmentioned options take their defaults.
    A backbone branch may also hold model keys (``dim layers mlp_hidden memory attention``) that apply only
    under it, deep-merged over the top-level ones (so a choice can sit inside a branch)::

        backbone: {choice: {memory: {}, mac: {segment: {categorical: [32, 64]}, memory: {chunk_size: 32}}}}

    Memory keys are ignored under a backbone without memory (transformer), attention keys under one without
    attention (memory).

Parameter names (Optuna)
    A leaf is named by its key path under ``model`` (``dim``, ``memory.chunk_size``, ``attention.heads``) or
    ``train.<key>``. A component choice is named by its axis path (``backbone``, ``memory.structure``), a
    branch option by ``<axis path>.<component>.<option>`` (``memory.structure.mlp.depth``), and a key under a
    backbone branch by ``backbone.<component>.<key path>`` (``backbone.mac.memory.chunk_size``). So a
    conditional parameter only exists when its parent choice is taken, and a name always has one distribution.
    Fixed values and one-branch choices are not Optuna parameters, but `forbid` may name them.

Forbid
    Each entry maps parameter names to a value, or to a list of values (any of them); a plan is rejected
    when every name in the entry is present in the plan with a listed value.

Validation happens when a space is loaded, before anything runs; the first problem raises one
`components.options.ComponentError` naming the YAML path and what is allowed, e.g.
``search_space 'quick': model.memory.structure.choice.mlp.depht: unknown option 'depht' (did you mean
'depth'?); options of structure 'mlp': depth, expansion, activation, residual, bias, norm_affine``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from components.models.spec import AXIS_KEYS


TOP_KEYS = ("name", "description", "plugins", "objectives", "budget", "model", "train", "constraints", "enqueue")
DIST_KINDS = ("int", "float", "categorical")
DIST_KEYS = {"int": ("int", "step", "log"), "float": ("float", "log"), "categorical": ("categorical",)}
SCALAR = (str, int, float, bool, type(None))
MODEL_SECTIONS = ("memory", "attention")
BRANCH_MODEL_KEYS = ("dim", "layers", "mlp_hidden", "memory", "attention")  # allowed under a backbone branch
COMPONENT_PATHS = ("backbone",) + tuple(f"memory.{a}" for a in AXIS_KEYS)


# ---------------------------------------------------------------------------------------------- nodes
@dataclass(frozen=True)
class Fixed:
    """A fixed value."""

    value: Any

    def to_yaml(self) -> Any:
        return self.value


@dataclass(frozen=True)
class Dist:
    """A distribution: int [low, high] (step, log), float [low, high] (log), or categorical choices."""

    kind: str
    low: Any = None
    high: Any = None
    step: int = 1
    log: bool = False
    choices: tuple = ()

    def to_yaml(self) -> dict:
        if self.kind == "categorical":
            return {"categorical": list(self.choices)}
        out: dict[str, Any] = {self.kind: [self.low, self.high]}
        if self.kind == "int" and self.step != 1:
            out["step"] = self.step
        if self.log:
            out["log"] = True
        return out

    def describe(self) -> str:
        if self.kind == "categorical":
            return "{categorical: [" + ", ".join(map(_show, self.choices)) + "]}"
        extra = (f", step: {self.step}" if self.step != 1 else "") + (", log: true" if self.log else "")
        return f"{{{self.kind}: [{_show(self.low)}, {_show(self.high)}]{extra}}}"

    def contains(self, value: Any) -> bool:
        if self.kind == "categorical":
            return any(_same(value, c) for c in self.choices)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.kind == "int":
            if isinstance(value, float) and not value.is_integer():
                return False
            return self.low <= value <= self.high and (int(value) - self.low) % self.step == 0
        return self.low <= value <= self.high

    def representative(self) -> Any:
        return self.choices[0] if self.kind == "categorical" else self.low

    def optuna(self):
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "int":
            return IntDistribution(self.low, self.high, log=self.log, step=self.step)
        if self.kind == "float":
            return FloatDistribution(self.low, self.high, log=self.log)
        return CategoricalDistribution(self.choices)


@dataclass(frozen=True)
class Section:
    """A mapping of keys to nodes (the model, its memory or attention settings)."""

    children: dict

    def to_yaml(self) -> dict:
        return {k: v.to_yaml() for k, v in self.children.items()}


@dataclass(frozen=True)
class Branch:
    """One component of a choice: its options (nodes) and, for a backbone, model keys that apply under it."""

    name: str
    options: dict
    model: Section | None = None
    all: bool = False

    def to_yaml(self) -> Any:
        if self.all:
            return "all"
        out = {k: v.to_yaml() for k, v in self.options.items()}
        if self.model is not None:
            out.update(self.model.to_yaml())
        return out


@dataclass(frozen=True)
class Choice:
    """A component axis: one branch is fixed; several are a categorical parameter over the branch names."""

    axis: str
    branches: dict
    all: bool = False

    @property
    def fixed(self) -> bool:
        return len(self.branches) == 1

    def to_yaml(self) -> Any:
        if self.all:
            return {"choice": "all"}
        if self.fixed:
            (branch,) = self.branches.values()
            if not branch.all:
                body = branch.to_yaml()
                return {"name": branch.name, **body} if body else branch.name
        return {"choice": {name: b.to_yaml() for name, b in self.branches.items()}}


@dataclass(frozen=True)
class Objective:
    metric: str
    direction: str
    task: str

    def to_yaml(self) -> dict:
        return {"metric": self.metric, "direction": self.direction, "task": self.task}


@dataclass(frozen=True)
class BudgetTask:
    """One task of the per-trial budget: its TrainConfig settings and its task options (as written)."""

    name: str
    train: dict
    task: dict

    def to_yaml(self) -> dict:
        return {"train": dict(self.train), "task": dict(self.task)}


@dataclass(frozen=True)
class Budget:
    tasks: dict  # name -> BudgetTask
    rungs: tuple = ()

    def to_yaml(self) -> dict:
        out: dict[str, Any] = {"tasks": {n: t.to_yaml() for n, t in self.tasks.items()}}
        if self.rungs:
            out["rungs"] = list(self.rungs)
        return out


@dataclass(frozen=True)
class Constraints:
    max_params: int | None = None
    max_state: int | None = None
    forbid: tuple = ()  # of dicts: parameter name -> value or tuple of values

    def to_yaml(self) -> dict:
        out: dict[str, Any] = {}
        if self.max_params is not None:
            out["max_params"] = self.max_params
        if self.max_state is not None:
            out["max_state"] = self.max_state
        if self.forbid:
            out["forbid"] = [{k: list(v) if isinstance(v, tuple) else v for k, v in rule.items()}
                             for rule in self.forbid]
        return out


# ---------------------------------------------------------------------------------------------- space
@dataclass(frozen=True)
class SpaceData:
    """A validated search space's contents. `search_space.space.SearchSpace` adds the operations (parse, suggest,
    check, size); the modules that implement them see only this data, so none of them imports another in a
    circle (schema <- parse, compile, dry_run <- space)."""

    name: str
    description: str
    objectives: tuple
    budget: Budget
    model: Section
    train: dict = field(default_factory=dict)  # TrainConfig key -> Fixed | Dist
    constraints: Constraints = field(default_factory=Constraints)
    enqueue: tuple = ()
    plugins: tuple = ()
    # derived at validation (not part of the identity)
    source: str | None = field(default=None, compare=False)
    task_metrics: dict = field(default_factory=dict, compare=False, repr=False)  # task -> {metric: direction}
    vocab_size: int = field(default=256, compare=False, repr=False)  # largest budget task vocabulary
    state_seq_len: int = field(default=512, compare=False, repr=False)  # lm seq_len, else 512
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def to_dict(self) -> dict:
        """A plain mapping that parses back to an equal space."""
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        if self.plugins:
            out["plugins"] = list(self.plugins)
        out["objectives"] = [o.to_yaml() for o in self.objectives]
        out["budget"] = self.budget.to_yaml()
        out["model"] = self.model.to_yaml()
        if self.train:
            out["train"] = {k: v.to_yaml() for k, v in self.train.items()}
        constraints = self.constraints.to_yaml()
        if constraints:
            out["constraints"] = constraints
        if self.enqueue:
            out["enqueue"] = list(self.enqueue)
        return out

    # -------------------------------------------------------------------------------- facts
    @property
    def directions(self) -> list[str]:
        return [o.direction for o in self.objectives]

    @property
    def metrics(self) -> list[str]:
        return [o.metric for o in self.objectives]

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

# ---------------------------------------------------------------------------------------------- helpers
def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _same(a: Any, b: Any) -> bool:
    """Equality that keeps bools apart from numbers (True != 1 here)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b or (isinstance(a, float) and isinstance(b, float) and math.isclose(a, b, rel_tol=1e-12))
    return type(a) is type(b) and a == b


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
