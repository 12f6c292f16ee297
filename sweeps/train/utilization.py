"""What a training run gets out of its device: model FLOPs utilisation (MFU) and peak memory.

MFU = model FLOPs per second / the device's peak. Model FLOPs per token are three forward passes' matmul FLOPs
(the forward, and a backward of twice the forward), counted by the model accounting (components/models/accounting.py)
on a CPU copy at the run's sequence length, so the figure is the model's, not the path's: an FLA kernel, a fused
step or a recomputing checkpoint does not change it. The peak is the device's dense bf16 matrix rate from a small
table (CUDA runs train under bf16 autocast), `train.peak_tflops` where the table lacks the device, or on a CPU the
fp32 matmul rate measured once per process at the run's thread count.

Peak memory is CUDA's max_memory_allocated, or on a CPU the process's peak resident set (VmHWM), reset at the start
of the run through /proc/self/clear_refs, so a worker that runs many trials reports each run's own peak.
"""
from __future__ import annotations

import functools
import resource
import time
from pathlib import Path

import torch

# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s, from the vendors' datasheets; first match wins.
PEAK_BF16_TFLOPS = (
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
    ("A10G", 70.0),
    ("A10", 125.0),
    ("RTX 4090", 165.0),
    ("V100", 125.0),  # fp16: no bf16 units
)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


@functools.lru_cache(maxsize=None)
def cpu_matmul_tflops(threads: int, n: int = 1024, seconds: float = 0.3) -> float:
    """The fp32 GEMM rate this process gets at `threads` (best of repeated n x n products, after a warm-up)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    torch.mm(a, b, out=out)
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e12


def peak_tflops(device: torch.device, override: float | None = None) -> tuple[float | None, str]:
    """(peak TFLOP/s, where it comes from); None where the device is unknown and no override is set."""
    if override:
        return override, "train.peak_tflops"
    if device.type == "cpu":
        return cpu_matmul_tflops(torch.get_num_threads()), "measured fp32 matmul"
    name = device_name(device)
    for key, value in PEAK_BF16_TFLOPS:
        if key in name:
            return value, f"datasheet bf16 dense ({key})"
    return None, f"unknown device '{name}': set train.peak_tflops"


def train_flops_per_token(spec, seq_len: int) -> float:
    """Model FLOPs of one training token: 3 x the forward's matmul FLOPs per token at seq_len (CPU copy, batch 1)."""
    from components.models import LanguageModel
    from components.models.accounting import forward_flops_per_token

    with torch.device("cpu"):
        model = LanguageModel(spec)
    return 3.0 * forward_flops_per_token(model, seq_len)


class PeakMemory:
    """Peak memory of a region: CUDA's allocator peak, or the process's peak resident set on a CPU (MiB)."""

    CLEAR_REFS = Path("/proc/self/clear_refs")
    STATUS = Path("/proc/self/status")

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.resettable = False

    def start(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return self
        try:  # "5" resets the peak RSS (VmHWM) to the current RSS (Linux >= 4.0)
            self.CLEAR_REFS.write_text("5")
            self.resettable = True
        except OSError:
            self.resettable = False
        return self

    def mib(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        if self.resettable:
            for line in self.STATUS.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux: the process's lifetime peak
