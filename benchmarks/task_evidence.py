"""Same budget, every preset: bits per byte on the default corpus and MQAR recall, side by side.

    python benchmarks/task_evidence.py lm   [--steps 200] [--presets a,b]   # every memory preset, then the
    python benchmarks/task_evidence.py mqar [--steps 600] [--presets a,b]   # Transformer and its sliding window
    ... --seeds 3          # each run with train.seed 0, 1, 2 (initialisation and data order): mean +- std
    ... --ablations        # Titans' ablations instead of presets: without momentum, without decay, a linear
                           # memory in place of the MLP, chunk sizes 16 and 64
    ... --results runs.jsonl  # keep each finished run's metrics there, keyed by its composed config: a rerun
                              # (after a kill, or in a later session) trains only the runs not yet in the file
    ... --cached-only         # train nothing: the table from --results, a row with missing seeds says "k of N"
Each run is a real `run_training` (what `mirasweep train` runs) at equal width (dim 64, 2 layers, 2 heads),
with an MLflow store in a temporary directory. lm reports val/bpb against the corpus's unigram entropy
(a model must beat it to have learnt anything from context); mqar reports recall at a small setting
(8 pairs, sequence 128) and a harder one (the ladder: 16 pairs at 256, 32 pairs at 512).
"""
from __future__ import annotations

import argparse
import collections
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

