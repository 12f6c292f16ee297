"""Data-parallel training: the process group of one trial's ranks, and the few collectives the training loop needs.

A run is distributed when the environment says so: torchrun's variables (RANK, WORLD_SIZE, MASTER_ADDR, ...), or a
SLURM job step of several tasks, whose variables submitit's TorchDistributedEnvironment exports. One process is
world size 1 and touches no process group. CUDA ranks use NCCL with one GPU each (the local rank); CPU ranks gloo.

The batch of a step is the same on every world size: `train.batch_size` is the global batch, each rank trains on its
slice of the step's (seed, step) batch, and the loss is normalised by the global count of scored targets, so DDP's
gradient average is the full batch's gradient: 2 ranks follow 1 rank's loss curve (tests/sweeps/test_distributed.py).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from components.options import ComponentError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def environment_world() -> World:
    """The world this process belongs to, from torchrun's or SLURM's variables (SLURM: exported for env://)."""
    if "RANK" not in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_JOB_ID" in os.environ:
        from submitit.helpers import TorchDistributedEnvironment

        TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    if "RANK" not in os.environ:
        return World()
    return World(int(os.environ["RANK"]), int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("LOCAL_RANK", "0")))


def join(world: World, device: torch.device) -> None:
    """Initialise the process group of a distributed world (once per process)."""
    if world.distributed and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=world.rank, world_size=world.size)


def check_batch(world: World, batch_size: int) -> None:
    if batch_size % world.size:
        raise ComponentError(f"train.batch_size={batch_size}: the global batch must divide evenly over the "
                             f"{world.size} ranks of a data-parallel run")


def rank_slice(world: World, tensor: torch.Tensor) -> torch.Tensor:
    """This rank's rows of a global batch."""
    per = tensor.shape[0] // world.size
    return tensor[world.rank * per:(world.rank + 1) * per]


def all_sum(world: World, *values: float) -> list[float]:
    """Each value summed over the ranks (a no-op on one rank), in one collective."""
    if not world.distributed:
        return list(values)
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast(world: World, obj: Any) -> Any:
    """Rank 0's `obj` on every rank."""
    if not world.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()
