"""Page state that lives in the URL: any view can be shared as a link and reopened exactly.

Each page declares its parameters once (name, default, parser). `init` copies valid URL values into
namespaced session-state keys ("forward.t") before the widgets are drawn; `sync` writes the widgets' current
values back to st.query_params. Malformed or out-of-range link values are ignored with a visible note, the
value shown as typed (escape_md), never as Markdown.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import streamlit as st


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    parse: Callable[[str], Any]


def escape_md(text: object, limit: int = 40) -> str:
    """A user-supplied value (link value, file name) as an inline code span, safe in any Streamlit Markdown.

    Inside a code span Markdown, HTML, links, images, `$` maths, `:material/...:` icons and `:red[...]`
    colours are all shown as typed. A backtick would close the span and a blank line would end it, so
    backticks become ' and line breaks and other control characters become spaces. Longer than `limit`
    characters: cut, with an ellipsis.
    """
    s = "".join(" " if ch < " " or ch == "\x7f" else ch for ch in str(text)).replace("`", "'")
    s = s if len(s) <= limit else s[:limit] + "…"
    return f"`{s}`" if s.strip() else "(empty)"


def int_in(lo: int, hi: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            v = int(raw)
        except ValueError:                  # int's own message repeats the raw value
            raise ValueError("must be a whole number") from None
        if not lo <= v <= hi:
            raise ValueError(f"must be between {lo} and {hi}")
        return v
    return parse


def float_in(lo: float, hi: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            v = float(raw)
        except ValueError:                  # float's own message repeats the raw value
            raise ValueError("must be a number") from None
        if not (lo <= v <= hi):             # also rejects NaN
            raise ValueError(f"must be between {lo} and {hi}")
        return v
    return parse


def flag(raw: str) -> bool:
    """A panel's on/off switch in a link: True/False (as written back by sync), 1/0, true/false."""
    if raw in ("True", "true", "1"):
        return True
    if raw in ("False", "false", "0"):
        return False
    raise ValueError("must be True or False")


def one_of(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return raw
    return parse


def key(page: str, name: str) -> str:
    return f"{page}.{name}"


def parse_params(raw: dict[str, str], params: list[Param]) -> tuple[dict[str, Any], list[str]]:
    """Pure part (unit-tested): valid values from a query dict, plus a note for every rejected one.

    The notes are Markdown (st.toast): the raw value goes in through escape_md, and parsers' messages must
    not repeat it (int_in and float_in replace int's and float's own messages, which do)."""
    values, notes = {}, []
    for p in params:
        if p.name not in raw:
            continue
        try:
            values[p.name] = p.parse(str(raw[p.name])[:64])
        except (ValueError, TypeError) as e:
            notes.append(f"ignored link value {p.name}={escape_md(raw[p.name], 20)}: {e}")
    return values, notes


def init(page: str, params: list[Param]) -> None:
    """Seed missing session-state keys from the URL (or defaults); note bad link values once per session.

    Runs on every script run: Streamlit drops a widget's state when the learner leaves its page, and the
    URL then still holds the value to restore.
    """
    missing = [p for p in params if key(page, p.name) not in st.session_state]
    if not missing:
        return
    values, notes = parse_params(dict(st.query_params), missing)
    for p in missing:
        st.session_state[key(page, p.name)] = values.get(p.name, p.default)
    marker = key(page, "_noted")
    if notes and not st.session_state.get(marker):
        st.session_state[marker] = True
        for n in notes:
            st.toast(n)


def get(page: str, name: str) -> Any:
    return st.session_state[key(page, name)]


def sync(page: str, params: list[Param]) -> None:
    """Mirror the current values into the URL (only this page's parameters)."""
    wanted = {p.name: str(st.session_state[key(page, p.name)]) for p in params
              if st.session_state.get(key(page, p.name)) is not None}     # e.g. a segmented control left empty
    for k in list(st.query_params.keys()):
        if k not in wanted and k != "model":
            del st.query_params[k]
    for k, v in wanted.items():
        if st.query_params.get(k) != v:
            st.query_params[k] = v
    _remember_view(page)


VISITING = "worksheet.visiting"        # (prompt number, page namespace, URL path) set by the worksheet's "Show me"


def _remember_view(page: str) -> None:
    """After a worksheet "Show me", the view the learner makes of that prompt's page (this URL) is kept in their
    workbook, so the exported answers link to what they looked at, not to the preset."""
    visiting, book = st.session_state.get(VISITING), st.session_state.get("worksheet._book")
    if not visiting or visiting[1] != page or book is None:
        return
    from urllib.parse import urlencode

    from . import workbook

    view = f"/{visiting[2]}?{urlencode(dict(st.query_params))}"
    if st.session_state.get("worksheet._last_view") != view:
        st.session_state["worksheet._last_view"] = view
        try:
            workbook.save_view(book, visiting[0], view)
        except workbook.WorkbookError:
            pass                                         # the answer boxes say so when saving fails
