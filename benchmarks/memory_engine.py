"""Speed and memory of our memory layer against titans-pytorch's NeuralMemory, on CPU, in one process.

Contenders (forward + backward of loss = y.pow(2).mean()):
  ours-chunked    components.layers.MemoryLayer without short conv and output gate (projections, gates,
                  engine: what titans-pytorch's NeuralMemory does), chunked engine (path="auto": for this rule
                  the fused stack step, one autograd node per chunk with a hand-written backward)
  ours-stack      the same chunked math written in autograd ops (path="stack"): what the fused step replaces
  ours-lean       ours-chunked with activation checkpointing over sqrt(chunks)-chunk segments
                  (MemoryLayer(execution={"checkpoint": "auto"})): less memory for about one more forward of the engine
  ours-compiled   ours-chunked with each chunk step through torch.compile (MemoryLayer(execution={"compile": True})): the
                  chunk's elementwise work fused around the matmuls; compiled in the warm-up rep
  ours-reference  the same module, token-by-token oracle (path="reference"), timed on a shorter
                  sequence: its cost is linear in length, so tokens/s stays comparable
  ours-chunkwise  the same module with titans-pytorch's update rule (algorithm "chunk_momentum": one momentum
                  step per chunk, reads at chunk-start weights; fused_chunkwise.py): like-with-like against titans
  ours-chunkwise-ref  ours-chunkwise's token-by-token oracle (path="reference"), timed like ours-reference
  titans          lucidrains titans-pytorch NeuralMemory (momentum and weight decay are always on)
  titans-per-chunk  the same with batch_size = chunk: every gradient at its chunk's start weights, exactly
                  ours-chunkwise's rule (tests/components/test_titans_pytorch.py); shown, not a target, timed
                  against ours-chunkwise in a fresh process (its heap would change titans' time in the main one)

Two semantics. The recurrence of docs/design.md (ours-chunked) applies momentum and decay per token in closed form and reads
every token after its own write (exact in-chunk read-after-write): 81.6 GFLOP per fwd+bwd at this config.
titans-pytorch applies them once per chunk and reads at the chunk-start weights: about 51 GFLOP. The ratios are
printed for both: ours-chunked against titans (different work), ours-chunkwise against titans (the same work; with
its default batch_size=None titans-pytorch takes every chunk's gradient at the call's start weights, ours at each
chunk's start: the same FLOPs, and chunk_momentum equals NeuralMemory(batch_size=chunk_size) exactly).

Also measured: an fp32 matmul ceiling (GFLOP/s of torch.mm / torch.bmm) and the GFLOP/s our chunked
engine achieves, counting its matmul FLOPs with torch.utils.flop_counter.FlopCounterMode.
Peak memory: each contender runs in a fresh subprocess (hidden --measure-memory NAME): one warm-up fwd+bwd (a
training step in steady state: the first step of a process also allocates one-time GEMM workspaces and
library caches, about 36 MiB for ours), the free heap handed back, then one measured fwd+bwd. We report its
peak RSS (VmHWM, i.e. ru_maxrss of this process image, reset just before) minus the RSS just before it.

    python benchmarks/memory_engine.py [--quick] [--reps N]
    python benchmarks/memory_engine.py --profile ours-chunked,ours-compiled,ours-chunkwise   # matmuls vs the rest
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # so `components` imports without PYTHONPATH

THREADS = 2
CONTENDERS = ("ours-chunked", "ours-stack", "ours-lean", "ours-compiled", "ours-reference", "ours-chunkwise-ref",
              "ours-chunkwise", "titans")
REFERENCES = ("ours-reference", "ours-chunkwise-ref")  # timed on cfg.ref_seq tokens
# Timed in a process of its own with ours-chunkwise: in the main round-robin its heap (freed, kept by glibc) made the
# titans contender's steps 2x faster (fewer fresh pages to fault in), which would not be titans' own speed.
SAME_RULE = ("ours-chunkwise", "titans-per-chunk")
# The headline contenders: FLOP-counted, timed with tuned malloc, and timed each alone in a fresh process.
HEADLINE = ("ours-chunked", "ours-chunkwise", "titans")
KNOWN = CONTENDERS + SAME_RULE[1:]
# glibc hands freed heap back to the OS past its trim threshold and serves big blocks by fresh mmaps: a step that
# allocates gigabytes of temporaries then page-faults them all in again. Raising both thresholds shows that share.
TUNED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(2 ** 30), "MALLOC_TRIM_THRESHOLD_": str(2 ** 40)}
TARGETS = {"speed_vs_titans": 5.0, "memory_vs_titans": 0.2, "speed_vs_reference": 30.0, "ceiling": 0.25}


@dataclass
class Config:
    batch: int = 4
    seq: int = 1024
    dim: int = 256
    chunk: int = 64
    heads: int = 1
    depth: int = 2
    expansion: float = 4.0
    ref_seq: int = 64  # the reference is timed on this many tokens
    mm_size: int = 2048  # ceiling: (mm_size x mm_size) @ (mm_size x mm_size)
    bmm_shape: tuple = (64, 256, 1024)  # ceiling: (b, m, k) @ (b, k, m)


QUICK = Config(seq=256, dim=64, ref_seq=32, mm_size=512, bmm_shape=(16, 64, 256))


# ---------------------------------------------------------------- contenders

def ours(cfg: Config, algorithm: str = "momentum", execution: dict | None = None) -> torch.nn.Module:
    from components.layers import MemoryLayer

    rule = dict(structure=dict(name="mlp", depth=cfg.depth, expansion=cfg.expansion), bias="l2",
                retention="decay", algorithm=algorithm)
    return MemoryLayer(cfg.dim, rule, heads=cfg.heads, chunk_size=cfg.chunk, conv_size=0, output="linear",
                       execution=execution)


def titans(cfg: Config, batch_size: int | None = None) -> torch.nn.Module:
    from titans_pytorch import NeuralMemory as TitansNeuralMemory

    # momentum=True is the default; the weight decay gate (to_decay_factor) has no off switch.
    return TitansNeuralMemory(dim=cfg.dim, chunk_size=cfg.chunk, heads=cfg.heads, batch_size=batch_size,
                              default_model_kwargs=dict(depth=cfg.depth, expansion_factor=cfg.expansion))


def contender_seq(name: str, cfg: Config) -> int:
    """Tokens per sequence a contender is timed on: the token-by-token references get a shorter one."""
    return cfg.ref_seq if name in REFERENCES else cfg.seq


def make_contender(name: str, cfg: Config):
    """Returns (module, input, step) where step() runs one fwd+bwd."""
    torch.manual_seed(0)
    if name.startswith("titans"):
        module = titans(cfg, cfg.chunk if name == "titans-per-chunk" else None)
    else:
        execution = {"ours-lean": {"checkpoint": "auto"}, "ours-compiled": {"compile": True}}.get(name)
        module = ours(cfg, "chunk_momentum" if name.startswith("ours-chunkwise") else "momentum", execution)
    x = torch.randn(cfg.batch, contender_seq(name, cfg), cfg.dim)
    kwargs = {"path": "reference"} if name in REFERENCES else {"path": "stack"} if name == "ours-stack" else {}

    def step():
        module.zero_grad(set_to_none=True)
        y, _ = module(x, **kwargs)
        y.pow(2).mean().backward()

    return module, x, step


# ---------------------------------------------------------------- timing

def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def time_round_robin(steps: dict, warmup: int, reps: int, timer=None) -> dict[str, list[float]]:
    """Interleave the contenders rep by rep so machine noise hits all of them alike (timer: a device-synchronised one
    on a GPU)."""
    timer = timer or timed
    for _ in range(warmup):
        for step in steps.values():
            step()
    times = {name: [] for name in steps}
    for _ in range(reps):
        for name, step in steps.items():
            times[name].append(timer(step))
    return times


def matmul_ceiling(cfg: Config, reps: int = 5) -> dict[str, float]:
    """Best-of-reps fp32 GFLOP/s for one big mm and one batched bmm."""
    n = cfg.mm_size
    a, b = torch.randn(n, n), torch.randn(n, n)
    bb, m, k = cfg.bmm_shape
    x, y = torch.randn(bb, m, k), torch.randn(bb, k, m)
    out = {}
    for label, fn, flops in ((f"mm {n}x{n}x{n}", lambda: torch.mm(a, b), 2 * n ** 3),
                             (f"bmm {bb}x({m}x{k})@({k}x{m})", lambda: torch.bmm(x, y), 2 * bb * m * k * m)):
        fn()
        out[label] = flops / min(timed(fn) for _ in range(reps)) / 1e9
    return out


def count_flops(step) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    def accumulate_flops(out, a, b, *args, out_val=None, **kwargs) -> int:
        return 2 * a.shape[:-1].numel() * a.shape[-1] * b.shape[-1]

    accumulate_flops._get_raw = True
    aten = torch.ops.aten
    # FlopCounterMode's registry has the out-of-place products only; the engine accumulates in place.
    in_place = {aten.baddbmm_: accumulate_flops, aten.addmm_: accumulate_flops}
    with FlopCounterMode(display=False, custom_mapping=in_place) as counter:
        step()
    return counter.get_total_flops()


# ---------------------------------------------------------------- peak memory (subprocess)

def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def rss_bytes() -> int:
    return _status_kib("VmRSS") * 1024


def peak_rss_bytes() -> int:
    """Peak RSS of this process image. Same quantity as ru_maxrss, which we cannot use as is: across
    fork+exec, ru_maxrss starts at the (much larger) parent's peak, so small children read it."""
    return _status_kib("VmHWM") * 1024


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False if not allowed here."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def release_free_heap() -> None:
    """Hand glibc's free heap back to the OS (malloc_trim), so the measured step grows RSS by what it allocates
    rather than reusing what an earlier call freed."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to hand back this way
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def measure_memory(name: str, cfg: Config) -> dict:
    """Runs inside the subprocess: one fwd+bwd after imports, model and input exist."""
    torch.set_num_threads(THREADS)
    _, _, step = make_contender(name, cfg)
    step()  # warm-up: one-time workspaces (and, for ours-compiled, compiling) happen here, not in the measured step
    gc.collect()
    release_free_heap()
    reset_peak_rss()
    before, peak_before = rss_bytes(), peak_rss_bytes()
    step()
    peak = peak_rss_bytes()
    # If an earlier peak (e.g. from imports) was never exceeded, the delta is only a lower bound.
    return {"delta": peak - before, "before": before, "peak": peak, "lower_bound": peak <= peak_before,
            "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def times_in_subprocess(names: list[str], args, env: dict) -> dict[str, float]:
    """Median fwd+bwd seconds of some contenders in a fresh process with extra environment (e.g. malloc tuning)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--time-only", ",".join(names), "--reps", str(args.reps),
           "--warmup", str(args.warmup)] + (["--quick"] if args.quick else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env={**os.environ, **env})
    return json.loads(out.stdout.strip().splitlines()[-1])


