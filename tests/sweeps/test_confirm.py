"""`mirasweep confirm` end to end on the quick space: killed and resumed, it agrees with independently trained
three-seed runs; its MLflow runs, tags and tables; bad arguments; `sweep.seeds_per_trial`."""
from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from sweeps.study import open_storage
from sweeps.sweep import run_sweep
from sweeps.tracking.mlflow_view import confirmed_view_state
from tests.sweeps.test_bad_input import check
from tests.sweeps.test_sweep import cli, load, sweep_config

SEEDS, SCALE = 3, 0.5


def confirm_cmd(sweep_dir: Path) -> list[str]:
    exe = Path(sys.executable).with_name("mirasweep")
    head = [str(exe)] if exe.exists() else [sys.executable, "-m", "sweeps.cli"]
    return [*head, "confirm", str(sweep_dir), "--seeds", str(SEEDS), "--budget-scale", str(SCALE)]


def direct_run(ctx: dict, params: dict, seed: int, tmp: Path) -> dict[str, float]:
    """What a user would train by hand for one (architecture, seed): the trial's architecture, each budget task at
    0.5x its steps (warm-up and intervals too), through the trainer alone (no study, no worker)."""
    from search_space import SearchSpace
    from sweeps.train.run import run_training

    space = SearchSpace.from_dict(ctx["space"], name=ctx["space_name"])
    plan = space.suggest(optuna.trial.FixedTrial(params))
    values = {}
    for task, budget in ctx["space"]["budget"]["tasks"].items():
        train = dict(budget["train"])
        for key in ("steps", "warmup", "eval_every", "checkpoint_every"):
            train[key] = round(train[key] * SCALE)
        config = {"model": plan.model, "task": {"name": task, **budget["task"]},
                  "train": {**train, **plan.train, "seed": seed, "threads": ctx["threads"], "progress": False,
                            "eval_at": [round(r * SCALE) for r in ctx["space"]["budget"]["rungs"]]},
                  "tracking": {"uri": f"sqlite:///{tmp / 'direct.db'}", "experiment": "direct"}}
        metrics = run_training(config, tmp / f"{task}-{seed}-{abs(hash(json.dumps(params, sort_keys=True)))}").metrics
        for k, v in metrics.items():
            values.setdefault(k, v)
    return values


