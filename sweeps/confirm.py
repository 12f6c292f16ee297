"""`mirasweep confirm`: retrain a finished sweep's best architectures and its known models with K fresh seeds at S
times the trial budget, and say which leads are real.

The confirm stage is a second Optuna study in the sweep's storage (`<study>-confirm`) whose trials are all enqueued
up front, one per (architecture, seed), and run by the sweep's own workers and launcher: heartbeats, retries of lost
workers, preemption and resume work as in the search, and rerunning the same command resumes it without repeating a
finished seed. Its folder is `<sweep dir>/confirm/`.

MLflow: under the sweep's parent run, a `confirm` run; under it one run per confirmed architecture (its metrics are
the means over seeds, with `<metric>/std`, `/ci95_low`, `/ci95_high`, `/seeds`; tags `confirms` = the search
trial, `search_run_id`); under each, its seed runs (tags `stage=confirm`, `seed`). `best=true` moves to the
architecture runs of the Pareto set on the means; the search's own best keep `search_best=true`.

Seeds are fresh (the K after the ones the search trained with: sweep.seed + seeds_per_trial onwards): the search
chose its winners partly by their seed's luck, and retraining that seed would carry the luck into the mean.
"""
from __future__ import annotations

import json
import math
import uuid
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from components.options import ComponentError

from .noise import Estimate, leader, pareto_on_means, statements
from .report import best_trials, markdown, preset_trials, write_csv
from .study import create_study, open_storage, original_number
from .tracking import Tracker

STAGE_DIR = "confirm"
STAGE_FILE = "confirm.json"
ATTEMPT_FILE = "attempt"


def stage_runs(stage: dict[str, Any]) -> list[str]:
    """The MLflow runs the stage owns: its confirm run and one per confirmed architecture."""
    return [stage["parent_run_id"], *(g["run_id"] for g in stage["groups"])]


def stage_dir(sweep_dir: str | Path) -> Path:
    return Path(sweep_dir) / STAGE_DIR


def load_stage(sweep_dir: str | Path) -> dict[str, Any] | None:
    """The confirm stage's context, or None where the sweep has none."""
    file = stage_dir(sweep_dir) / STAGE_FILE
    return json.loads(file.read_text()) if file.is_file() else None


def validate_args(seeds: int, budget_scale: float, top: int) -> None:
    if seeds < 1:
        raise ComponentError(f"--seeds must be >= 1 (fresh training seeds per architecture), got {seeds}")
    if not (budget_scale > 0 and math.isfinite(budget_scale)):
        raise ComponentError(f"--budget-scale must be a positive number (times the trial budget), got {budget_scale}")
    if top < 1:
        raise ComponentError(f"--top must be >= 1 (architectures of a single-objective sweep), got {top}")


