"""`mirasweep sweep`: validate everything, create the stores once, launch the workers, follow, report.

Order matters: every input is validated before anything is created (bad input leaves no files, study or run);
the Optuna study and the MLflow store are created by this process before any worker starts (two processes
creating a brand-new SQLite store at the same moment fail); the same command resumes an interrupted sweep and
does nothing for a finished one.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import optuna

from components.options import ComponentError

from .confirm import STAGE_FILE, create_stage, load_stage, prepare_stage, publish, stage_dir, stage_runs, validate_args
from .launchers import launch
from .launchers import validate as validate_launcher
from .report import counts, markdown, presets_markdown, rows, tag_search_best, write_csv
from .study import counted_trials, create_study, make_pruner, make_sampler, open_storage, storage_url
from .tracking import Tracker
from .tracking.mlflow_run import validate_tracking_uri
from .cost import validate as validate_cost
from .train.loop import cpu_count

PARENT_RUN_ID = "mlflow_parent_run_id"
SWEEP_FILE = "sweep.json"


def prepare(config: dict[str, Any], choices: dict[str, str]) -> tuple[Any, dict[str, Any]]:
    """Validate the composed config into (search space, worker context); creates nothing."""
    from search_space import SearchSpace

    space_name = choices.get("search_space") or "custom"
    space = SearchSpace.from_dict(config["search_space"], name=space_name)
    sweep = dict(config.get("sweep") or {})
    launcher = dict(config.get("launcher") or {})
    multi = len(space.objectives) > 1
    make_sampler(config.get("sampler"), 0, multi)  # raise now on a bad sampler or pruner
    make_pruner(config.get("pruner"), multi)
    validate_launcher(launcher)
    validate_cost(config.get("cost") or {})
    workers = int(launcher.get("workers", 1))
    if workers < 1:
        raise ComponentError(f"launcher.workers must be >= 1, got {workers}")
    seeds_per_trial = sweep.get("seeds_per_trial", 1)
    if not isinstance(seeds_per_trial, int) or isinstance(seeds_per_trial, bool) or seeds_per_trial < 1:
        raise ComponentError(f"sweep.seeds_per_trial must be an integer >= 1 (training seeds averaged per trial), "
                             f"got {seeds_per_trial!r}")
    n_trials = int(sweep.get("n_trials", 8))
    if n_trials < 1:
        raise ComponentError(f"sweep.n_trials must be >= 1, got {n_trials}")
    study_name = sweep.get("study_name") or space_name
    sweep_dir = Path(sweep.get("dir") or f"runs/sweeps/{study_name}").resolve()
    tracking = dict(config.get("tracking") or {})
    if tracking.get("uri") is not None:
        validate_tracking_uri(tracking["uri"])
    storage = storage_url(sweep.get("storage"), sweep_dir)
    feasible = space.require_valid(seed=int(sweep.get("seed", 0)))  # a space no trial of which can train is an error
    # local workers share this machine's cores; a SLURM task gets its own (and follows what SLURM grants)
    local_share = 1 if launcher.get("name") == "slurm" else max(1, cpu_count() // workers)
    cpus = int(launcher.get("cpus_per_worker") or 0) or local_share
    ctx = {
        "space": space.to_dict(), "space_name": space_name, "study_name": study_name, "sweep_dir": str(sweep_dir),
        "storage": storage, "n_trials": n_trials, "seed": int(sweep.get("seed", 0)),
        "sampler": config.get("sampler"), "pruner": config.get("pruner"), "threads": cpus,
        "tracking_uri": tracking.get("uri") or f"sqlite:///{sweep_dir / 'mlflow.db'}",
        "experiment": tracking.get("experiment") or f"sweep-{study_name}",
        "task_halving": sweep.get("task_halving"), "min_completed": int(sweep.get("min_completed", 4)),
        "seeds_per_trial": seeds_per_trial,
        "workers": workers, "launcher": launcher,
        "heartbeat_s": int(sweep.get("heartbeat_s", 10)), "grace_s": int(sweep.get("grace_s", 30)),
        "feasible": f"{feasible.valid}/{feasible.draws}",
    }
    return space, ctx


def check_writable(ctx: dict[str, Any]) -> None:
    """One clear message, before anything is created or started, when a store of an existing sweep (SQLite study or
    MLflow store, journal file) or the sweep directory cannot be written (read-only file system or file)."""
    import sqlite3
    import tempfile

    for what, url in (("sweep.storage (the Optuna study)", ctx["storage"]),
                      ("tracking.uri (the MLflow store)", ctx["tracking_uri"])):
        path = Path(url[len("sqlite:///"):] if url.startswith("sqlite:///") else url[len("journal:"):])
        if not (url.startswith(("sqlite:///", "journal:")) and path.exists()):
            continue
        try:
            if url.startswith("sqlite"):
                con = sqlite3.connect(path, timeout=60)
                try:
                    con.execute("BEGIN IMMEDIATE")
                    con.execute("CREATE TABLE mirasweep_write_check (x)")  # a real write, rolled back
                    con.rollback()
                finally:
                    con.close()
            else:
                with open(path, "a"):
                    pass
        except (sqlite3.Error, OSError) as err:
            raise ComponentError(f"{what} {path} cannot be written ({err}); nothing was started: make it writable "
                                 "(file system, permissions), then rerun the same command") from None
    sweep_dir = Path(ctx["sweep_dir"])
    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=sweep_dir):
            pass
    except OSError as err:
        raise ComponentError(f"sweep.dir {sweep_dir} cannot be written ({err.strerror or err}); nothing was started") \
            from None


def create_stores(space, ctx: dict[str, Any]) -> dict[str, bool]:
    """The sweep directory, the study (with the seed presets enqueued once), the MLflow parent run. Returns what this
    call created (`study`, `parent_run`), so that a launch that fails can take exactly that back."""
    from .worker import STOP_FILE, sweep_lock

    sweep_dir = Path(ctx["sweep_dir"])
    sweep_dir.mkdir(parents=True, exist_ok=True)
    # Two identical commands started at once: the first creates the study, enqueues the presets and the parent run;
    # the second waits for it here and then works on the same study (its workers join the first one's).
    with sweep_lock(sweep_dir):
        created = _create_stores(space, ctx, sweep_dir)
        Path(sweep_dir, STOP_FILE).unlink(missing_ok=True)  # an earlier interrupted command's stop: this one resumes
    return created


def _create_stores(space, ctx: dict[str, Any], sweep_dir: Path) -> dict[str, bool]:
    storage = open_storage(ctx["storage"])
    new = ctx["study_name"] not in {s.study_name for s in optuna.get_all_study_summaries(storage)}
    create_study(ctx["storage"], ctx["study_name"], [o.direction for o in space.objectives])
    if new:
        study = optuna.load_study(study_name=ctx["study_name"], storage=storage)
        for preset in space.enqueue[: ctx["n_trials"]]:  # a seed point beyond the count would wait forever
            study.enqueue_trial(space.enqueue_params(preset), user_attrs={"preset": preset})
    tracker = Tracker(ctx["tracking_uri"], ctx["experiment"])
    id_file = sweep_dir / PARENT_RUN_ID
    resume = id_file.read_text().strip() if id_file.is_file() else None
    tracker.start(f"sweep {ctx['study_name']}", tags={"sweep": ctx["study_name"], "search_space": ctx["space_name"],
                                                      "kind": "sweep"}, resume_run_id=resume)
    if resume is None:
        id_file.write_text(tracker.run_id)
        tracker.log_params({"sweep": {k: ctx[k] for k in ("n_trials", "seed", "sampler", "pruner", "workers")},
                            "objectives": {o.metric: o.direction for o in space.objectives}})
        tracker.log_json(ctx["space"], "search_space.json")
    ctx["parent_run_id"] = tracker.run_id
    (sweep_dir / SWEEP_FILE).write_text(json.dumps(ctx, indent=2, default=str))
    return {"study": new, "parent_run": resume is None}


def launch_or_undo(ctx: dict[str, Any], created: dict[str, bool], new_dir: bool) -> list:
    """Start the workers. When that fails (sbatch refuses the array: unknown partition, account or QOS, too much
    memory; no sbatch at all), one message naming the launcher setting, and nothing half-created: a new sweep's
    study, parent run and directory are removed; a resumed sweep's parent run is marked KILLED with the reason."""
    import contextlib
    import io
    import sys

    said = io.StringIO()  # submitit prints sbatch's refusal before raising it: the one message below says it once
    try:
        with contextlib.redirect_stderr(said):
            jobs = launch(ctx)
        sys.stderr.write(said.getvalue())
        return jobs
    except Exception as err:
        message = launch_error(ctx["launcher"], err)
        tracker = Tracker(ctx["tracking_uri"], ctx["experiment"])
        tracker.run_id = ctx["parent_run_id"]
        if created["parent_run"]:
            tracker.client.delete_run(ctx["parent_run_id"])
        else:
            tracker.finish("KILLED", f"the workers could not be started: {message}")
        if created["study"]:
            optuna.delete_study(study_name=ctx["study_name"], storage=open_storage(ctx["storage"]))
        if new_dir:
            import shutil

            shutil.rmtree(ctx["sweep_dir"], ignore_errors=True)
        raise ComponentError(message) from None


