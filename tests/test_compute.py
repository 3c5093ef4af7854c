"""The classroom's compute rules (ui.compute, engine.budget): a shared first-come-first-served queue fair between
learners, a per-request deadline the engine honours, a per-learner budget per minute, and a per-server store."""
import threading
import time

import pytest
import torch

from engine import budget
from engine.sampling import sample
from engine.schedule import NoiseSchedule
from ui import compute

from .conftest import TINY_SAMPLE, TINY_SCHEDULE


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


# -- engine.budget -------------------------------------------------------------------------------------------------
def test_check_does_nothing_without_a_deadline():
    budget.check()
    assert budget.remaining() is None


def test_a_spent_deadline_stops_the_engine_at_its_next_network_evaluation(tiny_model):
    calls = []
    forward = tiny_model.forward

    def counting(*a, **k):
        calls.append(1)
        return forward(*a, **k)

    tiny_model.forward = counting
    schedule = NoiseSchedule(TINY_SCHEDULE)
    with budget.deadline(0.0), pytest.raises(budget.BudgetExceeded):
        sample(tiny_model, schedule, torch.tensor([1, 2]), TINY_SAMPLE.replace(steps=20))
    assert calls == []                             # stopped before the first forward, not after 20 steps
    sample(tiny_model, schedule, torch.tensor([1, 2]), TINY_SAMPLE)   # outside the block: no limit
    assert len(calls) == TINY_SAMPLE.steps


def test_a_deadline_belongs_to_its_thread_and_nesting_keeps_the_earlier_end():
    seen = []
    with budget.deadline(0.0):
        t = threading.Thread(target=lambda: seen.append(budget.remaining()))
        t.start()
        t.join()
        with budget.deadline(60.0):
            assert budget.remaining() <= 0.0
    assert seen == [None]                          # the trainer's thread never inherits a learner's deadline


# -- the queue -----------------------------------------------------------------------------------------------------
def test_tickets_start_in_order_and_wait_for_a_free_worker():
    q = compute.WorkQueue(workers=1, per_owner=3)
    a, b = q.enter("a"), q.enter("b")
    q.wait(a)
    positions = []
    started = threading.Event()

    def second():
        q.wait(b, on_wait=lambda ahead, running: positions.append((ahead, running)), poll=0.01)
        started.set()

    t = threading.Thread(target=second)
    t.start()
    assert not started.wait(0.2)                   # the only worker is a's
    q.leave(a)
    assert started.wait(2)
    t.join()
    assert positions[0] == (0, 1)                  # first in line, one worker busy
    assert q.load() == (1, 0)


def test_one_learners_many_requests_run_one_at_a_time_while_others_pass():
    q = compute.WorkQueue(workers=2, per_owner=3)
    h1, h2 = q.enter("hostile"), q.enter("hostile")
    other = q.enter("other")
    q.wait(h1)
    assert not q._can_start(h2)                    # hostile already holds a worker
    assert q._can_start(other)                     # ... so the next learner goes first, though queued later
    q.wait(other)
    q.leave(h1)
    assert q._can_start(h2)


def test_a_learner_may_hold_only_a_few_tickets():
    q = compute.WorkQueue(workers=1, per_owner=2)
    q.enter("a"), q.enter("a")
    with pytest.raises(compute.Refused, match="already have 2"):
        q.enter("a")
    q.enter(None), q.enter(None), q.enter(None)    # the instructor: no per-owner cap


def test_a_waiting_learner_who_moves_on_leaves_the_queue():
    q = compute.WorkQueue(workers=1)
    q.enter(None)
    q.wait(q._waiting[0])

    def moved_on(ahead, running):
        raise KeyboardInterrupt                    # what Streamlit's rerun does to a waiting script

    with pytest.raises(KeyboardInterrupt), q.turn("b", moved_on):
        pass
    assert q.load() == (1, 0)


# -- the budget ------------------------------------------------------------------------------------------------------
def test_a_learner_over_the_window_budget_is_told_when_to_come_back():
    clock = Clock()
    b = compute.ComputeBudget(allowed=30, window=60, clock=clock)
    b.admit("a")
    b.charge("a", 12)
    clock.now += 10
    b.charge("a", 20)
    with pytest.raises(compute.Refused, match="Try again in 50 s"):
        b.admit("a")
    b.admit("b")                                   # others are unaffected
    clock.now += 51                                # the first charge left the window: 20 s used
    b.admit("a")


def test_run_limited_stops_a_learner_at_the_deadline_and_charges_the_time(tiny_model):
    q, meter = compute.WorkQueue(workers=1), compute.ComputeBudget(allowed=100, window=60)
    schedule = NoiseSchedule(TINY_SCHEDULE)
    slow = lambda: sample(tiny_model, schedule, torch.arange(10), TINY_SAMPLE.replace(steps=50, sampler="ddpm"))  # noqa: E731
    t0 = time.monotonic()
    with pytest.raises(compute.Refused, match="more than the 0 s"):
        compute.run_limited(slow, compute.Limits("a", 0.0), queue=q, meter=meter)
    assert time.monotonic() - t0 < 5
    assert q.load() == (0, 0)                      # the worker is free again
    assert meter._spent("a") > 0
    assert compute.run_limited(lambda: 7, compute.Limits(None), queue=q, meter=meter) == 7


def test_heavy_work_calling_heavy_work_does_not_wait_for_itself():
    q = compute.WorkQueue(workers=1)
    inner = lambda: compute.run_limited(lambda: "done", compute.Limits("a", 5.0), queue=q)  # noqa: E731
    got = []
    t = threading.Thread(target=lambda: got.append(
        compute.run_limited(inner, compute.Limits("a", 5.0), queue=q, meter=compute.ComputeBudget())), daemon=True)
    t.start()
    t.join(10)
    assert got == ["done"], "the nested call waited for its own worker"


# -- the store -------------------------------------------------------------------------------------------------------
def test_the_store_keeps_the_most_recent_and_hands_out_copies():
    s = compute.ResultStore(2)
    s.put("a", {"x": [1]})
    s.put("b", 2)
    s.get("a")
    s.put("c", 3)                                  # drops b, the least recently used
    assert s.get("b") is compute.ResultStore._MISSING
    got = s.get("a")
    got["x"].append(2)
    assert s.get("a") == {"x": [1]}


def test_result_keys_hash_settings_dicts_and_arrays_by_value():
    import numpy as np

    k1 = compute._hashable(({"steps": 5, "w": [1, 2]}, np.zeros(3)))
    k2 = compute._hashable(({"w": [1, 2], "steps": 5}, np.zeros(3)))
    assert k1 == k2 and hash(k1) == hash(k2)
    assert compute._hashable(np.ones(3)) != compute._hashable(np.zeros(3))


def test_a_request_is_admitted_again_when_its_turn_comes():
    """A learner with several tabs queues several requests while under budget; each is checked again when it
    starts, so their sum cannot pass the budget."""
    q, meter = compute.WorkQueue(workers=1), compute.ComputeBudget(allowed=5, window=60)
    busy = q.enter(None)
    q.wait(busy)                                   # the only worker is taken
    result = []

    def queued():
        try:
            result.append(compute.run_limited(lambda: "ran", compute.Limits("a", 5.0), queue=q, meter=meter))
        except compute.Refused as e:
            result.append(str(e))

    t = threading.Thread(target=queued, daemon=True)
    t.start()
    time.sleep(0.2)                                # admitted and waiting
    meter.charge("a", 6)                           # meanwhile the learner's other tab used up the budget
    q.leave(busy)
    t.join(10)
    assert result and "Try again in" in result[0]
