"""A sweep worker: asks the shared study for trials and runs them until the study has its count.

Asynchronous: each worker asks as soon as it is free, never waiting for a batch. The check of the count and the
ask happen under a file lock in the sweep directory, so N workers never start more trials than asked for; a
heartbeat thread marks the running trial alive, so the trial of a killed worker is failed and retried.

Preemption (SIGUSR2, SLURM's warning before a time limit or a requeue) and cancellation (SIGTERM): the running
trial checkpoints, is failed with the reason, and a retry with the same parameters is queued at once (it resumes
from the checkpoint, in whichever worker asks next); then under SLURM a USR2 goes on to submitit, which requeues
this array task. No finished trial is lost, and the retry stands for the original in the count.

A data-parallel trial (launcher.ranks_per_trial / gpus_per_trial on SLURM) is one array task of several SLURM tasks,
one rank each: rank 0 is the worker above and hands every training run to the other ranks (a broadcast of its
config), which train their slices with it and wait for the next; signals stop all ranks at one step.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import optuna
import submitit
import torch
from optuna.storages import RetryHeartbeatStaleTrialCallback

from .study import counted_trials, make_pruner, make_sampler, open_storage, running_trials
from .train import distributed as dp
from .train.errors import TrainingStopped
from .train.signals import stop_on_signals
from .trial import TrialRunner, fail_lost


PLOT_EVERY_S = 60
STOP_FILE = "STOP"  # written by an interrupted sweep command: workers that have not asked yet stop before asking


@contextlib.contextmanager
def sweep_lock(sweep_dir: Path):
    with open(sweep_dir / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def heartbeat(study: optuna.Study, trial: optuna.Trial):
    """Optuna's own heartbeat thread, as study.optimize runs it (ask/tell does not start one)."""
    from optuna.storages._heartbeat import get_heartbeat_thread  # pinned optuna 5.0.0

    thread = get_heartbeat_thread(trial._trial_id, study._storage)
    thread.start()
    try:
        yield
    finally:
        thread.join()


class SweepWorker(submitit.helpers.Checkpointable):
    """The job submitit runs. Checkpointable: when SLURM preempts it, submitit requeues the same worker, which
    goes on asking the study for trials (the trial it was running is already queued as a retry)."""

    def __call__(self, ctx: dict[str, Any], index: int = 0) -> int:
        return run_worker(ctx, index)


def worker_id(index: int) -> str:
    """Where a trial ran: the SLURM array task (for sacct / `mirasweep status`), else this process."""
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID"):
        return f"slurm:{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    if env.get("SLURM_JOB_ID"):
        return f"slurm:{env['SLURM_JOB_ID']}"
    return f"worker-{index}:pid {os.getpid()}@{socket.gethostname()}"


def granted_threads(ctx: dict[str, Any]) -> int:
    """Torch threads = the CPUs SLURM granted this array task, else what the launcher planned (local workers
    inside an allocation share its CPUs, so they keep their planned share)."""
    granted = os.environ.get("SLURM_CPUS_PER_TASK") if ctx["launcher"].get("name") == "slurm" else None
    return int(granted or 0) or int(ctx["threads"])


def run_worker(ctx: dict[str, Any], index: int = 0) -> int:
    """Entry point of one worker process (or the in-process debug launcher); returns the trials it finished."""
    world = dp.environment_world()
    if world.distributed:
        from .train.loop import pick_device

        dp.join(world, pick_device("auto", world))
    with stop_on_signals() as stop:
        if world.main:
            try:
                ran = _ask_and_run(ctx, index, stop, world)
            finally:
                dp.broadcast(world, ("done", None, None))  # the other ranks stop waiting for a run
        else:
            ran = follow(ctx, world)
    if stop.signal_name == "SIGUSR2" and ctx["launcher"].get("name") == "slurm" and os.environ.get("SLURM_JOB_ID"):
        # our handler is gone again: submitit's own one checkpoints this worker, requeues the task and exits
        signal.raise_signal(signal.SIGUSR2)
    return ran


def follow(ctx: dict[str, Any], world: dp.World) -> int:
    """A rank > 0 of a data-parallel trial: train each run rank 0 hands over, with it, until it says done. Outcomes
    (pruned, preempted, failed) are rank 0's to report: it meets the same one, at the same step."""
    from .train.run import run_training

    torch.set_num_threads(granted_threads(ctx))
    runs = 0
    while True:
        kind, config, out_dir = dp.broadcast(world, None)
        if kind == "done":
            return runs
        runs += 1
        try:
            run_training(config, Path(out_dir))
        except TrainingStopped as err:  # pruned, preempted, diverged: rank 0 met it at the same step and reports it
            print(f"mirasweep worker rank {world.rank}: {err}", flush=True)
        except Exception as err:  # noqa: BLE001 - rank 0 fails the trial with its own copy of the reason
            print(f"mirasweep worker rank {world.rank}: {type(err).__name__}: {err}", flush=True)


