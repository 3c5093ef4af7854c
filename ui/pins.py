"""Pin what is on screen to a worksheet answer: the figure the learner made goes into their workbook (ui/workbook.py)
as a PNG with the numbers it plots (CSV), its caption and the link to the view it came from.

Every chart and image a page draws goes through `chart` / `image` (instead of st.plotly_chart / st.image), which
draw it and note it as "on screen" for this run of the page. After the page has run, `sidebar` offers the figures on
screen in the sidebar: pick one and the answer it belongs to (the prompt whose "Show me" brought the learner here,
else this page's first prompt), and "Pin" stores it. The Worksheet shows pins under their answers and exports them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import streamlit as st

ON_SCREEN = "pins._on_screen"          # {label: Pinnable}, emptied at the start of every full run of a page


@dataclass
class Pinnable:
    title: str
    kind: str                          # "chart" (a Plotly figure) or "image" (an array or PIL image)
    payload: Any
    caption: str = ""


def begin_run() -> None:
    """dashboard.py, before a page runs: what the previous run drew is no longer on screen."""
    st.session_state[ON_SCREEN] = {}


def _note(item: Pinnable) -> None:
    shown = st.session_state.setdefault(ON_SCREEN, {})
    label, n = item.title.replace("\n", " ").strip() or item.kind, 2
    base = label = label if len(label) <= 70 else label[:69] + "…"
    while label in shown and shown[label].payload is not item.payload:
        label, n = f"{base} ({n})", n + 1
    shown[label] = item


def chart(where, fig, **kwargs):
    """where.plotly_chart(fig, **kwargs), noted as pinnable under the figure's title; returns what it returns (a
    selection, for charts drawn with on_select)."""
    from .figure_png import plain

    out = where.plotly_chart(fig, **kwargs)
    title = plain(fig.layout.title.text if fig.layout.title else "") or kwargs.get("key") or "chart"
    _note(Pinnable(title, "chart", fig))
    return out


def image(where, img, caption: str | None = None, **kwargs) -> None:
    """where.image(img, caption=caption, **kwargs), noted as pinnable under its caption."""
    where.image(img, caption=caption, **kwargs)
    _note(Pinnable(caption or "image", "image", img, caption or ""))


def on_screen() -> dict[str, Pinnable]:
    return dict(st.session_state.get(ON_SCREEN, {}))


def render(item: Pinnable) -> tuple[bytes, str]:
    """(PNG bytes, CSV of the numbers plotted, '' for an image) of a pinnable."""
    from . import figure_png

    if item.kind == "chart":
        return figure_png.plotly_png(item.payload), figure_png.plotly_numbers(item.payload)
    return figure_png.image_png(item.payload), ""


def _default_prompt(current: str) -> int:
    """Index into PROMPTS of the answer a pin most likely belongs to: the prompt whose "Show me" opened this page,
    else the first prompt answered on it, else the first."""
    from .present import url_path
    from .state import VISITING
    from .worksheet_content import PROMPTS

    visiting = st.session_state.get(VISITING)
    numbers = [p.number for p in PROMPTS]
    if visiting and visiting[2] == current and visiting[0] in numbers:
        return numbers.index(visiting[0])
    return next((i for i, p in enumerate(PROMPTS) if url_path(p) == current), 0)


def _view(current: str) -> str:
    from urllib.parse import urlencode

    query = urlencode(dict(st.query_params))
    return f"/{current}" + (f"?{query}" if query else "")


def _pin(book: str, current: str) -> None:
    """on_click of "Pin": render the chosen figure and store it with the chosen answer."""
    from . import workbook
    from .worksheet_content import PROMPTS

    item = on_screen().get(st.session_state.get("pins.figure"))
    prompt = PROMPTS[st.session_state.get("pins.prompt", 0)]
    if item is None:
        st.session_state["pins._message"] = ("warning", "That figure is no longer on screen; pick another.")
        return
    try:
        png, numbers = render(item)
        workbook.add_pin(book, prompt.number, title=item.title, caption=item.caption, view=_view(current), png=png,
                         numbers=numbers)
    except workbook.WorkbookError as e:
        st.session_state["pins._message"] = ("warning", str(e))
        return
    st.session_state["pins._message"] = ("success", f"Pinned “{item.title}” to your answer to {prompt.number}: it "
                                                    "is under that answer on the Worksheet, and in its zip download.")


def sidebar(current: str) -> None:
    """The sidebar's "Pin a figure to an answer", drawn after the page so that it lists what the page drew."""
    from . import workbook
    from .worksheet_content import PROMPTS

    shown = on_screen()
    if not shown or current in ("", "worksheet"):
        return
    with st.sidebar.expander(":material/push_pin: Pin a figure to an answer"):
        book = st.session_state.get("worksheet._book") or workbook.browser_id()
        if book is None:
            st.caption("Opening this browser's workbook…")
            return
        st.session_state["worksheet._book"] = book
        if st.session_state.get("pins.figure") not in shown:
            st.session_state["pins.figure"] = next(iter(shown))
        if "pins.prompt" not in st.session_state or st.session_state.get("pins._page") != current:
            st.session_state["pins.prompt"] = _default_prompt(current)
            st.session_state["pins._page"] = current
        st.selectbox("Figure on this page", list(shown), key="pins.figure")
        st.selectbox("Answer", range(len(PROMPTS)), key="pins.prompt",
                     format_func=lambda i: f"{PROMPTS[i].number} {PROMPTS[i].text}")
        st.button("Pin", key="pins.pin", icon=":material/push_pin:", on_click=_pin, args=(book, current),
                  help="Keeps this figure as an image, with the numbers it plots and a link back to this view, "
                       "under your answer on the Worksheet", width="stretch")
        message = st.session_state.pop("pins._message", None)
        if message:
            (st.success if message[0] == "success" else st.warning)(message[1])
