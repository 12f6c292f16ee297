"""Tasks: what a trial trains on and how it is scored. A registry, like the component axes.

A task turns (seed, step) into a training batch deterministically (so a resumed run sees exactly the batches
an uninterrupted one would), evaluates a model into named metrics (`val/bpb`, `recall/mqar`, ...) whose
directions search spaces can use as objectives, and caches whatever data it builds.
"""
from __future__ import annotations

import abc
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from components.registry import Component, Registry

TASKS = Registry("task", "what a model trains on and how it is scored")
IGNORE = -100  # target value of positions that carry no loss (cross_entropy's ignore_index)


@dataclass
class Batch:
    tokens: Tensor  # (B, T) model inputs
    targets: Tensor  # (B, T) next-token targets, IGNORE where no loss is taken


def cache_dir() -> Path:
    return Path(os.environ.get("MIRASWEEP_CACHE") or Path.home() / ".cache" / "mirasweep")


class Task(Component, abc.ABC):
    vocab_size: int = 256

    @abc.abstractmethod
    def metrics(self) -> dict[str, str]:
        """Metric name -> 'minimize' or 'maximize', every metric `evaluate` reports."""

    @abc.abstractmethod
    def train_batch(self, step: int, batch_size: int, seed: int) -> Batch:
        """The batch of a step, a function of (seed, step) only."""

    @abc.abstractmethod
    def evaluate(self, model: torch.nn.Module, batch_size: int = 16, final: bool = True) -> dict[str, float]:
        """Named metrics; final=False (intermediate evaluations, for pruners) may skip costly extras."""

    def data_info(self) -> dict[str, float]:
        """Facts about the data worth logging once (sizes, entropies)."""
        return {}

    def longest_context(self) -> int:
        """The longest sequence the task trains or evaluates a model on (where fp32 must still be trustworthy)."""
        return int(getattr(self, "seq_len", 512))

    def key(self) -> str:
        """Content key of the task's data (name and options), for caches."""
        blob = json.dumps({"task": self.name, **self.opts}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def generator(*seeds: int) -> torch.Generator:
    """A torch Generator seeded from several integers (e.g. run seed and step), order-sensitive."""
    mixed = int.from_bytes(hashlib.sha256(repr(seeds).encode()).digest()[:8], "little")
    return torch.Generator().manual_seed(mixed)


@torch.no_grad()
def predict(model: torch.nn.Module, tokens: Tensor, batch_size: int) -> Tensor:
    """Argmax predictions (B, T) of a model whose forward returns (logits, state), in batches."""
    model_device = next(model.parameters()).device
    outs = []
    for chunk in tokens.split(batch_size):
        logits, _ = model(chunk.to(model_device))
        outs.append(logits.argmax(-1).cpu())
    return torch.cat(outs)


@torch.no_grad()
def mean_loss(model: torch.nn.Module, tokens: Tensor, targets: Tensor, batch_size: int) -> float:
    """Mean cross-entropy (nats) over the positions whose target is not IGNORE."""
    model_device = next(model.parameters()).device
    total, count = 0.0, 0
    for x, y in zip(tokens.split(batch_size), targets.split(batch_size)):
        logits, _ = model(x.to(model_device))
        y = y.to(model_device)
        total += torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=IGNORE,
                                                   reduction="sum").item()
        count += int((y != IGNORE).sum())
    return total / max(count, 1)
