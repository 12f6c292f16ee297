"""Every memory preset's layer on a CUDA GPU, side by side with the fastest public implementation of the same layer,
in one process, interleaved (run through `python benchmarks/gpu_engine.py --suite presets`):

  ours         the preset's MemoryLayer as a sweep builds it (path 'auto': FLA's kernels for the linear rules on CUDA)
  ours-engine  the same layer forced onto our own chunked engine (the path it takes on a CPU): the 'before' of the
               FLA backend, and the figure later work on deep memories is measured against
  fla          FLA's own layer (fla.layers) at the same width and heads, for the presets FLA has
  titans       titans-pytorch's NeuralMemory (MLP depth 2, expansion 4, chunk 64), for the titans preset
  ours-compiled, ours-graphed   (--experiments, titans: for the launch-bound chunk loop) the layer with each chunk
               step through torch.compile, and the whole layer's forward and backward captured as CUDA graphs
               (torch.cuda.make_graphed_callables)

Sizes: batch 4 x 1024 tokens x width 256 (4 heads), and batch 8 x 4096 x 512 (8 heads); head size 64 throughout.
Each size in fp32 and under bf16 autocast: median fwd+bwd time (CUDA-synchronised), tokens/s and peak memory of one
fwd+bwd, then the ratios against the targets: ours/fla >= 0.8 for FLA-backed presets, ours/titans >= 2x tokens/s at
<= 0.5x memory.
"""
from __future__ import annotations

import json
import statistics

import torch

from components.engine import Execution

SIZES = {"4x1024x256": (4, 1024, 256, 4), "8x4096x512": (8, 4096, 512, 8)}
# the FLA-backed presets first, then titans (the targets), then the other deep memories (their 'before')
PRESETS = ("linear_attention", "retnet", "mamba2", "gla", "deltanet", "gated_deltanet", "longhorn", "titans",
           "ttt_linear", "ttt_mlp", "titans_pytorch", "moneta", "yaad", "memora")
EXPERIMENTS = ("titans",)  # compiles are slow: one deep preset stands for the rest
TARGET_VS_FLA, TARGET_VS_TITANS, TARGET_MEMORY_VS_TITANS = 0.8, 2.0, 0.5


def fla_layer(preset: str, dim: int, heads: int):
    """FLA's layer for a preset, with the same width, heads and head size (None where FLA has none)."""
    import fla.layers as L

    head = dim // heads
    make = {
        "linear_attention": lambda: L.LinearAttention(hidden_size=dim, num_heads=heads, feature_map="identity"),
        "retnet": lambda: L.MultiScaleRetention(hidden_size=dim, num_heads=heads, expand_k=1, expand_v=1),
        "mamba2": lambda: L.Mamba2(hidden_size=dim, num_heads=heads, head_dim=head, state_size=head, expand=1),
        "gla": lambda: L.GatedLinearAttention(hidden_size=dim, num_heads=heads, expand_k=1, expand_v=1),
        "deltanet": lambda: L.DeltaNet(hidden_size=dim, num_heads=heads),
        "longhorn": lambda: L.DeltaNet(hidden_size=dim, num_heads=heads),
        "gated_deltanet": lambda: L.GatedDeltaNet(hidden_size=dim, num_heads=heads, head_dim=head, expand_v=1),
    }.get(preset)
    return None if make is None else make()


def contenders(preset: str, dim: int, heads: int, device: str, experiments: bool = False) -> dict:
    """name -> (module, forward kwargs, returns-a-tuple?)."""
    from components.models import build_layer

    torch.manual_seed(0)
    layer = build_layer(preset, [f"memory.heads={heads}"], dim=dim).to(device)
    out = {"ours": (layer, {}), "ours-engine": (layer, {"path": layer.plan("cpu").path})}
    try:
        fla = fla_layer(preset, dim, heads)
        if fla is not None:
            out["fla"] = (fla.to(device), {})
    except ImportError:
        pass
    if experiments and preset in EXPERIMENTS:  # a deep memory on our launch-bound chunk loop: what would remove the loop's overhead
        compiled = build_layer(preset, [f"memory.heads={heads}"], dim=dim).to(device)
        compiled.execution = Execution.of(compiled.execution, compile=True)
        out["ours-compiled"] = (compiled, {})
        out["ours-graphed"] = (GraphedLayer(build_layer(preset, [f"memory.heads={heads}"], dim=dim).to(device)), {})
    if preset == "titans":
        try:
            from titans_pytorch import NeuralMemory

            out["titans"] = (NeuralMemory(dim=dim, chunk_size=64, heads=heads,
                                          default_model_kwargs=dict(depth=2, expansion_factor=4.0)).to(device), {})
        except ImportError:
            pass
    return out