def candidates(study: optuna.Study, top: int) -> list[FrozenTrial]:
    """The Pareto set (top N for a single objective) and every enqueued preset, one trial per architecture (a
    preset on the Pareto set once; a retried preset by its last attempt), in that order."""
    chosen, seen = [], set()
    presets = {}
    for t in preset_trials(study):  # a retry comes after its original: the last attempt wins
        presets[t.user_attrs["preset"]] = t
    for t in [*best_trials(study, top), *presets.values()]:
        key = json.dumps(t.params, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            chosen.append(t)
    return chosen


def scaled_space(space: dict[str, Any], scale: float) -> dict[str, Any]:
    """The space with every budget task's steps (and its warm-up, evaluation and checkpoint intervals, and the
    rungs) times `scale`, at least 1."""
    space = json.loads(json.dumps(space))
    times = lambda n: max(1, round(n * scale))  # noqa: E731
    for budget in space["budget"]["tasks"].values():
        for key in ("steps", "warmup", "eval_every", "checkpoint_every"):
            if key in budget["train"]:
                budget["train"][key] = times(budget["train"][key])
    space["budget"]["rungs"] = [times(r) for r in space["budget"].get("rungs", [])]
    return space


def first_fresh_seed(ctx: dict[str, Any]) -> int:
    """The first seed no search trial trained with: the search used sweep.seed .. + seeds_per_trial - 1."""
    return int(ctx["seed"]) + int(ctx.get("seeds_per_trial") or 1)


def label(trial_attrs: dict, number: int) -> str:
    """How an architecture is named in tables and plots: the preset, else the architecture and its search trial."""
    preset = trial_attrs.get("preset")
    return preset if preset else f"{trial_attrs.get('architecture', '?')} #{number}"


def prepare_stage(ctx: dict[str, Any], seeds: int, budget_scale: float, top: int) -> tuple[dict, list[FrozenTrial]]:
    """The stage's context and the trials it confirms; creates nothing. Refuses a sweep that is not finished or has
    no completed trial, and a resumed stage asked for other settings."""
    settings = {"seeds": seeds, "budget_scale": budget_scale, "top": top}
    existing = load_stage(ctx["sweep_dir"])
    if existing:
        if existing["confirm"] != settings:
            differ = ", ".join(f"--{k.replace('_', '-')} {existing['confirm'][k]} (asked {v})"
                               for k, v in settings.items() if existing["confirm"][k] != v)
            raise ComponentError(f"this sweep's confirm stage was started with {differ}; rerun with its settings to "
                                 f"resume it, or remove {stage_dir(ctx['sweep_dir'])} to start a new one")
        return existing, []
    study = optuna.load_study(study_name=ctx["study_name"], storage=open_storage(ctx["storage"]))
    live = study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))
    if live:
        raise ComponentError(f"the sweep {ctx['sweep_dir']} is not finished ({len(live)} trials running or waiting); "
                             "finish it first (rerun its sweep command), then confirm")
    chosen = candidates(study, top)
    if not any(t.state == TrialState.COMPLETE for t in chosen):
        raise ComponentError(f"the sweep {ctx['sweep_dir']} has no completed trial to confirm")
    stage = dict(ctx)
    stage.update(stage="confirm", study_name=f"{ctx['study_name']}-confirm", sweep_dir=str(stage_dir(ctx["sweep_dir"])),
                 search={"study_name": ctx["study_name"], "sweep_dir": ctx["sweep_dir"],
                         "parent_run_id": ctx["parent_run_id"]},
                 space=scaled_space(ctx["space"], budget_scale), n_trials=len(chosen) * seeds, pruner=None,
                 task_halving=None, seeds_per_trial=1, confirm=settings,
                 seeds=[first_fresh_seed(ctx) + k for k in range(seeds)])
    return stage, chosen


def create_stage(stage: dict[str, Any], chosen: list[FrozenTrial]) -> dict[str, bool]:
    """The stage's study (every (architecture, seed) trial enqueued), its MLflow runs and confirm.json, written last:
    a command killed before that leaves an attempt the next one removes."""
    folder = Path(stage["sweep_dir"])
    folder.mkdir(parents=True, exist_ok=True)
    storage = open_storage(stage["storage"])
    tracker = Tracker(stage["tracking_uri"], stage["experiment"])
    _undo_torn_attempt(stage, folder, storage, tracker)
    attempt = uuid.uuid4().hex
    (folder / ATTEMPT_FILE).write_text(attempt)
    search = stage["search"]
    tracker.start(f"confirm {search['study_name']}", tags={"sweep": search["study_name"], "stage": "confirm",
                                                          "kind": "confirm", "attempt": attempt},
                  parent_run_id=search["parent_run_id"])
    stage["parent_run_id"] = tracker.run_id
    tracker.log_params({"confirm": {**stage["confirm"], "seeds_used": stage["seeds"]}})
    create_study(stage["storage"], stage["study_name"], [o["direction"] for o in stage["space"]["objectives"]])
    study = optuna.load_study(study_name=stage["study_name"], storage=storage)
    groups = []
    for t in chosen:
        number = original_number(t)
        name = label(t.user_attrs, number)
        group = Tracker(stage["tracking_uri"], stage["experiment"])
        group.start(name, tags={"sweep": search["study_name"], "stage": "confirm", "kind": "confirmed", "state": "RUNNING",
                                "confirms": str(number), "search_run_id": t.user_attrs.get("mlflow_run_id", ""),
                                "architecture": t.user_attrs.get("architecture", "?"), "attempt": attempt,
                                **({"preset": t.user_attrs["preset"]} if t.user_attrs.get("preset") else {})},
                    parent_run_id=stage["parent_run_id"])
        group.log_params({"trial": dict(t.params)})
        groups.append({"label": name, "confirms": number, "run_id": group.run_id,
                       "search_state": t.state.name.lower(), "search_values": t.values})
        for seed in stage["seeds"]:
            attrs = {"confirms": number, "seed": seed, "group_run_id": group.run_id, "label": name}
            if t.user_attrs.get("preset"):
                attrs["preset"] = t.user_attrs["preset"]
            study.enqueue_trial(dict(t.params), user_attrs=attrs)
    stage["groups"] = groups
    (folder / STAGE_FILE).write_text(json.dumps(stage, indent=2, default=str))
    return {"study": True, "parent_run": True}


