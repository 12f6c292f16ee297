"""The best architectures of a sweep: the Pareto set (multi-objective) or the top trials (single objective)."""
from __future__ import annotations

import csv
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState


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
        row = {"trial": t.number, "architecture": t.user_attrs.get("architecture", "?")}
        row.update({m: v for m, v in zip(metrics, t.values)})
        row["params"] = int(t.user_attrs.get("metric:cost/params", 0))
        row["state"] = int(t.user_attrs.get("metric:cost/state", 0))
        row["tokens/s"] = round(t.user_attrs.get("metric:perf/tokens_per_s", 0.0))
        row["preset"] = t.user_attrs.get("preset", "")
        row["mlflow_run_id"] = t.user_attrs.get("mlflow_run_id", "")
        out.append(row)
    return out


def counts(study: optuna.Study) -> dict[str, int]:
    result = {s.name.lower(): 0 for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING,
                                          TrialState.WAITING)}
    for t in study.get_trials(deepcopy=False):
        result[t.state.name.lower()] += 1
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
