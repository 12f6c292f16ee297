"""A small valid search space to vary in tests, and a helper that returns a bad space's error message."""
from __future__ import annotations

import copy

import pytest

from components.options import ComponentError
from search_space import SearchSpace

BASE = {
    "name": "t",
    "objectives": [{"metric": "val/bpb", "direction": "minimize"}, {"metric": "recall/mqar", "direction": "maximize"}],
    "budget": {
        "tasks": {
            "lm": {"train": {"steps": 10, "batch_size": 2}, "task": {"seq_len": 32}},
            "mqar": {"train": {"steps": 10, "batch_size": 2}, "task": {"seq_len": 32, "pairs": 4, "ladder": ""}},
        },
    },
    "model": {
        "dim": 16,
        "layers": 1,
        "memory": {
            "heads": 2,
            "chunk_size": 8,
            "structure": {"choice": {"linear": {}, "mlp": {"depth": {"int": [1, 2]}}}},
            "bias": {"choice": ["dot", "l2"]},
            "algorithm": {"choice": ["gd", "momentum"]},
        },
    },
}


def space_dict(**top) -> dict:
    """BASE with top-level keys replaced (a deep copy)."""
    data = copy.deepcopy(BASE)
    data.update(copy.deepcopy(top))
    return data


def with_memory(**memory) -> dict:
    data = space_dict()
    data["model"]["memory"].update(copy.deepcopy(memory))
    return data


def error(data: dict) -> str:
    with pytest.raises(ComponentError) as info:
        SearchSpace.from_dict(data)
    message = str(info.value)
    assert message.startswith("search_space 't': "), message
    return message
