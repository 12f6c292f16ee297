"""A sweep worker: asks the shared study for trials and runs them until the study has its count.

Asynchronous: each worker asks as soon as it is free, never waiting for a batch. The check of the count and the
ask happen under a file lock in the sweep directory, so N workers never start more trials than asked for; a
heartbeat thread marks the running trial alive, so the trial of a killed worker is failed and retried.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path
from typing import Any

import optuna
import torch

from .study import counted_trials, make_pruner, make_sampler, open_storage
from .trial import TrialRunner


PLOT_EVERY_S = 60


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


def run_worker(ctx: dict[str, Any], index: int = 0) -> int:
    """Entry point of one worker process (or the in-process debug launcher); returns the trials it ran."""
    from search_space import SearchSpace

    from .tracking import Tracker

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(ctx["threads"])
    sweep_dir = Path(ctx["sweep_dir"])
    pids = sweep_dir / "pids"
    pids.mkdir(exist_ok=True)
    (pids / f"worker-{index}.pid").write_text(str(os.getpid()))  # for `status` and for tests that kill workers
    space = SearchSpace.from_dict(ctx["space"], name=ctx["space_name"])
    multi = len(space.objectives) > 1
    storage = open_storage(ctx["storage"], ctx["heartbeat_s"], ctx["grace_s"])
    study = optuna.load_study(study_name=ctx["study_name"], storage=storage,
                              sampler=make_sampler(ctx["sampler"], ctx["seed"] + index, multi),
                              pruner=make_pruner(ctx["pruner"], multi))
    runner = TrialRunner(space, ctx, Tracker(ctx["tracking_uri"], ctx["experiment"]))
    parent = Tracker(ctx["tracking_uri"], ctx["experiment"])
    ran = 0
    while True:
        with sweep_lock(sweep_dir):
            optuna.storages.fail_stale_trials(study)
            if counted_trials(study) >= ctx["n_trials"]:
                break
            trial = study.ask()
        with heartbeat(study, trial):
            outcome = runner.run(trial)
        study.tell(trial, outcome.values, state=outcome.state)
        ran += 1
        with sweep_lock(sweep_dir):
            refresh_parent(study, space, ctx, parent)
    return ran


def refresh_parent(study: optuna.Study, space, ctx: dict[str, Any], parent) -> None:
    """The parent run's table of best architectures, rewritten as trials finish (MLflow shows the latest)."""
    from .report import counts, markdown, rows

    table = rows(study, [o.metric for o in space.objectives])
    parent.run_id = ctx["parent_run_id"]
    parent.log_text(markdown(table), "best_architectures.md")
    parent.log_metrics({f"trials/{k}": v for k, v in counts(study).items()}, len(study.get_trials(deepcopy=False)),
                       flush=True)
    # plots cost a second or two: redrawn at most once a minute while the sweep runs, and at its end
    stamp = Path(ctx["sweep_dir"]) / ".plots_drawn"
    if not stamp.exists() or time.time() - stamp.stat().st_mtime > PLOT_EVERY_S:
        from .plots import log_plots

        log_plots(study, [o.metric for o in space.objectives], parent)
        stamp.touch()
