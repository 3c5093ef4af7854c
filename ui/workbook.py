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


def _read(book_id: str, root: Path | None) -> dict[str, dict[str, str]]:
    """{"answers": {prompt: text}, "views": {prompt: "/page?query"}} of a workbook (empty ones when it has none)."""
    path = path_of(book_id, root)
    if not path.exists():
        return {"answers": {}, "views": {}}
    try:
        data = read_json(path, max_bytes=2 * 2**20)
    except (CheckpointError, OSError) as e:
        raise WorkbookError(f"your saved answers could not be read ({e})") from None
    out = {}
    for part in ("answers", "views"):
        got = data.get(part) if isinstance(data, dict) else None
        out[part] = {k: v for k, v in got.items() if isinstance(k, str) and isinstance(v, str)} \
            if isinstance(got, dict) else {}
    return out


def load(book_id: str, root: Path | None = None) -> dict[str, str]:
    """The saved answers {prompt number: text} of this browser's workbook ({} when it has none yet)."""
    return _read(book_id, root)["answers"]


def load_views(book_id: str, root: Path | None = None) -> dict[str, str]:
    """{prompt number: "/page?query"}: the view the learner last looked at after that prompt's "Show me"."""
    return _read(book_id, root)["views"]


def save_view(book_id: str, number: str, view: str, root: Path | None = None) -> None:
    if len(view) > 2000 or not view.startswith("/"):
        return                                           # not a view of this dashboard: not kept
    with _lock:
        book = _read(book_id, root)
    if book["views"].get(number) != view:
        book["views"][number] = view
        save(book_id, book["answers"], root, views=book["views"])


def save(book_id: str, answers: dict[str, str], root: Path | None = None, views: dict[str, str] | None = None) -> None:
    """Write the whole workbook atomically (a crash leaves the previous version, never half a file)."""
    root = root or WORKBOOKS
    path = path_of(book_id, root)
    if views is None:
        views = _read(book_id, root)["views"] if path.exists() else {}
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
            write_json_atomic(path, {"answers": {k: v for k, v in answers.items() if v}, "views": views,
                                     "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        except OSError as e:
            raise WorkbookError(f"your answer could not be saved on the server ({e.strerror or e})") from None


def save_answer(book_id: str, number: str, text: str, root: Path | None = None) -> None:
    """Change one answer (read, change, write: answers typed in two tabs of one browser both survive)."""
    with _lock:
        book = _read(book_id, root)
    book["answers"][number] = text
    save(book_id, book["answers"], root, views=book["views"])


def export_markdown(prompts, answers: dict[str, str], views: dict[str, str], base_url: str, date: str) -> str:
    """The learner's answers for a teacher: each prompt, the link to the learner's own view of its evidence (the
    last one they looked at after its "Show me", else the prompt's preset) on this server's address, the answer."""
    from urllib.parse import urlencode

    parts = [f"# Diffusion Lab worksheet — {date}\n"]
    for p in prompts:
        page = p.page.split("/")[-1].removesuffix(".py")
        own = views.get(p.number)
        view = own or f"/{page}" + (f"?{urlencode(p.preset)}" if p.preset else "")
        title = page.replace("_", " ").capitalize()
        whose = "the view I looked at" if own else "the prompt's preset view"
        parts.append(f"## {p.number} {p.text}\n\nEvidence: [{title}]({base_url.rstrip('/')}{view}) ({whose})\n\n"
                     f"{answers.get(p.number) or '_(no answer yet)_'}\n")
    return "\n".join(parts)


def clear(book_id: str, root: Path | None = None) -> None:
    path = path_of(book_id, root)
    with _lock:
        path.unlink(missing_ok=True)


# -- the browser's id ------------------------------------------------------------------------------------------------
def browser_id() -> str | None:
    """This browser's workbook id, or None until the browser has sent it (the first run of a page visit)."""
    from .browser_storage import stored

    book_id = stored("diffusion-lab-workbook", "worksheet.book_id", make_id=True)
    return book_id if book_id is not None and BOOK_ID.match(book_id) else None
