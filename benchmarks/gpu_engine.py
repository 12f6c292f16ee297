"""The memory layer on a CUDA GPU against titans-pytorch's NeuralMemory, in one process (the contenders of
benchmarks/memory_engine.py but the compiled one, which measures the CPU; ours-stack is the autograd chunk step
the fused one replaces; ours-chunkwise runs titans-pytorch's own update rule, one momentum step per chunk).
Run on a GPU node:

    python benchmarks/gpu_engine.py [--quick] [--reps N] [--suite memory|presets|all]

--suite presets (benchmarks/gpu_presets.py) times every memory preset's layer against FLA's own layer or
titans-pytorch at 4 x 1024 x 256 and 8 x 4096 x 512; the rest of this docstring is the memory suite.

For each config and precision (fp32, and bf16 autocast where the memory's inner loop still runs in fp32):
median fwd+bwd time (CUDA-synchronised, round-robin), tokens/s, peak CUDA memory of one fwd+bwd
(torch.cuda.max_memory_allocated above what was allocated before it), and the ratios ours/titans and
ours/reference. Also: the chunked engine against its token-by-token reference on this GPU (max |Δ| of the output
and of the input gradient, fp64).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from contextlib import nullcontext
from dataclasses import replace

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from memory_engine import QUICK, Config, ours, time_round_robin, titans  # noqa: E402

CONFIGS = {"issue-2 size": Config(), "long": Config(batch=8, seq=4096, dim=512, ref_seq=128),
           "wide heads": Config(batch=4, seq=2048, dim=1024, heads=4, ref_seq=128)}


def contender(name: str, cfg: Config, device: str):
    torch.manual_seed(0)
    if name == "titans":
        module = titans(cfg).to(device)
    else:
        # ours-lean: activation checkpointing over sqrt(chunks)-chunk segments
        execution = {"checkpoint": "auto"} if name == "ours-lean" else None
        module = ours(cfg, "chunk_momentum" if name == "ours-chunkwise" else "momentum", execution).to(device)
    seq = cfg.ref_seq if name == "ours-reference" else cfg.seq
    x = torch.randn(cfg.batch, seq, cfg.dim, device=device)
    kwargs = {"path": {"ours-reference": "reference", "ours-stack": "stack"}[name]} if name in ("ours-reference", "ours-stack") else {}
    return module, x, kwargs


def run_step(module, x, kwargs, amp: bool):
    module.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=torch.bfloat16) if amp else nullcontext():
        y, _ = module(x, **kwargs)
    y.float().pow(2).mean().backward()


def timed(fn) -> float:
    torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - t


def peak_bytes(fn) -> int:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


def measure(steps: dict, reps: int, warmup: int):
    """Round-robin: warm-up, then `reps` timed rounds over every contender; (times, peak bytes) or None on OOM."""
    try:
        times = time_round_robin(steps, warmup, reps, timer=timed)
        return times, {n: peak_bytes(step) for n, step in steps.items()}
    except (torch.OutOfMemoryError, RuntimeError) as err:  # titans' TorchScript scan re-raises OOM as RuntimeError
        if "out of memory" not in str(err):
            raise
        print("  out of memory (a contender needs more than this GPU has)")
        return None


def equivalence(device: str) -> None:
    """The chunked engine equals the token recurrence on the GPU (fp64, MLP memory, momentum + decay)."""
    cfg = replace(QUICK, seq=96, dim=32, chunk=16)
    torch.manual_seed(0)
    module = ours(cfg).to(device).double()
    x = torch.randn(2, cfg.seq, cfg.dim, device=device, dtype=torch.float64, requires_grad=True)
    outs = {}
    for path in ("auto", "reference"):
        y, _ = module(x, path=path)
        (gx,) = torch.autograd.grad(y.pow(2).sum(), x)
        outs[path] = (y.detach(), gx)
    dy = (outs["auto"][0] - outs["reference"][0]).abs().max().item()
    dg = (outs["auto"][1] - outs["reference"][1]).abs().max().item()
    print(f"chunked vs token-by-token reference on {torch.cuda.get_device_name()}, fp64: max|Δy| {dy:.2e}, "
          f"max|Δ∂x| {dg:.2e}  {'PASS' if max(dy, dg) < 1e-9 else 'FAIL'}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="only the issue-2 size")
    p.add_argument("--configs", help=f"comma list of {', '.join(CONFIGS)}")
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--suite", choices=("memory", "presets", "all"), default="all",
                   help="memory: the Titans memory vs titans-pytorch; presets: every preset's layer vs FLA/titans")
    p.add_argument("--presets", help="comma list of presets for the presets suite (default: every memory preset)")
    p.add_argument("--json", help="also write the presets suite's rows to this file")
    p.add_argument("--experiments", action="store_true",
                   help="presets suite: also time titans compiled and CUDA-graphed (slow: each compiles)")
    args = p.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_engine.py needs a CUDA GPU (torch.cuda.is_available() is False)")
    device = "cuda"
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 on both sides
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}")
    if args.suite in ("presets", "all"):
        import gpu_presets

        presets = args.presets.split(",") if args.presets else gpu_presets.PRESETS
        sizes = {"4x1024x256": gpu_presets.SIZES["4x1024x256"]} if args.quick else gpu_presets.SIZES
        gpu_presets.run(measure, args.reps, args.warmup, presets, sizes, args.experiments, args.json)
        if args.suite == "presets":
            return
    equivalence(device)
    try:
        import titans_pytorch  # noqa: F401
        names = ("ours-chunked", "ours-stack", "ours-lean", "ours-reference", "ours-chunkwise", "titans")
    except ImportError:
        names = ("ours-chunked", "ours-stack", "ours-lean", "ours-reference", "ours-chunkwise")
        print("titans-pytorch is not installed: ours only")
    configs = {"issue-2 size": CONFIGS["issue-2 size"]} if args.quick else CONFIGS
    if args.configs:
        configs = {name: CONFIGS[name] for name in args.configs.split(",")}
    for label, cfg in configs.items():
        for amp in (False, True):
            print(f"\n{label}: batch {cfg.batch}, seq {cfg.seq}, dim {cfg.dim}, heads {cfg.heads}, chunk {cfg.chunk}, "
                  f"MLP depth {cfg.depth}; {'bf16 autocast' if amp else 'fp32'}")
            runs = {n: contender(n, cfg, device) for n in names}
            steps = {n: (lambda r=r: run_step(*r, amp)) for n, r in runs.items()}
            measured = measure(steps, args.reps, args.warmup)
            if measured is None:
                runs = steps = None  # free them before the next config
                torch.cuda.empty_cache()
                continue
            times, peaks = measured
            tok = {}
            for n in names:
                tokens = cfg.batch * runs[n][1].shape[1]
                med = statistics.median(times[n])
                tok[n] = tokens / med
                print(f"  {n:<15} seq {runs[n][1].shape[1]:>5}  median {med * 1e3:8.2f} ms  {tok[n]:>12,.0f} tok/s  "
                      f"peak {peaks[n] / 2 ** 20:9.1f} MiB")
            print(f"  ours/reference tokens/s {tok['ours-chunked'] / tok['ours-reference']:.1f}x")
            if "titans" in tok:
                for mine in ("ours-chunked", "ours-lean", "ours-chunkwise"):  # chunkwise: titans-pytorch's own rule
                    print(f"  {mine}/titans tokens/s {tok[mine] / tok['titans']:.2f}x, peak memory "
                          f"{peaks[mine] / peaks['titans']:.2f}x")
            runs = steps = None
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
