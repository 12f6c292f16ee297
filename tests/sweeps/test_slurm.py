"""Sweeps on a real SLURM cluster (scripts/local-slurm/start.sh): job arrays, preemption and requeue, cancelled
workers, resume, and the storages for many nodes (SQLite, journal file, PostgreSQL from
scripts/local-postgres/start.sh).

Skipped with the reason where no cluster (or PostgreSQL server) runs; CI sets MIRASWEEP_REQUIRE_SLURM=1, which
turns a skip into a failure.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback as Retry
from optuna.trial import TrialState

from sweeps.study import open_storage
from sweeps.sweep import load_context

from .test_sweep import FAST, cli, load

# one local cluster (a few CPUs): its tests take turns on one pytest-xdist worker
pytestmark = pytest.mark.xdist_group("slurm")

REQUIRED = os.environ.get("MIRASWEEP_REQUIRE_SLURM") == "1"
POSTGRES_URL = os.environ.get("MIRASWEEP_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5433/mirasweep")
# each array task gets 1 of the node's CPUs and 2 GB, so 2 tasks run at once on a 2-core machine
SLURM = ["launcher=slurm", "launcher.cpus_per_worker=1", "launcher.mem_gb=2", "launcher.timeout_min=60"]
# a trial long enough to be interrupted mid-training: 200 lm steps (~5 s), checkpoints every 10 steps
LONG = ["search_space.budget.tasks.lm.train.steps=200", "search_space.budget.tasks.lm.train.checkpoint_every=10"]


def unavailable(reason: str):
    if REQUIRED:
        pytest.fail(f"{reason} (MIRASWEEP_REQUIRE_SLURM=1: SLURM tests must run here)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def slurm() -> str:
    if shutil.which("sinfo") is None:
        unavailable("no SLURM client (sinfo) on this machine; start a local cluster: bash scripts/local-slurm/start.sh")
    out = subprocess.run(["sinfo", "-h", "-o", "%P %t"], capture_output=True, text=True, timeout=30)
    if out.returncode != 0 or not any(s in out.stdout for s in ("idle", "mix", "alloc")):
        unavailable(f"SLURM is not answering or has no usable node ({(out.stdout + out.stderr).strip()!r}); "
                    "start it: bash scripts/local-slurm/start.sh")
    if subprocess.run(["sacct", "-n", "-X", "-S", "now"], capture_output=True, timeout=30).returncode != 0:
        unavailable("SLURM runs without accounting (sacct fails); submitit needs sacct to see cancelled jobs")
    return out.stdout.split()[0].rstrip("*")


@pytest.fixture(scope="module")
def postgres() -> str:
    try:
        import sqlalchemy

        with sqlalchemy.create_engine(POSTGRES_URL).connect():
            pass
    except Exception as err:
        unavailable(f"no PostgreSQL server at {POSTGRES_URL} ({type(err).__name__}); "
                    "start one: bash scripts/local-postgres/start.sh")
    return POSTGRES_URL


def sweep_args(tmp_path: Path, *extra: str) -> list[str]:
    return ["sweep", f"sweep.dir={tmp_path / 'sweep'}", *FAST, *SLURM, *extra]


def wait(condition, timeout: float, what: str, poll: float = 0.5):
    deadline = time.time() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.time() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(poll)


def live_jobs(array: str) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-r", "-j", array, "-o", "%i %T"], capture_output=True, text=True)
    return out.stdout.split("\n") if out.stdout.strip() else []


def sacct_states(array: str, duplicates: bool = False) -> list[tuple[str, str]]:
    args = ["sacct", "-X", "-n", "--parsable2", "-o", "JobID,State", "-j", array] + (["-D"] if duplicates else [])
    out = subprocess.run(args, capture_output=True, text=True)
    return [tuple(line.split("|")) for line in out.stdout.splitlines() if line]


def detach(args: list[str], tmp_path: Path) -> dict:
    tmp_path.mkdir(parents=True, exist_ok=True)
    out = cli([*args, "--detach"], tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "submitted SLURM array job" in out.stderr
    ctx = load_context(tmp_path / "sweep")
    ctx["array"] = json.loads(Path(ctx["sweep_dir"], "jobs.json").read_text())[-1]["job_ids"][0].split("_")[0]
    return ctx


def finished(ctx: dict) -> bool:
    study = load(ctx)
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    busy = study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))
    return len(done) >= ctx["n_trials"] and not busy


def training(ctx: dict, number: int) -> bool:
    """A task of this trial has written a checkpoint and not finished yet."""
    tasks = Path(ctx["sweep_dir"], "trials", f"{number:05d}")
    return any((d / "checkpoint.pt").is_file() and not (d / "result.json").is_file() for d in tasks.glob("*"))


def objectives(trial) -> dict[str, float]:
    """What a trial learned (losses, bpb, recall), not how fast it ran."""
    return {k: v for k, v in trial.user_attrs.items()
            if k.startswith("metric:") and k.split(":")[-1].split("/")[0] in ("val", "recall", "train")}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("storage", ["sqlite", "journal", "postgresql"])
def test_a_slurm_array_of_two_workers_completes_the_sweep(tmp_path, slurm, storage, request):
    extra = ["launcher.workers=2", "sweep.n_trials=4" if storage == "sqlite" else "sweep.n_trials=3"]
    if storage == "journal":
        extra.append(f"sweep.storage=journal:{tmp_path / 'sweep' / 'optuna.journal'}")
    if storage == "postgresql":
        extra += [f"sweep.storage={request.getfixturevalue('postgres')}", f"sweep.study_name=pg-{uuid.uuid4().hex[:8]}"]
    out = cli(sweep_args(tmp_path, *extra), tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "best architectures" in out.stdout
    ctx = load_context(tmp_path / "sweep")
    trials = load(ctx).get_trials()
    assert len(trials) == ctx["n_trials"] and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    launches = json.loads(Path(ctx["sweep_dir"], "jobs.json").read_text())
    tasks = launches[0]["job_ids"]
    array = tasks[0].split("_")[0]
    assert tasks == [f"{array}_0", f"{array}_1"]  # one array job, two tasks
    assert {t.user_attrs["worker"] for t in trials} <= {f"slurm:{task}" for task in tasks}
    for task in tasks:  # torch threads follow the one CPU SLURM granted each task
        log = next(Path(ctx["sweep_dir"], "workers", task).glob("*_log.out")).read_text()
        assert f"mirasweep worker slurm:{task}: 1 torch threads" in log
    wait(lambda: sorted(sacct_states(array)) == [(t, "COMPLETED") for t in tasks], 30, "sacct to record both tasks")
    status = cli(["status", ctx["sweep_dir"], "--json"], tmp_path)
    info = json.loads(status.stdout)
    assert info["counted"] == ctx["n_trials"] and [j["state"] for j in info["jobs"]] == ["COMPLETED", "COMPLETED"]
    assert sum(j["trials"] for j in info["jobs"]) == ctx["n_trials"]
    if storage != "sqlite":
        return
    # the confirm stage runs on the sweep's launcher: its own job array of the sweep's two workers
    out = cli(["confirm", ctx["sweep_dir"], "--seeds", "2", "--budget-scale", "0.5"], tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    stage = json.loads(Path(ctx["sweep_dir"], "confirm", "confirm.json").read_text())
    tasks = json.loads(Path(stage["sweep_dir"], "jobs.json").read_text())[0]["job_ids"]
    assert len(tasks) == 2 and tasks[0].split("_")[0] != array
    done = optuna.load_study(study_name=stage["study_name"], storage=open_storage(stage["storage"])).get_trials()
    assert len(done) == 2 * len(stage["groups"]) and all(t.state == TrialState.COMPLETE for t in done)
    assert {t.user_attrs["worker"] for t in done} <= {f"slurm:{task}" for task in tasks}
    assert "confirmed architectures" in out.stdout


@pytest.mark.timeout(300)
def test_a_preempted_worker_requeues_and_its_trial_resumes_to_the_uninterrupted_result(tmp_path, slurm):
    args = [*LONG, "launcher.workers=1", "sweep.n_trials=1"]
    # the same trial (the enqueued seed preset), uninterrupted, as a second job on the other CPU
    base = detach(sweep_args(tmp_path / "baseline", *args), tmp_path / "baseline")
    ctx = detach(sweep_args(tmp_path / "preempted", *args), tmp_path / "preempted")
    wait(lambda: training(ctx, 0), 120, "trial 0 to be between two training checkpoints")
    subprocess.run(["scancel", "--signal=USR2", ctx["array"]], check=True)  # what SLURM sends before preempting
    wait(lambda: finished(ctx) and finished(base), 240, "both sweeps to finish")
    trials = load(ctx).get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    first, retry = trials
    stopped = re.fullmatch(r"preempted: SIGUSR2 at step (\d+) of task '(\w+)'; .*", first.user_attrs["reason"])
    assert stopped, first.user_attrs["reason"]
    assert Retry.retried_trial_number(retry) == 0 and retry.params == first.params
    assert retry.user_attrs["worker"] == first.user_attrs["worker"]  # the same SLURM job, requeued
    task = stopped.group(2)
    result = json.loads(Path(ctx["sweep_dir"], "trials", "00000", task, "result.json").read_text())
    assert result["resumed_from"] == int(stopped.group(1)) > 0  # went on from the checkpoint, not from scratch
    reference = load(base).get_trials()[0]
    assert reference.state == TrialState.COMPLETE and reference.params == retry.params
    assert objectives(retry) == pytest.approx(objectives(reference), rel=1e-5)
    wait(lambda: ("REQUEUED" in {s for _, s in sacct_states(ctx["array"], duplicates=True)}), 30,
         "sacct to record the requeue")
    counted = cli(["status", ctx["sweep_dir"], "--json"], tmp_path)
    info = json.loads(counted.stdout)
    assert info["counted"] == 1 and info["states"]["retried"] == 1  # counted once
    # MLflow: the resumed task run sits under the retry's run, the preempted trial's run says why it stopped
    client = MlflowClient(ctx["tracking_uri"])
    task_run = client.get_run(result["run_id"])
    assert task_run.data.tags["mlflow.parentRunId"] == retry.user_attrs["mlflow_run_id"]
    assert task_run.data.tags["resumed_from_step"] == str(result["resumed_from"])
    assert client.get_run(first.user_attrs["mlflow_run_id"]).data.tags["reason"].startswith("preempted")


def checkpointed_since(ctx: dict, number: int, since: float) -> bool:
    """A task of trial `number` (its retries share the folder) wrote a checkpoint after `since`."""
    tasks = Path(ctx["sweep_dir"], "trials", f"{number:05d}")
    return any((d / "checkpoint.pt").is_file() and (d / "checkpoint.pt").stat().st_mtime > since
               and not (d / "result.json").is_file() for d in tasks.glob("*"))


@pytest.mark.timeout(300)
def test_a_trial_preempted_twice_is_followed_to_the_end_of_its_retry_chain(tmp_path, slurm):
    ctx = detach(sweep_args(tmp_path, *LONG, "launcher.workers=1", "sweep.n_trials=1"), tmp_path)
    wait(lambda: training(ctx, 0), 120, "trial 0 to be between two training checkpoints")
    subprocess.run(["scancel", "--signal=USR2", ctx["array"]], check=True)
    first_stop = time.time()
    def retry_training() -> bool:  # one snapshot of the study: the retry (trial 1) runs past a new checkpoint
        running = load(ctx).get_trials(states=(TrialState.RUNNING,))
        return [t.number for t in running] == [1] and checkpointed_since(ctx, 0, first_stop)

    wait(retry_training, 120, "the retry to resume and write a checkpoint")
    subprocess.run(["scancel", "--signal=USR2", ctx["array"]], check=True)  # the retry preempted too
    wait(lambda: finished(ctx), 240, "the retry of the retry to finish")
    trials = load(ctx).get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL, TrialState.COMPLETE]
    assert all(t.user_attrs["reason"].startswith("preempted: SIGUSR2") for t in trials[:2])
    assert Retry.retry_history(trials[2]) == [0, 1]
    info = json.loads(cli(["status", ctx["sweep_dir"], "--json"], tmp_path).stdout)
    assert info["counted"] == 1 and info["states"]["retried"] == 2 and not info["failing"]
    client = MlflowClient(ctx["tracking_uri"])
    exp = client.get_experiment_by_name(ctx["experiment"]).experiment_id
    assert not client.search_runs([exp], "attributes.status = 'RUNNING'")


@pytest.mark.timeout(300)
def test_a_cancelled_worker_fails_its_trial_and_the_other_worker_retries_it(tmp_path, slurm):
    ctx = detach(sweep_args(tmp_path, *LONG, "launcher.workers=2", "sweep.n_trials=3"), tmp_path)
    study = load(ctx)

    def running_on_task_0():
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.user_attrs.get("worker") == f"slurm:{ctx['array']}_0" and training(ctx, t.number):
                return [t.number]  # a list: trial 0 is a valid answer
        return None

    [victim] = wait(running_on_task_0, 120, "task 0 to be training a trial")
    subprocess.run(["scancel", f"{ctx['array']}_0"], check=True)
    wait(lambda: finished(ctx), 240, "the remaining worker to finish the sweep")
    trials = study.get_trials()
    lost = next(t for t in trials if t.number == victim)
    assert lost.state == TrialState.FAIL and lost.user_attrs["reason"].startswith("preempted: SIGTERM")
    retry = next(t for t in trials if Retry.retried_trial_number(t) == victim)
    assert retry.state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert retry.user_attrs["worker"] == f"slurm:{ctx['array']}_1"
    assert len([t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]) == 3
    wait(lambda: dict(sacct_states(ctx["array"])).get(f"{ctx['array']}_0", "").startswith("CANCELLED"), 30,
         "sacct to record the cancelled task")
    info = json.loads(cli(["status", ctx["sweep_dir"], "--json"], tmp_path).stdout)
    assert info["counted"] == 3 and not info["failing"]  # the cancelled trial's retry stands for it


@pytest.mark.timeout(300)
def test_a_sweep_resumes_after_all_its_jobs_were_cancelled(tmp_path, slurm):
    args = sweep_args(tmp_path, *LONG, "launcher.workers=2", "sweep.n_trials=4")
    ctx = detach(args, tmp_path)
    study = load(ctx)
    wait(lambda: study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
         and study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)), 180, "a finished and a running trial")
    subprocess.run(["scancel", ctx["array"]], check=True)
    wait(lambda: not live_jobs(ctx["array"]), 60, "the cancelled jobs to leave the queue")
    before = {t.number: t.state for t in study.get_trials()}
    assert not finished(ctx)
    out = cli(args, tmp_path)  # the same command resumes the sweep with a new array
    assert out.returncode == 0, out.stdout + out.stderr
    trials = study.get_trials()
    for number, state in before.items():  # no finished trial was lost or rerun
        if state in (TrialState.COMPLETE, TrialState.PRUNED):
            assert next(t for t in trials if t.number == number).state == state
    assert finished(ctx)
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    info = json.loads(cli(["status", ctx["sweep_dir"], "--json"], tmp_path).stdout)
    assert info["counted"] == 4 and len(info["launches"]) == 2
    client = MlflowClient(ctx["tracking_uri"])
    exp = client.get_experiment_by_name(ctx["experiment"]).experiment_id
    assert not client.search_runs([exp], "attributes.status = 'RUNNING'")
    assert client.get_run(ctx["parent_run_id"]).info.status == "FINISHED"


@pytest.mark.timeout(300)
def test_ctrl_c_to_the_sweep_command_cancels_its_array_checkpoints_and_the_same_command_resumes(tmp_path, slurm):
    args = sweep_args(tmp_path, *LONG, "launcher.workers=2", "sweep.n_trials=3")
    exe = str(Path(sys.executable).with_name("mirasweep"))
    proc = subprocess.Popen([exe, *args], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own process group, as a terminal's foreground job
    jobs = tmp_path / "sweep" / "jobs.json"
    wait(lambda: jobs.is_file() or proc.poll() is not None, 120, "the array to be submitted")
    ctx = load_context(tmp_path / "sweep")
    array = json.loads(jobs.read_text())[-1]["job_ids"][0].split("_")[0]
    wait(lambda: any(training(ctx, t.number) for t in load(ctx).get_trials(states=(TrialState.RUNNING,))), 120,
         "a trial to be between two training checkpoints")
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal
    started = time.time()
    out, err = proc.communicate(timeout=150)
    assert proc.returncode == 3, out + err
    assert time.time() - started < 90
    assert "Traceback" not in err and "resume: the same sweep command" in err
    wait(lambda: not live_jobs(array), 60, "the cancelled array to leave the queue")
    trials = load(ctx).get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    stopped = [t for t in trials if t.state == TrialState.FAIL]
    assert stopped and all(t.user_attrs["reason"].startswith("preempted: SIGTERM") for t in stopped)  # scancel's
    client = MlflowClient(ctx["tracking_uri"])
    exp = client.get_experiment_by_name(ctx["experiment"]).experiment_id
    assert not client.search_runs([exp], "attributes.status = 'RUNNING'")
    assert client.get_run(ctx["parent_run_id"]).info.status == "KILLED"
    resumed = cli(args, tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert finished(ctx)
    retried = {n for t in load(ctx).get_trials() for n in Retry.retry_history(t)}
    assert {t.number for t in stopped} <= retried  # each stopped trial was resumed by a retry
    assert client.get_run(ctx["parent_run_id"]).info.status == "FINISHED"


@pytest.mark.timeout(120)
def test_a_job_array_sbatch_refuses_is_one_message_naming_the_setting_and_nothing_is_left(tmp_path, slurm):
    args = sweep_args(tmp_path, "launcher.partition=no-such-partition", "sweep.n_trials=1")
    out = cli(args, tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr and out.stderr.count("Invalid partition") == 1
    assert "mirasweep: error: launcher.partition = 'no-such-partition': sbatch refused" in out.stderr
    assert f"partitions on this cluster: {slurm}" in out.stderr
    assert not (tmp_path / "sweep").exists()  # nothing half-created
    # a sweep that exists keeps its trials; its parent run says why this launch did not happen
    debug = ["sweep", f"sweep.dir={tmp_path / 'sweep'}", *FAST, "launcher=debug", "sweep.n_trials=1"]
    assert cli(debug, tmp_path).returncode == 0
    ctx = load_context(tmp_path / "sweep")
    out = cli([*args[:-1], "sweep.n_trials=2"], tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert [t.state for t in load(ctx).get_trials()] == [TrialState.COMPLETE]
    parent = MlflowClient(ctx["tracking_uri"]).get_run(ctx["parent_run_id"])
    assert parent.info.status == "KILLED" and "could not be started" in parent.data.tags["failure_reason"]


@pytest.mark.timeout(480)
def test_a_two_rank_trial_is_preempted_and_its_ranks_resume_to_the_uninterrupted_result(tmp_path, slurm):
    """launcher.ranks_per_trial=2: the trial is one array task of 2 SLURM tasks (gloo ranks on this CPU node). USR2
    reaches both; they stop at one step, rank 0 checkpoints and queues the retry, submitit requeues the job, and both
    ranks resume it to the metrics of the same 2-rank trial never interrupted."""
    args = [*LONG, "launcher.workers=1", "sweep.n_trials=1", "launcher.ranks_per_trial=2"]
    base = detach(sweep_args(tmp_path / "baseline", *args), tmp_path / "baseline")  # the node's 2 CPUs: one at a time
    wait(lambda: finished(base), 240, "the uninterrupted 2-rank sweep to finish")
    ctx = detach(sweep_args(tmp_path / "preempted", *args), tmp_path / "preempted")
    wait(lambda: training(ctx, 0), 120, "trial 0 to be between two training checkpoints")
    subprocess.run(["scancel", "--signal=USR2", ctx["array"]], check=True)
    wait(lambda: finished(ctx), 240, "the preempted sweep to finish")
    first, retry = load(ctx).get_trials()
    assert (first.state, retry.state) == (TrialState.FAIL, TrialState.COMPLETE)
    stopped = re.fullmatch(r"preempted: SIGUSR2 at step (\d+) of task '(\w+)'; .*", first.user_attrs["reason"])
    assert stopped, first.user_attrs["reason"]
    result = json.loads(Path(ctx["sweep_dir"], "trials", "00000", stopped.group(2), "result.json").read_text())
    assert result["resumed_from"] == int(stopped.group(1)) > 0
    reference = load(base).get_trials()[0]
    assert objectives(retry) == pytest.approx(objectives(reference), rel=1e-5)
    run = MlflowClient(ctx["tracking_uri"]).get_run(result["run_id"])
    assert run.data.params["execution.ranks"] == "2"  # both ranks trained it
