"""What the sweep machinery costs, and what a second worker buys, on this CPU.

1. Per-trial overhead: a `quick` sweep whose trials train 1 step per task (a near-trivial objective) through
   the real path (lock, ask/tell, heartbeat, MLflow parent/trial/task runs, model build, checkpoints,
   evaluation of 1-step models, the parent's table); overhead per trial = the median time between two
   consecutive trial completions, so one-off costs (stores, corpus cache, plots) stay out. Target: under 1 s.
2. Scaling: the same CPU-bound sweep (8 identical trials of 100 steps per task: the space is pinned to one
   architecture and learning rate, so both runs do the same work) with 1 worker (2 torch threads) and with
   2 workers (1 thread each); wall-time ratio 2 workers / 1 worker. Target: under 0.6x.

    python benchmarks/sweep_overhead.py [--trials 8]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def budget(steps: int) -> list[str]:
    out = [f"search_space.budget.rungs=[{steps}]", "sweep.min_completed=1000"]
    for task in ("lm", "mqar"):
        out += [f"search_space.budget.tasks.{task}.train.{k}={steps}" for k in ("steps", "eval_every", "checkpoint_every")]
    return out


PINNED = {"dim": 32, "layers": 2, "backbone": "memory",
          "memory": {"heads": 2, "chunk_size": 16, "structure": "mlp", "bias": "l2", "retention": "decay",
                     "algorithm": "gd"}}


def timed_sweep(tmp: Path, name: str, overrides: list[str], pinned: bool = False) -> tuple[float, dict]:
    from sweeps.sweep import run_sweep
    from sweeps.train.compose import compose

    config, choices = compose("sweep", [f"sweep.dir={tmp / name}", *overrides])
    if pinned:
        config["search_space"].update(model=PINNED, train={"lr": 3e-3}, constraints={}, enqueue=[])
    t = time.perf_counter()
    _, ctx = run_sweep(config, choices)
    return time.perf_counter() - t, ctx


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=8)
    args = p.parse_args()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        wall, ctx = timed_sweep(tmp, "trivial", ["launcher=debug", f"sweep.n_trials={args.trials}", *budget(1)],
                                pinned=True)
        from sweeps.study import open_storage

        study = optuna.load_study(study_name=ctx["study_name"], storage=open_storage(ctx["storage"]))
        ends = sorted(t.datetime_complete for t in study.get_trials())
        gaps = sorted((b - a).total_seconds() for a, b in zip(ends, ends[1:]))
        per_trial = gaps[len(gaps) // 2]
        one, _ = timed_sweep(tmp, "one", ["launcher=local", "launcher.workers=1", f"sweep.n_trials={args.trials}",
                                          *budget(100)], pinned=True)
        two, _ = timed_sweep(tmp, "two", ["launcher=local", "launcher.workers=2", f"sweep.n_trials={args.trials}",
                                          *budget(100)], pinned=True)
    print(f"sweep of {args.trials} trivial trials (1 step per task, in-process): {wall:.1f} s in all "
          f"(stores, corpus, plots included); between trial completions: {gaps[0]:.2f}-{gaps[-1]:.2f} s")
    print(f"per-trial overhead: {per_trial:.2f} s   target < 1 s   {'PASS' if per_trial < 1 else 'FAIL'}")
    print(f"CPU-bound sweep of {args.trials} trials: 1 worker {one:.1f} s, 2 workers {two:.1f} s, "
          f"ratio {two / one:.2f}x   target < 0.6x   {'PASS' if two / one < 0.6 else 'FAIL'}")


if __name__ == "__main__":
    main()