class OutputOnly(torch.nn.Module):
    def __init__(self, layer) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return self.layer(x)[0]


class GraphedLayer(torch.nn.Module):
    """A layer whose forward (output only) and backward are CUDA graphs over its parameters, captured at the first
    call's shape and precision: one graph launch each way instead of the chunk loop's hundreds of kernel launches."""

    def __init__(self, layer) -> None:
        super().__init__()
        self.inner, self.graphed = OutputOnly(layer), None

    def forward(self, x):
        if self.graphed is None:
            amp = torch.is_autocast_enabled("cuda")
            sample = x.detach().clone().requires_grad_(x.requires_grad)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp, cache_enabled=False):
                self.graphed = torch.cuda.make_graphed_callables(self.inner, (sample,))
        return self.graphed(x)


def step_of(module, kwargs, x, amp: bool):
    def step():
        module.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            y = module(x, **kwargs)
        y = y[0] if isinstance(y, tuple) else y
        y.float().pow(2).mean().backward()
    return step


def run(measure, reps: int, warmup: int, presets=PRESETS, sizes=SIZES, experiments: bool = False,
        json_path: str | None = None) -> list[dict]:
    """Times every preset at every size and precision; prints each row (and rewrites json_path after each, so a
    run cut short keeps what it measured), then the ratio lines; returns the rows."""
    rows = []
    for size, (batch, seq, dim, heads) in sizes.items():
        for amp in (False, True):
            precision = "bf16 autocast" if amp else "fp32"
            print(f"\n== {size} ({heads} heads), {precision}")
            for preset in presets:
                try:
                    runs = contenders(preset, dim, heads, "cuda", experiments)
                except Exception as err:  # a baseline that cannot be built here is reported, not fatal
                    print(f"  {preset}: could not build the contenders: {type(err).__name__}: {err}")
                    continue
                x = torch.randn(batch, seq, dim, device="cuda")
                steps = {n: step_of(m, kw, x, amp) for n, (m, kw) in runs.items()}
                try:
                    measured = measure(steps, reps, warmup)
                except Exception as err:
                    print(f"  {preset}: {type(err).__name__}: {str(err)[:300]}")
                    measured = None
                if measured is None:
                    runs = steps = None
                    torch.cuda.empty_cache()
                    continue
                times, peaks = measured
                tok = {n: batch * seq / statistics.median(t) for n, t in times.items()}
                path = runs["ours"][0].plan("cuda").path
                line = "  ".join(f"{n} {tok[n]:>11,.0f} tok/s {peaks[n] / 2**20:7.1f} MiB" for n in tok)
                print(f"  {preset:<16} [{path}]  {line}")
                row = {"size": size, "precision": precision, "preset": preset, "path": path, "tok_s": tok,
                       "peak_mib": {n: peaks[n] / 2**20 for n in peaks}}
                rows.append(row)
                if json_path:
                    with open(json_path, "w") as handle:
                        json.dump(rows, handle, indent=1)
                runs = steps = None
                torch.cuda.empty_cache()
    print("\n== ratios against the targets")
    for row in rows:
        tok, mem, where = row["tok_s"], row["peak_mib"], f"{row['preset']:<16} {row['size']:<11} {row['precision']:<13}"
        speedup = f"ours/ours-engine {tok['ours'] / tok['ours-engine']:5.2f}x"
        if "fla" in tok:
            ratio = tok["ours"] / tok["fla"]
            print(f"  {where} ours/fla {ratio:5.2f}x (>= {TARGET_VS_FLA}) {'PASS' if ratio >= TARGET_VS_FLA else 'FAIL'}"
                  f"  {speedup}")
        elif "titans" in tok:
            ratio, memory = tok["ours"] / tok["titans"], mem["ours"] / mem["titans"]
            ok = ratio >= TARGET_VS_TITANS and memory <= TARGET_MEMORY_VS_TITANS
            print(f"  {where} ours/titans {ratio:5.2f}x (>= {TARGET_VS_TITANS}), memory {memory:4.2f}x "
                  f"(<= {TARGET_MEMORY_VS_TITANS}) {'PASS' if ok else 'FAIL'}  {speedup}")
            for name in ("ours-compiled", "ours-graphed"):
                if name in tok:
                    print(f"  {where} {name}/titans {tok[name] / tok['titans']:5.2f}x, memory "
                          f"{mem[name] / mem['titans']:4.2f}x (experiment)")
        else:
            print(f"  {where} {speedup} (target after the deep-memory work: >= 5x the 'before')")
    return rows
