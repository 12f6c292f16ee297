"""Checkpoints of a training run: model, optimiser, schedule, step, RNG states; written atomically."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch

CHECKPOINT = "checkpoint.pt"


def save(path: Path, **state: Any) -> None:
    state["rng"] = {"torch": torch.get_rng_state(), "python": random.getstate(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # a kill mid-write leaves the previous checkpoint intact


def load(path: Path) -> dict | None:
    if not path.is_file():
        return None
    state = torch.load(path, weights_only=False)
    rng = state.pop("rng")
    torch.set_rng_state(rng["torch"])
    random.setstate(rng["python"])
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return state
