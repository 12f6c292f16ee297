"""One MLflow run per training, through MlflowClient (no global active-run state, so several runs can live in
one process: a sweep's parent and its trials).

Default store: SQLite in the working directory (`sqlite:///mlflow.db`, no server), artifacts in `mlartifacts/`
beside it. `mlflow ui --backend-store-uri sqlite:///mlflow.db` shows the runs.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Mapping

from components.options import ComponentError

DEFAULT_DB = "mlflow.db"
PARAM_VALUE_LIMIT = 6000  # MLflow rejects longer parameter values


def default_uri(root: Path | str = ".") -> str:
    return f"sqlite:///{(Path(root) / DEFAULT_DB).resolve()}"


def mlflow_key(name: str) -> str:
    """MLflow allows alphanumerics and _ - . space : / in names; task metrics such as `recall/niah@1024` keep
    their names everywhere else, and read `recall/niah_at_1024` in MLflow."""
    return name.replace("@", "_at_")


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'memory': {'bias': {'name': 'l2'}}} -> {'memory.bias.name': 'l2'}: one MLflow param per choice."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


class Tracker:
    """A thin layer over MlflowClient: experiment lookup, a run with batched logging, status and artifacts."""

    def __init__(self, uri: str | None = None, experiment: str = "mirasweep", artifact_root: str | None = None) -> None:
        from mlflow.tracking import MlflowClient

        self.uri = uri or default_uri()
        self.client = MlflowClient(tracking_uri=self.uri)
        self.experiment_id = self._experiment(experiment, artifact_root)
        self.run_id: str | None = None
        self._pending: list = []

    def _experiment(self, name: str, artifact_root: str | None) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        if artifact_root is None and self.uri.startswith("sqlite:///"):
            artifact_root = (Path(self.uri[len("sqlite:///"):]).parent / "mlartifacts").as_uri()
        location = None if artifact_root is None else f"{artifact_root.rstrip('/')}/{name}"
        try:
            return self.client.create_experiment(name, artifact_location=location)
        except Exception:  # created by a concurrent process in between: use theirs
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    # ------------------------------------------------------------------ run lifecycle
    def start(self, run_name: str, tags: Mapping[str, str] | None = None, parent_run_id: str | None = None,
              resume_run_id: str | None = None) -> str:
        if resume_run_id:
            self.client.update_run(resume_run_id, status="RUNNING")
            if parent_run_id:  # resumed by a retried trial: nest it under the retry's run
                self.client.set_tag(resume_run_id, "mlflow.parentRunId", parent_run_id)
            self.run_id = resume_run_id
            return resume_run_id
        tags = dict(tags or {})
        if parent_run_id:
            tags["mlflow.parentRunId"] = parent_run_id
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=tags)
        self.run_id = run.info.run_id
        return self.run_id

    def finish(self, status: str = "FINISHED", reason: str | None = None) -> None:
        self.flush()
        if reason:
            self.client.set_tag(self.run_id, "failure_reason", reason[:5000])
        self.client.set_terminated(self.run_id, status=status)

    # ------------------------------------------------------------------ logging
    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:PARAM_VALUE_LIMIT]) for k, v in flatten(params).items()]
        existing = self.client.get_run(self.run_id).data.params
        items = [p for p in items if p.key not in existing]  # resumed runs: params are immutable
        for i in range(0, len(items), 100):  # MLflow's batch limit
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_metrics(self, metrics: Mapping[str, float], step: int, flush: bool = False) -> None:
        """Buffered: metrics go to the store in one batch per flush (logging must not slow training)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._pending += [Metric(mlflow_key(k), float(v), now, step) for k, v in metrics.items()
                          if math.isfinite(float(v))]
        if flush or len(self._pending) >= 500:
            self.flush()

    def flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:1000], self._pending[1000:]
            self.client.log_batch(self.run_id, metrics=batch)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def log_json(self, data: Any, artifact_file: str) -> None:
        self.log_text(json.dumps(data, indent=2, sort_keys=True, default=str), artifact_file)


def validate_tracking_uri(uri: Any, where: str = "tracking.uri") -> None:
    """One message naming `where` for a tracking URI MLflow 3 would refuse or misread; connects to nothing."""
    forms = "sqlite:///PATH, http(s)://HOST:PORT (an MLflow server) or a database URL (postgresql+psycopg://...)"
    if not isinstance(uri, str) or not uri.strip():
        raise ComponentError(f"{where}={uri!r}: expected {forms}")
    if uri.startswith(("http://", "https://", "databricks")):
        return
    if "://" not in uri:
        raise ComponentError(f"{where}={uri!r}: a folder is not a tracking store in MLflow 3; expected {forms}")
    from ..study import validate_storage

    validate_storage(uri, where)