# words of sbatch's refusals -> the launcher setting that controls them (first match; "account/partition
# combination" is the account's)
SBATCH_SETTINGS = (("account", "account"), ("partition", "partition"), ("qos", "qos"), ("feature", "constraint"),
                   ("constraint", "constraint"), ("memory", "mem_gb"), ("gres", "gpus_per_task"),
                   ("gpu", "gpus_per_task"), ("time limit", "timeout_min"), ("cpu", "cpus_per_worker"),
                   ("processor", "cpus_per_worker"))


def launch_error(launcher: dict[str, Any], err: Exception) -> str:
    """One line for a failed launch: which setting, what the scheduler said, and what it accepts where we can ask."""
    import shutil
    import subprocess

    name = launcher.get("name", "local")
    said = " ".join(line.strip() for line in str(err).strip().splitlines() if line.strip())[:400]
    if isinstance(err, FileNotFoundError) and name == "slurm":
        return (f"launcher=slurm: no SLURM on this machine ({err.filename or 'sbatch'} not found); run the sweep "
                "from a cluster's login node, or use launcher=local")
    if name != "slurm":
        return f"launcher={name}: the workers could not be started: {type(err).__name__}: {said}"
    lowered = said.lower()
    key = next((setting for word, setting in SBATCH_SETTINGS if word in lowered), None)
    where = f"launcher.{key}" if key else "launcher (the sbatch options in conf/launcher/slurm.yaml)"
    value = f" = {launcher.get(key)!r}" if key and launcher.get(key) is not None else ""
    known = ""
    if key == "partition" and shutil.which("sinfo"):
        out = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=30)
        names = sorted({p.rstrip("*") for p in out.stdout.split()})
        known = f"; partitions on this cluster: {', '.join(names)}" if names else ""
    return f"{where}{value}: sbatch refused the job array: {said}{known}; nothing was started"


