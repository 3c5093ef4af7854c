"""Who may do what: the instructor controls training and checkpoints; learners explore.

Default (`make run`): bound to 127.0.0.1, the single local user is the instructor.
Classroom (`make classroom`, DIFFUSION_LAB_CLASSROOM=1): bound to the LAN; every session starts as a learner
and becomes instructor only with the passcode from DIFFUSION_LAB_PASSCODE (never stored in the repo, never
logged or echoed), compared in constant time; guesses are throttled per session and across the server
(PasscodeGuard), since a crafted client can open many sessions. The UI disables instructor actions for
learners, and the actions themselves check the role again before calling the Trainer, so a crafted request
cannot bypass the buttons.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

import streamlit as st

ROLE_KEY = "app.role"
LEARNER_MAX_STEPS = 250          # server-side cap on sampling steps a learner may request per call


def classroom_mode() -> bool:
    return os.environ.get("DIFFUSION_LAB_CLASSROOM", "") not in ("", "0", "false")


def check_passcode(given: str, expected: str | None) -> bool:
    """Constant-time comparison of fixed-length digests (so neither content nor length leaks through timing);
    an unset or empty expected passcode never matches."""
    if not expected:
        return False
    digest = lambda text: hashlib.sha256(text.encode("utf-8")).digest()  # noqa: E731
    return hmac.compare_digest(digest(given), digest(expected))


@dataclass
class _Tries:
    failures: int = 0
    next_at: float = 0.0           # clock time before which this client's guesses are not even checked
    last: float = 0.0


class PasscodeGuard:
    """Throttles passcode guesses, per client and across the whole server (thread-safe; one per process).

    A client is a browser's address (ui.compute.owner: reloading the page or opening tabs does not make a new
    one), or its session when it connects from this machine. Per client: after the k-th wrong guess the next one
    is refused unchecked for 2**max(1, k-1) s (2, 2, 4, 8 …); SESSION_LOCKOUT wrong guesses lock the client out
    for SESSION_LOCK_S. Across the server (several machines guessing together): once GLOBAL_LIMIT wrong guesses
    fell within GLOBAL_WINDOW_S, one guess is checked every GLOBAL_SPACING_S for everyone, so the instructor still
    gets in within seconds while guessing slows to a crawl. Nothing sleeps: early guesses get a refusal that says
    when to try again. `clock` is injectable for tests.
    """
    SESSION_LOCKOUT, SESSION_LOCK_S = 10, 15 * 60
    GLOBAL_LIMIT, GLOBAL_WINDOW_S, GLOBAL_SPACING_S = 50, 10 * 60, 5

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, _Tries] = {}
        self._failures: deque[float] = deque()       # times of recent wrong guesses, server-wide
        self._next_global_at = 0.0                 # under attack: no guess is checked before this time

    def attempt(self, client: str, given: str, expected: str | None) -> tuple[bool, str]:
        """(unlocked?, message for the learner). Refused guesses are not compared with the passcode."""
        with self._lock:
            now = self._clock()
            tries = self._sessions.get(client, _Tries())      # stored only once it has failed
            refusal = self._refusal(tries, now)
            if refusal:
                return False, refusal
            if self._under_attack(now):
                self._next_global_at = now + self.GLOBAL_SPACING_S
            if check_passcode(given, expected):
                self._sessions.pop(client, None)
                return True, "Unlocked."
            self._sessions[client] = tries
            return False, self._fail(tries, now)

    def _under_attack(self, now: float) -> bool:
        while self._failures and self._failures[0] <= now - self.GLOBAL_WINDOW_S:
            self._failures.popleft()
        return len(self._failures) >= self.GLOBAL_LIMIT

    def _refusal(self, tries: _Tries, now: float) -> str:
        if now < tries.next_at:
            locked = tries.failures >= self.SESSION_LOCKOUT
            why = (f"Not checked: {tries.failures} wrong passcodes locked this browser out" if locked
                   else "Too soon, not checked: each wrong passcode makes the next try wait longer")
            return f"{why}. Try again in {_span(tries.next_at - now)}."
        if self._under_attack(now) and now < self._next_global_at:
            return (f"Not checked: this server saw {len(self._failures)} wrong passcodes in the last "
                    f"{self.GLOBAL_WINDOW_S // 60} minutes, so it checks one try every {self.GLOBAL_SPACING_S} s "
                    f"for everyone. Try again in {_span(self._next_global_at - now)}.")
        return ""

    def _fail(self, tries: _Tries, now: float) -> str:
        tries.failures += 1
        tries.last = now
        if tries.failures >= self.SESSION_LOCKOUT:
            tries.next_at = now + self.SESSION_LOCK_S
            msg = f"Wrong passcode, {tries.failures} times: this browser is locked out for {_span(self.SESSION_LOCK_S)}."
        else:
            delay = 2 ** max(1, tries.failures - 1)
            tries.next_at = now + delay
            msg = f"Wrong passcode. The next try is checked in {_span(delay)} at the earliest."
        self._failures.append(now)
        if self._under_attack(now) and self._next_global_at <= now:
            self._next_global_at = now + self.GLOBAL_SPACING_S
            msg += (f" Too many wrong passcodes on this server: it now checks one try every "
                    f"{self.GLOBAL_SPACING_S} s for everyone.")
        # sessions quiet for a lockout's length start afresh (and the table stays small: failures are rare)
        for k in [k for k, t in self._sessions.items() if t.next_at <= now and t.last < now - self.SESSION_LOCK_S]:
            del self._sessions[k]
        return msg


def _span(seconds: float) -> str:
    s = max(1, round(seconds))
    return f"{s} s" if s < 120 else f"{round(s / 60)} min"


GUARD = PasscodeGuard()


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


# -- the instructor's session: a signed, expiring token in the browser, so a reload or an opened link keeps the role --
SESSION_HOURS = 8                       # a school day; then the passcode again
_SECRET = os.urandom(32)                # per server process: a restart asks for the passcode again
TOKEN_KEY = "app.token_action"          # what the browser should do with its token on the next run
_REVOKED: set[str] = set()              # tokens of sessions locked with "Lock" (in this server process)


def issue_token(now: float | None = None) -> str:
    """'expiry.nonce.signature': HMAC-SHA256 with this server's secret; carries no passcode and no name."""
    expiry = int((now if now is not None else time.time()) + SESSION_HOURS * 3600)
    body = f"{expiry}.{os.urandom(8).hex()}"
    return f"{body}.{hmac.new(_SECRET, body.encode(), hashlib.sha256).hexdigest()}"


