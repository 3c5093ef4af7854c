"""Classroom roles: learners cannot start, pause or stop training; the passcode unlocks the instructor."""
import os

import pytest
from hypothesis import given, strategies as st_

import streamlit as st
from streamlit.testing.v1 import AppTest

from ui.roles import PasscodeGuard, check_passcode
from ui.state import Param, float_in, int_in, one_of, parse_params

APP = os.path.join(os.path.dirname(__file__), "..", "dashboard.py")


def test_passcode_comparison():
    assert check_passcode("s3cret", "s3cret")
    assert not check_passcode("s3cre", "s3cret") and not check_passcode("", "") and not check_passcode("x", None)


def test_passcode_comparison_sees_fixed_length_digests_only(monkeypatch):
    import ui.roles as roles

    seen = []
    monkeypatch.setattr(roles.hmac, "compare_digest", lambda a, b: seen.append((len(a), len(b))) or a == b)
    assert check_passcode("x" * 500, "s3cret") is False and check_passcode("s3cret", "s3cret") is True
    assert seen == [(32, 32), (32, 32)]              # the guess's length never reaches the comparison


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def guard():
    clock = Clock()
    return PasscodeGuard(clock), clock


def test_a_fast_second_guess_is_refused_unchecked_and_waits_grow(guard):
    g, clock = guard
    assert g.attempt("a", "wrong", "pw") == (False, "Wrong passcode. The next try is checked in 2 s at the earliest.")
    ok, msg = g.attempt("a", "pw", "pw")             # the right passcode, too soon: not even compared
    assert not ok and "not checked" in msg and msg.endswith("Try again in 2 s.")
    assert g.attempt("b", "pw", "pw")[0]             # another session is not slowed by this one
    waits = []
    for _ in range(6):                               # wrong guesses 2..7, each after the previous wait
        clock.now += 1000
        waits.append(int(g.attempt("a", "wrong", "pw")[1].split("in ")[1].split(" s")[0]))
    assert waits == [2, 4, 8, 16, 32, 64]
    clock.now += 1000
    assert g.attempt("a", "pw", "pw") == (True, "Unlocked.")
    assert g.attempt("a", "wrong", "pw")[1].endswith("2 s at the earliest.")       # success starts afresh


def test_ten_wrong_guesses_lock_the_session_for_15_minutes(guard):
    g, clock = guard
    for _ in range(9):
        g.attempt("a", "wrong", "pw")
        clock.now += 300
    assert g.attempt("a", "wrong", "pw")[1] == "Wrong passcode, 10 times: this browser is locked out for 15 min."
    clock.now += 14 * 60
    ok, msg = g.attempt("a", "pw", "pw")
    assert not ok and "10 wrong passcodes locked this browser out. Try again in 60 s." in msg
    clock.now += 61
    assert g.attempt("a", "pw", "pw")[0]


def test_fifty_wrong_guesses_across_clients_slow_everyone_to_one_check_every_5_s(guard):
    g, clock = guard
    for i in range(49):                               # several machines guessing together
        assert g.attempt(f"s{i}", "wrong", "pw")[0] is False
        clock.now += 10
    assert "checks one try every 5 s for everyone" in g.attempt("s49", "wrong", "pw")[1]
    clock.now += 1
    ok, msg = g.attempt("s50", "wrong", "pw")         # too soon after the last checked guess: not even compared
    assert not ok and "Not checked: this server saw 50 wrong passcodes" in msg and msg.endswith("Try again in 4 s.")
    ok, msg = g.attempt("instructor", "pw", "pw")     # the instructor too waits a few seconds, not minutes
    assert not ok and "Try again in 4 s." in msg and "pw" not in msg.replace("passcode", "")
    clock.now += 4
    assert g.attempt("instructor", "pw", "pw")[0]


def test_old_wrong_guesses_leave_the_server_wide_window(guard):
    g, clock = guard
    for i in range(60):                               # 60 wrong guesses, but one every 15 s: 40 per 10 minutes
        assert "every 5 s" not in g.attempt(f"s{i}", "wrong", "pw")[1]
        clock.now += 15
    assert g.attempt("instructor", "pw", "pw")[0]


