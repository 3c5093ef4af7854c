"""Heavy work for a classroom on one laptop: one shared queue, a compute budget per learner, results per server.

Every heavy computation of the pages (a sampled trajectory, an application, a CLIP ranking, a measured panel)
goes through `heavy`: a result already computed by anyone is served at once from a bounded per-server store;
otherwise the request takes a ticket in one first-come-first-served queue over `WORKERS` workers, and the page
shows its position while it waits. A learner (in classroom mode) gets at most LEARNER_SECONDS of compute per
request (the engine checks the deadline at every network evaluation, see engine.budget), one running request
at a time and LEARNER_WINDOW_BUDGET seconds of compute per LEARNER_WINDOW: so one learner hammering every
heavy path can hold one worker for at most a few seconds at a time, and the others' requests keep flowing.
The instructor, and the single user of a local session, have no budget.

The queue, the budget and the store are plain classes (tested without Streamlit); the glue at the bottom
reads the session's role and identity and draws the queue position.
"""
from __future__ import annotations

import collections
import contextlib
import copy
import functools
import itertools
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from engine import budget

WORKERS = int(os.environ.get("DIFFUSION_LAB_WORKERS", "2"))
LEARNER_SECONDS = 10.0            # the most one learner request may hold a worker
LEARNER_WINDOW = 60.0             # ... and the compute one learner may use per minute:
LEARNER_WINDOW_BUDGET = 30.0      # half of one worker
MAX_TICKETS_PER_OWNER = 3         # requests one learner may have queued at once (several tabs)


class Refused(RuntimeError):
    """A request the budget does not allow; the message says why and what to do instead (shown as a warning)."""


# -- the queue ---------------------------------------------------------------------------------------------------
@dataclass(eq=False)
class Ticket:
    number: int
    owner: str | None               # None: no per-owner limits (the instructor)
    started: float | None = None


class WorkQueue:
    """First come, first served over `workers` slots, fair between owners.

    A waiting ticket may start when a worker is free and no earlier eligible ticket waits; a ticket whose owner
    already has one running is not eligible, so one owner's many requests run one at a time while everyone
    else's pass them. An owner may hold at most `per_owner` tickets (running or waiting).
    """

    def __init__(self, workers: int = WORKERS, per_owner: int = MAX_TICKETS_PER_OWNER) -> None:
        self.workers, self.per_owner = max(1, workers), per_owner
        self._cv = threading.Condition()
        self._waiting: list[Ticket] = []
        self._running: list[Ticket] = []
        self._numbers = itertools.count(1)

    def _owned(self, owner: str) -> int:
        return sum(t.owner == owner for t in self._waiting + self._running)

    def _eligible(self, ticket: Ticket) -> bool:
        return ticket.owner is None or all(r.owner != ticket.owner for r in self._running)

    def _ahead(self, ticket: Ticket) -> int:
        """Eligible tickets queued before this one (what the learner sees as their position - 1)."""
        i = self._waiting.index(ticket)
        return sum(self._eligible(t) for t in self._waiting[:i])

    def _can_start(self, ticket: Ticket) -> bool:
        return len(self._running) < self.workers and self._eligible(ticket) and self._ahead(ticket) == 0

    def enter(self, owner: str | None) -> Ticket:
        with self._cv:
            if owner is not None and self._owned(owner) >= self.per_owner:
                raise Refused(f"You already have {self.per_owner} computations queued or running (other tabs?). "
                              "Wait for them to finish, then ask again.")
            ticket = Ticket(next(self._numbers), owner)
            self._waiting.append(ticket)
            return ticket

    def wait(self, ticket: Ticket, on_wait: Callable[[int, int], None] | None = None, poll: float = 0.5) -> None:
        """Block until `ticket` may run; on_wait(ahead, running) is called whenever the position changes."""
        shown = None
        while True:
            with self._cv:
                if self._can_start(ticket):
                    self._waiting.remove(ticket)
                    self._running.append(ticket)
                    ticket.started = time.monotonic()
                    self._cv.notify_all()         # the next in line may be eligible now (another worker is free)
                    return
                position = (self._ahead(ticket), len(self._running))
            if on_wait is not None and position != shown:
                on_wait(*position)             # may raise (a learner who moved on): `turn` cleans up
                shown = position
            with self._cv:
                self._cv.wait(poll)

    def leave(self, ticket: Ticket) -> None:
        with self._cv:
            for group in (self._waiting, self._running):
                if ticket in group:
                    group.remove(ticket)
            self._cv.notify_all()

    @contextlib.contextmanager
    def turn(self, owner: str | None, on_wait=None):
        ticket = self.enter(owner)
        try:
            self.wait(ticket, on_wait)
            yield ticket
        finally:
            self.leave(ticket)

    def load(self) -> tuple[int, int]:
        """(running, waiting) right now."""
        with self._cv:
            return len(self._running), len(self._waiting)


