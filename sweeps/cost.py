"""What a sweep will cost before it runs: FLOPs per trial from the accounting (counted on the meta device, the models
never built), and GPU-hours at a stated GPU and model FLOPs utilisation (the sweep config's `cost:` section).

A trial trains each budget task: steps x batch_size x accumulate x seq_len tokens at 3 x the forward FLOPs per token
(forward and backward); evaluation, checkpoints and start-up are not counted. The architectures of a trial are drawn
from the space, so the figure per trial is the spread over sampled trials and the enqueued presets.
"""
from __future__ import annotations

from dataclasses import dataclass
from statistics import mean
from typing import Any

from components.options import ComponentError, closest
from components.training import TrainConfig

from .train.run import build_task
from .train.utilization import PEAK_BF16_TFLOPS

COST_SAMPLES = 8  # sampled trials the per-trial figure spreads over (besides the enqueued presets)


@dataclass
class TrialCost:
    label: str
    tokens: int  # training tokens of all budget tasks
    flops: float  # training FLOPs of all budget tasks


def gpu_peak(gpu: str) -> float:
    """Datasheet dense bf16 TFLOP/s of a GPU model named as in the table (H100, A100, ...)."""
    for key, value in PEAK_BF16_TFLOPS:
        if key.lower() == str(gpu).lower():
            return value
    names = [k for k, _ in PEAK_BF16_TFLOPS]
    raise ComponentError(f"cost.gpu={gpu!r}: not in the datasheet table{closest(str(gpu), names)}; "
                         f"known GPUs: {', '.join(names)}")


def validate(cost: dict[str, Any]) -> tuple[str, float, float]:
    """(gpu, its peak TFLOP/s, mfu) of the config's cost section."""
    gpu, mfu = cost.get("gpu", "H100"), cost.get("mfu", 0.4)
    if not isinstance(mfu, (int, float)) or isinstance(mfu, bool) or not 0 < mfu <= 1:
        raise ComponentError(f"cost.mfu={mfu!r}: the model FLOPs utilisation expected, a number in (0, 1]")
    return gpu, gpu_peak(gpu), float(mfu)


def trial_cost(space, model: dict, train: dict, label: str) -> TrialCost:
    """Tokens and FLOPs of one trial of `model` (a spec mapping) with the plan's `train` values, over every task."""
    from components.models import resolve_spec
    from components.models.accounting import spec_flops_per_token

    tokens, flops = 0, 0.0
    for name, task_budget in space.budget.tasks.items():
        task = build_task({"name": name, **task_budget.task}, where=f"budget.tasks.{name}.task")
        cfg = TrainConfig.from_dict({**task_budget.train, **train}, where=f"budget.tasks.{name}.train")
        seq_len = int(getattr(task, "seq_len", 0) or task.longest_context())
        n = cfg.steps * cfg.batch_size * cfg.accumulate * seq_len
        spec = resolve_spec(model, [f"vocab_size={task.vocab_size}"])
        key = (spec.content_hash, seq_len)
        cache = space._cache.setdefault("cost_flops", {})
        if key not in cache:
            cache[key] = spec_flops_per_token(spec, seq_len)
        tokens += n
        flops += 3.0 * cache[key] * n
    return TrialCost(label, tokens, flops)


def sweep_cost(space, n_trials: int, seed: int, cost: dict[str, Any]) -> list[str]:
    """Lines for the dry run: per-trial tokens, FLOPs and GPU-hours (mean and range over sampled trials and the
    enqueued presets), and the whole sweep's GPU-hours."""
    gpu, peak, mfu = validate(cost)
    plans = space.sample(COST_SAMPLES, seed=seed, presets=True)
    labels = [*space.enqueue, *(f"sample {i}" for i in range(COST_SAMPLES))]
    trials = [trial_cost(space, plan.model, plan.train, label) for plan, label in zip(plans, labels)
              if space.check(plan) is None]
    if not trials:
        return ["cost: no trainable trial to estimate"]
    hours = [t.flops / (peak * 1e12 * mfu) / 3600 for t in trials]
    flops = [t.flops for t in trials]
    tasks = ", ".join(f"{n} {t.train.get('steps', TrainConfig.steps):,} steps" for n, t in space.budget.tasks.items())
    lines = [
        f"cost per trial ({tasks}; {_count(mean(t.tokens for t in trials))} training tokens; FLOPs = 3 x forward "
        f"FLOPs/token from the accounting; evaluation not counted), over {len(trials)} trainable trials of "
        f"{len(space.enqueue)} enqueued presets and {COST_SAMPLES} samples:",
        f"  FLOPs: {mean(flops):.3g} (from {min(flops):.3g} to {max(flops):.3g})",
        f"  GPU-hours at {mfu:.0%} MFU of an {gpu} ({peak:g} bf16 TFLOP/s): {mean(hours):.3g} "
        f"(from {min(hours):.3g} to {max(hours):.3g})",
        "  by enqueued preset: " + ", ".join(f"{t.label} {h:.3g}" for t, h in zip(trials, hours)
                                             if not t.label.startswith("sample ")),
        f"whole sweep: {n_trials} trials x {mean(hours):.3g} = {n_trials * mean(hours):.3g} GPU-hours "
        f"(set cost.gpu and cost.mfu for other hardware)",
    ]
    return lines


def _count(n: float) -> str:
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.0f}"
