"""A time budget for a computation, checked where the engine spends its time (every network evaluation).

The dashboard gives each learner's request a few seconds of compute; a request that needs more must stop and
free its worker rather than hold it for minutes. The engine knows nothing about learners: a caller opens
`deadline(seconds)` around its work, and the loops that do the work call `check()`, which raises
BudgetExceeded once the time is spent. Outside any deadline (the CLI, training, tests), `check()` does nothing.

The deadline is a context variable, so it belongs to the thread (and task) that opened it: the background
trainer and other sessions' threads are unaffected.
"""
from __future__ import annotations

import contextlib
import contextvars
import time

_DEADLINE: contextvars.ContextVar[tuple[float, float] | None] = contextvars.ContextVar("budget", default=None)


class BudgetExceeded(RuntimeError):
    """The computation ran past the seconds it was given; `seconds` says how many that was."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"stopped after its budget of {seconds:g} s of compute")
        self.seconds = seconds


@contextlib.contextmanager
def deadline(seconds: float | None, clock=time.monotonic):
    """Run the block with `seconds` of budget (None: unlimited); nested deadlines keep the earlier end."""
    if seconds is None:
        yield
        return
    end = clock() + seconds
    outer = _DEADLINE.get()
    if outer is not None and outer[0] <= end:
        end, seconds = outer
    token = _DEADLINE.set((end, seconds))
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def check(clock=time.monotonic) -> None:
    """Raise BudgetExceeded if this thread's deadline has passed; a no-op without one."""
    d = _DEADLINE.get()
    if d is not None and clock() > d[0]:
        raise BudgetExceeded(d[1])


def remaining(clock=time.monotonic) -> float | None:
    """Seconds left before this thread's deadline (None without one)."""
    d = _DEADLINE.get()
    return None if d is None else d[0] - clock()
