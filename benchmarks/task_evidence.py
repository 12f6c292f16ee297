"""Same budget, every preset: bits per byte on the default corpus and MQAR recall, side by side.

    python benchmarks/task_evidence.py lm   [--steps 200] [--presets a,b]   # every memory preset + transformer
    python benchmarks/task_evidence.py mqar [--steps 600] [--presets a,b]   # transformer, linear attention,
                                                                            # deltanet, gated deltanet, titans
Each run is a real `run_training` (what `mirasweep train` runs) at equal width (dim 64, 2 layers, 2 heads),
with an MLflow store in a temporary directory. lm reports val/bpb against the corpus's unigram entropy
(a model must beat it to have learnt anything from context); mqar reports recall at a small setting
(8 pairs, sequence 128) and a harder one (the ladder: 16 pairs at 256, 32 pairs at 512).
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

MQAR_PRESETS = ["transformer", "linear_attention", "deltanet", "gated_deltanet", "titans"]
SIZE = ["model.dim=64", "model.layers=2", "model.attention.heads=2"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("task", choices=("lm", "mqar"))
    p.add_argument("--steps", type=int, default=None, help="training steps per preset (lm 200, mqar 600)")
    p.add_argument("--presets", help="comma list (default: every memory preset + transformer for lm; five for mqar)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra overrides for every run, e.g. --set train.batch_size=64 --set task.train_pairs=2,4,8")
    args = p.parse_args()

    from components.models import list_presets, resolve_spec
    from sweeps.train.compose import compose
    from sweeps.train.run import run_training
    from sweeps.tracking import Tracker

    if args.presets:
        presets = args.presets.split(",")
    elif args.task == "lm":
        presets = [n for n in list_presets() if resolve_spec(n).memory is not None] + ["transformer"]
    else:
        presets = MQAR_PRESETS
    steps = args.steps or (200 if args.task == "lm" else 600)
    task = (["task.seq_len=128"] if args.task == "lm" else
            ["task.seq_len=128", "task.pairs=8", "task.ladder='256x16,512x32'", "train.batch_size=32"])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tracker = Tracker(f"sqlite:///{tmp}/mlflow.db", f"evidence-{args.task}")
        for name in presets:
            heads = [] if name in ("transformer", "swa_transformer") else ["model.memory.heads=2"]
            config, _ = compose("train", [f"model={name}", f"task={args.task}", *SIZE, *heads, *task,
                                          f"train.steps={steps}", f"train.eval_every={steps}", "train.progress=false",
                                          f"train.warmup={max(1, steps // 20)}", *args.set])
            t = time.perf_counter()
            result = run_training(config, Path(tmp) / name, preset=name, tracker=tracker)
            rows.append((name, result.metrics, time.perf_counter() - t))
            print(f"  {name}: done in {rows[-1][2]:.0f} s", file=sys.stderr, flush=True)
        info = None
        if args.task == "lm":
            from sweeps.tasks import TASKS

            info = TASKS.create("lm", seq_len=128).data_info()
    extra = "".join(f" --set {o}" for o in args.set)
    print(f"{args.task}, {steps} steps each, dim 64, 2 layers (command: python benchmarks/task_evidence.py {args.task} "
          f"--steps {steps}{extra})")
    if args.task == "lm":
        print(f"unigram entropy of the corpus: {info['data/unigram_bpb']:.3f} bits/byte")
        print(f"{'preset':<18}{'val/bpb':>9}{'< unigram':>11}{'params':>10}{'tok/s':>9}")
        for name, m, _ in rows:
            print(f"{name:<18}{m['val/bpb']:>9.3f}{'yes' if m['val/bpb'] < info['data/unigram_bpb'] else 'NO':>11}"
                  f"{int(m['cost/params']):>10,}{m['perf/tokens_per_s']:>9,.0f}")
    else:
        print(f"{'preset':<18}{'8 pairs @128':>14}{'16 @256':>10}{'32 @512':>10}{'tok/s':>9}")
        for name, m, _ in rows:
            print(f"{name:<18}{m['recall/mqar']:>14.3f}{m['recall/mqar@256x16']:>10.3f}{m['recall/mqar@512x32']:>10.3f}"
                  f"{m['perf/tokens_per_s']:>9,.0f}")


if __name__ == "__main__":
    main()
