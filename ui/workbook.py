"""A learner's worksheet answers, kept per browser on the server's disk: never lost to a page change, a "Show me"
round trip, a reload or a server restart.

The browser holds only an anonymous id (32 random hex digits in its localStorage, made by a tiny inline
component); the answers live in WORKBOOKS/<id>.json, written atomically on every change and read back bounded
(engine.checkpoints.read_json). Nothing identifies the learner, and a crafted id cannot name another path.
"""
from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path

from engine.checkpoints import CheckpointError, read_json, write_json_atomic

ROOT = Path(__file__).resolve().parent.parent
WORKBOOKS = Path(os.environ.get("DIFFUSION_LAB_WORKBOOKS", ROOT / "workbooks"))
BOOK_ID = re.compile(r"^[0-9a-f]{32}$")
MAX_ANSWER_CHARS = 20_000          # a long answer is a few hundred words
MAX_BOOKS = 5_000                  # a class of 30 for years; a client inventing ids cannot fill the disk
_lock = threading.Lock()


class WorkbookError(ValueError):
    """A workbook that cannot be read or written; the message says why (shown to the learner)."""


def path_of(book_id: str, root: Path | None = None) -> Path:
    if not isinstance(book_id, str) or not BOOK_ID.match(book_id):
        raise WorkbookError("this browser's workbook id is malformed")
    return (root or WORKBOOKS) / f"{book_id}.json"


def load(book_id: str, root: Path | None = None) -> dict[str, str]:
    """The saved answers {prompt number: text} of this browser's workbook ({} when it has none yet)."""
    path = path_of(book_id, root)
    if not path.exists():
        return {}
    try:
        data = read_json(path, max_bytes=2 * 2**20)
    except (CheckpointError, OSError) as e:
        raise WorkbookError(f"your saved answers could not be read ({e})") from None
    answers = data.get("answers") if isinstance(data, dict) else None
    return {k: v for k, v in answers.items() if isinstance(k, str) and isinstance(v, str)} \
        if isinstance(answers, dict) else {}


def save(book_id: str, answers: dict[str, str], root: Path | None = None) -> None:
    """Write the whole workbook atomically (a crash leaves the previous version, never half a file)."""
    root = root or WORKBOOKS
    path = path_of(book_id, root)
    too_long = [k for k, v in answers.items() if len(v) > MAX_ANSWER_CHARS]
    if too_long:
        raise WorkbookError(f"the answer to {too_long[0]} is longer than {MAX_ANSWER_CHARS:,} characters; shorten it "
                            "to save it")
    with _lock:
        root.mkdir(parents=True, exist_ok=True)
        if not path.exists() and sum(1 for _ in root.glob("*.json")) >= MAX_BOOKS:
            raise WorkbookError(f"this server already keeps {MAX_BOOKS:,} workbooks; ask the instructor to clear "
                                f"old ones from {root.name}/")
        try:
            write_json_atomic(path, {"answers": {k: v for k, v in answers.items() if v},
                                     "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        except OSError as e:
            raise WorkbookError(f"your answer could not be saved on the server ({e.strerror or e})") from None


def save_answer(book_id: str, number: str, text: str, root: Path | None = None) -> None:
    """Change one answer (read, change, write: answers typed in two tabs of one browser both survive)."""
    with _lock:
        answers = load(book_id, root)
    answers[number] = text
    save(book_id, answers, root)


def clear(book_id: str, root: Path | None = None) -> None:
    path = path_of(book_id, root)
    with _lock:
        path.unlink(missing_ok=True)


# -- the browser's id ------------------------------------------------------------------------------------------------
JS = """
export default function(component) {
  const { setStateValue } = component;
  const KEY = 'diffusion-lab-workbook';
  let id = null;
  try { id = window.localStorage.getItem(KEY); } catch (e) {}
  if (!id || !/^[0-9a-f]{32}$/.test(id)) {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);          // available over plain HTTP too, unlike crypto.randomUUID
    id = Array.from(bytes, b => b.toString(16).padStart(2, '0')).join('');
    try { window.localStorage.setItem(KEY, id); } catch (e) {}
  }
  setStateValue('id', id);
}
"""
_component = None


def browser_id() -> str | None:
    """This browser's workbook id, or None until the browser has sent it (the first run of a page visit)."""
    import streamlit as st

    global _component
    if _component is None:
        _component = st.components.v2.component("diffusion_lab_workbook", html="<span></span>", js=JS)
    result = _component(key="worksheet.book_id", on_id_change=lambda: None)
    book_id = getattr(result, "id", None)
    return book_id if isinstance(book_id, str) and BOOK_ID.match(book_id) else None
