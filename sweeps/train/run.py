"""A tracked training run: resolve the config, train, and record everything in MLflow.

The run directory holds the checkpoint, the MLflow run id and, once finished, result.json; running the same
config with the same directory resumes an interrupted run (same MLflow run) or returns a finished one.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from components.models import ArchitectureSpec, resolve_spec
from components.models.accounting import spec_size
from components.tasks import TASKS, Task
from components.training import TrainConfig

from ..tracking import Tracker
from ..tracking.mlflow_run import validate_tracking_uri
from . import distributed as dp
from .errors import NonFiniteLoss, Preempted, Pruned
from .fits import check_fits
from .loop import EvalCallback, TrainResult, train

RESULT, RUN_ID = "result.json", "mlflow_run_id"


def build_task(task_cfg: Mapping[str, Any], where: str = "task") -> Task:
    opts = dict(task_cfg)
    from components.options import ComponentError

    try:
        return TASKS.create(opts.pop("name", "lm"), **opts)
    except ComponentError as err:
        raise ComponentError(f"{where}: {err}") from None


def build_spec(model_cfg: Mapping[str, Any] | str, task: Task, preset: str | None = None) -> ArchitectureSpec:
    data = dict(model_cfg) if not isinstance(model_cfg, str) else model_cfg
    if isinstance(data, dict):
        data["vocab_size"] = task.vocab_size
        spec = resolve_spec(data)
        return ArchitectureSpec(**{**{k: getattr(spec, k) for k in spec.__dataclass_fields__}, "preset": preset})
    return resolve_spec(data, [f"vocab_size={task.vocab_size}"])


def model_card(spec: ArchitectureSpec, params: int, state: int) -> str:
    lines = [f"# {spec.name}", "", f"- preset: {spec.preset or '(custom)'}", f"- content hash: {spec.content_hash}",
             f"- parameters: {params:,}", f"- recurrent state per sequence: {state:,} numbers", "", "```json",
             json.dumps(spec.to_dict(), indent=2, default=str), "```"]
    return "\n".join(lines)


def run_training(config: Mapping[str, Any], out_dir: Path, preset: str | None = None, tracker: Tracker | None = None,
                 run_name: str | None = None, parent_run_id: str | None = None, extra_tags: Mapping[str, str] | None = None,
                 on_eval: EvalCallback | None = None) -> TrainResult:
    """config: {'model': spec mapping, 'task': {name, **options}, 'train': {...}, 'tracking': {uri, experiment}}.

    In a data-parallel world (distributed.py) every rank calls this with the same arguments and trains its slice;
    rank 0 alone has the MLflow run and writes the run directory's files (`tracker` is ignored on the others)."""
    out_dir = Path(out_dir)
    world = dp.environment_world()
    done = out_dir / RESULT
    if done.is_file():
        data = json.loads(done.read_text())
        if tracker is not None and parent_run_id and data.get("run_id"):  # a retried trial adopts its finished task
            tracker.client.set_tag(data["run_id"], "mlflow.parentRunId", parent_run_id)
        return TrainResult(data["metrics"], [tuple(h) for h in data["history"]], resumed_from=data["steps"])
    # everything that can be wrong with the input is found before anything is created (no folder, store or run)
    task = build_task(config.get("task") or {"name": "lm"})
    spec = build_spec(config["model"], task, preset)
    cfg = TrainConfig.from_dict(config.get("train"))
    tracking = dict(config.get("tracking") or {})
    if tracker is None and tracking.get("uri") is not None:
        validate_tracking_uri(tracking["uri"])
    params, state = spec_size(spec, getattr(task, "seq_len", 512))  # counted, never allocated
    check_fits(spec, params, cfg.device, shards=world.size if cfg.parallel in ("auto", "fsdp") else 1)
    dp.check_batch(world, cfg.batch_size)
    data_info = task.data_info()  # reads the corpus: a missing file or dataset is an input error too
    out_dir.mkdir(parents=True, exist_ok=True)
    if not world.main:
        return train(spec, task, cfg, out_dir, on_eval=on_eval, world=world)

    if tracker is None:
        tracker = Tracker(tracking.get("uri"), tracking.get("experiment", "mirasweep"))
    id_file = out_dir / RUN_ID
    resume_id = id_file.read_text().strip() if id_file.is_file() else None
    tags = {"architecture": spec.name, "content_hash": spec.content_hash, "preset": preset or "", "task": task.name,
            **(extra_tags or {})}
    tracker.start(run_name or spec.name, tags=tags, parent_run_id=parent_run_id, resume_run_id=resume_id)
    id_file.write_text(tracker.run_id)
    if resume_id is None:
        tracker.log_params({"model": spec.to_dict(), "task": {"name": task.name, **task.opts}, "train": vars(cfg),
                            "preset": preset or ""})
        tracker.log_json(dict(config), "config/config.json")
        tracker.log_json(spec.to_dict(), "spec/architecture.json")
        tracker.log_text(model_card(spec, params, state), "spec/model_card.md")
        tracker.log_metrics({"cost/params": params, "cost/state": state, **data_info}, 0, flush=True)
    try:
        result = train(spec, task, cfg, out_dir, tracker=tracker, on_eval=on_eval, world=world)
    except NonFiniteLoss as err:
        tracker.finish("FAILED", str(err))
        raise
    except Preempted as err:
        err.task = task.name
        tracker.set_tags({"preempted": err.signal_name})
        tracker.finish("KILLED")
        raise
    except Pruned as err:
        tracker.set_tags({"pruned": str(err)})
        tracker.finish("KILLED", f"pruned: {err}")
        raise
    except BaseException as err:
        tracker.finish("FAILED", f"{type(err).__name__}: {err}")
        raise
    if result.resumed_from:  # visible in the UI: this run was interrupted and went on from a checkpoint
        tracker.set_tags({"resumed_from_step": result.resumed_from})
    result.metrics.update({"cost/params": params, "cost/state": state, **ladder_state(spec, task)})
    tracker.log_metrics(result.metrics, cfg.steps, flush=True)
    tracker.finish("FINISHED")
    done.write_text(json.dumps({"metrics": result.metrics, "history": result.history, "steps": cfg.steps,
                                "architecture": spec.name, "run_id": tracker.run_id,
                                "resumed_from": result.resumed_from}, indent=2))
    return result


def ladder_state(spec, task) -> dict[str, float]:
    """The state a sequence needs at each setting of the task's difficulty ladder (`cost/state@{seq_len}x{pairs}`,
    beside `recall/mqar@...`): attention's cache grows with the length, a recurrent state does not."""
    return {f"cost/state@{length}x{pairs}": float(spec_size(spec, length)[1])
            for length, pairs in getattr(task, "settings", ())}
