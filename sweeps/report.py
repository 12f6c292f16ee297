"""The best architectures of a sweep: the Pareto set (multi-objective) or the top trials (single objective)."""
from __future__ import annotations

import csv
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from .study import original_number  # a retried trial is shown by its first number, as MLflow's `trial` tag has it


def best_trials(study: optuna.Study, top: int = 10) -> list[FrozenTrial]:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return []
    if len(study.directions) > 1:
        return sorted(study.best_trials, key=lambda t: t.values)
    sign = 1 if study.direction == optuna.study.StudyDirection.MINIMIZE else -1
    return sorted(complete, key=lambda t: sign * t.value)[:top]


def rows(study: optuna.Study, metrics: list[str], top: int = 10) -> list[dict]:
    out = []
    for t in best_trials(study, top):
        row = {"trial": original_number(t), "architecture": t.user_attrs.get("architecture", "?")}
        row.update({m: v for m, v in zip(metrics, t.values)})
        row["params"] = int(t.user_attrs.get("metric:cost/params", 0))
        row["state"] = int(t.user_attrs.get("metric:cost/state", 0))
        row["tokens/s"] = round(t.user_attrs.get("metric:perf/tokens_per_s", 0.0))
        # what the trial got out of its device: model FLOPs utilisation and the run's peak memory
        mfu = t.user_attrs.get("metric:perf/mfu")
        row["mfu %"] = round(100 * mfu, 2) if mfu is not None else "-"
        row["peak MiB"] = round(t.user_attrs.get("metric:perf/peak_mem_mib", 0.0))
        row["preset"] = t.user_attrs.get("preset", "")
        row["mlflow_run_id"] = t.user_attrs.get("mlflow_run_id", "")
        out.append(row)
    return out


def counts(study: optuna.Study) -> dict[str, int]:
    """Trials by state; a failed trial that was retried (preempted, cancelled, lost) is `retried`, not `fail`."""
    from .study import retried_numbers

    trials = study.get_trials(deepcopy=False)
    retried = retried_numbers(trials)
    result = {s.name.lower(): 0 for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING,
                                          TrialState.WAITING)}
    result["retried"] = 0
    for t in trials:
        result["retried" if t.state == TrialState.FAIL and t.number in retried else t.state.name.lower()] += 1
    return result


def write_csv(table: list[dict], path: Path) -> None:
    if not table:
        path.write_text("")
        return
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)


def markdown(table: list[dict]) -> str:
    if not table:
        return "(no completed trials yet)\n"
    keys = list(table[0])
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(r[k]) for k in keys) + " |" for r in table]
    return "\n".join(lines) + "\n"


AXES_SHOWN = ("backbone", "memory.structure", "memory.bias", "memory.retention", "memory.algorithm")


def axis_summary(study: optuna.Study, metrics: list[str]) -> list[dict]:
    """Per design axis and choice: completed trials, and the best and median of each objective among them —
    which structures, biases, retentions and algorithms win. The choice is read from the trial's suggested
    parameters (an axis the space fixes has no parameter and is left out)."""
    import statistics

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    maximize = [d == optuna.study.StudyDirection.MAXIMIZE for d in study.directions]
    out = []
    for axis in AXES_SHOWN:
        groups: dict[str, list[FrozenTrial]] = {}
        for t in complete:
            if axis in t.params:
                groups.setdefault(str(t.params[axis]), []).append(t)
        for choice, trials in sorted(groups.items()):
            row = {"axis": axis, "choice": choice, "trials": len(trials)}
            for i, metric in enumerate(metrics):
                values = [t.values[i] for t in trials]
                row[f"best {metric}"] = max(values) if maximize[i] else min(values)
                row[f"median {metric}"] = statistics.median(values)
            out.append(row)
    return out


def pareto_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The non-dominated completed trials (single objective: those with the best value, ties included)."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return []
    return study.best_trials


def tag_search_best(study: optuna.Study, client, confirmed: bool) -> None:
    """The search's Pareto trials: `search_best=true` always, and `best=true` until a confirm stage (sweeps.confirm)
    names the confirmed set instead."""
    tag_best(study, client, "search_best")
    if not confirmed:
        tag_best(study, client)


