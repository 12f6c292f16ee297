"""Where workers run, through submitit: `debug` (in this process), `local` (N processes on this machine).
Every launcher calls sweeps.worker.run_worker(ctx, index); torch threads per worker = the cores it was given."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from components.options import ComponentError

from .worker import run_worker

LAUNCHERS = ("debug", "local")


class _Done:
    """The handle of a worker that already ran in this process (the debug launcher)."""

    def __init__(self, value: int) -> None:
        self.value = value

    def done(self) -> bool:
        return True

    def result(self) -> int:
        return self.value


def launch(ctx: dict[str, Any]) -> list:
    launcher = dict(ctx["launcher"])
    name = launcher.get("name", "local")
    if name not in LAUNCHERS:
        raise ComponentError(f"launcher: unknown launcher '{name}'; known launchers: {', '.join(LAUNCHERS)}")
    if name == "debug":
        return [_Done(run_worker(ctx, i)) for i in range(ctx["workers"])]
    import submitit

    executor = submitit.LocalExecutor(folder=str(Path(ctx["sweep_dir"]) / "workers" / "%j"))
    executor.update_parameters(timeout_min=int(launcher.get("timeout_min", 24 * 60)))
    with executor.batch():
        jobs = [executor.submit(run_worker, ctx, i) for i in range(ctx["workers"])]
    return jobs
