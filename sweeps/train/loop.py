"""Train one architecture on one task: AdamW, warm-up + cosine, clipping, accumulation, evaluation at
intervals, checkpoints (at intervals and on SIGTERM/SIGUSR2) that resume to the same final metrics, a clear
stop on a non-finite loss, and an evaluation callback for pruners. Data-parallel over the ranks of a distributed
world (distributed.py): every rank trains its slice of each global batch; rank 0 evaluates, logs and checkpoints."""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from components.engine import Execution
from components.engine.chunked import compilable
from components.layers import MemoryLayer
from components.models import ArchitectureSpec, LanguageModel
from components.models.accounting import count_params

from components.tasks import IGNORE, Task
from . import checkpoint
from components.training import TrainConfig
from . import distributed as dp
from . import sharding
from .errors import NonFiniteLoss, Preempted, Pruned
from .signals import stop_on_signals
from .utilization import PeakMemory, device_name, peak_tflops, train_flops_per_token

EvalCallback = Callable[[int, dict], None]  # (step, metrics); may raise Pruned


@dataclass
class TrainResult:
    metrics: dict[str, float]  # the final evaluation, plus cost and speed figures
    history: list[tuple[int, dict]] = field(default_factory=list)  # every evaluation (step, metrics)
    resumed_from: int = 0


def cpu_count() -> int:
    """Cores this process may use: SLURM's grant, else the affinity mask."""
    slurm = os.environ.get("SLURM_CPUS_PER_TASK")
    return int(slurm) if slurm else len(os.sched_getaffinity(0))


def pick_device(name: str, world: dp.World | None = None) -> torch.device:
    """The device of this process: a data-parallel rank on CUDA takes the GPU of its local rank."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else torch.device(name)
    if device.type == "cuda" and world is not None and world.distributed:
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    return device


def lr_lambda(cfg: TrainConfig) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    # weight decay on matrices (and the learned initial memories); none on norms, biases and gate offsets
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": other, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))


def compile_memory_layers(model: torch.nn.Module) -> int:
    """Sets compile=True on every memory layer whose rule runs on a compilable path; returns how many.
    A rule on the generic torch.func path stays eager (it is not compiled), with a note saying so."""
    layers = [m for m in model.modules() if isinstance(m, MemoryLayer)]
    for layer in layers:
        layer.execution = Execution.of(layer.execution, compile=compilable(layer.rule))
    eager = sorted({layer.rule.name for layer in layers if not layer.execution.compile})
    if eager:
        print(f"train.compile: rule {', '.join(eager)} runs on the torch.func path and stays eager", flush=True)
    return sum(layer.execution.compile for layer in layers)


def memory_paths(model: torch.nn.Module, device: torch.device) -> str:
    """The engine path(s) the model's memory layers take on `device` ('fla', 'fused', 'exact', ...), or 'none'."""
    paths = sorted({m.plan(device).path for m in model.modules() if isinstance(m, MemoryLayer)})
    return ",".join(paths) or "none"


def check_fp32(model: LanguageModel, task: Task, tracker=None) -> float:
    """fp32 against float64 at the initial weights over the task's longest context (components/models/numerics.py):
    logged as numerics/fp32_drift; above the bound, the run is tagged and a warning says so, so that a model whose
    inner optimisation is chaotic never trains on rounding noise silently."""
    import sys

    from components.models.numerics import DRIFT_TOKENS, FP32_BOUND, drift_verdict, fp32_drift

    context = task.longest_context()
    drift = fp32_drift(model, tokens=context, batch=1, lengths=(256, 512, 1024, DRIFT_TOKENS, context))
    worst = max(drift.values())
    verdict = drift_verdict(drift)
    if tracker is not None:
        tracker.log_metrics({"numerics/fp32_drift": worst}, 0, flush=True)
        if verdict:
            tracker.set_tags({"numerics": verdict[:5000]})
    if verdict:
        print(f"mirasweep: warning: {model.spec.name}: {verdict} (bound {FP32_BOUND:g}; "
              "benchmarks/fp32_stability.py measures every preset)", file=sys.stderr)
    return worst