# -- the budget --------------------------------------------------------------------------------------------------
class ComputeBudget:
    """Seconds of compute each owner used in the last `window` seconds; at most `allowed` per window."""

    def __init__(self, allowed: float = LEARNER_WINDOW_BUDGET, window: float = LEARNER_WINDOW,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.allowed, self.window, self.clock = allowed, window, clock
        self._used: dict[str, collections.deque] = {}
        self._lock = threading.Lock()

    def _spent(self, owner: str) -> float:
        q = self._used.setdefault(owner, collections.deque())
        now = self.clock()
        while q and q[0][0] < now - self.window:
            q.popleft()
        return sum(s for _, s in q)

    def admit(self, owner: str) -> None:
        """Raise Refused when `owner` has used its compute for this window, saying when to come back."""
        with self._lock:
            if self._spent(owner) < self.allowed:
                return
            oldest = self._used[owner][0][0]
            wait = max(1, round(oldest + self.window - self.clock()))
        raise Refused(f"You have used the {self.allowed:.0f} s of computing a learner gets per "
                      f"{self.window:.0f} s (the laptop is shared by the whole class). Try again in {wait} s; "
                      "everything already computed stays on screen meanwhile.")

    def charge(self, owner: str, seconds: float) -> None:
        with self._lock:
            self._spent(owner)
            self._used[owner].append((self.clock(), float(seconds)))
            if len(self._used) > 10_000:                       # forget idle owners
                for k in [k for k, q in self._used.items() if not q]:
                    del self._used[k]


# -- the store ---------------------------------------------------------------------------------------------------
class ResultStore:
    """At most `max_entries` results per function, least recently used dropped first; each caller gets its own
    deep copy (as st.cache_data does), so a page that changes a result cannot change it for other learners."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._items: collections.OrderedDict = collections.OrderedDict()
        self._lock = threading.Lock()

    _MISSING = object()

    def get(self, key):
        with self._lock:
            if key not in self._items:
                return self._MISSING
            self._items.move_to_end(key)
            value = self._items[key]
        return copy.deepcopy(value)

    def put(self, key, value) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


@dataclass
class Limits:
    """Who is asking and what they may use: owner None and seconds None for the instructor."""

    owner: str | None
    seconds: float | None = None
    stores: list = field(default_factory=list)


QUEUE = WorkQueue()
BUDGET = ComputeBudget()
_inside = threading.local()


def run_limited(fn: Callable, limits: Limits, on_wait=None, queue: WorkQueue | None = None,
                meter: ComputeBudget | None = None):
    """Run fn() for `limits.owner`: admitted by the budget, queued for a worker, stopped at its deadline.

    Raises Refused (over budget, too many tickets, or the deadline passed: the message says which)."""
    queue, meter = queue or QUEUE, meter or BUDGET
    if getattr(_inside, "turn", False):               # heavy work calling heavy work: it already has a worker
        return fn()
    if limits.owner is not None:
        meter.admit(limits.owner)
    with queue.turn(limits.owner, on_wait):
        if limits.owner is not None:
            meter.admit(limits.owner)              # again: the learner's earlier requests ran while this one queued
        t0 = time.monotonic()
        _inside.turn = True
        try:
            with budget.deadline(limits.seconds):
                return fn()
        except budget.BudgetExceeded:
            raise Refused(f"This needs more than the {limits.seconds:.0f} s of computing one learner request may "
                          "use on the shared laptop, so it was stopped. Try settings closer to the page's own (they "
                          "are stored, so they show at once), or ask the instructor, who has no limit.") from None
        finally:
            _inside.turn = False
            if limits.owner is not None:
                meter.charge(limits.owner, time.monotonic() - t0)


# -- the Streamlit glue ------------------------------------------------------------------------------------------
def limits() -> Limits:
    """This session's limits: none for the instructor; otherwise a learner keyed by their address (several tabs
    of one laptop share one budget), or by the session when the address is this machine's own (a local test)."""
    from . import roles

    if roles.is_instructor():
        return Limits(None)
    return Limits(owner(), LEARNER_SECONDS)


def owner() -> str:
    import streamlit as st
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ip = None
    with contextlib.suppress(Exception):
        ip = st.context.ip_address
    if ip and not ip.startswith("127.") and ip != "::1":
        return f"ip:{ip}"
    ctx = get_script_run_ctx()
    return f"session:{ctx.session_id if ctx else 'none'}"


def _waiting_note(slot, label: str):
    def on_wait(ahead: int, running: int) -> None:
        slot.info(f"⏳ {label}: queued, {ahead} request{'s' if ahead != 1 else ''} ahead of yours "
                  f"({running} of {QUEUE.workers} workers busy; the class shares this laptop).")
    return on_wait


def heavy(max_entries: int = 16, label: str = "Computing"):
    """Decorator for a page's heavy function of hashable arguments: a result per server (anyone's earlier call
    with the same arguments is served at once), else queued and budgeted as this module describes, with the
    queue position and then a spinner on the page. Raises Refused when the budget says no."""
    def decorate(fn):
        store = ResultStore(max_entries)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            import streamlit as st

            key = _hashable((args, kwargs))
            hit = store.get(key)
            if hit is not ResultStore._MISSING:
                return hit
            slot = st.empty()
            try:
                def work():
                    again = store.get(key)                  # computed by someone while we queued
                    if again is not ResultStore._MISSING:
                        return again
                    slot.info(f"⚙️ {label}…")
                    value = fn(*args, **kwargs)
                    store.put(key, value)
                    return copy.deepcopy(value)
                return run_limited(work, limits(), _waiting_note(slot, label))
            finally:
                slot.empty()

        def peek(*args, **kwargs):
            """The stored result for these arguments (computed by anyone in this server), or None; never computes."""
            hit = store.get(_hashable((args, kwargs)))
            return None if hit is ResultStore._MISSING else hit

        wrapper.clear, wrapper.peek = store.clear, peek
        return wrapper
    return decorate


def _hashable(value):
    """A result key from arguments: dicts and lists as (sorted) tuples, arrays as their shape, dtype and digest."""
    import hashlib

    import numpy as np

    if isinstance(value, np.ndarray):
        return ("ndarray", value.shape, str(value.dtype), hashlib.sha256(np.ascontiguousarray(value)).hexdigest())
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    return value
