"""The report's best architectures, `best` tags in MLflow and the comparison with known models' presets, on
hand-built in-memory Optuna studies (no training)."""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from sweeps.report import (describe, pareto_trials, preset_rows, presets_markdown, rows, spread, tag_best,
                           versus_presets)

METRICS = ["val/bpb", "recall/mqar"]
DIST = {"x": FloatDistribution(0.0, 1.0)}


def make_study(directions, trials, storage=None, name=None) -> optuna.Study:
    """trials: (values or None for a pruned trial, user attributes)."""
    study = optuna.create_study(directions=directions, storage=storage, study_name=name)
    for i, (values, attrs) in enumerate(trials):
        attrs = {"architecture": f"arch{i}", **attrs}
        state = TrialState.COMPLETE if values is not None else TrialState.PRUNED
        study.add_trial(create_trial(state=state, values=values, params={"x": i / 1000}, distributions=DIST,
                                     user_attrs=attrs))
    return study


def non_dominated(values: dict[int, list[float]], directions: list[str]) -> set[int]:
    """Written independently of Optuna: a is dominated when some b is at least as good on every objective and
    strictly better on one (each objective in its own direction)."""
    sign = [1 if d == "minimize" else -1 for d in directions]
    key = {n: [s * v for s, v in zip(sign, vals)] for n, vals in values.items()}

    def dominates(b, a):
        return all(x <= y for x, y in zip(key[b], key[a])) and any(x < y for x, y in zip(key[b], key[a]))

    return {a for a in key if not any(dominates(b, a) for b in key if b != a)}


@pytest.mark.parametrize("directions", [["minimize", "maximize"], ["maximize", "minimize"],
                                        ["minimize", "maximize", "minimize"]])
def test_report_pareto_set_is_the_non_dominated_trials(directions):
    rng = random.Random(len(directions) * 7 + (directions[0] == "maximize"))
    trials = []
    for _ in range(60):  # a trade-off (the first objective against the others) plus noise, in coarse steps:
        a = rng.randint(0, 8)  # ties and exact duplicates on the front are part of the test
        good = [rng.randint(0, 3) - a] + [a + rng.randint(0, 3) for _ in directions[1:]]  # higher is better
        trials.append(([g / 2 if d == "maximize" else -g / 2 for g, d in zip(good, directions)], {}))
    trials += [(None, {}), (None, {})]  # pruned trials are never best
    study = make_study(directions, trials)
    metrics = [f"m{i}" for i in range(len(directions))]
    expected = non_dominated({t.number: t.values for t in study.trials if t.state == TrialState.COMPLETE}, directions)
    table = rows(study, metrics, top=3)  # `top` limits single-objective reports only
    assert {r["trial"] for r in table} == expected == {t.number for t in pareto_trials(study)}
    assert 1 < len(expected) < 60
    for r in table:  # each row carries the trial's own values under the objective names
        assert [r[m] for m in metrics] == study.trials[r["trial"]].values


def test_single_objective_best_are_the_ties_at_the_optimum():
    study = make_study(["maximize"], [([0.5], {}), ([0.9], {}), ([0.9], {}), ([0.1], {})])
    assert {t.number for t in pareto_trials(study)} == {1, 2}
    assert pareto_trials(make_study(["minimize"], [(None, {})])) == []


def _runs(client: MlflowClient, experiment: str, n: int) -> list[str]:
    return [client.create_run(experiment, run_name=f"trial {i}").info.run_id for i in range(n)]


def _tagged(client, experiment, value="true") -> set[str]:
    return {r.info.run_id for r in client.search_runs([experiment], f"tags.best = '{value}'")}


def test_tag_best_marks_exactly_the_pareto_runs_and_untags_those_that_drop_out(mlflow_uri):
    client = MlflowClient(mlflow_uri)
    experiment = client.create_experiment("tag-best")
    ids = _runs(client, experiment, 6)
    values = [[1.0, 0.2], [2.0, 0.5], [1.5, 0.1], [3.0, 0.4], None, [1.0, 0.2]]  # 2, 3 dominated; 4 pruned; 5 ties 0
    study = make_study(["minimize", "maximize"], [(v, {"mlflow_run_id": r}) for v, r in zip(values, ids)])
    other = _runs(client, experiment, 1)[0]  # another sweep's best run in the same experiment: left alone
    client.set_tag(other, "best", "true")

    best = tag_best(study, client)
    pareto = {ids[n] for n in non_dominated({i: v for i, v in enumerate(values) if v}, ["minimize", "maximize"])}
    assert best == pareto == {ids[0], ids[1], ids[5]}
    assert _tagged(client, experiment) == pareto | {other}
    assert not _tagged(client, experiment, "false")  # runs never best carry no tag

    # a new trial dominates two of them: they are untagged (best=false), the new run tagged
    new = _runs(client, experiment, 1)[0]
    study.add_trial(create_trial(values=[0.5, 0.3], params={"x": 0.5}, distributions=DIST,
                                 user_attrs={"architecture": "new", "mlflow_run_id": new}))
    assert tag_best(study, client) == {new, ids[1]}
    assert _tagged(client, experiment) == {new, ids[1], other}
    assert _tagged(client, experiment, "false") == {ids[0], ids[5]}
    assert tag_best(study, client) == {new, ids[1]}  # idempotent


def test_tag_best_with_no_runs_yet_does_nothing(mlflow_uri):
    study = make_study(["minimize", "maximize"], [([1.0, 0.1], {})])  # no mlflow_run_id attribute
    assert tag_best(study, MlflowClient(mlflow_uri)) == set()


