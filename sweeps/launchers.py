"""Where workers run, through submitit: `debug` (in this process), `local` (N processes on this machine), `slurm`
(a SLURM job array, one worker per array task). Every launcher runs sweeps.worker.SweepWorker(ctx, index).

A launcher's YAML (conf/launcher/<name>.yaml) is checked key by key before anything is created; the SLURM job ids
are written to <sweep dir>/jobs.json so that `mirasweep status` can ask sacct about them.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from components.options import ComponentError, closest

from .worker import SweepWorker, run_worker

COMMON = {"name", "workers", "cpus_per_worker", "timeout_min"}
KEYS = {
    "debug": COMMON,
    "local": COMMON,
    "slurm": COMMON | {"partition", "mem_gb", "gpus_per_task", "account", "qos", "constraint", "array_parallelism",
                       "signal_delay_s", "max_requeues", "setup", "additional_parameters", "job_name",
                       "gpus_per_trial", "ranks_per_trial", "nodes_per_trial"},
}
JOBS_FILE = "jobs.json"


def validate(launcher: dict[str, Any]) -> None:
    name = launcher.get("name", "local")
    if name not in KEYS:
        raise ComponentError(f"launcher: unknown launcher '{name}'{closest(name, list(KEYS))}; "
                             f"known launchers: {', '.join(KEYS)}")
    for key in launcher:
        if key not in KEYS[name]:
            raise ComponentError(f"launcher.{key}: unknown key for launcher '{name}'{closest(key, sorted(KEYS[name]))}; "
                                 f"allowed keys: {', '.join(sorted(KEYS[name]))}")
    if name == "slurm":
        if not isinstance(launcher.get("setup") or [], list):
            raise ComponentError(f"launcher.setup must be a list of shell lines, got {launcher['setup']!r}")
        if not isinstance(launcher.get("additional_parameters") or {}, dict):
            raise ComponentError("launcher.additional_parameters must be a mapping of sbatch options, "
                                 f"got {launcher['additional_parameters']!r}")
        for key in ("timeout_min", "cpus_per_worker", "max_requeues", "signal_delay_s", "gpus_per_trial",
                    "ranks_per_trial", "nodes_per_trial"):
            value = launcher.get(key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ComponentError(f"launcher.{key} must be a non-negative integer, got {value!r}")
        trial_layout(launcher)


class _Done:
    """The handle of a worker that already ran in this process (the debug launcher)."""

    def __init__(self, value: int) -> None:
        self.value = value
        self.job_id = "debug"

    def done(self) -> bool:
        return True

    def result(self) -> int:
        return self.value


def launch(ctx: dict[str, Any]) -> list:
    launcher = dict(ctx["launcher"])
    name = launcher.get("name", "local")
    validate(launcher)
    if name == "debug":
        return [_Done(run_worker(ctx, i)) for i in range(ctx["workers"])]
    import submitit

    folder = str(Path(ctx["sweep_dir"]) / "workers" / "%j")
    indices = list(range(ctx["workers"]))
    if name == "local":
        executor = submitit.LocalExecutor(folder=folder)
        # submitit's local controller must not take Ctrl-C: on SIGINT it SIGKILLs its task a second later, before the
        # worker can checkpoint. It ignores SIGINT (inherited by the worker, which catches it itself while it runs).
        executor.update_parameters(timeout_min=int(launcher.get("timeout_min") or 24 * 60), setup=["trap '' INT"])
        with executor.batch():
            jobs = [executor.submit(SweepWorker(), ctx, i) for i in indices]
    else:
        executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=int(launcher.get("max_requeues") or 10))
        executor.update_parameters(**slurm_parameters(ctx, launcher))
        jobs = executor.map_array(SweepWorker(), [ctx] * len(indices), indices)
    record_jobs(ctx, name, jobs)
    return jobs


def trial_layout(launcher: dict[str, Any]) -> tuple[int, int, int]:
    """(ranks, nodes, GPUs per rank) of one trial: gpus_per_trial ranks with a GPU each, or ranks_per_trial CPU
    ranks (gpus_per_task GPUs each), over nodes_per_trial nodes."""
    gpus, ranks = int(launcher.get("gpus_per_trial") or 0), int(launcher.get("ranks_per_trial") or 0)
    nodes = int(launcher.get("nodes_per_trial") or 1) or 1
    if gpus and ranks:
        raise ComponentError("launcher.gpus_per_trial and launcher.ranks_per_trial both set: set gpus_per_trial (a "
                             "rank per GPU) or ranks_per_trial (CPU ranks, or gpus_per_task GPUs each), not both")
    if gpus and int(launcher.get("gpus_per_task") or 0) > 1:
        raise ComponentError("launcher.gpus_per_trial gives each rank one GPU; launcher.gpus_per_task must be 0 or 1")
    per_rank = 1 if gpus else int(launcher.get("gpus_per_task") or 0)
    ranks = gpus or ranks or 1
    if ranks % nodes:
        raise ComponentError(f"launcher.nodes_per_trial={nodes}: the {ranks} ranks of a trial must divide evenly "
                             "over its nodes")
    return ranks, nodes, per_rank


def slurm_parameters(ctx: dict[str, Any], launcher: dict[str, Any]) -> dict[str, Any]:
    """conf/launcher/slurm.yaml -> submitit's SlurmExecutor parameters (the sbatch options of each array task): a
    data-parallel trial is an array task of ranks / nodes tasks per node, one rank each."""
    ranks, nodes, per_rank = trial_layout(launcher)
    params = {
        "job_name": launcher.get("job_name") or f"mirasweep-{ctx['study_name']}",
        "partition": launcher.get("partition"),
        "time": int(launcher.get("timeout_min") or 240),
        "cpus_per_task": int(ctx["threads"]),
        "mem": f"{round(float(launcher['mem_gb']) * 1024)}M" if launcher.get("mem_gb") else None,
        "gpus_per_task": per_rank or None,
        "nodes": nodes if nodes > 1 else None,
        "ntasks_per_node": ranks // nodes if ranks > 1 else None,
        "account": launcher.get("account"), "qos": launcher.get("qos"), "constraint": launcher.get("constraint"),
        "array_parallelism": int(launcher.get("array_parallelism") or ctx["workers"]),
        "signal_delay_s": int(launcher.get("signal_delay_s") or 120),
        "setup": list(launcher.get("setup") or []),
        "additional_parameters": dict(launcher.get("additional_parameters") or {}),
        "stderr_to_stdout": True,
    }
    return {k: v for k, v in params.items() if v is not None}


def record_jobs(ctx: dict[str, Any], launcher: str, jobs: list) -> None:
    """Append this launch's job ids to <sweep dir>/jobs.json (a resumed sweep adds a launch)."""
    path = Path(ctx["sweep_dir"]) / JOBS_FILE
    launches = json.loads(path.read_text()) if path.is_file() else []
    launches.append({"launcher": launcher, "submitted": time.strftime("%Y-%m-%d %H:%M:%S"),
                     "job_ids": [str(j.job_id) for j in jobs]})
    path.write_text(json.dumps(launches, indent=2))