def train(spec: ArchitectureSpec, task: Task, cfg: TrainConfig, out_dir: Path, tracker=None,
          on_eval: EvalCallback | None = None, world: dp.World | None = None) -> TrainResult:
    world = world or dp.World()
    dp.check_batch(world, cfg.batch_size)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads or cpu_count())
    device = pick_device(cfg.device, world)
    dp.join(world, device)
    torch.manual_seed(cfg.seed)  # every rank starts from the same weights (DDP checks and broadcasts them too)
    model = LanguageModel(spec).to(device)
    if world.main and cfg.fp32_check and not (out_dir / checkpoint.CHECKPOINT).is_file():  # once, at the start
        check_fp32(model, task, tracker)
    if cfg.compile:
        compile_memory_layers(model)
    peak, peak_source = peak_tflops(device, cfg.peak_tflops or None)
    if tracker is not None:
        tracker.log_params({"execution": {"device": device_name(device), "memory_path": memory_paths(model, device),
                                          "peak_tflops": peak, "peak_source": peak_source, "ranks": world.size}})
    mode = sharding.choose(cfg.parallel, world, count_params(model), device)
    net = sharding.wrap(model, mode, device)
    if tracker is not None and world.distributed:
        tracker.log_params({"execution": {"parallel": mode}})
    opt = make_optimizer(model, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))
    ckpt_path = out_dir / checkpoint.CHECKPOINT
    saved = checkpoint.load(ckpt_path)  # every rank resumes from rank 0's checkpoint (out_dir is shared)
    start, history, last_finite = 0, [], None
    if saved is not None:
        sharding.load_full_state(model, opt, saved, mode)
        sched.load_state_dict(saved["scheduler"])
        start, history, last_finite = saved["step"], saved["history"], saved["last_finite"]

    def save(step: int) -> None:
        weights, moments = sharding.full_state(model, opt, mode)  # FSDP2: gathered by every rank
        if world.main:
            checkpoint.save(ckpt_path, model=weights, optimizer=moments, scheduler=sched.state_dict(), step=step,
                            history=history, last_finite=last_finite, sharded=mode == "fsdp")
        dp.barrier(world)

    eval_time = [0.0]

    def evaluate(step: int) -> dict:
        """Rank 0 evaluates, logs and asks the pruner; every rank gets the metrics and the pruner's answer. A
        sharded model's forward needs every rank: under FSDP2 all ranks evaluate (the same data), rank 0's counts."""
        metrics, pruned = None, None
        if world.main or mode == "fsdp":
            t = time.perf_counter()
            model.eval()
            with autocast(device):
                metrics = task.evaluate(model, cfg.eval_batch_size, final=step == cfg.steps)
            model.train()
            eval_time[0] += time.perf_counter() - t
        if world.main:
            if tracker is not None:
                tracker.log_metrics(metrics, step, flush=True)
            if on_eval is not None:
                try:
                    on_eval(step, metrics)
                except Pruned as err:
                    pruned = str(err)
        metrics, pruned = dp.broadcast(world, (metrics, pruned))
        history.append((step, metrics))
        if pruned is not None:
            raise Pruned(pruned)
        return metrics

    micro = cfg.batch_size  # the global micro-batch; each rank trains on its slice
    tokens_per_step = cfg.accumulate * micro * task.train_batch(0, 1, cfg.seed).tokens.shape[1]
    bar = _progress(cfg, start) if world.main else None
    compute_time, t_start = 0.0, time.perf_counter()
    peak_memory = PeakMemory(device).start()
    with stop_on_signals() as stop:
        for step in range(start, cfg.steps):
            if dp.all_sum(world, float(bool(stop)))[0]:  # a signal to any rank stops every rank at this step
                save(step)
                raise Preempted(step, stop.signal_name or "a peer rank's signal")
            batches = [task.train_batch(step * cfg.accumulate + m, micro, cfg.seed) for m in range(cfg.accumulate)]
            t0 = time.perf_counter()  # compute time: forward, backward and optimiser only (data is overhead)
            total = 0.0
            for m, batch in enumerate(batches):
                tokens, targets = dp.rank_slice(world, batch.tokens), dp.rank_slice(world, batch.targets)
                scored = dp.all_sum(world, float((targets != IGNORE).sum()))[0]  # on the host copy: no device sync
                targets = targets.to(device)
                # the last micro-batch's backward averages the gradients over the ranks; the others keep theirs
                with sharding.accumulating(net, mode, last=m == cfg.accumulate - 1):
                    with autocast(device):
                        logits, _ = net(tokens.to(device))
                    summed = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE,
                                             reduction="sum")
                    # over the global count of scored targets, times the world (DDP averages): the full batch's mean
                    (summed * (world.size / max(scored, 1.0) / cfg.accumulate)).backward()
                total += dp.all_sum(world, summed.item())[0] / max(scored, 1.0) / cfg.accumulate
            if not math.isfinite(total):
                raise NonFiniteLoss(step, last_finite)
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            last_finite = total
            compute_time += time.perf_counter() - t0
            done = step + 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{total:.3f}", tok_s=f"{tokens_per_step * (done - start) / compute_time:,.0f}")
            if tracker is not None and (done % cfg.log_every == 0 or done == cfg.steps):
                tracker.log_metrics({"train/loss": total, "train/lr": sched.get_last_lr()[0],
                                     "train/grad_norm": sharding.plain(grad_norm)}, done)
            if done % cfg.eval_every == 0 or done == cfg.steps or done in cfg.eval_at:
                evaluate(done)
            if done % cfg.checkpoint_every == 0 or done == cfg.steps:
                save(done)
    if bar is not None:
        bar.close()
    wall = time.perf_counter() - t_start
    steps_run = cfg.steps - start
    final = dict(history[-1][1]) if history else evaluate(cfg.steps)
    final["perf/tokens_per_s"] = tokens_per_step * steps_run / compute_time if compute_time else 0.0
    final["perf/peak_mem_mib"] = peak_memory.mib()
    flops = train_flops_per_token(spec, tokens_per_step // (cfg.accumulate * micro))
    final["perf/train_flops_per_token"] = flops
    final["perf/achieved_tflops"] = flops * final["perf/tokens_per_s"] / 1e12
    if peak:
        final["perf/mfu"] = final["perf/achieved_tflops"] / (peak * world.size)
    final["perf/ranks"] = world.size
    final["perf/wall_s"] = wall
    # overhead: wall time outside forward/backward/optimiser and evaluation (data, logging, checkpoints)
    final["perf/overhead"] = 1.0 - (compute_time + eval_time[0]) / wall if wall else 0.0
    final["perf/eval_share"] = eval_time[0] / wall if wall else 0.0
    return TrainResult(final, history, resumed_from=start)


def autocast(device: torch.device):
    """bf16 autocast on CUDA; plain fp32 on CPU (this CPU has no fast fp16 and the engine is fp32 inside)."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def _progress(cfg: TrainConfig, start: int):
    if not cfg.progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=cfg.steps, initial=start, desc="train", unit="step", dynamic_ncols=True, leave=False)
