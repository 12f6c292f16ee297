"""`SearchSpace`: a validated space (the data of `schema.SpaceData`) with its operations: parse, suggest, check,
enqueue, size and sample. Only this module sees all of parse, compile and dry_run."""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any, Mapping

from components.yaml_files import read_yaml

from . import compile as compiler
from . import dry_run
from .compile import TrialPlan
from .parse import _Parser
from .schema import Dist, SpaceData


class SearchSpace(SpaceData):
    """A validated search space. Build one with `SearchSpace.from_dict`, `from_yaml` or `load_space`."""

    # -------------------------------------------------------------------------------- construction
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], name: str | None = None, source: str | None = None) -> "SearchSpace":
        """Parse and validate a mapping (raises ComponentError naming the YAML path); a Hydra/OmegaConf config
        is converted to plain containers first."""
        from omegaconf import DictConfig, OmegaConf

        if isinstance(data, DictConfig):
            data = OmegaConf.to_container(data, resolve=True)
        parsed = _Parser(name or "space", source).space(data)
        return cls(**{f.name: getattr(parsed, f.name) for f in fields(parsed) if f.name != "_cache"})

    @classmethod
    def from_yaml(cls, path: str | Path) -> "SearchSpace":
        path = Path(path)
        data = read_yaml(path, f"search_space '{path.stem}'")
        return cls.from_dict(data if data is not None else {}, name=path.stem, source=str(path))

    # -------------------------------------------------------------------------------- compile / dry run
    def parameters(self) -> dict:
        """Every Optuna parameter the space can suggest: name -> optuna distribution."""
        return {name: node.optuna() for name, node in compiler.named_nodes(self).items() if isinstance(node, Dist)}

    def suggest(self, trial) -> TrialPlan:
        """Define-by-run: suggest one architecture and its training settings on an Optuna trial -> TrialPlan."""
        return compiler.suggest(self, trial)

    def check(self, plan: TrialPlan) -> str | None:
        """Why `plan` must not be trained (incompatible, forbidden, over a budget), or None."""
        return compiler.check(self, plan)

    def enqueue_params(self, preset: str) -> dict:
        """A preset's values on this space's parameter names (for `study.enqueue_trial`)."""
        return compiler.enqueue_params(self, preset)

    def trial_settings(self, plan: TrialPlan) -> dict:
        """Per budget task: {'train': budget train settings + the plan's train values, 'task': {name, **options}}."""
        return compiler.trial_settings(self, plan)

    def size(self) -> dry_run.SpaceSize:
        """Distinct component combinations, valid vs rejected (with reasons counted). See `dry_run.size`."""
        return dry_run.size(self)

    def sample(self, n: int, seed: int = 0, presets: bool = False) -> list[TrialPlan]:
        """`n` plans from Optuna's RandomSampler on an in-memory study, without training; with presets=True, first
        one plan per enqueued preset (the sampler picks what the preset leaves open, as in the sweep)."""
        enqueued = tuple(self.enqueue_params(name) for name in self.enqueue) if presets else ()
        return dry_run.sample(self, n, seed, enqueued)

    def feasibility(self, draws: int = dry_run.DRAWS, seed: int = 0) -> dry_run.Feasibility:
        """How many of `draws` random plans pass `check`, and the reasons of the others, counted."""
        return dry_run.feasibility(self, self.check, draws, seed)

    def require_valid(self, draws: int = dry_run.DRAWS, seed: int = 0) -> dry_run.Feasibility:
        """ComponentError, with the most common rejection reasons counted, when no trial of the space can train."""
        return dry_run.require_valid(self, self.check, draws, seed)
