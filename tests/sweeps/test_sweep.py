"""Sweeps end to end on the `quick` space: workers, counts, resume, kills, divergence, MLflow, report."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from sweeps.study import open_storage
from sweeps.sweep import load_context, run_sweep
from sweeps.train.compose import compose

FAST = ["sweep.heartbeat_s=1", "sweep.grace_s=3", "sweep.min_completed=100", "search_space.budget.rungs=[10,20]",
        "search_space.model.dim=32", "search_space.budget.tasks.mqar.train.batch_size=16",  # tests: a smaller quick
        *(f"search_space.budget.tasks.{t}.train.{k}={v}" for t in ("lm", "mqar")
          for k, v in (("steps", 20), ("eval_every", 10), ("checkpoint_every", 10)))]


def sweep_config(tmp_path: Path, *overrides: str):
    return compose("sweep", [f"sweep.dir={tmp_path / 'sweep'}", *FAST, *overrides])


def load(ctx):
    return optuna.load_study(study_name=ctx["study_name"], storage=open_storage(ctx["storage"]))


def cli(args, cwd, **kw):
    exe = Path(sys.executable).with_name("mirasweep")
    cmd = [str(exe), *args] if exe.exists() else [sys.executable, "-m", "sweeps.cli", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600, **kw)


def test_debug_sweep_tracks_parent_and_nested_trials_and_reruns_as_a_no_op(tmp_path):
    config, choices = sweep_config(tmp_path, "launcher=debug", "sweep.n_trials=3")
    table, ctx = run_sweep(config, choices)
    study = load(ctx)
    trials = study.get_trials()
    assert len(trials) == 3 and sorted(t.number for t in trials) == [0, 1, 2]
    assert trials[0].user_attrs.get("preset") == "deltanet"  # the enqueued seed point runs first
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    client = MlflowClient(ctx["tracking_uri"])
    parent = client.get_run(ctx["parent_run_id"])
    assert parent.info.status == "FINISHED"
    exp = parent.info.experiment_id
    children = client.search_runs([exp], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(int(r.data.tags["trial"]) for r in children) == [0, 1, 2]
    done = [r for r in children if r.data.tags["state"] == "COMPLETE"]
    assert done and all(r.info.run_name == r.data.tags["architecture"] for r in done)
    assert all("val/bpb" in r.data.metrics and "recall/mqar" in r.data.metrics for r in done)
    tasks = client.search_runs([exp], f"tags.mlflow.parentRunId = '{done[0].info.run_id}'")
    assert sorted(r.data.tags["task"] for r in tasks) == ["lm", "mqar"]  # one nested run per budget task
    # the report: the Pareto set, with architecture names and run ids, as a table and CSV
    assert table and {"architecture", "val/bpb", "recall/mqar", "params", "mlflow_run_id"} <= set(table[0])
    assert (Path(ctx["sweep_dir"]) / "report.csv").read_text().startswith("trial,architecture")
    plots = {f.path for f in client.list_artifacts(parent.info.run_id, "plots")}
    assert {"plots/pareto_front.png", "plots/pareto_front.html"} <= plots
    png = Path(client.download_artifacts(parent.info.run_id, "plots/pareto_front.png", str(tmp_path)))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert any(p.startswith("plots/history_") for p in plots) and any(p.startswith("plots/importance_") for p in plots)
    for path in sorted(plots):  # every plot is a real image or an interactive page, not an empty file
        local = Path(client.download_artifacts(parent.info.run_id, path, str(tmp_path / "plots")))
        if path.endswith(".png"):
            assert local.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and local.stat().st_size > 5_000, path
        else:
            html = local.read_text()
            assert path.endswith(".html") and "Plotly.newPlot" in html and len(html) > 2_000, path
    front = Path(client.download_artifacts(parent.info.run_id, "plots/pareto_front.html", str(tmp_path / "front")))
    named = [t.user_attrs["architecture"] for t in trials if t.state == TrialState.COMPLETE]
    text = front.read_text()
    assert all(name in text or json.dumps(name)[1:-1] in text for name in named)  # points labelled by architecture
    # the per-axis summary agrees with the trials it summarises
    from sweeps.report import axis_summary

    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    summary = axis_summary(study, ["val/bpb", "recall/mqar"])
    for row in summary:
        mine = [t for t in complete if str(t.params.get(row["axis"])) == row["choice"]]
        assert row["trials"] == len(mine) and row["best val/bpb"] == min(t.values[0] for t in mine)
    assert sum(r["trials"] for r in summary if r["axis"] == "memory.bias") == len(
        [t for t in complete if "memory.bias" in t.params])
    out = cli(["report", ctx["sweep_dir"]], tmp_path)
    assert out.returncode == 0 and "per-axis summary" in out.stdout and "best architectures" in out.stdout
    # the same command again: nothing to do
    run_sweep(config, choices)
    assert len(load(ctx).get_trials()) == 3


def test_two_local_workers_complete_the_count_with_unique_trials(tmp_path):
    config, choices = sweep_config(tmp_path, "launcher=local", "launcher.workers=2", "sweep.n_trials=4")
    _, ctx = run_sweep(config, choices)
    trials = load(ctx).get_trials()
    assert len(trials) == 4 and len({t.number for t in trials}) == 4
    assert all(t.state != TrialState.RUNNING for t in trials)
    assert len(list(Path(ctx["sweep_dir"], "pids").glob("*.pid"))) == 2


def test_a_diverging_trial_is_pruned_with_its_reason_and_the_sweep_goes_on(tmp_path):
    config, choices = sweep_config(tmp_path, "launcher=debug", "sweep.n_trials=2", "search_space.enqueue=[]",
                                   "search_space.train.lr={float: [1.0e+8, 1.0e+9], log: true}",
                                   "search_space.budget.tasks.lm.train.grad_clip=1.0e+12")
    _, ctx = run_sweep(config, choices)
    trials = load(ctx).get_trials()
    assert len(trials) == 2
    reasons = [t.user_attrs.get("reason", "") for t in trials]
    assert all(t.state == TrialState.PRUNED for t in trials)
    assert any("diverged" in r or "rejected" in r for r in reasons)


def test_killed_worker_loses_no_finished_trial_and_its_trial_is_retried(tmp_path):
    args = ["sweep", f"sweep.dir={tmp_path / 'sweep'}", *FAST, "launcher=local", "launcher.workers=1",
            "sweep.n_trials=3", "search_space.enqueue=[]"]
    proc = subprocess.Popen([str(Path(sys.executable).with_name("mirasweep")), *args, "--detach"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.wait(120) == 0, proc.communicate()
    ctx = load_context(tmp_path / "sweep")
    study = load(ctx)
    deadline = time.time() + 180
    while not (study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
               and study.get_trials(states=(TrialState.RUNNING,))):
        assert time.time() < deadline, "no finished trial followed by a running one"
        time.sleep(0.2)
    finished = {t.number for t in study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))}
    running = study.get_trials(states=(TrialState.RUNNING,))[0].number
    for pid_file in Path(ctx["sweep_dir"], "pids").glob("*.pid"):
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
    time.sleep(4)  # past the grace period: the running trial's heartbeat is stale
    out = cli(args, tmp_path)  # the same command resumes the sweep
    assert out.returncode == 0, out.stdout + out.stderr
    trials = load(ctx).get_trials()
    assert finished <= {t.number for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)}
    killed = next(t for t in trials if t.number == running)
    assert killed.state == TrialState.FAIL
    from optuna.storages import RetryHeartbeatStaleTrialCallback as Retry

    retries = [t for t in trials if Retry.retried_trial_number(t) == running]
    assert retries and retries[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    client = MlflowClient(ctx["tracking_uri"])
    exp = client.get_experiment_by_name(ctx["experiment"]).experiment_id
    assert not client.search_runs([exp], "attributes.status = 'RUNNING'")  # the lost runs were closed


def test_bad_input_exits_2_and_creates_nothing(tmp_path):
    for args, message in [
        (["search_space=nope"], "unknown search_space 'nope'; known: delta_family"),
        (["launcher.workers=0"], "launcher.workers must be >= 1"),
        (["sampler.name=annealing"], "unknown sampler 'annealing'"),
        (["pruner=median"], "single-objective"),
        (["search_space.objectives=[{metric: val/bleu, direction: maximize}]"], "val/bleu"),
    ]:
        out = cli(["sweep", f"sweep.dir={tmp_path / 'sweep'}", *args], tmp_path)
        assert out.returncode == 2 and message in out.stderr, (args, out.stderr)
        assert not (tmp_path / "sweep").exists() and not (tmp_path / "runs").exists()


def test_single_objective_sweep_reports_rungs_to_its_pruner(tmp_path):
    config, choices = sweep_config(tmp_path, "launcher=debug", "sweep.n_trials=3", "pruner=median",
                                   "pruner.n_startup_trials=1", "~search_space.budget.tasks.mqar",
                                   "search_space.objectives=[{metric: val/bpb, direction: minimize}]",
                                   "search_space.budget.rungs=[5,10]", "search_space.budget.tasks.lm.train.eval_every=20")
    _, ctx = run_sweep(config, choices)
    trials = load(ctx).get_trials()
    assert len(trials) == 3
    trained = [t for t in trials if t.intermediate_values]
    assert trained and all(set(t.intermediate_values) <= {5, 10, 20} for t in trained)
    assert all(5 in t.intermediate_values for t in trained)  # the first rung is always reported


def test_ui_serves_the_sweep_store_on_loopback(tmp_path):
    import socket
    import urllib.request

    config, choices = sweep_config(tmp_path, "launcher=debug", "sweep.n_trials=1")
    _, ctx = run_sweep(config, choices)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).with_name("mirasweep")
    proc = subprocess.Popen([str(exe), "ui", ctx["sweep_dir"], "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        first = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/#/experiments/" in first and "workflowType=machine_learning" in first
        url = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get-by-name?experiment_name={ctx['experiment']}"
        deadline = time.time() + 90
        while True:
            try:
                body = json.loads(urllib.request.urlopen(url, timeout=2).read())
                break
            except OSError:
                assert proc.poll() is None and time.time() < deadline, "the MLflow server did not come up"
                time.sleep(0.5)
        assert body["experiment"]["name"] == ctx["experiment"]
        # listening sockets on that port, from /proc/net/tcp (state 0A): loopback only, never 0.0.0.0
        rows = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
        bound = {r[1].split(":")[0] for r in rows if r[3] == "0A" and int(r[1].split(":")[1], 16) == port}
        assert bound == {"0100007F"}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