def load_context(path: str | Path) -> dict[str, Any]:
    """The context a sweep directory was created with (for `mirasweep report` and `status`)."""
    file = Path(path) / SWEEP_FILE
    if not file.is_file():
        raise ComponentError(f"{path} is not a sweep directory (no {SWEEP_FILE}); sweeps live in runs/sweeps/<name>")
    return json.loads(file.read_text())


STOP_WAIT_S = 120  # after SIGINT/SIGTERM: how long workers get to checkpoint before they are killed


def local_worker_pids(ctx: dict[str, Any]) -> list[int]:
    """Pids of this sweep's local worker processes that still run (each writes pids/worker-N.pid when it starts; a
    pid is taken only while it is a submitit task, never a stale file's recycled pid)."""
    pids = []
    for pid_file in Path(ctx["sweep_dir"], "pids").glob("worker-*.pid"):
        try:
            pid = int(pid_file.read_text())
            if b"submitit" in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(pid)
        except (OSError, ValueError):
            continue
    return pids


def stop_workers(ctx: dict[str, Any], jobs, force: bool = False) -> None:
    """Ask every worker to checkpoint its trial and stop (local: SIGTERM; SLURM: scancel, i.e. SIGTERM to the tasks),
    or kill them (force: a second signal, or STOP_WAIT_S passed). Workers not started yet stop before asking."""
    import os
    import signal

    from .worker import STOP_FILE

    Path(ctx["sweep_dir"], STOP_FILE).touch()
    if ctx["launcher"].get("name") == "slurm":
        for job in jobs:
            if not job.done():
                job.cancel(check=False)
        return
    for pid in local_worker_pids(ctx):
        try:
            os.kill(pid, signal.SIGKILL if force else signal.SIGTERM)
        except ProcessLookupError:
            pass