def tag_best(study: optuna.Study, client, tag: str = "best") -> set[str]:
    """Tag `best=true` on the MLflow runs of the Pareto trials, so the UI filters them with `tags.best = 'true'`;
    `best=false` on this study's runs that were tagged best and no longer are. Only changes are written: it runs
    after every trial, under the sweep lock. Returns the run ids tagged best. `tag` names another tag to keep."""
    from mlflow.exceptions import MlflowException

    ours = {t.user_attrs["mlflow_run_id"] for t in study.get_trials(deepcopy=False) if "mlflow_run_id" in t.user_attrs}
    best = {t.user_attrs["mlflow_run_id"] for t in pareto_trials(study) if "mlflow_run_id" in t.user_attrs}
    if not ours:
        return best
    # the current tags come from MLflow itself, not from memory: several workers refresh in turn
    experiment = client.get_run(next(iter(ours))).info.experiment_id
    tagged = {r.info.run_id for r in client.search_runs([experiment], f"tags.{tag} = 'true'", max_results=50000)}
    changes = [(r, "true") for r in best - tagged] + [(r, "false") for r in (tagged & ours) - best]
    for run_id, value in changes:  # (tagged - ours: another sweep sharing the experiment keeps its own tags)
        try:
            client.set_tag(run_id, tag, value)
        except MlflowException:  # e.g. a run deleted in the UI: a tag is never worth stopping a sweep for
            pass
    return best


def _better(value: float, reference: float, maximize: bool) -> float:
    """Signed improvement of value over reference: positive is better, whatever the direction."""
    return value - reference if maximize else reference - value


def describe(delta: float, reference: float, name: str) -> str:
    """'better than deltanet by 0.12 (1.9%)' from a signed improvement over the reference value."""
    if delta == 0:
        return f"equal to {name}"
    relative = f" ({abs(delta) / abs(reference):.1%})" if reference else ""
    return f"{'better' if delta > 0 else 'worse'} than {name} by {abs(delta):.4g}{relative}"


def preset_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Trials of known models' presets (the space's `enqueue` seed points), in trial order."""
    return sorted((t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("preset")), key=lambda t: t.number)


def preset_rows(study: optuna.Study, metrics: list[str]) -> list[dict]:
    """Each preset trial's objectives (a preset that did not complete shows its state and no values)."""
    out = []
    for t in preset_trials(study):
        row = {"preset": t.user_attrs["preset"], "trial": original_number(t),
               "architecture": t.user_attrs.get("architecture", "?"), "state": t.state.name.lower()}
        done = t.state == TrialState.COMPLETE
        row.update({m: t.values[i] if done else "—" for i, m in enumerate(metrics)})
        out.append(row)
    return out


def versus_presets(study: optuna.Study, metrics: list[str], top: int = 10) -> list[dict]:
    """Each best architecture against the best completed preset on each objective (which may be a different
    preset per objective): the question a sweep answers is whether it found something the known models lack."""
    presets = [t for t in preset_trials(study) if t.state == TrialState.COMPLETE]
    if not presets:
        return []
    maximize = [d == optuna.study.StudyDirection.MAXIMIZE for d in study.directions]
    reference = []
    for i in range(len(metrics)):
        pick = max if maximize[i] else min
        reference.append(pick(presets, key=lambda t, i=i: t.values[i]))
    out = []
    for t in best_trials(study, top):
        row = {"trial": original_number(t), "architecture": t.user_attrs.get("architecture", "?")}
        for i, m in enumerate(metrics):
            ref = reference[i]
            delta = _better(t.values[i], ref.values[i], maximize[i])
            row[m] = t.values[i]
            row[f"{m} vs best preset"] = describe(delta, ref.values[i], ref.user_attrs["preset"])
        out.append(row)
    return out


def presets_markdown(study: optuna.Study, metrics: list[str], top: int = 10) -> str:
    """The comparison with known models as a markdown section (empty when the sweep ran no preset)."""
    table = preset_rows(study, metrics)
    if not table:
        return ""
    versus = versus_presets(study, metrics, top)
    return ("\n## Known models (presets) in this sweep\n\n" + markdown(table) +
            "\n## Best architectures against the best preset per objective\n\n" +
            (markdown(versus) if versus else "(no preset trial completed)\n"))


def spread(study: optuna.Study, metrics: list[str]) -> list[dict]:
    """Per objective, over the completed trials: the worst, median and best value and which architecture got the
    extremes; the range a search covered, which the Pareto set alone hides."""
    import statistics

    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    out = []
    for i, (metric, direction) in enumerate(zip(metrics, study.directions)):
        if not done:
            break
        ranked = sorted(done, key=lambda t: t.values[i], reverse=direction == optuna.study.StudyDirection.MAXIMIZE)
        name = lambda t: t.user_attrs.get("architecture", "?")  # noqa: E731
        out.append({"objective": metric, "trials": len(done), "best": ranked[0].values[i], "best architecture":
                    name(ranked[0]), "median": statistics.median(t.values[i] for t in done), "worst": ranked[-1].values[i],
                    "worst architecture": name(ranked[-1])})
    return out
