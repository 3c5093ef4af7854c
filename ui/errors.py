"""Uncaught errors: the full traceback goes to the server's log, the learner sees one short line without paths.

.streamlit/config.toml's client.showErrorDetails = "type" covers what this cannot wrap (fragment reruns).
Streamlit's own control flow (st.stop, st.rerun, st.switch_page) raises BaseExceptions, which pass through.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import streamlit as st
from streamlit.errors import FragmentHandledException
from streamlit.logger import get_logger

from .compute import Refused
from .state import escape_md

ROOT = Path(__file__).resolve().parent.parent
LOG = get_logger("diffusion_lab")            # Streamlit's format, to the server's stderr


def without_paths(text: str, limit: int = 300) -> str:
    """`text` with absolute paths under the repository made relative and those under the home folder
    starting at ~; cut to `limit` characters."""
    for prefix, short in ((str(ROOT) + os.sep, ""), (str(Path.home()) + os.sep, "~" + os.sep)):
        if len(prefix) > 1:                  # a home of "/" would turn every path into ~
            text = text.replace(prefix, short)
    return text if len(text) <= limit else text[:limit] + "…"


def summary(exc: BaseException) -> str:
    """What the learner sees: the error's type and its message, without server paths."""
    message = without_paths(str(exc))
    what = escape_md(f"{type(exc).__name__}: {message}" if message else type(exc).__name__, 300)
    return (f"This page hit an error ({what}). "
            "The details are in the server's log. Try other settings or reload the page; if it happens again, "
            "tell the instructor.")


def run_page(run: Callable[[], object]) -> None:
    """Run a page (st.navigation(...).run); an exception is logged in full and shown as `summary`."""
    try:
        run()
    except FragmentHandledException:     # a fragment's error: Streamlit has shown and logged it already
        raise
    except Refused as exc:               # the classroom's compute budget said no: a message, not an error
        st.warning(str(exc), icon=":material/hourglass_top:")
    except Exception as exc:             # st.stop / st.rerun / st.switch_page are BaseExceptions: not caught
        LOG.error("uncaught exception on a page", exc_info=exc)
        st.error(summary(exc), icon=":material/error:")
