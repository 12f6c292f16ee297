"""`mirasweep status <sweep>`: trials by state, the workers (SLURM jobs, from sacct) behind them, and what fails.

Reads only: the study, the sweep's jobs.json and, for SLURM launches, `sacct` (live states lag slurmctld by a
few seconds). Works while the sweep runs and after it ended.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from .launchers import JOBS_FILE
from .report import counts
from .study import counted_trials, open_storage, retried_numbers

SACCT_FIELDS = ("JobID", "State", "Elapsed", "NodeList", "ExitCode")


def sacct(job_ids: list[str]) -> dict[str, dict[str, str]]:
    """The latest accounting record of each job (array tasks expanded: 123_0, 123_1, ...); {} without sacct."""
    if not job_ids or shutil.which("sacct") is None:
        return {}
    arrays = sorted({j.split("_")[0] for j in job_ids})
    out = subprocess.run(["sacct", "-X", "-n", "--parsable2", "-o", ",".join(SACCT_FIELDS), "-j", ",".join(arrays)],
                         capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        return {}
    rows = {}
    for line in out.stdout.splitlines():
        values = line.split("|")
        if len(values) == len(SACCT_FIELDS):
            rows[values[0]] = dict(zip(SACCT_FIELDS, values))
    return rows


def collect(ctx: dict[str, Any]) -> dict[str, Any]:
    study = optuna.load_study(study_name=ctx["study_name"], storage=open_storage(ctx["storage"]))
    trials = study.get_trials(deepcopy=False)
    retried = retried_numbers(trials)
    states = counts(study)
    running = [{"trial": t.number, "architecture": t.user_attrs.get("architecture", "?"),
                "worker": t.user_attrs.get("worker", "?"),
                "since": t.datetime_start.strftime("%H:%M:%S") if t.datetime_start else ""}
               for t in trials if t.state == TrialState.RUNNING]
    def reasons(keep) -> list[dict]:
        why = Counter(t.user_attrs.get("reason", "").split("\n")[0][:200] or "(no reason recorded)"
                      for t in trials if keep(t))
        return [{"reason": r, "trials": n} for r, n in why.most_common()]

    failing = reasons(lambda t: t.state == TrialState.FAIL and t.number not in retried)
    pruned = reasons(lambda t: t.state == TrialState.PRUNED)
    lost = reasons(lambda t: t.state == TrialState.FAIL and t.number in retried)
    launches_file = Path(ctx["sweep_dir"]) / JOBS_FILE
    launches = json.loads(launches_file.read_text()) if launches_file.is_file() else []
    job_ids = [j for launch in launches if launch["launcher"] == "slurm" for j in launch["job_ids"]]
    accounting = sacct(job_ids)
    jobs = []
    for job in job_ids:
        record = accounting.get(job, {})
        jobs.append({"job": job, "state": record.get("State", "unknown (not in sacct yet)"),
                     "elapsed": record.get("Elapsed", ""), "node": record.get("NodeList", ""),
                     "exit": record.get("ExitCode", ""),
                     "trials": sum(1 for t in trials if t.user_attrs.get("worker") == f"slurm:{job}")})
    return {"sweep": ctx["study_name"], "dir": ctx["sweep_dir"], "target": ctx["n_trials"],
            "counted": counted_trials(study), "states": states, "running": running,
            "failing": failing, "pruned": pruned, "retried": lost, "launches": launches,
            "jobs": jobs}


def render(info: dict[str, Any]) -> None:
    from rich.table import Table

    from .console import table_console

    console = table_console()
    s = info["states"]
    console.print(f"[bold]sweep {info['sweep']}[/bold] ({info['dir']}): {info['counted']} of {info['target']} trials "
                  f"counted — {s.get('complete', 0)} complete, {s.get('running', 0)} running, {s.get('pruned', 0)} "
                  f"pruned, {s.get('fail', 0)} failed, {s.get('waiting', 0)} queued, {s.get('retried', 0)} retried "
                  "(preempted or lost; their retries stand for them)")
    if info["running"]:
        table = Table(title="running trials", title_justify="left")
        for key in ("trial", "architecture", "worker", "since"):
            table.add_column(key)
        for row in info["running"]:
            table.add_row(*(str(row[k]) for k in ("trial", "architecture", "worker", "since")))
        console.print(table)
    if info["jobs"]:
        table = Table(title="SLURM jobs (sacct)", title_justify="left")
        for key in ("job", "state", "elapsed", "node", "exit", "trials"):
            table.add_column(key)
        for row in info["jobs"]:
            table.add_row(*(str(row[k]) for k in ("job", "state", "elapsed", "node", "exit", "trials")))
        console.print(table)
    elif info["launches"]:
        last = info["launches"][-1]
        console.print(f"workers: {len(last['job_ids'])} {last['launcher']} worker(s), launched {last['submitted']}")
    for key, title in (("failing", "[yellow]failing:[/yellow]"), ("retried", "retried (their retries stand for them):"),
                       ("pruned", "pruned (stopped early or rejected before training):")):
        if info.get(key):
            console.print(title)
            for row in info[key]:
                console.print(f"  {row['trials']}× {row['reason']}")
    logs = Path(info["dir"]) / "workers"
    if logs.is_dir():
        console.print(f"worker logs: {logs}/<job id>/")