def memory_in_subprocess(name: str, quick: bool) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--measure-memory", name] + (["--quick"] if quick else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


MATMULS = ("aten::mm", "aten::bmm", "aten::addmm", "aten::addmm_", "aten::baddbmm", "aten::baddbmm_")


def profile_split(names: list[str], cfg: Config, reps: int = 3) -> None:
    """Where one fwd+bwd's time goes: profiled self CPU in matmuls and in everything else (mean of reps)."""
    from torch.profiler import profile

    steps = {name: make_contender(name, cfg)[2] for name in names}
    for step in steps.values():  # warm-up: workspaces, and compiling for ours-compiled
        step()
        step()
    for name, step in steps.items():
        matmul = total = 0.0
        for _ in range(reps):
            with profile() as prof:
                step()
            for e in prof.key_averages():
                total += e.self_cpu_time_total
                matmul += e.self_cpu_time_total if e.key in MATMULS else 0.0
        print(f"{name:<19} profiled self CPU {total / reps / 1e3:7.1f} ms: matmuls {matmul / reps / 1e3:7.1f} ms, "
              f"the rest {(total - matmul) / reps / 1e3:7.1f} ms")


# ---------------------------------------------------------------- report

def mib(b: float) -> float:
    return b / 2 ** 20


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes (seq 256, dim 64) for a smoke run")
    p.add_argument("--reps", type=int, default=3, help="timed reps per contender (round-robin)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--profile", metavar="NAMES", help="comma-separated contenders: print where one fwd+bwd's time "
                   "goes (matmuls against the rest, torch.profiler) instead of the comparison")
    p.add_argument("--measure-memory", metavar="NAME", choices=KNOWN, help=argparse.SUPPRESS)
    p.add_argument("--time-only", metavar="NAMES", help=argparse.SUPPRESS)
    args = p.parse_args()
    cfg = QUICK if args.quick else Config()
    for flag, names in (("--profile", args.profile), ("--time-only", args.time_only)):
        unknown = [name for name in (names or "").split(",") if names and name not in KNOWN]
        if unknown:
            p.error(f"{flag}: unknown contender {', '.join(unknown)}; allowed: {', '.join(KNOWN)}")

    if args.measure_memory:
        print(json.dumps(measure_memory(args.measure_memory, cfg)))
        return
    if args.profile:
        torch.set_num_threads(THREADS)
        profile_split(args.profile.split(","), cfg)
        return
    if args.time_only:
        torch.set_num_threads(THREADS)
        steps = {name: make_contender(name, cfg)[2] for name in args.time_only.split(",")}
        times = time_round_robin(steps, args.warmup, args.reps)
        print(json.dumps({name: statistics.median(ts) for name, ts in times.items()}))
        return

    torch.set_num_threads(THREADS)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32 CPU")
    print(f"config: batch {cfg.batch}, seq {cfg.seq}, dim {cfg.dim}, chunk {cfg.chunk}, heads {cfg.heads}, "
          f"MLP memory depth {cfg.depth} expansion {cfg.expansion}, momentum + decay")
    print(f"NOTE: {' and '.join(REFERENCES)} are timed (and memory-measured) at seq {cfg.ref_seq}, batch {cfg.batch}; "
          f"their cost is linear in length, so tokens/s is comparable.\n")

    ceiling = matmul_ceiling(cfg)
    print("fp32 matmul ceiling (best of 5):")
    for label, g in ceiling.items():
        print(f"  {label:<32} {g:8.1f} GFLOP/s")
    ceiling_gflops = max(ceiling.values())

    contenders = {name: make_contender(name, cfg) for name in CONTENDERS}
    flops = {name: count_flops(contenders[name][2]) for name in HEADLINE}
    print("\nFlopCounterMode, one fwd+bwd (matmul FLOPs): "
          + ", ".join(f"{name} {f / 1e9:.2f} GFLOP" for name, f in flops.items()))

    times = time_round_robin({n: c[2] for n, c in contenders.items()}, args.warmup, args.reps)
    del contenders["titans"]  # its parameters and heap are not needed for the rest
    memory = {name: memory_in_subprocess(name, args.quick) for name in CONTENDERS}
    tuned = times_in_subprocess(list(HEADLINE), args, TUNED_MALLOC)
    # Each alone in a fresh process, as a user runs one model: glibc's state then comes from that model's own frees.
    alone = {name: times_in_subprocess([name], args, {})[name] for name in HEADLINE}

    print(f"\nfwd+bwd, {args.warmup} warm-up + {args.reps} timed reps, round-robin:")
    print(f"  {'contender':<19}{'seq':>6}{'median s':>10}{'best s':>9}{'tok/s med':>11}{'tok/s best':>11}"
          f"{'peak MiB':>10}")
    tok_s = {}
    for name, ts in times.items():
        seq = contender_seq(name, cfg)
        tokens = cfg.batch * seq
        med, best = statistics.median(ts), min(ts)
        tok_s[name] = tokens / med
        lb = " (lower bound)" if memory[name]["lower_bound"] else ""
        print(f"  {name:<19}{seq:>6}{med:>10.3f}{best:>9.3f}{tokens / med:>11.0f}"
              f"{tokens / best:>11.0f}{mib(memory[name]['delta']):>10.1f}{lb}")
    print("  (peak MiB = peak RSS (VmHWM) during one fwd+bwd after a warm-up one, minus RSS just before it, fresh "
          "subprocess each)")
    print(f"\nwith glibc's mmap and trim thresholds raised ({' '.join(f'{k}={v}' for k, v in TUNED_MALLOC.items())}; "
          f"fresh process, {args.reps} reps): ours-chunked {tuned['ours-chunked']:.3f} s, ours-chunkwise "
          f"{tuned['ours-chunkwise']:.3f} s, titans {tuned['titans']:.3f} s; ours/titans "
          f"{tuned['titans'] / tuned['ours-chunked']:.2f}x, chunkwise/titans {tuned['titans'] / tuned['ours-chunkwise']:.2f}x "
          "(not a target: titans' default-allocator time is mostly page faults)")
    print(f"each alone in a fresh process (default allocator, {args.reps} reps): "
          + ", ".join(f"{name} {t:.3f} s" for name, t in alone.items())
          + f"; ours/titans {alone['titans'] / alone['ours-chunked']:.2f}x, chunkwise/titans "
          f"{alone['titans'] / alone['ours-chunkwise']:.2f}x (shown, not a target: in the round-robin above titans took "
          f"{statistics.median(times['titans']):.3f} s, the other contenders' freed heap changing how many of its pages "
          "fault in)")

    gflops = {name: f / statistics.median(times[name]) / 1e9 for name, f in flops.items()}
    print("\nachieved GFLOP/s (median): " + ", ".join(f"{name} {g:.1f}" for name, g in gflops.items())
          + f"; ceiling {ceiling_gflops:.1f} GFLOP/s (max of the above)")
    achieved = gflops["ours-chunked"]

    ratios = [
        ("fused/stack tokens/s", tok_s["ours-chunked"] / tok_s["ours-stack"], ">=", 1.0),
        ("ours/titans tokens/s", tok_s["ours-chunked"] / tok_s["titans"], ">=", TARGETS["speed_vs_titans"]),
        ("ours/titans peak memory", memory["ours-chunked"]["delta"] / memory["titans"]["delta"], "<=",
         TARGETS["memory_vs_titans"]),
        ("lean/titans tokens/s", tok_s["ours-lean"] / tok_s["titans"], ">=", TARGETS["speed_vs_titans"]),
        ("lean/titans peak memory", memory["ours-lean"]["delta"] / memory["titans"]["delta"], "<=",
         TARGETS["memory_vs_titans"]),
        ("compiled/titans tokens/s", tok_s["ours-compiled"] / tok_s["titans"], ">=", TARGETS["speed_vs_titans"]),
        ("compiled/titans peak memory", memory["ours-compiled"]["delta"] / memory["titans"]["delta"], "<=",
         TARGETS["memory_vs_titans"]),
        ("ours/reference tokens/s", tok_s["ours-chunked"] / tok_s["ours-reference"], ">=", TARGETS["speed_vs_reference"]),
        ("achieved/ceiling GFLOP/s", achieved / ceiling_gflops, ">=", TARGETS["ceiling"]),
        # like with like: titans-pytorch's update rule (one momentum step per chunk) in our engine
        ("chunkwise/titans tokens/s", tok_s["ours-chunkwise"] / tok_s["titans"], ">=", TARGETS["speed_vs_titans"]),
        ("chunkwise/titans peak memory", memory["ours-chunkwise"]["delta"] / memory["titans"]["delta"], "<=",
         TARGETS["memory_vs_titans"]),
        ("chunkwise achieved/ceiling", gflops["ours-chunkwise"] / ceiling_gflops, ">=", TARGETS["ceiling"]),
        ("chunkwise/its reference tok/s", tok_s["ours-chunkwise"] / tok_s["ours-chunkwise-ref"], ">=",
         TARGETS["speed_vs_reference"]),
    ]
    same = times_in_subprocess(list(SAME_RULE), args, {})
    same_memory = memory_in_subprocess(SAME_RULE[1], args.quick)
    print("\nratios (median times):")
    for label, value, op, target in ratios:
        ok = value >= target if op == ">=" else value <= target
        shown = f"{value:8.1%}" if "achieved" in label else f"{value:7.3f}x"
        goal = f"{target:.0%}" if "achieved" in label else f"{target:g}x"
        print(f"  {label:<29} {shown:>9}   target {op} {goal:<5} {verdict(ok)}")
    print(f"  (the identical rule, fresh process: ours-chunkwise {same[SAME_RULE[0]]:.3f} s, titans-per-chunk "
          f"{same[SAME_RULE[1]]:.3f} s and {mib(same_memory['delta']):.0f} MiB: chunkwise/titans-per-chunk tokens/s "
          f"{same[SAME_RULE[1]] / same[SAME_RULE[0]]:.3f}x, peak memory "
          f"{memory['ours-chunkwise']['delta'] / same_memory['delta']:.3f}x; shown, not a target)")


if __name__ == "__main__":
    main()