def test_tag_best_skips_a_run_deleted_in_the_ui(mlflow_uri):
    client = MlflowClient(mlflow_uri)
    experiment = client.create_experiment("tag-best-deleted")
    ids = _runs(client, experiment, 2)
    study = make_study(["minimize", "maximize"], [([1.0, 0.1], {"mlflow_run_id": ids[0]}),
                                                  ([2.0, 0.5], {"mlflow_run_id": ids[1]})])
    client.delete_run(ids[1])
    tag_best(study, client)  # the sweep goes on
    assert _tagged(client, experiment) == {ids[0]}


def preset_study(storage=None, name=None) -> optuna.Study:
    return make_study(["minimize", "maximize"], [
        ([2.0, 0.5], {"preset": "deltanet"}),
        ([1.8, 0.3], {"preset": "titans"}),
        (None, {"preset": "gla"}),           # a preset that did not complete: listed, not compared
        ([1.5, 0.6], {}),                    # dominates every preset
        ([2.5, 0.4], {}),                    # dominated
        ([1.9, 0.7], {}),                    # better recall, worse bpb than the best preset (titans)
    ], storage, name)


def test_preset_table_lists_each_preset_trial_with_its_objectives():
    table = preset_rows(preset_study(), METRICS)
    assert [(r["preset"], r["trial"], r["state"]) for r in table] == [
        ("deltanet", 0, "complete"), ("titans", 1, "complete"), ("gla", 2, "pruned")]
    assert (table[0]["val/bpb"], table[0]["recall/mqar"]) == (2.0, 0.5) and table[2]["val/bpb"] == "—"


def test_best_architectures_against_the_best_preset_per_objective_respect_directions():
    study = preset_study()
    table = {r["trial"]: r for r in versus_presets(study, METRICS)}
    assert set(table) == {t.number for t in pareto_trials(study)} == {3, 5}
    # val/bpb is minimised (best preset titans, 1.8); recall/mqar maximised (best preset deltanet, 0.5)
    assert table[3]["val/bpb vs best preset"] == "better than titans by 0.3 (16.7%)"
    assert table[3]["recall/mqar vs best preset"] == "better than deltanet by 0.1 (20.0%)"
    assert table[5]["val/bpb vs best preset"] == "worse than titans by 0.1 (5.6%)"
    assert table[5]["recall/mqar vs best preset"] == "better than deltanet by 0.2 (40.0%)"
    assert describe(0.0, 1.0, "titans") == "equal to titans"
    assert describe(-0.5, 0.0, "x") == "worse than x by 0.5"  # no relative change against zero
    # a sweep without presets, or whose presets all failed, compares nothing
    assert versus_presets(make_study(["minimize", "maximize"], [([1.0, 0.1], {})]), METRICS) == []
    assert versus_presets(make_study(["minimize", "maximize"], [(None, {"preset": "gla"}), ([1.0, 0.1], {})]),
                          METRICS) == []


def test_presets_markdown_section():
    text = presets_markdown(preset_study(), METRICS)
    assert "## Known models (presets) in this sweep" in text and "| deltanet | 0 |" in text
    assert "better than titans by 0.3 (16.7%)" in text
    assert presets_markdown(make_study(["minimize", "maximize"], [([1.0, 0.1], {})]), METRICS) == ""


def test_report_command_prints_the_preset_comparison(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    preset_study(storage, "hand")
    ctx = {"study_name": "hand", "storage": storage, "sweep_dir": str(tmp_path), "experiment": "sweep-hand",
           "space": {"objectives": [{"metric": m, "direction": d} for m, d in zip(METRICS, ["minimize", "maximize"])]}}
    (tmp_path / "sweep.json").write_text(json.dumps(ctx))
    exe = Path(sys.executable).with_name("mirasweep")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "sweeps.cli"]
    out = subprocess.run([*cmd, "report", str(tmp_path)], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "COLUMNS": "250"})
    assert out.returncode == 0, out.stderr
    assert "known models (presets) in this sweep" in out.stdout and "gla" in out.stdout
    assert "best architectures against the best preset per objective" in out.stdout
    assert "better than titans by 0.3 (16.7%)" in out.stdout and "worse than titans by 0.1 (5.6%)" in out.stdout

    # --json: one object for scripts, the same rows; a pruned preset's missing values are null, never NaN
    shutil.rmtree(tmp_path / "plots")  # the table report wrote them; --json writes none unless asked
    out = subprocess.run([*cmd, "report", str(tmp_path), "--json"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert {r["trial"] for r in report["best"]} == {3, 5} and report["confirmed"] is None and report["plots"] == []
    assert [(r["preset"], r["state"]) for r in report["presets"]] == [
        ("deltanet", "complete"), ("titans", "complete"), ("gla", "pruned")]
    assert [o["metric"] for o in report["objectives"]] == METRICS and len(report["versus_presets"]) == 2
    assert not (tmp_path / "plots").exists()


def test_spread_gives_each_objectives_best_median_and_worst_in_its_own_direction():
    study = make_study(["minimize", "maximize"], [([3.7, 0.96], {}), ([3.9, 0.01], {}), (None, {}),
                                                  ([3.8, 0.99], {}), ([4.0, 0.5], {})])
    bpb, recall = spread(study, METRICS)
    assert (bpb["best"], bpb["best architecture"], bpb["worst"], bpb["worst architecture"]) == (3.7, "arch0", 4.0, "arch4")
    assert (recall["best"], recall["best architecture"], recall["worst"], recall["worst architecture"]) == \
        (0.99, "arch3", 0.01, "arch1")
    assert bpb["trials"] == 4 and bpb["median"] == pytest.approx(3.85) and recall["median"] == pytest.approx(0.73)
    assert spread(make_study(["minimize", "maximize"], [(None, {})]), METRICS) == []
