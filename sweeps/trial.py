"""One trial of a sweep: sample an architecture from the search space, reject it before any training if it
is incompatible or over budget, train it on each budget task (one nested MLflow run per task under the trial's
run), and return the objective values.

Multi-fidelity for multi-objective studies (Optuna's pruners take a single objective): the budget tasks are
trained in order, and after each task whose metric is an objective, a trial whose value there is worse than
the `task_halving` quantile of the completed trials' values (with at least `min_completed` of them) stops
before its remaining tasks. Bad architectures cost one task's budget, not all of them.
"""
from __future__ import annotations

import math
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from components.models import resolve_spec

from .study import fail_lost_trials, original_number
from .tracking import Tracker
from .train import NonFiniteLoss, Preempted, Pruned
from .train import distributed as dp
from .train.run import run_training


@dataclass
class TrialOutcome:
    state: TrialState
    values: list[float] | None = None
    reason: str = ""
    preempted: bool = False  # stopped by a signal with its checkpoint kept: the worker queues a retry


def close_lost_runs(tracker: Tracker, sweep: str, number: int, reason: str) -> None:
    """The MLflow runs (the trial's and its tasks') a lost worker left RUNNING for trial `number` of the study
    `sweep` (a confirm stage numbers its trials afresh in the same experiment): FAILED, with why."""
    client = tracker.client
    lost = client.search_runs([tracker.experiment_id], f"tags.trial = '{number}' and tags.sweep = '{sweep}' and "
                                                       "attributes.status = 'RUNNING'")
    for run in lost:
        client.set_tag(run.info.run_id, "state", "FAIL")
        client.set_tag(run.info.run_id, "reason", reason[:5000])
        client.set_terminated(run.info.run_id, "FAILED")


def fail_lost(study: optuna.Study, tracker: Tracker) -> list:
    """study.fail_lost_trials, closing each lost attempt's MLflow runs with its reason."""
    return fail_lost_trials(study, lambda t: close_lost_runs(tracker, study.study_name, original_number(t),
                                                             t.user_attrs.get("reason", "worker lost")))


def average(runs: list[dict[str, float]]) -> dict[str, float]:
    """The mean of each metric over the seeds of one task (a metric some seed lacks is left out)."""
    if len(runs) == 1:
        return dict(runs[0])
    keys = [k for k in runs[0] if all(k in r for r in runs[1:])]
    return {k: sum(r[k] for r in runs) / len(runs) for k in keys}