def _undo_torn_attempt(stage: dict[str, Any], folder: Path, storage, tracker: Tracker) -> None:
    """A command killed while creating the stage: its study and runs go, so the stage is created whole."""
    if stage["study_name"] in {s.study_name for s in optuna.get_all_study_summaries(storage)}:
        optuna.delete_study(study_name=stage["study_name"], storage=storage)
    attempt = folder / ATTEMPT_FILE
    if attempt.is_file():
        for run in tracker.client.search_runs([tracker.experiment_id], f"tags.attempt = '{attempt.read_text()}'"):
            tracker.client.delete_run(run.info.run_id)


def estimates(stage: dict[str, Any], study: optuna.Study) -> dict[str, list[Estimate]]:
    """Per confirmed architecture (its label), one Estimate per objective over its completed seeds."""
    by_group: dict[str, list[FrozenTrial]] = {g["run_id"]: [] for g in stage["groups"]}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        by_group.setdefault(t.user_attrs.get("group_run_id"), []).append(t)
    out = {}
    for g in stage["groups"]:
        done = sorted(by_group[g["run_id"]], key=lambda t: t.user_attrs["seed"])
        n_obj = len(stage["space"]["objectives"])
        out[g["label"]] = [Estimate(tuple(t.values[i] for t in done)) for i in range(n_obj)]
    return out


def objectives(stage: dict[str, Any]) -> tuple[list[str], list[bool]]:
    """The stage's objective names and, per objective, whether it is maximised."""
    found = stage["space"]["objectives"]
    return [o["metric"] for o in found], [o["direction"] == "maximize" for o in found]


def confirmed_rows(stage: dict[str, Any], found: dict[str, list[Estimate]]) -> list[dict]:
    """The table: per architecture, its seeds and each objective's mean, std and 95% interval, the Pareto set on
    the means marked, and the search's single-seed value beside it."""
    metrics, maximize = objectives(stage)
    front = pareto_on_means(found, maximize)
    out = []
    for g in stage["groups"]:
        est = found[g["label"]]
        row = {"architecture": g["label"], "confirms trial": g["confirms"], "seeds": est[0].n,
               "pareto (means)": g["label"] in front}
        for m, e in zip(metrics, est):
            row[f"{m} mean"] = e.mean
            row[f"{m} std"] = e.std
            row[f"{m} 95% CI"] = f"[{e.low:.4g}, {e.high:.4g}]" if e.n > 1 else "-"
            row[f"{m} search"] = g["search_values"][metrics.index(m)] if g["search_values"] else "-"
        out.append(row)
    return out


def summary_markdown(stage: dict[str, Any], found: dict[str, list[Estimate]]) -> str:
    metrics, maximize = objectives(stage)
    c = stage["confirm"]
    text = (f"# Confirmed architectures\n\n{c['seeds']} fresh seeds ({', '.join(map(str, stage['seeds']))}) per "
            f"architecture at {c['budget_scale']:g}x the trial budget. Mean ± std over seeds, Student's t 95% "
            "interval of the mean; the Pareto set is recomputed on the means.\n\n")
    text += markdown(confirmed_rows(stage, found))
    text += "\n## Leaders\n\n"
    for i, m in enumerate(metrics):
        top, ties = leader(found, i, maximize[i])
        if top:
            text += (f"- {m}: {top} " + (f"leads, within noise of {', '.join(ties)}\n" if ties else
                                        "leads beyond noise (its interval separates from every other)\n"))
    text += "\n## Pairwise\n\n" + "".join(f"- {s}\n" for s in statements(found, metrics, maximize))
    return text


