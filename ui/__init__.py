"""Streamlit-only glue shared by the pages: cached resources, state keys, widgets, figure builders."""
import streamlit as st

try:  # The design keeps page scripts in pages/, which Streamlit also treats as its legacy multipage folder:
    # until the first st.navigation call in a process, a link like /training would run pages/training.py
    # alone, without dashboard.py's frame. Pages are registered explicitly, so switch the legacy mode off.
    from streamlit.runtime.pages_manager import PagesManager

    PagesManager.uses_pages_directory = False
except ImportError:  # pragma: no cover - a future Streamlit without the legacy mechanism
    pass

FRAME_KEY = "app.framed"


def ensure_frame() -> None:
    """Called first by every page: if this run skipped dashboard.py (the legacy path above, possible only for
    the very first run of a fresh server), rerun through the frame."""
    if not st.session_state.get(FRAME_KEY):
        st.rerun()
