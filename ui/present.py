"""The instructor's "present" mode: step through the worksheet in front of a class.

With "Present the worksheet" on (a sidebar toggle only the instructor sees), every page shows in the sidebar, beside
the page's own evidence, the current prompt: its number and text, the instructor's note (ui/notes.py, computed from
the shipped reports) and ◀ previous / next ▶, which open the neighbouring prompt's page with its preset exactly as
the Worksheet's "Show me" does. The current prompt is st.session_state[INDEX], an index into PROMPTS.
"""
from __future__ import annotations

import streamlit as st

from . import roles
from .worksheet_content import PROMPTS, Prompt

ON = "present.on"
INDEX = "present.index"


def url_path(prompt: Prompt) -> str:
    """The URL path of a prompt's page ("pages/forward_process.py" -> "forward_process"), as dashboard.py names it."""
    return prompt.page.split("/")[-1].removesuffix(".py")


def start_index(current: str) -> int:
    """Where presenting starts: the first prompt answered on the current page, else the first prompt."""
    return next((i for i, p in enumerate(PROMPTS) if url_path(p) == current), 0)


def show(prompt: Prompt) -> None:
    """Open the prompt's page with its preset (the Worksheet's "Show me" and present mode's ◀ / ▶): the page's
    earlier settings are dropped, the preset goes into its session-state keys (read before its widgets are drawn)
    and into the URL with the model on screen, so the view is the preset's whatever was shown before. Does not
    return (st.switch_page)."""
    for key in [k for k in st.session_state if k.startswith(f"{prompt.namespace}.")]:
        del st.session_state[key]            # settings left from an earlier view: the page takes its defaults
    for name, value in prompt.preset.items():
        st.session_state[f"{prompt.namespace}.{name}"] = value
    query = {k: str(v) for k, v in prompt.preset.items()}
    if st.query_params.get("model"):      # st.switch_page resets every widget, the sidebar's model picker too:
        query["model"] = st.query_params["model"]      # keep the model on screen (the picker reads it from the URL)
    st.switch_page(prompt.page, query_params=query)


def note_of(prompt: Prompt) -> str:
    from . import notes                        # only when presenting: it reads the shipped reports

    return notes.note(prompt.number) or prompt.note or "_No note for this prompt: the evidence speaks for itself._"


def sidebar(current: str) -> None:
    """Drawn in the sidebar of every page; `current` is the page's URL path ("" for Home). Learners see nothing."""
    if not roles.is_instructor():
        st.session_state.pop(INDEX, None)
        return
    if ON not in st.session_state:          # st.switch_page (previous / next) resets widgets: presenting goes on
        st.session_state[ON] = INDEX in st.session_state
    if not st.toggle("Present the worksheet", key=ON,
                     help="Show the current worksheet prompt and its note here, with ◀ previous / next ▶ "
                          "opening each prompt's view in turn"):
        st.session_state.pop(INDEX, None)           # turning it on again starts afresh from the page shown
        return
    if INDEX not in st.session_state:
        st.session_state[INDEX] = start_index(current)
    i = min(max(int(st.session_state[INDEX]), 0), len(PROMPTS) - 1)
    prompt = PROMPTS[i]
    with st.container(border=True):
        st.caption(f"Prompt {i + 1} of {len(PROMPTS)} · {prompt.section}")
        st.markdown(f"**{prompt.number}** {prompt.text}")
        back, forward = st.columns(2)
        if back.button("◀ previous", key="present.previous", disabled=i == 0, width="stretch"):
            st.session_state[INDEX] = i - 1
            show(PROMPTS[i - 1])
        if forward.button("next ▶", key="present.next", disabled=i == len(PROMPTS) - 1, width="stretch"):
            st.session_state[INDEX] = i + 1
            show(PROMPTS[i + 1])
        if url_path(prompt) != current and st.button(f"Open {prompt.number}'s view", key="present.open",
                                                     width="stretch"):
            show(prompt)
        st.markdown(f"**Note.** {note_of(prompt)}")
