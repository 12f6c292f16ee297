"""SIGTERM / SIGUSR2 (SLURM preemption, time limits, scancel) and SIGINT (Ctrl-C) become a flag the loop checks
between steps.

Nested scopes share one flag: a sweep worker turns signals into a flag for its whole life, and the training
run inside it sees that same flag, so a signal that arrives between two trials stops the worker as cleanly as
one that arrives mid-step.
"""
from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager

# SIGINT too: Ctrl-C in a terminal reaches every process of the foreground group, and each checkpoints and stops
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR2, signal.SIGINT)


class StopFlag:
    def __init__(self) -> None:
        self.signal_name: str | None = None

    def __bool__(self) -> bool:
        return self.signal_name is not None

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`, waking early when a stop signal arrives; True if one did."""
        deadline = time.monotonic() + seconds
        while not self and time.monotonic() < deadline:
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        return bool(self)


_active: StopFlag | None = None


@contextmanager
def stop_on_signals():
    """Install handlers for the duration of a scope (main thread only) and restore the previous ones after it."""
    global _active
    if _active is not None:  # an outer scope already turns signals into a flag
        yield _active
        return
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        flag.signal_name = signal.Signals(signum).name

    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    _active = flag
    try:
        yield flag
    finally:
        _active = None
        for s, h in previous.items():
            signal.signal(s, h)