def follow(ctx: dict[str, Any], jobs, poll_s: float = 2.0) -> list[str]:
    """A live line per poll: trials done / running / pruned / failed of the total, and the best so far.
    Returns one line per worker that ended without finishing (cancelled, killed, crashed).

    SIGINT (Ctrl-C) or SIGTERM: the workers are told to checkpoint their trials and stop (each trial is failed as
    preempted and queued again); a second signal, or STOP_WAIT_S, kills them. ctx['interrupted'] names the signal."""
    from rich.console import Console

    from .train.signals import stop_on_signals

    console = Console(stderr=True)
    study = optuna.load_study(study_name=ctx["study_name"], storage=open_storage(ctx["storage"]))
    last, stopping, deadline = None, None, 0.0
    with stop_on_signals() as stop, console.status("sweep running") as status:
        while not all(j.done() for j in jobs):
            if stop and stopping is None:
                stopping = stop.signal_name
                stop.signal_name = None  # armed again: a second signal forces the stop
                deadline = time.monotonic() + STOP_WAIT_S
                stop_workers(ctx, jobs)
            elif stopping and (stop or time.monotonic() > deadline):
                stop_workers(ctx, jobs, force=True)
            c = counts(study)
            line = (f"trials {c['complete']} done, {c['running']} running, {c['pruned']} pruned, {c['fail']} failed "
                    f"of {ctx['n_trials']}; {best_so_far(study)}")
            if stopping:
                line = f"{stopping}: waiting for the workers to checkpoint and stop (again to kill them); " + line
            if line != last:
                status.update(line)
                last = line
            stop.wait(poll_s)
    ctx["interrupted"] = stopping
    lost = []
    for job in jobs:
        try:
            job.result()
        except Exception as err:  # cancelled, killed or crashed: its trial was failed and queued for a retry
            lines = str(err).strip().splitlines() or [type(err).__name__]
            lost.append(f"worker {job.job_id}: {lines[0][:300]}")
    return lost


def best_so_far(study: optuna.Study) -> str:
    if not counts(study)["complete"]:
        return "no result yet"
    if len(study.directions) > 1:
        return f"Pareto set of {len(study.best_trials)}"
    best = study.best_trial
    return f"best {best.value:.4g} ({best.user_attrs.get('architecture', '?')}, trial {best.number})"


def finish(space, ctx: dict[str, Any]) -> list[dict]:
    study = optuna.load_study(study_name=ctx["study_name"], storage=open_storage(ctx["storage"]))
    metrics = [o.metric for o in space.objectives]
    table = rows(study, metrics)
    sweep_dir = Path(ctx["sweep_dir"])
    write_csv(table, sweep_dir / "report.csv")
    tracker = Tracker(ctx["tracking_uri"], ctx["experiment"])
    tracker.run_id = ctx["parent_run_id"]
    tracker.log_text(markdown(table) + presets_markdown(study, metrics), "best_architectures.md")
    tag_search_best(study, tracker.client, confirmed=load_stage(sweep_dir) is not None)
    from .plots import log_plots

    log_plots(study, metrics, tracker)
    c = counts(study)
    counted = counted_trials(study)
    tracker.log_metrics({f"trials/{k}": v for k, v in c.items()}, counted, flush=True)
    ctx["unfinished"] = unfinished(ctx["n_trials"], counted, c)
    if ctx.get("interrupted") or ctx["unfinished"]:  # the same command resumes this run
        why = f"{ctx['interrupted']}: stopped" if ctx.get("interrupted") else "interrupted"
        tracker.finish("KILLED", f"{why} with {ctx['unfinished'] or 'the count reached'}; rerun the sweep command "
                                 "to resume")
    else:
        tracker.finish("FINISHED")
    return table


def unfinished(n_trials: int, counted: int, c: dict[str, int]) -> str:
    """'' for a finished sweep, else what is left, in words."""
    if counted >= n_trials and not c["running"] and not c["waiting"]:
        return ""
    left = [f"{counted} of {n_trials} trials counted"]
    left += [f"{c[k]} {k}" for k in ("running", "waiting") if c[k]]
    return ", ".join(left)


