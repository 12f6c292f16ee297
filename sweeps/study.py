"""The Optuna study behind a sweep: storage, sampler and pruner from config, created once before workers start.

Storages: SQLite in the sweep directory (default; an RDB, so heartbeats fail and retry the trials of killed
workers), any SQLAlchemy URL (PostgreSQL for many nodes), or `journal:<path>` (Optuna's journal file, for a
shared filesystem without a database; no heartbeats, so a killed worker's trial stays RUNNING until the sweep
is resumed, when it is failed and retried).
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Mapping

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from components.options import ComponentError

# Heartbeats and stale-trial retries are stable in practice but flagged experimental; ask/tell with our own
# heartbeat thread (sweeps.worker) is what Optuna's optimize() does inside.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")

HEARTBEAT_S = 10
GRACE_S = 30
MAX_RETRY = 3  # retries of a trial whose worker was lost (preemptions and cancellations are retried every time)
LOST = " lost: "  # in the reason of an attempt whose worker was lost (what lost_attempts counts)


STORAGE_FORMS = "sqlite:///PATH, postgresql+psycopg://USER@HOST/DB, mysql+pymysql://USER@HOST/DB or journal:PATH"


def storage_url(setting: str | None, sweep_dir: Path) -> str:
    """The study's storage: the setting, checked (validate_storage), or the sweep folder's SQLite file."""
    if setting:
        validate_storage(setting, "sweep.storage")
        return setting
    return f"sqlite:///{(sweep_dir / 'optuna.db').resolve()}"


def validate_storage(url: str, where: str) -> None:
    """One message naming `where` for a storage URL Optuna could not open: not a string, a journal without a path,
    an unparsable URL, an unknown database scheme or a driver that is not installed. Connects to nothing."""
    if not isinstance(url, str) or not url.strip():
        raise ComponentError(f"{where}={url!r}: expected a storage URL: {STORAGE_FORMS}")
    if url.startswith("journal:"):
        if not url[len("journal:"):].strip():
            raise ComponentError(f"{where}={url!r}: a journal storage needs a file path, e.g. journal:runs/optuna.log")
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        dialect = make_url(url).get_dialect()
    except (ArgumentError, NoSuchModuleError):
        scheme = url.split("://", 1)[0] if "://" in url else None
        if scheme is None or not scheme.replace("+", "").replace("_", "").isalnum():
            raise ComponentError(f"{where}={url!r}: not a storage URL; expected {STORAGE_FORMS}") from None
        raise ComponentError(f"{where}={url!r}: unknown database scheme '{scheme}'; expected {STORAGE_FORMS}") from None
    try:
        dialect.import_dbapi()
    except ImportError as err:
        raise ComponentError(f"{where}={url!r}: the database driver is not installed ({err}); for PostgreSQL: "
                             "pip install 'mirasweep[postgres]'") from None


def open_storage(url: str, heartbeat_s: int = HEARTBEAT_S, grace_s: int = GRACE_S) -> optuna.storages.BaseStorage:
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(url[len("journal:"):]))
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    # stale trials are failed and retried by fail_lost_trials (with their reasons), not by a storage callback
    return optuna.storages.RDBStorage(url, engine_kwargs=engine, heartbeat_interval=heartbeat_s, grace_period=grace_s)


def make_sampler(cfg: Mapping[str, Any], seed: int, multi_objective: bool) -> optuna.samplers.BaseSampler:
    cfg = dict(cfg or {"name": "tpe"})
    name = cfg.pop("name", "tpe")
    kinds = {
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed, **cfg),
        "nsga2": lambda: optuna.samplers.NSGAIISampler(seed=seed, **cfg),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "gp": lambda: optuna.samplers.GPSampler(seed=seed, **cfg),
        "bruteforce": lambda: optuna.samplers.BruteForceSampler(seed=seed),
    }
    if name not in kinds:
        raise ComponentError(f"sampler: unknown sampler '{name}'; known samplers: {', '.join(kinds)}")
    try:
        return kinds[name]()
    except TypeError as err:
        raise ComponentError(f"sampler '{name}': {err}") from None


def make_pruner(cfg: Mapping[str, Any], multi_objective: bool) -> optuna.pruners.BasePruner:
    cfg = dict(cfg or {"name": "none"})
    name = cfg.pop("name", "none")
    kinds = {
        "none": lambda: optuna.pruners.NopPruner(),
        "median": lambda: optuna.pruners.MedianPruner(**cfg),
        "sha": lambda: optuna.pruners.SuccessiveHalvingPruner(**cfg),
        "hyperband": lambda: optuna.pruners.HyperbandPruner(**cfg),
    }
    if name not in kinds:
        raise ComponentError(f"pruner: unknown pruner '{name}'; known pruners: {', '.join(kinds)}")
    if multi_objective and name != "none":
        raise ComponentError(f"pruner '{name}' works for single-objective studies only (Optuna's pruners take "
                             "one intermediate value); multi-objective sweeps stop bad trials between tasks "
                             "instead (sweep.task_halving), so use pruner=none")
    return kinds[name]()


def create_study(url: str, name: str, directions: list[str]) -> None:
    """Create the study (and its tables) once, before any worker starts; an existing one is kept."""
    storage = open_storage(url)
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        optuna.create_study(study_name=name, storage=storage, directions=directions)
        return
    if [d.name.lower() for d in study.directions] != [d.lower() for d in directions]:
        raise ComponentError(f"sweep: study '{name}' exists with directions "
                             f"{[d.name.lower() for d in study.directions]}, the search space asks for {directions}; "
                             "use a new sweep directory or study name")


def retried_numbers(trials: list[FrozenTrial]) -> set[int]:
    """Numbers of the attempts a later retry stands for: every earlier attempt of a retry chain (preempted, cancelled
    or lost workers' trials, retries of retries included), so only the last attempt of a chain counts."""
    return {n for t in trials for n in RetryHeartbeatStaleTrialCallback.retry_history(t)}


def worker_alive(worker: str) -> bool | None:
    """Whether the worker a trial's `worker` attribute names still runs: a local process (pid on this host, not a
    zombie) or a SLURM job still in squeue; None where it cannot be told (another host, no squeue)."""
    import shutil
    import socket
    import subprocess

    if worker.startswith("slurm:"):
        if shutil.which("squeue") is None:
            return None
        out = subprocess.run(["squeue", "-h", "-o", "%T", "-j", worker[len("slurm:"):]], capture_output=True,
                             text=True, timeout=30)
        if out.returncode != 0 and "Invalid job id" not in out.stderr:
            return None
        return bool(out.stdout.strip())
    if "pid " not in worker or "@" not in worker:
        return None
    pid, host = worker.split("pid ", 1)[1].split("@", 1)
    if host != socket.gethostname():
        return None
    try:
        stat = Path(f"/proc/{int(pid)}/stat").read_text()
    except (OSError, ValueError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a killed worker its parent has not reaped yet is a zombie


def fail_lost_trials(study: optuna.Study, on_failed=None) -> list[FrozenTrial]:
    """Fail the RUNNING trials whose worker is gone, each with its reason, and queue their retries (up to MAX_RETRY
    lost attempts of one chain; then the chain ends failed, saying so). A worker is gone when its heartbeat is stale
    (RDB storages, after the grace period) or when its process or SLURM job no longer exists (any storage, at once:
    so a rerun right after a kill, and a journal storage without heartbeats, retry the trial too).
    on_failed(trial) runs for each failed trial (closing its MLflow runs). Optuna's fail_stale_trials, plus reasons."""
    from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled  # pinned optuna 5.0.0

    storage = study._storage
    heartbeat = isinstance(storage, BaseHeartbeat) and is_heartbeat_enabled(storage)
    stale = set(storage._get_stale_trial_ids(study._study_id)) if heartbeat else set()
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker", "")
        if trial._trial_id in stale:
            grace = getattr(getattr(storage, "_backend", storage), "grace_period", None)  # _CachedStorage wraps the RDB
            why = f"worker {worker or '?'}{LOST}no heartbeat for {grace} s"
        elif worker and worker_alive(worker) is False:
            why = f"worker {worker}{LOST}its process or job ended while the trial ran"
        else:
            continue
        attempts = len(RetryHeartbeatStaleTrialCallback.retry_history(trial)) + 1
        lost = lost_attempts(study, trial) + 1
        retry = lost <= MAX_RETRY
        why += (f" (killed, out of memory or node failure); retried, attempt {attempts + 1}" if retry else
                f"; gave up after {attempts} attempts, {lost} of them lost (the limit is {MAX_RETRY} retries of lost "
                "workers; preemptions do not count)")
        try:
            storage.set_trial_user_attr(trial._trial_id, "reason", why)
            if not storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:  # another process failed or finished it first
            continue
        frozen = storage.get_trial(trial._trial_id)
        if retry:
            RetryHeartbeatStaleTrialCallback(max_retry=None)(study, frozen)
        failed.append(frozen)
        if on_failed is not None:
            on_failed(frozen)
    return failed


def lost_attempts(study: optuna.Study, trial: FrozenTrial) -> int:
    """Earlier attempts of this trial's retry chain that lost their worker (killed, out of memory, node failure).
    Preemptions and cancellations checkpoint and stop cleanly, so they never use up the retry limit: on a busy
    cluster a trial may be preempted any number of times and still finish."""
    history = set(RetryHeartbeatStaleTrialCallback.retry_history(trial))
    if not history:
        return 0
    return sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
               if t.number in history and t.user_attrs.get("reason", "").startswith("worker ")
               and LOST in t.user_attrs["reason"])


def running_trials(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))


def counted_trials(study: optuna.Study) -> int:
    """Trials that count towards the sweep's total: finished (complete, pruned, failed) or running, where a
    failed trial that was retried counts once (its retry stands for it)."""
    trials = study.get_trials(deepcopy=False)
    retried = retried_numbers(trials)
    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)
    return sum(1 for t in trials if t.state in states and t.number not in retried)


def original_number(trial: FrozenTrial | optuna.Trial) -> int:
    """The number of the first attempt of this trial (retries resume its checkpoints)."""
    frozen = trial if isinstance(trial, FrozenTrial) else trial.study._storage.get_trial(trial._trial_id)
    original = RetryHeartbeatStaleTrialCallback.retried_trial_number(frozen)
    return frozen.number if original is None else original