def summary_json(stage: dict[str, Any], found: dict[str, list[Estimate]]) -> dict[str, Any]:
    """The confirm stage for scripts: per architecture each objective's seed values, mean, std and 95% interval
    (None where one seed gives none), the Pareto set on the means, and each objective's leader and its ties."""
    metrics, maximize = objectives(stage)
    front = pareto_on_means(found, maximize)
    architectures = []
    for g in stage["groups"]:
        per_objective = {m: {"values": list(e.values), "mean": e.mean, "std": e.std,
                          "ci95": [e.low, e.high] if e.n > 1 else None,
                          "search": g["search_values"][i] if g["search_values"] else None}
                      for i, (m, e) in enumerate(zip(metrics, found[g["label"]]))}
        architectures.append({"architecture": g["label"], "confirms_trial": g["confirms"],
                              "mlflow_run_id": g["run_id"], "pareto_on_means": g["label"] in front,
                              "objectives": per_objective})
    leaders = {}
    for i, m in enumerate(metrics):
        top, ties = leader(found, i, maximize[i])
        leaders[m] = {"leader": top or None, "within_noise_of": ties, "beyond_noise": bool(top) and not ties}
    return {"seeds": stage["seeds"], "budget_scale": stage["confirm"]["budget_scale"],
            "architectures": architectures, "leaders": leaders}


def publish(stage: dict[str, Any], study: optuna.Study, final: bool = False) -> list[dict]:
    """Write what the seeds say so far: the architecture runs' metrics, the `best` tags, the table and verdicts on the
    sweep's parent run and the confirm run, and (final, or at most once a minute) the plots."""
    import tempfile
    import time

    found = estimates(stage, study)
    rows = confirmed_rows(stage, found)
    metrics = [o["metric"] for o in stage["space"]["objectives"]]
    client = Tracker(stage["tracking_uri"], stage["experiment"]).client
    front = {r["architecture"] for r in rows if r["pareto (means)"]}
    for g in stage["groups"]:
        est = found[g["label"]]
        values = {"seeds": float(est[0].n)}
        for m, e in zip(metrics, est):
            if e.n:
                values[m] = e.mean
            if e.n > 1:
                values.update({f"{m}/std": e.std, f"{m}/ci95_low": e.low, f"{m}/ci95_high": e.high})
        run = Tracker(stage["tracking_uri"], stage["experiment"])
        run.run_id = g["run_id"]
        run.log_metrics(values, est[0].n, flush=True)
        client.set_tag(g["run_id"], "best", "true" if g["label"] in front else "false")
    _move_search_best(stage, client)
    text = summary_markdown(stage, found)
    write_csv(rows, Path(stage["sweep_dir"]) / "confirmed.csv")
    for run_id in (stage["search"]["parent_run_id"], stage["parent_run_id"]):
        holder = Tracker(stage["tracking_uri"], stage["experiment"])
        holder.run_id = run_id
        holder.log_text(text, "confirmed.md")
    stamp = Path(stage["sweep_dir"]) / ".plots_drawn"
    if final or not stamp.exists() or time.time() - stamp.stat().st_mtime > 60:
        from .plots import confirmed_intervals

        with tempfile.TemporaryDirectory() as tmp:
            for f in confirmed_intervals(found, stage["space"]["objectives"], Path(tmp)):
                for run_id in (stage["search"]["parent_run_id"], stage["parent_run_id"]):
                    client.log_artifact(run_id, str(f), artifact_path="plots")
        stamp.touch()
    return rows


def _move_search_best(stage: dict[str, Any], client) -> None:
    """The search's best runs keep `search_best=true` and lose `best` (which now names the confirmed set)."""
    search = stage["search"]
    experiment = client.get_run(search["parent_run_id"]).info.experiment_id
    query = f"tags.sweep = '{search['study_name']}' and tags.best = 'true'"
    for run in client.search_runs([experiment], query, max_results=50000):
        if run.data.tags.get("stage", "search") == "search" and run.data.tags.get("kind") not in ("sweep", "confirm"):
            client.set_tag(run.info.run_id, "search_best", "true")
            client.set_tag(run.info.run_id, "best", "false")
