"""How the ranks of a data-parallel run hold the model: whole on every rank (DDP), or sharded (FSDP2's
`fully_shard`: every block's weights, gradients and AdamW moments split over the ranks, gathered block by block for
the forward and backward).

`train.parallel`: `ddp`, `fsdp`, or `auto` (FSDP2 when the model's weights, gradients and AdamW moments would take
more than half of one device's memory, which leaves the other half to activations; DDP otherwise). Both average the
gradients over the ranks, so both follow the single-process loss curve. Checkpoints hold full (unsharded) state
dicts in either mode, so a run resumes on another number of ranks; an FSDP2 checkpoint keys its optimiser state by
parameter name (torch.distributed.checkpoint's form), so it resumes under FSDP2.
"""
from __future__ import annotations

import contextlib

import torch

from components.models.accounting import training_bytes

from . import distributed as dp

MODES = ("auto", "ddp", "fsdp")
FSDP_SHARE = 0.5  # auto: shard when the training state alone would take more than this share of one device


def choose(setting: str, world: dp.World, params: int, device: torch.device) -> str:
    """'none' (one process), 'ddp' or 'fsdp'."""
    if not world.distributed:
        return "none"
    if setting != "auto":
        return setting
    from .fits import device_memory

    _, have = device_memory(device.type)
    return "fsdp" if training_bytes(params) > FSDP_SHARE * have else "ddp"


def wrap(model: torch.nn.Module, mode: str, device: torch.device) -> torch.nn.Module:
    """The module the training step calls: the model, DDP around it, or the model with its blocks and itself
    sharded in place (FSDP2; the optimiser must be made after this, over the sharded parameters)."""
    if mode == "ddp":
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if mode == "fsdp":
        import torch.distributed as dist
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(device.type, (dist.get_world_size(),))
        for block in model.blocks:  # one unit per block: gathered for its own forward and backward only
            fully_shard(block, mesh=mesh)
        fully_shard(model, mesh=mesh)  # the rest (tied embedding and head, final norm)
    return model


def accumulating(net: torch.nn.Module, mode: str, last: bool):
    """The context of one micro-batch's backward: the gradients are averaged over the ranks on the last one only."""
    if mode == "ddp" and not last:
        return net.no_sync()
    if mode == "fsdp":
        net.set_requires_gradient_sync(last)
    return contextlib.nullcontext()


def plain(value) -> float:
    """A float of a value that may be a DTensor (FSDP2's gradient norm)."""
    return float(value.full_tensor() if hasattr(value, "full_tensor") else value)


def full_state(model: torch.nn.Module, opt: torch.optim.Optimizer, mode: str) -> tuple[dict, dict]:
    """The model's and the optimiser's full state dicts (under FSDP2 a collective: every rank calls it)."""
    if mode != "fsdp":
        return model.state_dict(), opt.state_dict()
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                         get_optimizer_state_dict)

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=options), get_optimizer_state_dict(model, opt, options=options)


def load_full_state(model: torch.nn.Module, opt: torch.optim.Optimizer, saved: dict, mode: str) -> None:
    """Load full state dicts (every rank reads the same checkpoint file) into a whole or a sharded model."""
    if bool(saved.get("sharded")) != (mode == "fsdp"):
        from components.options import ComponentError

        written = "train.parallel=fsdp" if saved.get("sharded") else "one process or train.parallel=ddp"
        raise ComponentError(f"this run's checkpoint was written under {written}; resume it the same way "
                             f"(this run is {mode if mode != 'none' else 'one process'})")
    if mode != "fsdp":
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        return
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, set_model_state_dict,
                                                         set_optimizer_state_dict)

    options = StateDictOptions(full_state_dict=True)
    set_model_state_dict(model, saved["model"], options=options)
    set_optimizer_state_dict(model, opt, saved["optimizer"], options=options)