def _ask_and_run(ctx: dict[str, Any], index: int, stop, world: dp.World | None = None) -> int:
    from search_space import SearchSpace

    from .tracking import Tracker

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ctx = {**ctx, "threads": granted_threads(ctx)}
    torch.set_num_threads(ctx["threads"])
    sweep_dir = Path(ctx["sweep_dir"])
    pids = sweep_dir / "pids"
    pids.mkdir(exist_ok=True)
    (pids / f"worker-{index}.pid").write_text(str(os.getpid()))  # for `status` and for tests that kill workers
    me = worker_id(index)
    print(f"mirasweep worker {me}: {ctx['threads']} torch threads, study '{ctx['study_name']}'", flush=True)
    space = SearchSpace.from_dict(ctx["space"], name=ctx["space_name"])
    multi = len(space.objectives) > 1
    storage = open_storage(ctx["storage"], ctx["heartbeat_s"], ctx["grace_s"])
    study = optuna.load_study(study_name=ctx["study_name"], storage=storage,
                              sampler=make_sampler(ctx["sampler"], ctx["seed"] + index, multi),
                              pruner=make_pruner(ctx["pruner"], multi))
    runner = TrialRunner(space, ctx, Tracker(ctx["tracking_uri"], ctx["experiment"]), world or dp.World())
    parent = Tracker(ctx["tracking_uri"], ctx["experiment"])
    lost_runs = Tracker(ctx["tracking_uri"], ctx["experiment"])
    ran = 0
    while not stop and not (sweep_dir / STOP_FILE).exists():
        with sweep_lock(sweep_dir):
            fail_lost(study, lost_runs)
            done = counted_trials(study) >= ctx["n_trials"]
            others = running_trials(study) if done else []
            trial = None if done else study.ask()
        if done and not others:  # the sweep is complete: its parent run too (a detached sweep has no command to do it)
            parent.run_id = ctx["parent_run_id"]
            parent.finish("FINISHED")
            break
        if trial is None:
            # The count is reached, but trials of other workers still run: wait for them to finish, or to be found
            # lost and queued again (then this worker runs the retry). The sweep never ends with a trial RUNNING.
            stop.wait(min(2, ctx["heartbeat_s"]))
            continue
        trial.set_user_attr("worker", me)
        with heartbeat(study, trial):
            outcome = runner.run(trial)
        study.tell(trial, outcome.values, state=outcome.state)
        if outcome.preempted:  # not the trial's fault: retried as often as it is preempted
            RetryHeartbeatStaleTrialCallback(max_retry=None)(study, study._storage.get_trial(trial._trial_id))
        else:
            ran += 1
        with sweep_lock(sweep_dir):
            refresh_parent(study, space, ctx, parent)
    return ran


def refresh_parent(study: optuna.Study, space, ctx: dict[str, Any], parent) -> None:
    """The parent run's table of best architectures, rewritten as trials finish (MLflow shows the latest)."""
    from .report import counts, markdown, presets_markdown, rows, tag_search_best

    if ctx.get("stage") == "confirm":  # the confirm stage's table is the seeds' means and intervals
        from .confirm import publish

        publish(ctx, study)
        return
    metrics = [o.metric for o in space.objectives]
    table = rows(study, metrics)
    parent.run_id = ctx["parent_run_id"]
    parent.log_text(markdown(table) + presets_markdown(study, metrics), "best_architectures.md")
    from .confirm import load_stage

    tag_search_best(study, parent.client, confirmed=load_stage(ctx["sweep_dir"]) is not None)
    parent.log_metrics({f"trials/{k}": v for k, v in counts(study).items()}, len(study.get_trials(deepcopy=False)),
                       flush=True)
    # plots cost a second or two: redrawn at most once a minute while the sweep runs, and at its end
    stamp = Path(ctx["sweep_dir"]) / ".plots_drawn"
    if not stamp.exists() or time.time() - stamp.stat().st_mtime > PLOT_EVERY_S:
        from .plots import log_plots

        log_plots(study, metrics, parent)
        stamp.touch()
