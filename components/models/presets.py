"""Presets of known models (conf/model/*.yaml) and the Python API to build a model or a layer.

    build_model("titans", ["dim=256", "memory.structure.depth=3"])     # a preset with overrides
    build_model({"memory": {"structure": "mlp", "bias": "huber"}})    # an explicit spec
    layer = build_layer("gated_deltanet", dim=64)                     # one token mixer
    y, state = layer(x); y2, state = layer(x2, state)                 # streaming

Overrides use Hydra's dotted `key=value` syntax (values parsed as YAML). components does not depend on
Hydra: presets are self-contained YAML files, read with OmegaConf, so the sweep's Hydra configs and this
API see the same files.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch import nn

from ..conf import config_path, list_configs, package_conf_dir
from ..options import ComponentError
from ..yaml_files import read_yaml
from .lm import LanguageModel, build_mixer
from .spec import ArchitectureSpec

def conf_dir() -> Path:
    """The configs mirasweep ships (see components.conf for the user's folders searched before them)."""
    return package_conf_dir()


def list_presets() -> list[str]:
    """Preset names: the user's config folders' model/*.yaml and the shipped ones."""
    return list_configs("model")


def preset_path(name: str) -> Path:
    return config_path("model", name, "model preset")


def preset_provenance(name: str) -> str:
    """The preset file's first comment line: where the model comes from."""
    lines = preset_path(name).read_text().splitlines()
    return lines[0].lstrip("# ").strip() if lines and lines[0].startswith("#") else ""


def preset_dict(name: str) -> dict:
    """What a preset's file itself sets (no defaults filled in)."""
    path = preset_path(name)
    data = read_yaml(path, f"model preset '{name}'") or {}
    if not isinstance(data, Mapping):
        raise ComponentError(f"model preset '{name}': {path} must hold a mapping, got {data!r}")
    return dict(data)


def resolve_spec(model: str | Mapping | ArchitectureSpec, overrides: Iterable[str] = ()) -> ArchitectureSpec:
    """A preset name, a spec mapping or an ArchitectureSpec, plus `key=value` overrides -> a validated spec."""
    preset = None
    if isinstance(model, ArchitectureSpec):
        data = model.to_dict()
        preset = model.preset
    elif isinstance(model, str):
        data, preset = preset_dict(model), model
    elif isinstance(model, Mapping):
        data = OmegaConf.to_container(OmegaConf.create(dict(model)), resolve=True)
    else:
        raise ComponentError(f"model must be a preset name, a mapping or an ArchitectureSpec, got {type(model).__name__}")
    overrides = list(overrides)
    if overrides:
        for item in overrides:
            if "=" not in item:
                raise ComponentError(f"override '{item}' must look like key=value (e.g. memory.structure.depth=3)")
        try:
            merged = OmegaConf.merge(OmegaConf.create(data), OmegaConf.from_dotlist(overrides))
        except OmegaConfBaseException as err:
            raise ComponentError(f"bad override {overrides}: {err}") from None
        data = OmegaConf.to_container(merged, resolve=True)
    data = dict(data)
    data.pop("preset", None)
    spec = ArchitectureSpec.from_dict(data, where=f"model '{preset}'" if preset else "model")
    return ArchitectureSpec(**{**{k: getattr(spec, k) for k in spec.__dataclass_fields__}, "preset": preset})


def build_model(model: str | Mapping | ArchitectureSpec, overrides: Iterable[str] = ()) -> LanguageModel:
    return LanguageModel(resolve_spec(model, overrides))


def build_layer(model: str | Mapping | ArchitectureSpec, overrides: Iterable[str] = (), dim: int | None = None) -> nn.Module:
    """The spec's first token mixer alone: (batch, seq, dim) -> ((batch, seq, dim), state)."""
    extra = [f"dim={dim}"] if dim is not None else []
    spec = resolve_spec(model, [*overrides, *extra])
    kind = spec.backbone_component().mixers(spec.layers)[0]
    return build_mixer(kind, spec)


def describe(spec: ArchitectureSpec) -> dict[str, Any]:
    return {"name": spec.name, "preset": spec.preset, "hash": spec.content_hash, **spec.to_dict()}