SIZE = ["model.dim=64", "model.layers=2", "model.attention.heads=2"]
SOLVED = 0.5  # MQAR recall at which a seed counts as having learnt the lookup (chance is about 1/vocabulary)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("task", choices=("lm", "mqar"))
    p.add_argument("--steps", type=int, default=None, help="training steps per preset (lm 200, mqar 600)")
    p.add_argument("--presets", help="comma list (default: every memory preset, then the two Transformers)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra overrides for every run, e.g. --set train.batch_size=64 --set task.train_pairs=2,4,8")
    p.add_argument("--seeds", type=int, default=1, help="runs per row with train.seed 0..N-1; mean +- std")
    p.add_argument("--ablations", action="store_true", help="Titans' ablations (the paper's table) as the rows")
    p.add_argument("--results", type=Path, help="JSONL of finished runs, keyed by composed config; reused on rerun")
    p.add_argument("--cached-only", action="store_true",
                   help="train nothing: print the table from --results, a row with missing seeds marked (k of N)")
    args = p.parse_args()

    from components.models import list_presets, resolve_spec
    from sweeps.train.compose import compose
    from sweeps.train.run import run_training
    from sweeps.tracking import Tracker

    if args.ablations:
        variants = ABLATIONS
    else:
        if args.presets:
            presets = args.presets.split(",")
        else:
            presets = [n for n in list_presets() if resolve_spec(n).memory is not None]
            presets += ["transformer", "swa_transformer"]
        variants = [(name, name, []) for name in presets]
    steps = args.steps or (200 if args.task == "lm" else 600)
    task = (["task.seq_len=128"] if args.task == "lm" else
            ["task.seq_len=128", "task.pairs=8", "task.ladder='256x16,512x32'", "train.batch_size=32"])
    rows = []
    done = load_results(args.results)
    versions = collections.Counter()  # components/ versions the rows ran on -> runs
    with tempfile.TemporaryDirectory() as tmp:
        tracker = Tracker(f"sqlite:///{tmp}/mlflow.db", f"evidence-{args.task}")
        for label, name, overrides in variants:
            heads = [] if name in ("transformer", "swa_transformer") else ["model.memory.heads=2"]
            runs = []
            for seed in range(args.seeds):
                config, _ = compose("train", [f"model={name}", f"task={args.task}", *SIZE, *heads, *task,
                                              f"train.steps={steps}", f"train.eval_every={steps}",
                                              "train.progress=false", f"train.warmup={max(1, steps // 20)}",
                                              f"train.seed={seed}", *overrides, *args.set])
                key = run_key(config)
                if key in done:
                    runs.append(done[key]["metrics"])
                    versions[done[key].get("code", "?")] += 1
                    print(f"  {label} (seed {seed}): from {args.results}", file=sys.stderr, flush=True)
                    continue
                if args.cached_only:
                    continue
                t = time.perf_counter()
                result = run_training(config, Path(tmp) / f"{label}-{seed}".replace(" ", "_"), preset=name,
                                      tracker=tracker)
                runs.append(result.metrics)
                versions[code_version()] += 1
                if args.results:
                    keep(args.results, key, label, seed, result.metrics)
                print(f"  {label} (seed {seed}): done in {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
            if runs:
                rows.append((label if len(runs) == args.seeds else f"{label} ({len(runs)} of {args.seeds})", runs))
        info = None
        if args.task == "lm":
            from components.tasks import TASKS

            info = TASKS.create("lm", seq_len=128).data_info()
    extra = "".join(f" --set {o}" for o in args.set) + (f" --seeds {args.seeds}" if args.seeds > 1 else "") + \
        (" --ablations" if args.ablations else "")
    print(f"{args.task}, {steps} steps each, dim 64, 2 layers, {args.seeds} seed(s) per row (command: python "
          f"benchmarks/task_evidence.py {args.task} --steps {steps}{extra})")
    print("runs by components/ version (git tree): " + ", ".join(f"{v} ({n})" for v, n in sorted(versions.items())))
    width = 14 if args.seeds > 1 else 9
    if args.task == "lm":
        print(f"unigram entropy of the corpus: {info['data/unigram_bpb']:.3f} bits/byte")
        print(f"{'row':<24}{'val/bpb':>{width}}{'< unigram':>11}{'params':>10}{'tok/s':>9}")
        for label, runs in rows:
            bpb = [m["val/bpb"] for m in runs]
            below = all(b < info["data/unigram_bpb"] for b in bpb)
            print(f"{label:<24}{spread(bpb):>{width}}{'yes' if below else 'NO':>11}"
                  f"{int(runs[0]['cost/params']):>10,}{median(m['perf/tokens_per_s'] for m in runs):>9,.0f}")
    else:
        # MQAR is learnt in a jump (recall from chance to near 1 within a few steps) that a seed may not reach in
        # the budget: a mean over seeds hides that, so the seeds that solved the small setting are counted
        print(f"{'row':<24}{'8 pairs @128':>{width + 5}}{'16 @256':>{width}}{'32 @512':>{width}}"
              f"{'solved':>8}{'tok/s':>9}")
        for label, runs in rows:
            cols = [spread([m[key] for m in runs]) for key in ("recall/mqar", "recall/mqar@256x16", "recall/mqar@512x32")]
            solved = f"{sum(m['recall/mqar'] >= SOLVED for m in runs)}/{len(runs)}"
            print(f"{label:<24}{cols[0]:>{width + 5}}{cols[1]:>{width}}{cols[2]:>{width}}{solved:>8}"
                  f"{median(m['perf/tokens_per_s'] for m in runs):>9,.0f}")
        print(f"solved: seeds whose recall at 8 pairs @128 reached {SOLVED}")
    metrics = [("val/bpb", False)] if args.task == "lm" else [("recall/mqar", True), ("recall/mqar@512x32", True)]
    if args.seeds > 1:
        (versus_first if args.ablations else leaders)(rows, metrics)


# Titans' ablations (Behrouz et al. 2024, Table 5), each as overrides of the titans preset
ABLATIONS = [
    ("titans (chunk 64)", "titans", []),
    ("titans without momentum", "titans", ["model.memory.algorithm.name=gd"]),
    ("titans without decay", "titans", ["model.memory.retention.name=none"]),
    ("titans, linear memory", "titans", ["model.memory.structure.name=linear", "~model.memory.structure.depth",
                                         "~model.memory.structure.expansion", "~model.memory.structure.residual"]),
    ("titans, chunk 16", "titans", ["model.memory.chunk_size=16"]),
]


def versus_first(rows: list, metrics: list[tuple[str, bool]]) -> None:
    """Each ablation against the first row, per metric: beats, or within noise (Student's t 95% intervals of the
    mean over the seeds, as `mirasweep confirm` says it: sweeps/noise.py)."""
    from sweeps.noise import Estimate, verdict

    (base, base_runs), others = rows[0], rows[1:]
    print("against the first row (95% t intervals of the mean over seeds; separate intervals = beats):")
    for label, runs in others:
        for key, maximize in metrics:
            a, b = Estimate(tuple(m[key] for m in base_runs)), Estimate(tuple(m[key] for m in runs))
            print(f"  {verdict(base, a, label, b, key, maximize)}")


def leaders(rows: list, metrics: list[tuple[str, bool]]) -> None:
    """Per metric, the best mean and the rows it does not beat beyond noise (the confirm stage's rule)."""
    from sweeps.noise import Estimate, leader

    estimates = {label: [Estimate(tuple(m[k] for m in runs)) for k, _ in metrics] for label, runs in rows}
    print("leaders (95% t intervals of the mean over seeds; a row not beaten beyond noise ties):")
    for i, (key, maximize) in enumerate(metrics):
        top, ties = leader(estimates, i, maximize)
        print(f"  {key}: {top} ({estimates[top][i].mean:.3f}); within noise of it: {', '.join(ties) or 'none'}")


def run_key(config) -> str:
    """A run's identity: its composed config (minus threads and progress bars, which do not change its result) and
    the architecture it resolves to (so a preset whose file changes is trained again). Code is not in the key: each
    row records the components/ version it ran on, and the table says which versions its rows come from."""
    import hashlib

    from components.models import resolve_spec

    plain = json.loads(json.dumps(config, default=str))
    for k in ("threads", "progress"):
        plain.get("train", {}).pop(k, None)
    spec = resolve_spec(config["model"]).to_dict()
    blob = json.dumps([plain, spec], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """components/ as this process imported it (read once): its git tree, '+' if it had uncommitted changes."""
    git = ["git", "-C", ROOT]
    tree = subprocess.run([*git, "rev-parse", "--short", "HEAD:components"], capture_output=True, text=True).stdout
    dirty = subprocess.run([*git, "diff", "--quiet", "HEAD", "--", "components"]).returncode
    return tree.strip() + ("+" if dirty else "")


def load_results(path: Path | None) -> dict[str, dict]:
    """Finished runs by key ({'metrics', 'code'}); a torn last line (the process killed mid-write) is skipped."""
    done = {}
    if path and path.is_file():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            done[row["key"]] = row
    return done


def keep(path: Path, key: str, label: str, seed: int, metrics: dict) -> None:
    row = {"key": key, "label": label, "seed": seed, "code": code_version(), "metrics": metrics}
    with open(path, "a") as f:  # one line per run, flushed at once: a kill loses at most the run in progress
        f.write(json.dumps(row) + "\n")


def spread(values: list[float]) -> str:
    """'mean' for one run, 'mean +- std' (sample std) for several."""
    import statistics

    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def median(values) -> float:
    import statistics

    return statistics.median(list(values))


if __name__ == "__main__":
    main()