class TrialRunner:
    def __init__(self, space, ctx: dict[str, Any], tracker: Tracker, world: dp.World | None = None) -> None:
        self.space, self.ctx, self.tracker = space, ctx, tracker
        self.world = world or dp.World()  # rank 0 of a data-parallel trial hands each run to the other ranks
        self.sweep_dir = Path(ctx["sweep_dir"])
        # an objective is read from the task that produces it (lm and mqar both report val/loss)
        self.objectives = [(f"{o.task}:{o.metric}", o.direction) for o in space.objectives]

    def run(self, trial: optuna.Trial) -> TrialOutcome:
        number = original_number(trial)
        if number != trial.number:  # any run an earlier attempt left RUNNING is closed (normally done when it failed)
            close_lost_runs(self.tracker, self.ctx["study_name"], number, f"worker lost; retried as trial {trial.number}")
            trial.set_user_attr("reason", "")  # a retry starts clean (user attributes are copied from the original)
        plan = self.space.suggest(trial)
        reason = self.space.check(plan)
        spec = None if reason else resolve_spec(plan.model)
        name = spec.name if spec else "rejected"
        trial.set_user_attr("architecture", name)
        preset = trial.user_attrs.get("preset")  # a seed point: the known model (enqueue) it is
        run_name = f"{name} · seed {trial.user_attrs['seed']}" if "confirms" in trial.user_attrs else name
        run_id = self.tracker.start(run_name, tags={"trial": number, "state": "RUNNING", "sweep": self.ctx["study_name"],
                                                **({"preset": preset} if preset else {}), **self.stage_tags(trial)},
                                    parent_run_id=trial.user_attrs.get("group_run_id") or self.ctx["parent_run_id"])
        trial.set_user_attr("mlflow_run_id", run_id)
        self.tracker.log_params({"trial": dict(plan.params), **({"model": spec.to_dict()} if spec else {})})
        if reason:
            return self._end(trial, TrialOutcome(TrialState.PRUNED, reason=f"rejected before training: {reason}"))
        self.tracker.set_tags({"architecture": spec.name, "content_hash": spec.content_hash})
        try:
            metrics = self._train_tasks(trial, number, plan, spec)
        except Pruned as err:
            return self._end(trial, TrialOutcome(TrialState.PRUNED, reason=str(err)))
        except Preempted as err:
            return self._end(trial, TrialOutcome(TrialState.FAIL, preempted=True,
                                                 reason=f"preempted: {err.signal_name} at step {err.step} of task "
                                                        f"'{err.task}'; its checkpoint is kept and a retry resumes it"))
        except NonFiniteLoss as err:
            return self._end(trial, TrialOutcome(TrialState.PRUNED, reason=f"diverged: {err}"))
        except Exception as err:  # a failing trial never stops the sweep
            detail = "".join(traceback.format_exception_only(type(err), err)).strip()
            return self._end(trial, TrialOutcome(TrialState.FAIL, reason=detail))
        self.tracker.log_metrics(metrics, 0, flush=True)
        values = [metrics[m] for m, _ in self.objectives]
        for key, value in metrics.items():
            trial.set_user_attr(f"metric:{key}", value)
        return self._end(trial, TrialOutcome(TrialState.COMPLETE, values=values))

    def stage_tags(self, trial) -> dict[str, str]:
        """search, or confirm with the search trial it confirms and its seed (sweeps.confirm)."""
        tags = {"stage": self.ctx.get("stage", "search")}
        if "confirms" in trial.user_attrs:
            tags.update(confirms=str(trial.user_attrs["confirms"]), seed=str(trial.user_attrs["seed"]))
        return tags

    def seeds(self, trial) -> list[int]:
        """The training seeds of this trial: sweep.seeds_per_trial of them from the sweep's seed (or, for a confirm
        trial, its own)."""
        base = int(trial.user_attrs.get("seed", self.ctx["seed"]))
        return [base + j for j in range(int(self.ctx.get("seeds_per_trial") or 1))]

    def _train_tasks(self, trial, number: int, plan, spec) -> dict[str, float]:
        metrics: dict[str, float] = {}
        offset = 0
        single = len(self.objectives) == 1
        seeds = self.seeds(trial)
        for task_name, budget in self.space.budget.tasks.items():
            runs = []
            for j, seed in enumerate(seeds):
                config = {"model": plan.model, "task": {"name": task_name, **budget.task},
                          "train": {**budget.train, **plan.train, "progress": False, "threads": self.ctx["threads"],
                                    "seed": seed, "eval_at": list(self.space.budget.rungs)},
                          "tracking": {"uri": self.tracker.uri}}
                # the pruner follows the first seed's curve (its steps are the trial's steps)
                reporter = self._reporter(trial, offset, task_name) if single and j == 0 else None
                out_dir = self.sweep_dir / "trials" / f"{number:05d}" / task_name
                out_dir = out_dir / f"seed-{seed}" if len(seeds) > 1 else out_dir
                dp.broadcast(self.world, ("train", config, str(out_dir)))
                result = run_training(config, out_dir,
                                      tracker=Tracker(self.tracker.uri, self.ctx["experiment"]),
                                      run_name=f"{spec.name} · {task_name}" + (f" · seed {seed}" if len(seeds) > 1 else ""),
                                      parent_run_id=self.tracker.run_id,
                                      extra_tags={"trial": str(number), "sweep": self.ctx["study_name"],
                                                  **self.stage_tags(trial)}, on_eval=reporter)
                runs.append(result.metrics)
            offset += int(config["train"].get("steps", 0))
            for key, value in average(runs).items():
                metrics.setdefault(key, value)  # the first task that reports a name owns it
                metrics[f"{task_name}:{key}"] = value
            if len(seeds) > 1:  # the spread behind each averaged objective, for the report
                for metric, _ in self.objectives:
                    task, name = metric.split(":", 1)
                    if task == task_name and name in runs[0]:
                        trial.set_user_attr(f"seeds:{metric}", [r[name] for r in runs])
            if not single:
                self._halve(trial, metrics)
        missing = [m for m, _ in self.objectives if m not in metrics]
        if missing:
            raise KeyError(f"no budget task reported {missing}")
        return metrics

    def _reporter(self, trial: optuna.Trial, offset: int, task_name: str):
        task, metric = self.objectives[0][0].split(":", 1)

        def report(step: int, metrics: dict) -> None:
            if task != task_name:
                return
            if metric in metrics and math.isfinite(metrics[metric]):
                trial.report(metrics[metric], offset + step)
                if trial.should_prune():
                    raise Pruned(f"pruned at step {offset + step}: {metric}={metrics[metric]:.4g}")
        return report

    def _halve(self, trial: optuna.Trial, metrics: dict[str, float]) -> None:
        quantile = self.ctx.get("task_halving")
        if not quantile:
            return
        done = trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if len(done) < self.ctx.get("min_completed", 4):
            return
        for metric, direction in self.objectives:
            if metric not in metrics:
                continue
            others = sorted(t.user_attrs.get(f"metric:{metric}") for t in done if f"metric:{metric}" in t.user_attrs)
            if len(others) < self.ctx.get("min_completed", 4):
                continue
            value = metrics[metric]
            if direction == "maximize":
                cut = others[int((1 - quantile) * (len(others) - 1))]
                worse = value < cut
            else:
                cut = others[int(quantile * (len(others) - 1))]
                worse = value > cut
            if worse:
                raise Pruned(f"task halving: {metric}={value:.4g} is worse than {cut:.4g}, the {quantile:.0%} "
                             f"quantile of {len(others)} completed trials")


    def _end(self, trial: optuna.Trial, outcome: TrialOutcome) -> TrialOutcome:
        if outcome.reason:
            trial.set_user_attr("reason", outcome.reason[:2000])
        state = outcome.state.name
        self.tracker.set_tags({"state": state, **({"reason": outcome.reason[:5000]} if outcome.reason else {})})
        self.tracker.finish({"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}[state])
        return outcome
