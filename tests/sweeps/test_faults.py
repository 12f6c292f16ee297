"""Faults lose nothing: a trial lost twice (retries of retries) still completes, a rerun right after a kill (inside the
heartbeat grace window) fails and retries the lost trial at once, a chain that keeps losing its worker ends failed
with its reason, and no trial or MLflow run is left RUNNING."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from sweeps.report import counts, rows
from sweeps.status import collect
from sweeps.study import MAX_RETRY, counted_trials, fail_lost_trials, open_storage, retried_numbers, worker_alive
from sweeps.sweep import load_context

from .test_sweep import FAST, cli, load

HOST = socket.gethostname()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_worker_alive_tells_live_dead_and_zombie_processes():
    assert worker_alive(f"worker-0:pid {os.getpid()}@{HOST}") is True
    assert worker_alive(f"worker-0:pid {dead_pid()}@{HOST}") is False
    zombie = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    zombie.kill()
    time.sleep(0.5)  # killed, not yet reaped by its parent (this process)
    assert worker_alive(f"worker-1:pid {zombie.pid}@{HOST}") is False
    zombie.wait()
    assert worker_alive(f"worker-0:pid {os.getpid()}@another-host") is None  # cannot be told from here
    assert worker_alive("worker-0:pid 123") is None  # an id from before hosts were recorded


def test_a_chain_that_keeps_losing_its_worker_ends_failed_with_its_reason(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    study = optuna.create_study(storage=storage, study_name="faults")
    attempts = []
    for _ in range(MAX_RETRY + 2):
        trial = study.ask()  # the queued retry, once there is one
        if attempts:
            assert trial.params == {"x": attempts[0].params["x"]}
        trial.suggest_float("x", 0, 1)
        trial.set_user_attr("worker", f"worker-0:pid {dead_pid()}@{HOST}")
        failed = fail_lost_trials(study)
        assert [t.number for t in failed] == [trial.number]
        attempts.append(failed[0])
        waiting = study.get_trials(states=(TrialState.WAITING,))
        if not waiting:
            break
    assert len(attempts) == MAX_RETRY + 1  # the first attempt and MAX_RETRY retries
    assert all("lost" in t.user_attrs["reason"] for t in attempts)
    assert "retried, attempt 2" in attempts[0].user_attrs["reason"]
    assert f"gave up after {MAX_RETRY + 1} attempts" in attempts[-1].user_attrs["reason"]
    trials = study.get_trials()
    assert retried_numbers(trials) == {t.number for t in attempts[:-1]}  # the whole chain, not only its first
    assert counted_trials(study) == 1  # the chain counts once, as its last (failed) attempt
    assert counts(study) == {"complete": 0, "pruned": 0, "fail": 1, "running": 0, "waiting": 0, "retried": MAX_RETRY}


def test_preemptions_do_not_use_up_the_retry_limit_of_lost_workers(tmp_path):
    """A trial preempted many times on a busy cluster keeps being retried; only lost workers count to the limit."""
    storage = open_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    study = optuna.create_study(storage=storage, study_name="faults")
    lost = 0
    for attempt in range(2 * MAX_RETRY + 2):
        trial = study.ask()
        trial.suggest_float("x", 0, 1)
        if attempt % 2 == 0:  # preempted: the worker checkpoints, fails its trial and queues the retry (sweeps.worker)
            trial.set_user_attr("reason", f"preempted: SIGUSR2 at step {attempt} of task 'lm'; its checkpoint is kept")
            study.tell(trial, state=TrialState.FAIL)
            optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=None)(study, study._storage.get_trial(
                trial._trial_id))
            continue
        trial.set_user_attr("worker", f"worker-0:pid {dead_pid()}@{HOST}")
        [failed] = fail_lost_trials(study)
        lost += 1
        waiting = study.get_trials(states=(TrialState.WAITING,))
        if lost <= MAX_RETRY:
            assert waiting and "retried" in failed.user_attrs["reason"], failed.user_attrs["reason"]
        else:
            assert not waiting
            assert f"{MAX_RETRY + 1} of them lost" in failed.user_attrs["reason"]
            assert "preemptions do not count" in failed.user_attrs["reason"]
    assert lost == MAX_RETRY + 1  # 2 * MAX_RETRY + 2 attempts in all: half preempted, never counted
    assert counted_trials(study) == 1


def wait_for_running(study, exclude=(), timeout=180) -> optuna.trial.FrozenTrial:
    """A trial that runs, with its worker and its MLflow run recorded (a kill after this leaves a run to close)."""
    deadline = time.time() + timeout
    while True:
        running = [t for t in study.get_trials(states=(TrialState.RUNNING,))
                   if t.number not in exclude and {"worker", "mlflow_run_id"} <= set(t.user_attrs)]
        if running:
            return running[0]
        assert time.time() < deadline, "no trial started running"
        time.sleep(0.2)


def kill_workers(ctx) -> None:
    for pid_file in Path(ctx["sweep_dir"], "pids").glob("*.pid"):
        try:
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_trial_lost_twice_is_retried_to_the_end_even_inside_the_grace_window(tmp_path):
    """Kill the worker mid-trial, rerun at once (the heartbeat grace window is 10 minutes, so only the check of the
    worker's process can tell), kill the retry's worker, rerun: the retry of the retry completes the sweep."""
    args = ["sweep", f"sweep.dir={tmp_path / 'sweep'}", *FAST, "sweep.grace_s=600", "launcher=local",
            "launcher.workers=1", "sweep.n_trials=1"]  # the enqueued deltanet: a trial that trains
    exe = str(Path(sys.executable).with_name("mirasweep"))

    def detach():  # no pipes: the detached workers inherit them, and reading them would wait for the workers
        assert subprocess.run([exe, *args, "--detach"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=120).returncode == 0

    detach()
    ctx = load_context(tmp_path / "sweep")
    study = load(ctx)
    first = wait_for_running(study)
    kill_workers(ctx)
    detach()
    second = wait_for_running(study, exclude={first.number})
    kill_workers(ctx)
    out = cli(args, tmp_path)  # the same command again, in the foreground, right away
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    trials = load(ctx).get_trials()
    by_state = {s: [t for t in trials if t.state == s] for s in TrialState}
    assert len(by_state[TrialState.COMPLETE]) + len(by_state[TrialState.PRUNED]) == 1
    assert not by_state[TrialState.RUNNING] and not by_state[TrialState.WAITING]
    lost = {t.number: t for t in by_state[TrialState.FAIL]}
    assert set(lost) == {first.number, second.number}
    assert all("lost" in t.user_attrs["reason"] for t in lost.values())
    last = (by_state[TrialState.COMPLETE] + by_state[TrialState.PRUNED])[0]
    assert optuna.storages.RetryHeartbeatStaleTrialCallback.retry_history(last) == [first.number, second.number]
    client = MlflowClient(ctx["tracking_uri"])
    exp = client.get_experiment_by_name(ctx["experiment"]).experiment_id
    assert not client.search_runs([exp], "attributes.status = 'RUNNING'")  # no run left RUNNING
    failed_runs = client.search_runs([exp], "attributes.status = 'FAILED'")
    assert failed_runs and all("lost" in r.data.tags.get("reason", "") for r in failed_runs)
    parent = client.get_run(Path(ctx["sweep_dir"], "mlflow_parent_run_id").read_text().strip())
    assert parent.info.status == "FINISHED"
    info = collect(ctx)  # `mirasweep status`: the lost attempts with their reason, nothing failing
    assert not info["failing"] and sum(r["trials"] for r in info["retried"]) == 2
    assert all("lost" in r["reason"] for r in info["retried"])
    assert [r["trial"] for r in rows(load(ctx), ["val/bpb", "recall/mqar"])] == [first.number]  # as MLflow tags it


def sweep_args(tmp_path, *extra):
    return ["sweep", f"sweep.dir={tmp_path / 'sweep'}", *FAST, "launcher=local", *extra]


def popen(args, cwd):
    exe = str(Path(sys.executable).with_name("mirasweep"))
    return subprocess.Popen([exe, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own process group, as a terminal's foreground job


@pytest.mark.parametrize("how", ["Ctrl-C to the process group", "SIGTERM to the sweep command"])
def test_a_signal_checkpoints_every_worker_and_the_same_command_resumes(tmp_path, how):
    args = sweep_args(tmp_path, "launcher.workers=2", "sweep.n_trials=3")
    proc = popen(args, tmp_path)
    context = tmp_path / "sweep" / "sweep.json"
    deadline = time.time() + 120
    while not context.is_file():
        assert time.time() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    ctx = load_context(tmp_path / "sweep")
    wait_for_running(load(ctx))
    time.sleep(1.0)  # some training steps in
    if how.startswith("Ctrl-C"):
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGTERM)
    started = time.time()
    out, err = proc.communicate(timeout=150)  # its pipes close only when no worker holds them: no orphans
    assert proc.returncode == 3, out + err
    assert time.time() - started < 60
    assert "Traceback" not in err and "resume: the same sweep command" in err
    for pid_file in Path(ctx["sweep_dir"], "pids").glob("*.pid"):
        assert worker_alive(f"worker:pid {pid_file.read_text()}@{HOST}") is False
    trials = load(ctx).get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    stopped = [t for t in trials if t.state == TrialState.FAIL]
    assert stopped and all(t.user_attrs["reason"].startswith("preempted: SIG") for t in stopped)
    history = [optuna.storages.RetryHeartbeatStaleTrialCallback.retry_history(t) for t in trials]
    assert {t.number for t in stopped} <= {n for h in history for n in h}  # each queued again
    client = MlflowClient(ctx["tracking_uri"])
    exp = client.get_experiment_by_name(ctx["experiment"]).experiment_id
    assert not client.search_runs([exp], "attributes.status = 'RUNNING'")
    parent_id = Path(ctx["sweep_dir"], "mlflow_parent_run_id").read_text().strip()
    assert client.get_run(parent_id).info.status == "KILLED"
    if how.startswith("SIGTERM"):
        return
    resumed = cli(args, tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    study = load(ctx)
    assert counted_trials(study) == 3 and not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    assert client.get_run(parent_id).info.status == "FINISHED"


def test_two_identical_commands_started_at_once_share_one_study(tmp_path):
    args = sweep_args(tmp_path, "launcher.workers=1", "sweep.n_trials=2")
    procs = [popen(args, tmp_path) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, out + err
        assert "Traceback" not in err
    ctx = load_context(tmp_path / "sweep")
    trials = load(ctx).get_trials()
    assert len(trials) == 2 and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert [t.user_attrs.get("preset") for t in trials].count("deltanet") == 1  # enqueued exactly once
    client = MlflowClient(ctx["tracking_uri"])
    exp = client.get_experiment_by_name(ctx["experiment"]).experiment_id
    assert len(client.search_runs([exp], "tags.kind = 'sweep'")) == 1  # one parent run


@pytest.fixture
def read_only():
    """Makes a folder read-only for real: a read-only bind mount of itself (root; undone after the test)."""
    mounted = []

    def make(path: Path) -> None:
        if subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True).returncode != 0:
            pytest.skip("this machine cannot bind-mount (needs root and mount(8))")
        mounted.append(path)
        assert subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], capture_output=True).returncode == 0

    yield make
    for path in mounted:
        subprocess.run(["umount", "--lazy", str(path)], check=True)  # this test process may still hold the store open


def test_a_store_that_cannot_be_written_is_one_clear_message_before_anything_starts(tmp_path, read_only):
    args = ["sweep", f"sweep.dir={tmp_path / 'sweep'}", *FAST, "launcher=debug", "search_space.enqueue=[]"]
    assert cli([*args, "sweep.n_trials=1"], tmp_path).returncode == 0
    ctx = load_context(tmp_path / "sweep")
    trials = len(load(ctx).get_trials())
    read_only(tmp_path / "sweep")
    out = cli([*args, "sweep.n_trials=2"], tmp_path)  # the resume finds its stores read-only
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    assert "mirasweep: error: sweep.storage (the Optuna study)" in out.stderr and "cannot be written" in out.stderr
    assert len(load(ctx).get_trials()) == trials  # nothing ran


def test_a_store_that_cannot_be_opened_is_one_message_and_nothing_is_left(tmp_path):
    args = ["sweep", f"sweep.dir={tmp_path / 'sweep'}", *FAST, "launcher=debug", "sweep.n_trials=1",
            "sweep.storage=postgresql+psycopg://nobody@127.0.0.1:1/nothing"]  # no server listens on port 1
    out = cli(args, tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    assert "mirasweep: error: sweep: cannot open the sweep's stores" in out.stderr
    assert not (tmp_path / "sweep").exists()
