"""How a training run can end other than by finishing, with the exit status the CLI gives each."""
from __future__ import annotations


class TrainingStopped(Exception):
    exit_status = 1


class NonFiniteLoss(TrainingStopped):
    """The loss became NaN or infinite: the run stops at once (a diverging architecture or learning rate)."""

    exit_status = 4

    def __init__(self, step: int, last_finite: float | None) -> None:
        last = "none yet" if last_finite is None else f"{last_finite:.4g}"
        super().__init__(f"non-finite loss at step {step} (last finite loss: {last})")
        self.step, self.last_finite = step, last_finite


class Preempted(TrainingStopped):
    """SIGTERM or SIGUSR2 arrived: a checkpoint was written; the same command resumes from it."""

    exit_status = 3

    def __init__(self, step: int, signal_name: str) -> None:
        super().__init__(f"{signal_name} at step {step}: checkpoint written, rerun the same command to resume")
        self.step, self.signal_name = step, signal_name
        self.task = ""  # set by the caller that knows which task ran


class Pruned(TrainingStopped):
    """An evaluation callback decided this run is not worth finishing (an Optuna pruner)."""

    exit_status = 0