def test_confirm_resumes_after_sigkill_and_orders_as_direct_three_seed_runs(tmp_path):
    config, choices = sweep_config(tmp_path, "launcher=debug", "sweep.n_trials=3")
    _, ctx = run_sweep(config, choices)
    search = load(ctx)
    sweep_dir = Path(ctx["sweep_dir"])

    # 1. killed (SIGKILL, the whole command) once some seeds finished and another runs
    proc = subprocess.Popen(confirm_cmd(sweep_dir), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    deadline = time.time() + 240
    while True:
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.time() < deadline, "no finished confirm trial followed by a running one"
        stage_file = sweep_dir / "confirm" / "confirm.json"
        if stage_file.is_file():
            stage = json.loads(stage_file.read_text())
            study = optuna.load_study(study_name=stage["study_name"], storage=open_storage(stage["storage"]))
            if len(study.get_trials(states=(TrialState.COMPLETE,))) >= 2 and study.get_trials(states=(TrialState.RUNNING,)):
                break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {t.number: (t.values, t.user_attrs["mlflow_run_id"]) for t in study.get_trials(states=(TrialState.COMPLETE,))}
    killed = study.get_trials(states=(TrialState.RUNNING,))[0].number
    time.sleep(4)  # past the grace period: the killed trial's heartbeat is stale

    # 2. the same command resumes: finished seeds are not trained again, the killed one is retried
    out = subprocess.run(confirm_cmd(sweep_dir), cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    trials = study.get_trials()
    for number, (values, run_id) in before.items():
        assert trials[number].state == TrialState.COMPLETE and trials[number].values == values
        assert trials[number].user_attrs["mlflow_run_id"] == run_id
    assert trials[killed].state == TrialState.FAIL
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    pairs = [(t.user_attrs["confirms"], t.user_attrs["seed"]) for t in complete]
    assert len(pairs) == len(set(pairs)) == len(stage["groups"]) * SEEDS  # every (architecture, seed) once
    assert {s for _, s in pairs} == {ctx["seed"] + 1 + k for k in range(SEEDS)}  # fresh seeds, not the search's

    # what it confirms: the search's Pareto set and every preset the sweep enqueued
    confirmed = {g["confirms"] for g in stage["groups"]}
    assert {t.number for t in search.best_trials} <= confirmed
    assert {t.number for t in search.trials if t.user_attrs.get("preset")} <= confirmed

    # 3. independently trained runs: the same values per seed, so the same means and the same order
    direct, ours = {}, {}
    for g in stage["groups"]:
        params = search.trials[g["confirms"]].params
        for t in (t for t in complete if t.user_attrs["confirms"] == g["confirms"]):
            got = direct_run(ctx, params, t.user_attrs["seed"], tmp_path / "direct")
            for i, o in enumerate(ctx["space"]["objectives"]):
                assert t.values[i] == pytest.approx(got[o["metric"]], rel=1e-5, abs=1e-7), (g["label"], o["metric"])
                direct.setdefault(o["metric"], {}).setdefault(g["label"], []).append(got[o["metric"]])
                ours.setdefault(o["metric"], {}).setdefault(g["label"], []).append(t.values[i])
    table = {r["architecture"]: r for r in _csv(sweep_dir / "confirm" / "confirmed.csv")}
    for o in ctx["space"]["objectives"]:
        m, up = o["metric"], o["direction"] == "maximize"
        order = lambda runs: sorted(runs, key=lambda n: statistics.fmean(runs[n]), reverse=up)  # noqa: E731
        assert order(ours[m]) == order(direct[m])
        for name, values in direct[m].items():
            assert float(table[name][f"{m} mean"]) == pytest.approx(statistics.fmean(values), rel=1e-5, abs=1e-7)
            assert float(table[name][f"{m} std"]) == pytest.approx(statistics.stdev(values), rel=1e-4, abs=1e-7)

    # 4. MLflow: nothing left RUNNING; best=true on the confirmed Pareto set only; the search's own best kept apart
    client = MlflowClient(ctx["tracking_uri"])
    exp = client.get_experiment_by_name(ctx["experiment"]).experiment_id
    assert not client.search_runs([exp], "attributes.status = 'RUNNING'")
    best = client.search_runs([exp], "tags.best = 'true'")
    front = {r["architecture"] for r in table.values() if r["pareto (means)"] == "True"}
    assert front and {r.info.run_name for r in best} == front
    assert all(r.data.tags["kind"] == "confirmed" and r.data.metrics["seeds"] == SEEDS for r in best)
    searched = {t.user_attrs["mlflow_run_id"] for t in search.best_trials}
    assert {r.info.run_id for r in client.search_runs([exp], "tags.search_best = 'true'")} == searched
    seed_runs = client.search_runs([exp], "tags.stage = 'confirm' and tags.seed != ''")
    groups = {g["run_id"] for g in stage["groups"]}
    trial_runs = [r for r in seed_runs if r.data.tags.get("mlflow.parentRunId") in groups]
    assert all(r.data.tags["confirms"] and r.data.tags["seed"] for r in trial_runs)  # linked to what they confirm
    text = Path(client.download_artifacts(ctx["parent_run_id"], "confirmed.md", str(tmp_path))).read_text()
    assert "within noise" in text or "beats" in text
    plots = {f.path for f in client.list_artifacts(ctx["parent_run_id"], "plots")}
    assert {"plots/confirmed.png", "plots/confirmed.html", "plots/recall_vs_state.png"} <= plots

    # 5. the sweep's report shows the confirmed table and writes the plots; other settings are refused
    report = cli(["report", str(sweep_dir)], tmp_path)
    assert report.returncode == 0 and "confirmed architectures" in report.stdout, report.stderr
    assert (sweep_dir / "plots" / "confirmed.png").is_file() and (sweep_dir / "plots" / "recall_vs_state.html").is_file()
    as_json = json.loads(cli(["report", str(sweep_dir), "--json"], tmp_path).stdout)  # for scripts: the same figures
    by_name = {a["architecture"]: a for a in as_json["confirmed"]["architectures"]}
    assert {n for n, a in by_name.items() if a["pareto_on_means"]} == front
    for m in direct:
        for name, values in direct[m].items():
            assert by_name[name]["objectives"][m]["values"] == pytest.approx(values, rel=1e-5, abs=1e-7)
        lead = as_json["confirmed"]["leaders"][m]
        assert lead["leader"] in by_name and set(lead["within_noise_of"]) <= set(by_name)
    # `mirasweep ui`'s second view: its filter lists the architecture runs, its columns are metrics they carry
    view = confirmed_view_state([(o["metric"], o["direction"]) for o in ctx["space"]["objectives"]])
    shown = client.search_runs([exp], view["searchFilter"])
    assert sorted(r.info.run_name for r in shown) == sorted(g["label"] for g in stage["groups"])
    for r in shown:
        assert {c.split("`")[1] for c in view["selectedColumns"] if c.startswith("metrics.")} <= set(r.data.metrics)
    status = json.loads(cli(["status", str(sweep_dir), "--json"], tmp_path).stdout)
    assert status["confirm"]["counted"] == status["confirm"]["target"] == len(stage["groups"]) * SEEDS
    check(tmp_path, ["confirm", str(sweep_dir), "--seeds", "5"], ("--seeds 3 (asked 5)",))
    rerun = cli(["sweep", f"sweep.dir={sweep_dir}", *config_overrides()], tmp_path)  # a resumed search keeps the tags
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert {r.info.run_name for r in client.search_runs([exp], "tags.best = 'true'")} == front


def config_overrides() -> list[str]:
    from tests.sweeps.test_sweep import FAST

    return [*FAST, "launcher=debug", "sweep.n_trials=3"]


def _csv(path: Path) -> list[dict]:
    import csv

    with path.open() as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("args, needles", [
    (["confirm", "nowhere"], ("nowhere is not a sweep directory",)),
    (["confirm", "nowhere", "--seeds", "0"], ("--seeds must be >= 1",)),
    (["confirm", "nowhere", "--budget-scale", "0"], ("--budget-scale must be a positive number",)),
    (["confirm", "nowhere", "--budget-scale", "nan"], ("--budget-scale must be a positive number",)),
    (["confirm", "nowhere", "--top", "0"], ("--top must be >= 1",)),
    (["sweep", "sweep.seeds_per_trial=0", "--dry-run"], ("sweep.seeds_per_trial must be an integer >= 1",)),
])
def test_bad_confirm_arguments_exit_2_and_create_nothing(tmp_path, args, needles):
    check(tmp_path, args, needles)


def test_seeds_per_trial_averages_each_objective_over_its_seeds(tmp_path):
    config, choices = sweep_config(tmp_path, "launcher=debug", "sweep.n_trials=1", "sweep.seeds_per_trial=2",
                                   "search_space.enqueue=[deltanet]")
    _, ctx = run_sweep(config, choices)
    (trial,) = load(ctx).get_trials()
    assert trial.state == TrialState.COMPLETE
    for i, o in enumerate(ctx["space"]["objectives"]):
        task = next(t for t in ctx["space"]["budget"]["tasks"] if o["metric"] in _task_metrics(t))
        runs = [json.loads((p / "result.json").read_text())["metrics"][o["metric"]]
                for p in sorted((Path(ctx["sweep_dir"]) / "trials" / "00000" / task).glob("seed-*"))]
        assert len(runs) == 2 and runs[0] != runs[1]  # two seeds, really different runs
        assert trial.values[i] == pytest.approx(statistics.fmean(runs))
        assert trial.user_attrs[f"seeds:{task}:{o['metric']}"] == runs


def _task_metrics(task: str) -> set[str]:
    return {"lm": {"val/bpb"}, "mqar": {"recall/mqar"}}[task]


def test_candidates_are_the_top_n_or_pareto_set_and_every_preset_once():
    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial

    from sweeps.confirm import candidates

    dist = {"x": FloatDistribution(0.0, 1.0)}

    def study(directions, trials):
        s = optuna.create_study(directions=directions)
        for values, x, attrs in trials:
            state = TrialState.COMPLETE if values else TrialState.PRUNED
            s.add_trial(create_trial(state=state, values=values, params={"x": x}, distributions=dist, user_attrs=attrs))
        return s

    single = study(["minimize"], [([3.0], 0.1, {"preset": "deltanet"}), ([1.0], 0.2, {}), ([2.0], 0.3, {}),
                                  ([0.5], 0.4, {}), (None, 0.5, {"preset": "titans"})])
    assert [t.number for t in candidates(single, top=2)] == [3, 1, 0, 4]  # best two, then the presets (pruned too)
    assert [t.number for t in candidates(single, top=10)] == [3, 1, 2, 0, 4]  # a preset among the best: once
    multi = study(["minimize", "maximize"], [([3.0, 0.9], 0.1, {"preset": "deltanet"}), ([1.0, 0.1], 0.2, {}),
                                             ([2.0, 0.05], 0.3, {})])
    assert [t.number for t in candidates(multi, top=1)] == [1, 0]  # the whole Pareto set, whatever --top says


def test_confirm_seeds_are_never_ones_the_search_trained_with():
    from sweeps.confirm import first_fresh_seed

    assert first_fresh_seed({"seed": 0}) == 1
    assert first_fresh_seed({"seed": 5, "seeds_per_trial": 3}) == 8  # the search trained 5, 6 and 7
