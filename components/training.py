"""Training settings (conf/train.yaml's `train:` group), a small typed config."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

from components.options import ComponentError, closest


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 200
    batch_size: int = 8
    accumulate: int = 1  # gradient accumulation: micro-batches per optimiser step
    lr: float = 3e-3
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup: int = 20
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    eval_every: int = 100
    eval_at: tuple = ()  # extra evaluation steps (a sweep's multi-fidelity rungs)
    eval_batch_size: int = 16
    log_every: int = 10
    checkpoint_every: int = 100
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # torch CPU threads; 0 = the cores this process may use
    progress: bool = True
    compile: bool = False  # torch.compile every memory layer's chunk step (stack and exact paths)
    peak_tflops: float = 0.0  # the device's peak for perf/mfu; 0 = datasheet table (CUDA) or measured (CPU)
    fp32_check: bool = True  # before step 1: can fp32 reproduce this model over the task's longest context?
    parallel: str = "auto"  # data-parallel ranks: ddp (a whole model each), fsdp (sharded, FSDP2), auto (fsdp when big)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, where: str = "train") -> "TrainConfig":
        data = dict(data or {})
        known = {f.name: f for f in fields(cls)}
        for key in data:
            if key not in known:
                raise ComponentError(f"{where}: unknown key '{key}'{closest(key, list(known))}; "
                                     f"allowed keys: {', '.join(known)}")
        out = {}
        for key, value in data.items():
            kind = type(getattr(cls(), key))
            if kind is tuple:
                if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and v > 0 for v in value):
                    raise ComponentError(f"{where}.{key} must be a list of positive steps, got {value!r}")
                out[key] = tuple(value)
                continue
            if kind is bool and not isinstance(value, bool):
                raise ComponentError(f"{where}.{key} must be true or false, got {value!r}")
            if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
                raise ComponentError(f"{where}.{key} must be an integer, got {value!r}")
            if kind is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ComponentError(f"{where}.{key} must be a number, got {value!r}")
            out[key] = float(value) if kind is float else value
        cfg = cls(**out)
        cfg.validate(where)
        return cfg

    def validate(self, where: str = "train") -> None:
        positive = ("steps", "batch_size", "accumulate", "eval_every", "eval_batch_size", "log_every", "checkpoint_every")
        for key in positive:
            if getattr(self, key) < 1:
                raise ComponentError(f"{where}.{key} must be >= 1, got {getattr(self, key)}")
        if self.lr <= 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ComponentError(f"{where}: lr must be > 0 and min_lr_ratio in [0, 1]")
        if self.peak_tflops < 0:
            raise ComponentError(f"{where}.peak_tflops must be >= 0 (0: from the device), got {self.peak_tflops}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ComponentError(f"{where}.device must be one of auto, cpu, cuda, got {self.device!r}")
        if self.parallel not in ("auto", "ddp", "fsdp"):
            raise ComponentError(f"{where}.parallel must be one of auto, ddp, fsdp, got {self.parallel!r}")
