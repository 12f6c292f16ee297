"""The sweep's view of the MLflow runs table: the architecture, every objective and the cost columns shown, the trials
sorted by the first objective, with nothing to pick from "Columns".

MLflow 3.x keeps the runs table's columns in the browser (localStorage), and the URL only carries the search facets
(searchFilter, orderByKey, orderByAsc, ...), not the columns. What it does read from the server is a saved view: an
experiment tag `mlflow.sharedViewState.<key>` holding {name, createdAt, updatedAt, state} where state is the page's
state as JSON (the search facets and the UI state: selectedColumns, ...). The runs page opened with
`?viewStateShareKey=<key>` applies it (the same mechanism as its own "Share" and "Save as new view"), and the view is
listed in the experiment's saved views. Column ids are MLflow's canonical keys: metrics.`val/bpb`, tags.`architecture`.
"""
from __future__ import annotations

import json
import time
import urllib.parse
from typing import Any, Iterable

from .mlflow_run import mlflow_key

VIEW_KEY = "mirasweep"  # the saved view's key: one per experiment (a sweep), written by `mirasweep ui` when it changed
VIEW_NAME = "mirasweep: architecture, objectives, cost"
SHARED_VIEW_TAG = "mlflow.sharedViewState."  # MLflow's prefix for saved and shared views
ARCHITECTURE_TAGS = ("architecture", "preset")
BEST_TAG = "best"  # 'true' while the trial is in the Pareto set (single objective: the best trials)
# what a trial costs: size, recurrent state, training FLOPs/token, throughput, device use, peak memory (as the report)
COST_METRICS = ("cost/params", "cost/state", "perf/train_flops_per_token", "perf/tokens_per_s", "perf/mfu",
                "perf/peak_mem_mib")
# trial runs only (they alone carry a `state` tag): the parent (no metrics) and the per-task runs below the trials
# are left out, so the trials are rows of their own, sorted by the first objective (clear the search box to see the
# parent and the task runs)
TRIAL_FILTER = "tags.state IS NOT NULL"


def canonical(kind: str, key: str) -> str:
    """MLflow's column id (makeCanonicalSortKey): kind.`key`, kind one of attributes, params, metrics, tags."""
    return f"{kind}.`{key}`"


def objective_metrics(space: Any) -> list[tuple[str, str]]:
    """(MLflow metric key, direction) of each objective as a trial run logs it: the plain name when the objective's
    task is the first budget task producing it (a trial's run gets each name from the first task that reports it),
    else task:name."""
    out = []
    for o in space.objectives:
        first = next((t for t in space.budget.tasks if o.metric in space.task_metrics.get(t, {})), o.task)
        out.append((mlflow_key(o.metric if first == o.task else f"{o.task}:{o.metric}"), o.direction))
    return out


def view_state(objectives: Iterable[tuple[str, str]], search_filter: str = TRIAL_FILTER) -> dict[str, Any]:
    """The runs page's state: its default columns (MLflow's Source, Models, Dataset) replaced by ours, in our order
    (columnOrder; MLflow would otherwise put each group's columns in alphabetical order, the objectives off to the
    right), the trials sorted by the first objective in its direction."""
    objectives = list(objectives)
    names = [m for m, _ in objectives]
    columns = [canonical("tags", t) for t in ARCHITECTURE_TAGS]
    columns += [canonical("metrics", m) for m in names + [m for m in COST_METRICS if m not in names]]
    columns.append(canonical("tags", BEST_TAG))
    return _state(columns, search_filter, objectives)


def _state(columns: list[str], search_filter: str, objectives: list[tuple[str, str]]) -> dict[str, Any]:
    """These columns in this order, the rows this filter finds, sorted by the first objective in its direction."""
    state: dict[str, Any] = {"selectedColumns": columns, "columnOrder": columns, "searchFilter": search_filter}
    if objectives:
        state["orderByKey"] = canonical("metrics", objectives[0][0])
        state["orderByAsc"] = objectives[0][1] == "minimize"
    return state


CONFIRMED_VIEW_KEY = "mirasweep-confirmed"  # a second view, once the sweep has a confirm stage (sweeps.confirm)
CONFIRMED_VIEW_NAME = "mirasweep: confirmed architectures (mean, std, 95% interval over seeds)"
CONFIRMED_FILTER = "tags.kind = 'confirmed'"  # one run per confirmed architecture; its seed runs sit below it


def confirmed_view_state(objectives: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """The confirm stage's architecture runs: per objective its mean over the seeds (logged under the objective's
    name), std and 95% interval; the seeds counted; sorted by the first objective's mean."""
    objectives = [(mlflow_key(m), d) for m, d in objectives]
    columns = [canonical("tags", t) for t in ARCHITECTURE_TAGS] + [canonical("metrics", "seeds")]
    for m, _ in objectives:
        columns += [canonical("metrics", k) for k in (m, f"{m}/std", f"{m}/ci95_low", f"{m}/ci95_high")]
    columns.append(canonical("tags", BEST_TAG))
    return _state(columns, CONFIRMED_FILTER, objectives)


def save_view(client, experiment_id: str, state: dict[str, Any], key: str = VIEW_KEY, name: str = VIEW_NAME) -> str:
    """Write the saved view as an experiment tag (idempotent: rewritten only when it changed); returns its key."""
    tag = SHARED_VIEW_TAG + key
    now = int(time.time() * 1000)
    old = client.get_experiment(experiment_id).tags.get(tag)
    try:
        old_view = json.loads(old) if old else None
        created = int(old_view["createdAt"])
        if old_view.get("name") == name and json.loads(old_view["state"]) == state:
            return key
    except (ValueError, KeyError, TypeError):
        created = now
    value = {"name": name, "createdAt": created, "updatedAt": now, "state": json.dumps(state)}
    client.set_experiment_tag(experiment_id, tag, json.dumps(value))
    return key


def runs_url(base: str, experiment_id: str, view_key: str | None = None) -> str:
    """The experiment's runs table (MLflow 3 opens experiments in its GenAI view; the runs table is the
    machine-learning workflow), with the saved view applied. The search facets (searchFilter, orderByKey, ...) must
    not be in the URL too: MLflow ignores the view when they are."""
    query = {"workflowType": "machine_learning", **({"viewStateShareKey": view_key} if view_key else {})}
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?{urllib.parse.urlencode(query)}"
