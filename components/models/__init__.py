"""Model zoo: architecture specs, backbones, language models and presets of known models."""
from .backbones import BACKBONES, Backbone
from .lm import Block, LanguageModel
from .presets import build_layer, build_model, conf_dir, list_presets, preset_provenance, resolve_spec
from .spec import ArchitectureSpec, AttentionSpec, MemorySpec

__all__ = ["BACKBONES", "ArchitectureSpec", "AttentionSpec", "Backbone", "Block", "LanguageModel", "MemorySpec",
           "build_layer", "build_model", "conf_dir", "list_presets", "preset_provenance", "resolve_spec"]