def valid_token(token: object, now: float | None = None) -> bool:
    """Signed by this server and not expired (constant-time signature check)."""
    if not isinstance(token, str) or len(token) > 200 or token.count(".") != 2:
        return False
    body, _, signature = token.rpartition(".")
    expected = hmac.new(_SECRET, body.encode(), hashlib.sha256).hexdigest()
    try:
        expiry = int(body.split(".")[0])
    except ValueError:
        return False
    return (hmac.compare_digest(signature, expected) and expiry > (now if now is not None else time.time())
            and token not in _REVOKED)


def _browser_token() -> str | None:
    """Keep the browser's token in step with the role (store a new one, or clear it) and return what it holds."""
    from .browser_storage import stored

    action = st.session_state.pop(TOKEN_KEY, None) or {}
    return stored("diffusion-lab-instructor", "app.instructor_token", set=action.get("set"),
                  clear=bool(action.get("clear")))


def sidebar() -> None:
    if not classroom_mode():
        st.caption("Role: **instructor** (local session)")
        return
    token = _browser_token()
    if not is_instructor() and valid_token(token):          # a reload or a link opened by the instructor
        st.session_state[ROLE_KEY] = "instructor"
    if is_instructor():
        st.caption("Role: **instructor** (unlocked)")
        if st.button("Lock (back to learner)", key="app.lock"):
            if isinstance(token, str):
                _REVOKED.add(token)                          # this browser's other tabs lock too
            st.session_state[ROLE_KEY] = "learner"
            st.session_state[TOKEN_KEY] = {"clear": True}
            st.rerun()
        return
    st.caption("Role: **learner** — explore every page; training controls are the instructor's")
    with st.form("app.unlock", clear_on_submit=True):
        code = st.text_input("Instructor passcode", type="password", key="app.unlock.passcode")
        if st.form_submit_button("Unlock", key="app.unlock.submit"):
            from .compute import owner

            ok, message = GUARD.attempt(owner(), code, os.environ.get("DIFFUSION_LAB_PASSCODE"))
            if ok:
                st.session_state[ROLE_KEY] = "instructor"
                st.session_state[TOKEN_KEY] = {"set": issue_token()}
                st.rerun()
            else:
                st.error(message)
