"""Training throughput and peak memory of every model preset, side by side, on CPU.

One training step = forward + cross-entropy (next-token loss on random bytes) + backward + AdamW step.
Each preset is built with `build_model(preset, ["dim=128", "layers=4"])` (its own heads, window, chunk
size, ... stay) and measured at two lengths with the same batch, seq 512 x batch 8 and seq 2048 x batch 8,
so each chunk-by-chunk step does the same work at both lengths and only the length changes. Steps are timed round-robin across presets (warm-up first) so machine noise hits
all of them alike; tokens/s uses the median step time.

Reported:
  table    preset, architecture (model.spec.name), params, tok/s and peak MiB at both lengths
  ratios   each preset's tok/s / the transformer preset's, at each length
  growth   time per token at the long length / at the short one: ~1 means cost linear in length;
           attention's quadratic term makes it grow (at most 4x, if it were all of the cost)
Peak memory: each (preset, length) runs its first training step in a fresh subprocess (hidden
--measure-memory PRESET@SEQ); we report peak RSS (VmHWM, reset just before) minus the RSS just before
it: activations, gradients and the AdamW state the step allocates (parameters excluded).

    python benchmarks/models.py [--quick] [--presets a,b,c] [--reps N] [--no-memory]
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from memory_engine import ROOT, THREADS, mib, peak_rss_bytes, reset_peak_rss, rss_bytes, time_round_robin  # noqa: E402

sys.path.insert(0, ROOT)  # so `components` imports without PYTHONPATH (memory_engine does it too)
from components.models import build_model, list_presets  # noqa: E402

BASELINE = "transformer"


@dataclass
class Config:
    dim: int = 128
    layers: int = 4
    lengths: tuple = ((512, 8), (2048, 8))  # (seq, batch): the same batch at both lengths
    lr: float = 1e-3

    def overrides(self) -> list[str]:
        return [f"dim={self.dim}", f"layers={self.layers}"]


# seq 128 still exceeds the presets' 64-token windows / segments, so the short length is not degenerate.
QUICK = Config(dim=32, layers=2, lengths=((128, 2), (512, 2)))


def make_step(preset: str, cfg: Config, seq: int, batch: int):
    """Returns (model, step) where step() runs one training step on fixed random tokens."""
    torch.manual_seed(0)
    model = build_model(preset, cfg.overrides())
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    tokens = torch.randint(0, 256, (batch, seq + 1))
    x, y = tokens[:, :-1], tokens[:, 1:]

    def step():
        opt.zero_grad(set_to_none=True)
        logits, _ = model(x)
        F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)).backward()
        opt.step()

    return model, step


# ---------------------------------------------------------------- peak memory (subprocess)

def measure_memory(target: str, cfg: Config) -> dict:
    """Runs inside the subprocess: the first training step after imports, model, optimizer and input exist."""
    torch.set_num_threads(THREADS)
    preset, seq = target.rsplit("@", 1)
    _, step = make_step(preset, cfg, int(seq), dict(cfg.lengths)[int(seq)])
    gc.collect()
    reset_peak_rss()
    before, peak_before = rss_bytes(), peak_rss_bytes()
    step()
    peak = peak_rss_bytes()
    # If an earlier peak (e.g. from imports) was never exceeded, the delta is only a lower bound.
    return {"delta": peak - before, "lower_bound": peak <= peak_before}


def memory_in_subprocess(preset: str, seq: int, quick: bool) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--measure-memory", f"{preset}@{seq}"] + (["--quick"] if quick else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- report

def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes (dim 32, 2 layers, seq 128 and 512) for a smoke run")
    p.add_argument("--presets", help="comma-separated subset of presets (default: all)")
    p.add_argument("--reps", type=int, default=3, help="timed steps per preset and length (round-robin)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    p.add_argument("--measure-memory", metavar="PRESET@SEQ", help=argparse.SUPPRESS)
    args = p.parse_args()
    cfg = QUICK if args.quick else Config()

    if args.measure_memory:
        print(json.dumps(measure_memory(args.measure_memory, cfg)))
        return

    known = list_presets()
    presets = args.presets.split(",") if args.presets else known
    if unknown := [name for name in presets if name not in known]:
        p.error(f"unknown presets {unknown}; known: {', '.join(known)}")
    (s1, b1), (s2, b2) = cfg.lengths

    torch.set_num_threads(THREADS)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32 CPU")
    print(f"config: overrides {cfg.overrides()} (the presets' own heads, windows, chunks stay), "
          f"seq {s1} x batch {b1} and seq {s2} x batch {b2}, "
          f"training step = fwd + cross-entropy + bwd + AdamW(lr {cfg.lr})")
    print(f"timing: {args.warmup} warm-up + {args.reps} timed steps per preset and length, round-robin, median\n")

    arch, params, tok_s, memory = {}, {}, {}, {}
    for seq, batch in cfg.lengths:
        steps = {}
        for name in presets:
            model, steps[name] = make_step(name, cfg, seq, batch)
            arch[name], params[name] = model.spec.name, sum(t.numel() for t in model.parameters())
        times = time_round_robin(steps, args.warmup, args.reps)
        for name, ts in times.items():
            tok_s[name, seq] = seq * batch / statistics.median(ts)
        del steps, model
        gc.collect()
        if not args.no_memory:
            for name in presets:
                memory[name, seq] = memory_in_subprocess(name, seq, args.quick)

    def mem(name, seq):
        if args.no_memory:
            return f"{'-':>10}"
        m = memory[name, seq]
        return f"{mib(m['delta']):>9.1f}{'*' if m['lower_bound'] else ' '}"

    print(f"{'preset':<17}{'architecture':<30}{'params':>10}{f'tok/s@{s1}':>12}{f'tok/s@{s2}':>12}"
          f"{f'MiB@{s1}':>10}{f'MiB@{s2}':>10}")
    for name in presets:
        print(f"{name:<17}{arch[name]:<30}{params[name]:>10,}{tok_s[name, s1]:>12.0f}{tok_s[name, s2]:>12.0f}"
              f"{mem(name, s1)}{mem(name, s2)}")
    if not args.no_memory:
        print("(MiB = peak RSS during the first training step minus RSS just before it, fresh subprocess each; "
              "* = lower bound)")

    if BASELINE in presets:
        print(f"\ntok/s relative to {BASELINE} (>1 = faster):")
        print(f"  {'preset':<17}{f'@{s1}':>8}{f'@{s2}':>8}")
        for name in presets:
            print(f"  {name:<17}{tok_s[name, s1] / tok_s[BASELINE, s1]:>7.2f}x{tok_s[name, s2] / tok_s[BASELINE, s2]:>7.2f}x")
    else:
        print(f"\n(no ratios: the baseline preset '{BASELINE}' is not in --presets)")

    print(f"\ngrowth of time per token from seq {s1} to {s2} (time/token @{s2} / @{s1}):")
    print(f"  reading: ~1 = cost linear in length; attention's quadratic term makes it grow "
          f"(at most {s2 // s1}x, if it were all of the cost).")
    for name in presets:
        print(f"  {name:<17}{tok_s[name, s1] / tok_s[name, s2]:>6.2f}x")


if __name__ == "__main__":
    main()
