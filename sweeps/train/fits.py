"""Whether a model can train on the device at all, from its counted parameters: checked before anything is built."""
from __future__ import annotations

import os
from pathlib import Path

from components.models import ArchitectureSpec
from components.models.accounting import training_bytes
from components.options import ComponentError


def device_memory(device: str) -> tuple[str, int]:
    """(the device's name, its memory in bytes): a CUDA device's total, or this machine's RAM within its cgroup."""
    import torch

    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        return "CUDA device", torch.cuda.get_device_properties(0).total_memory
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limit = Path("/sys/fs/cgroup/memory.max")
    if limit.is_file() and limit.read_text().strip().isdigit():
        total = min(total, int(limit.read_text()))
    return "machine", total


def check_fits(spec: ArchitectureSpec, params: int, device: str, shards: int = 1) -> None:
    """ComponentError naming the sizes when the weights, their gradients and AdamW's moments alone exceed the
    device's memory (split over `shards` ranks when FSDP2 may shard them): such a model would fail allocating (or
    swap the machine to a halt) after minutes of setup."""
    need = training_bytes(params)
    where, have = device_memory(device)
    if need > have * shards:
        over = f"{shards} ranks' {where}s have {shards} x " if shards > 1 else f"this {where} has "
        raise ComponentError(f"model (dim={spec.dim}, layers={spec.layers}): {params:,} parameters need "
                             f"{need / 2**30:,.1f} GiB for weights, gradients and AdamW moments alone; {over}"
                             f"{have / 2**30:,.1f} GiB")
