"""Who may do what: the instructor controls training and checkpoints; learners explore.

Default (`make run`): bound to 127.0.0.1, the single local user is the instructor.
Classroom (`make classroom`, DIFFUSION_LAB_CLASSROOM=1): bound to the LAN; every session starts as a learner
and becomes instructor only with the passcode from DIFFUSION_LAB_PASSCODE (never stored in the repo),
compared in constant time. The UI disables instructor actions for learners, and the actions themselves
check the role again before calling the Trainer, so a crafted request cannot bypass the buttons.
"""
from __future__ import annotations

import hmac
import os
import threading
from contextlib import contextmanager

import streamlit as st

ROLE_KEY = "app.role"
LEARNER_MAX_STEPS = 250          # server-side cap on sampling steps a learner may request per call
HEAVY_SLOTS = threading.BoundedSemaphore(int(os.environ.get("DIFFUSION_LAB_WORKERS", "2")))


def classroom_mode() -> bool:
    return os.environ.get("DIFFUSION_LAB_CLASSROOM", "") not in ("", "0", "false")


def check_passcode(given: str, expected: str | None) -> bool:
    """Constant-time comparison; an unset or empty expected passcode never matches."""
    if not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def role() -> str:
    if not classroom_mode():
        return "instructor"
    return st.session_state.get(ROLE_KEY, "learner")


def is_instructor() -> bool:
    return role() == "instructor"


def require_instructor(action: str) -> bool:
    """Gate an action server-side; shows an error to learners and returns False."""
    if is_instructor():
        return True
    st.error(f"Only the instructor can {action}. Ask your instructor, or unlock with the passcode in the sidebar.")
    return False


def max_steps() -> int | None:
    return None if is_instructor() else LEARNER_MAX_STEPS


def sidebar() -> None:
    if not classroom_mode():
        st.caption("Role: **instructor** (local session)")
        return
    if is_instructor():
        st.caption("Role: **instructor** (unlocked)")
        if st.button("Lock (back to learner)", key="app.lock"):
            st.session_state[ROLE_KEY] = "learner"
            st.rerun()
        return
    st.caption("Role: **learner** — explore every page; training controls are the instructor's")
    with st.form("app.unlock", clear_on_submit=True):
        code = st.text_input("Instructor passcode", type="password", key="app.unlock.passcode")
        if st.form_submit_button("Unlock", key="app.unlock.submit"):
            if check_passcode(code, os.environ.get("DIFFUSION_LAB_PASSCODE")):
                st.session_state[ROLE_KEY] = "instructor"
                st.rerun()
            else:
                st.error("Wrong passcode.")


@contextmanager
def heavy_slot():
    """Heavy computations queue behind a small pool instead of all running at once on a laptop's cores."""
    with HEAVY_SLOTS:
        yield


def heavy(fn):
    """Decorator: run `fn` inside a heavy_slot (place it under @st.cache_data so cache hits skip the queue)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with heavy_slot():
            return fn(*args, **kwargs)

    return wrapper
