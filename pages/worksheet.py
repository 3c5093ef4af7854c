"""Worksheet: every prompt with a 'Show me' preset, the instructor's note, and the learner's answers, kept for this
browser on the server's disk (ui/workbook.py): a page change, a "Show me", a reload or a restart loses nothing."""
import time
import streamlit as st

from ui import notes, present, roles, state, workbook
from ui.worksheet_content import PROMPTS

import ui  # noqa: E402

ui.ensure_frame()

BOOK = "worksheet._book"              # the workbook id the answer boxes were filled from
ERROR = "worksheet._save_error"


def _key(number: str) -> str:
    return f"worksheet.answer.{number}"


def _fill(book: str | None) -> None:
    """Fill the answer boxes from the saved workbook before they are drawn: every box Streamlit dropped when the
    learner left the page, and, when this browser's id has just arrived, every box still empty."""
    saved = {}
    if book is not None:
        try:
            saved = workbook.load(book)
        except workbook.WorkbookError as e:
            st.error(str(e))
    arrived = book is not None and st.session_state.get(BOOK) != book
    for p in PROMPTS:
        if _key(p.number) not in st.session_state or (arrived and not st.session_state[_key(p.number)]):
            st.session_state[_key(p.number)] = saved.get(p.number, "")
    if arrived:
        st.session_state[BOOK] = book
        for p in PROMPTS:                         # typed before the id arrived: save it now
            if st.session_state[_key(p.number)] and not saved.get(p.number):
                _save(p.number)


def _save(number: str) -> None:
    """on_change of an answer box: write it to this browser's workbook at once."""
    book = st.session_state.get(BOOK)
    if book is None:
        st.session_state[ERROR] = "Not saved yet: this browser's workbook is still opening. Leave the box again."
        return
    try:
        workbook.save_answer(book, number, st.session_state.get(_key(number), ""))
        st.session_state.pop(ERROR, None)
    except workbook.WorkbookError as e:
        st.session_state[ERROR] = str(e)


def _unpin(number: str, pin_id: str) -> None:
    """on_click of a pinned figure's "Remove"."""
    try:
        workbook.remove_pin(st.session_state[BOOK], number, pin_id)
    except (workbook.WorkbookError, KeyError) as e:
        st.session_state[ERROR] = str(e)


def _pinned(number: str, items: list[dict]) -> None:
    """The figures pinned to one answer, small, each with its caption and a Remove button."""
    cols = st.columns(workbook.MAX_PINS)
    for col, pin in zip(cols, items):
        try:
            png = workbook.pin_file(st.session_state[BOOK], pin["id"], "png")
        except workbook.WorkbookError:
            png = None
        if png is None:
            col.caption(f"{pin['title']} (its file is missing)")
        else:
            col.image(png, caption=pin["title"], width="stretch")
        col.button("Remove", key=f"worksheet.unpin.{pin['id']}", on_click=_unpin, args=(number, pin["id"]),
                   icon=":material/close:")


def _clear() -> None:
    """on_click of the confirmed "Delete all my answers"."""
    book = st.session_state.get(BOOK)
    if book is not None:
        workbook.clear(book)
    for p in PROMPTS:
        st.session_state[_key(p.number)] = ""
    st.session_state["worksheet.confirm_clear"] = False


st.title("Worksheet")
st.caption("Each 'Show me' opens the page with the settings that answer the prompt. Your answers are saved on this "
           "server for this browser as soon as you leave a box: they survive changing pages, reloading and a "
           "restart of the server. On any page, the sidebar's 'Pin a figure to an answer' keeps the figure you "
           "made under your answer. Download everything at the bottom.")
book = workbook.browser_id() or st.session_state.get(BOOK)     # the component reports anew on each visit
_fill(book)
if st.session_state.get(ERROR):
    st.warning(st.session_state[ERROR])
show_notes = roles.is_instructor() and st.toggle("Show instructor notes", key="worksheet.notes")
pins = {}
if st.session_state.get(BOOK):
    try:
        pins = workbook.load_pins(st.session_state[BOOK])
    except workbook.WorkbookError as e:
        st.warning(str(e))

section = None
for p in PROMPTS:
    if p.section != section:
        section = p.section
        st.header(section)
    with st.container(border=True):
        c1, c2 = st.columns([5, 1])
        c1.markdown(f"**{p.number}** {p.text}")
        if c2.button("Show me", key=f"worksheet.show.{p.number}"):
            st.session_state[state.VISITING] = (p.number, p.namespace, p.page.split("/")[-1].removesuffix(".py"))
            present.show(p)                     # the preset into the page's state and URL, with the model kept
        if show_notes:
            st.info(notes.note(p.number) or p.note)
        st.text_area("Your answer", key=_key(p.number), height=80, label_visibility="collapsed",
                     placeholder="Your answer… (saved when you leave the box)", on_change=_save, args=(p.number,),
                     max_chars=workbook.MAX_ANSWER_CHARS)
        if pins.get(p.number):
            _pinned(p.number, pins[p.number])


def _base_url() -> str:
    """scheme://host:port this dashboard is served from, as the learner's browser reached it ("" if unknown)."""
    from urllib.parse import urlsplit

    try:
        url = urlsplit(st.context.url or "")
    except Exception:                    # an older Streamlit, or no browser (tests)
        return ""
    return f"{url.scheme}://{url.netloc}" if url.scheme and url.netloc else ""


views = {}
if st.session_state.get(BOOK):
    try:
        views = workbook.load_views(st.session_state[BOOK])
    except workbook.WorkbookError:
        views = {}
answers = {p.number: st.session_state.get(_key(p.number), "") for p in PROMPTS}
today = time.strftime("%Y-%m-%d")
left, right = st.columns(2)
left.download_button("Download my answers (Markdown)",
                     workbook.export_markdown(PROMPTS, answers, views, _base_url(), today, pins),
                     file_name="diffusion-lab-answers.md", mime="text/markdown",
                     help="Each answer with a link to the view you looked at after its Show me (else the prompt's "
                          "own), on this server's address, and the titles of the figures pinned to it")
n_pins = sum(len(v) for v in pins.values())


def _zip_of(book: str, answers: dict, base_url: str, date: str):
    """The zip export, built only when the learner clicks (it reads every pinned figure's files)."""
    return lambda: workbook.export_zip(book, PROMPTS, answers, base_url, date)


if st.session_state.get(BOOK):
    right.download_button(f"Download with the {n_pins} pinned figure{'s' if n_pins != 1 else ''} (zip)" if n_pins
                          else "Download with pinned figures (zip): none pinned yet",
                          _zip_of(st.session_state[BOOK], answers, _base_url(), today),   # built on click
                          file_name="diffusion-lab-answers.zip", mime="application/zip", disabled=n_pins == 0,
                          help="answers.md with every pinned figure shown under its answer, each figure as a PNG "
                               "and the numbers it plots as CSV (figures/)")
with st.expander("Clear my answers"):
    written = sum(bool(st.session_state.get(_key(p.number))) for p in PROMPTS)
    what = "my answer" if written == 1 else f"all {written} of my answers"
    sure = st.checkbox(f"Yes, delete {what} from this server", key="worksheet.confirm_clear")
    st.button("Delete all my answers", key="worksheet.clear", disabled=not sure, on_click=_clear)