def requeue_lost(ctx: dict[str, Any]) -> list[int]:
    """After the workers ended: trials still RUNNING lost their workers; failed (with the reason, MLflow runs closed)
    and queued again. Returns their numbers."""
    from .trial import fail_lost

    study = optuna.load_study(study_name=ctx["study_name"], storage=open_storage(ctx["storage"]))
    return [t.number for t in fail_lost(study, Tracker(ctx["tracking_uri"], ctx["experiment"]))]


def run_sweep(config: dict[str, Any], choices: dict[str, str], detach: bool = False) -> tuple[list[dict], dict]:
    space, ctx = prepare(config, choices)
    new = not Path(ctx["sweep_dir"]).exists()
    try:
        check_writable(ctx)
        created = create_stores(space, ctx)
    except Exception as err:  # a store that cannot be opened: one message, not a database library's traceback
        if new:  # nothing half-created
            import shutil

            shutil.rmtree(ctx["sweep_dir"], ignore_errors=True)
        if isinstance(err, ComponentError):
            raise
        cause = (str(err).strip().splitlines() or [""])[0][:300]
        raise ComponentError(f"sweep: cannot open the sweep's stores (study {ctx['storage']}, MLflow "
                             f"{ctx['tracking_uri']}): {type(err).__name__}: {cause}") from None
    if not run_workers(ctx, created, new, detach):
        return [], ctx
    return finish(space, ctx), ctx


def run_workers(ctx: dict[str, Any], created: dict[str, bool], new: bool, detach: bool) -> bool:
    """Launch the workers of a sweep or confirm stage; unless detached, follow them to their end and queue again the
    trials they lost. Returns whether it followed them (False: detached)."""
    jobs = launch_or_undo(ctx, created, new)
    ctx["job_ids"] = [str(j.job_id) for j in jobs]
    if detach:
        return False
    ctx["lost_workers"] = follow(ctx, jobs)
    ctx["requeued"] = requeue_lost(ctx)
    return True


def run_confirm(sweep_dir: str, seeds: int, budget_scale: float, top: int, detach: bool = False):
    """`mirasweep confirm` (sweeps/confirm.py): create (or resume) the stage, run its trials with the sweep's
    launcher and workers, publish the seeds' means and verdicts. -> (rows, stage)."""
    from .worker import STOP_FILE, sweep_lock

    validate_args(seeds, budget_scale, top)
    ctx = load_context(sweep_dir)
    check_writable(ctx)
    stage, chosen = prepare_stage(ctx, seeds, budget_scale, top)
    new = not (stage_dir(ctx["sweep_dir"]) / STAGE_FILE).is_file()
    created = {"study": False, "parent_run": False}
    if new:
        stage_dir(ctx["sweep_dir"]).mkdir(parents=True, exist_ok=True)
        with sweep_lock(stage_dir(ctx["sweep_dir"])):
            created = create_stage(stage, chosen)
    else:
        Path(stage["sweep_dir"], STOP_FILE).unlink(missing_ok=True)  # an interrupted confirm's stop: this one resumes
        for run_id in stage_runs(stage):
            Tracker(stage["tracking_uri"], stage["experiment"]).start("", resume_run_id=run_id)
    if not run_workers(stage, created, new, detach):
        return [], stage
    study = optuna.load_study(study_name=stage["study_name"], storage=open_storage(stage["storage"]))
    rows = publish(stage, study, final=True)
    c = counts(study)
    stage["unfinished"] = unfinished(stage["n_trials"], counted_trials(study), c)
    stopped = stage.get("interrupted") or stage["unfinished"]
    why = (f"{stage.get('interrupted') or 'interrupted'} with {stage['unfinished'] or 'the count reached'}; rerun the "
           "confirm command to resume")
    for run_id in stage_runs(stage):
        run = Tracker(stage["tracking_uri"], stage["experiment"])
        run.run_id = run_id
        if run_id != stage["parent_run_id"]:  # the architecture rows of `mirasweep ui`'s view (it lists tags.state)
            run.set_tags({"state": "KILLED" if stopped else "CONFIRMED"})
        run.finish("KILLED", why) if stopped else run.finish("FINISHED")
    return rows, stage