def test_a_reload_is_the_same_client(monkeypatch):
    """A learner who reloads (a new Streamlit session) from the same address keeps their wait: the guard is keyed
    by ui.compute.owner, the address when it is not this machine's own."""
    import streamlit as st

    from ui import compute

    monkeypatch.setattr(type(st.context), "ip_address", property(lambda self: "192.168.1.23"))
    assert compute.owner() == "ip:192.168.1.23"
    monkeypatch.setattr(type(st.context), "ip_address", property(lambda self: "127.0.0.1"))
    assert compute.owner().startswith("session:")


def _sidebar_app():
    from ui import roles

    roles.sidebar()


def test_the_sidebar_refuses_a_fast_second_guess(monkeypatch):
    import ui.roles as roles

    monkeypatch.setenv("DIFFUSION_LAB_CLASSROOM", "1")
    monkeypatch.setenv("DIFFUSION_LAB_PASSCODE", "open-sesame")
    monkeypatch.setattr(roles, "GUARD", PasscodeGuard())
    at = AppTest.from_function(_sidebar_app, default_timeout=30).run()
    at.text_input(key="app.unlock.passcode").input("wrong")
    at.button(key="app.unlock.submit").click().run()
    assert [e.value for e in at.error] == ["Wrong passcode. The next try is checked in 2 s at the earliest."]
    at.text_input(key="app.unlock.passcode").input("open-sesame")
    at.button(key="app.unlock.submit").click().run()
    assert not at.exception and "Try again in 2 s" in at.error[0].value
    assert any("Role: **learner**" in c.value for c in at.caption)
    assert "open-sesame" not in str([e.value for e in at.error])


@pytest.fixture
def classroom(monkeypatch, tmp_path):
    import ui.resources as res

    monkeypatch.setenv("DIFFUSION_LAB_CLASSROOM", "1")
    monkeypatch.setenv("DIFFUSION_LAB_PASSCODE", "open-sesame")
    monkeypatch.setattr(res, "RUNS_ROOT", tmp_path)
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    yield at
    res.get_trainer().stop(wait=30)
    st.cache_resource.clear()


def test_learner_cannot_start_or_stop_training(classroom):
    import ui.resources as res

    at = classroom
    assert any("Role: **learner**" in c.value for c in at.caption)
    at.switch_page("pages/training.py").run()
    start = [b for b in at.button if b.label == "Start training"][0]
    assert start.disabled and any("You are a learner" in i.value for i in at.info)
    assert all(b.disabled for b in at.button if b.label in ("Pause", "Resume", "Stop"))
    assert res.get_trainer().status().state == "idle"
    # unlocking with the passcode is tested in a real browser (tests/test_browser.py): AppTest drops the
    # sidebar of a st.navigation app after the first run, so it cannot type into the sidebar form


PARAMS = [Param("t", 5, int_in(0, 999)), Param("w", 2.0, float_in(0.0, 10.0)), Param("s", "ddim", one_of("ddim", "ddpm"))]


@given(st_.dictionaries(st_.sampled_from(["t", "w", "s", "other"]), st_.text(max_size=30)))
def test_link_parser_never_raises_and_only_returns_valid_values(raw):
    values, notes = parse_params(raw, PARAMS)
    assert set(values) <= {"t", "w", "s"}
    if "t" in values:
        assert 0 <= values["t"] <= 999
    if "w" in values:
        assert 0.0 <= values["w"] <= 10.0
    if "s" in values:
        assert values["s"] in ("ddim", "ddpm")
    assert len(values) + len(notes) == len(set(raw) & {"t", "w", "s"})


def test_instructor_tokens_are_signed_expiring_and_revocable():
    from ui import roles

    now = 1_000_000.0
    token = roles.issue_token(now)
    assert roles.valid_token(token, now + 3600)
    assert not roles.valid_token(token, now + roles.SESSION_HOURS * 3600 + 1)          # expired
    expiry, nonce, signature = token.split(".")
    assert not roles.valid_token(f"{int(expiry) + 10**6}.{nonce}.{signature}", now)   # a longer life: bad signature
    assert not roles.valid_token(f"{expiry}.{nonce}.{'0' * 64}", now)
    for junk in (None, 5, "", "a.b", "x" * 300, "1.2.3.4"):
        assert not roles.valid_token(junk, now)
    roles._REVOKED.add(token)
    assert not roles.valid_token(token, now)                                           # locked with "Lock"
