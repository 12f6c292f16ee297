"""Share of a training run's wall time spent outside forward/backward/optimiser: data, logging to MLflow,
checkpoints, the progress bar and evaluation (target: under 5 % of a 60-second run).

The run is a real `run_training` (the code path of `mirasweep train` and of every sweep trial) with a
SQLite MLflow store in a temporary directory, checkpoints every quarter of the run and --evals evaluations
(default 1: at the end, what a one-minute run needs; each evaluation of the task's default set is a fixed
cost, 1.4-1.8 s for the LM task's 64 KiB here, so each extra one in a one-minute run adds about 3 %). The loop itself times compute (forward + backward + optimiser step) and evaluation.

    python benchmarks/train_overhead.py [--seconds 60] [--model titans] [--task lm] [--evals 1]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0, help="target length of the run")
    p.add_argument("--model", default="titans")
    p.add_argument("--task", default="lm")
    p.add_argument("--evals", type=int, default=1, help="evaluations in the run, evenly spaced, the last at the end")
    args = p.parse_args()

    from sweeps.train.compose import compose
    from sweeps.train.run import run_training
    from sweeps.tracking import Tracker

    overrides = [f"model={args.model}", f"task={args.task}", "model.dim=64", "model.layers=2", "train.progress=true"]
    config, choices = compose("train", overrides)
    with tempfile.TemporaryDirectory() as tmp:
        tracker = Tracker(f"sqlite:///{tmp}/mlflow.db", "overhead")
        # calibrate: steps per second of this model, then size the run to the target length
        probe = dict(config, train={**config["train"], "steps": 5, "eval_every": 1000, "progress": False})
        probed = run_training(probe, Path(tmp) / "probe", preset=choices["model"], tracker=tracker)
        tokens_per_step = config["train"]["batch_size"] * config["task"].get("seq_len", 256)
        steps = max(20, int(args.seconds * probed.metrics["perf/tokens_per_s"] / tokens_per_step))
        train = {**config["train"], "steps": steps, "eval_every": max(1, steps // max(1, args.evals)),
                 "checkpoint_every": max(1, steps // 4),
                 "log_every": 10}
        result = run_training(dict(config, train=train), Path(tmp) / "run", preset=choices["model"], tracker=tracker)
    m = result.metrics
    print(f"model {choices['model']} (dim 64, 2 layers), task {choices['task']}: {steps} steps, "
          f"{train['steps'] // train['eval_every']} evaluations, checkpoints every {train['checkpoint_every']} steps, "
          f"metrics logged every 10 steps to SQLite MLflow")
    print(f"wall {m['perf/wall_s']:.1f} s, training throughput {m['perf/tokens_per_s']:,.0f} tok/s")
    outside = m["perf/overhead"] + m["perf/eval_share"]
    print(f"  data, logging, checkpoints, progress bar: {m['perf/overhead']:.1%} of wall time")
    print(f"  evaluation:                               {m['perf/eval_share']:.1%} of wall time")
    print(f"outside forward/backward/optimiser: {outside:.1%}   target < 5%   {'PASS' if outside < 0.05 else 'FAIL'}")


if __name__ == "__main__":
    main()
