"""A learner's worksheet answers, kept per browser on the server's disk: never lost to a page change, a "Show me"
round trip, a reload or a server restart.

The browser holds only an anonymous id (32 random hex digits in its localStorage, made by a tiny inline
component); the answers live in WORKBOOKS/<id>.json, written atomically on every change and read back bounded
(engine.checkpoints.read_json). Nothing identifies the learner, and a crafted id cannot name another path.
Figures pinned to an answer (ui/pins.py) are files in WORKBOOKS/<id>/ (a PNG and the CSV of its numbers), listed
in the JSON.
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
MAX_PINS = 4                       # figures per answer
MAX_PIN_BYTES = 4 * 2**20          # one pinned PNG or CSV
PIN_ID = re.compile(r"^[0-9a-f]{12}$")
_lock = threading.Lock()


class WorkbookError(ValueError):
    """A workbook that cannot be read or written; the message says why (shown to the learner)."""


def path_of(book_id: str, root: Path | None = None) -> Path:
    if not isinstance(book_id, str) or not BOOK_ID.match(book_id):
        raise WorkbookError("this browser's workbook id is malformed")
    return (root or WORKBOOKS) / f"{book_id}.json"


def _pins(got) -> dict[str, list[dict[str, str]]]:
    """The pins part of a workbook file, kept only where well formed (an edited file cannot name other paths)."""
    keys = ("id", "title", "caption", "view", "pinned")
    out = {}
    for number, items in (got.items() if isinstance(got, dict) else ()):
        ok = [{k: str(it.get(k, "")) for k in keys} for it in (items if isinstance(items, list) else [])
              if isinstance(it, dict) and isinstance(it.get("id"), str) and PIN_ID.match(it["id"])]
        if isinstance(number, str) and ok:
            out[number] = ok[:MAX_PINS]
    return out


def _read(book_id: str, root: Path | None) -> dict:
    """{"answers": {prompt: text}, "views": {prompt: "/page?query"}, "pins": {prompt: [pin]}} of a workbook (empty
    ones when it has none)."""
    path = path_of(book_id, root)
    if not path.exists():
        return {"answers": {}, "views": {}, "pins": {}}
    try:
        data = read_json(path, max_bytes=2 * 2**20)
    except (CheckpointError, OSError) as e:
        raise WorkbookError(f"your saved answers could not be read ({e})") from None
    out = {}
    for part in ("answers", "views"):
        got = data.get(part) if isinstance(data, dict) else None
        out[part] = {k: v for k, v in got.items() if isinstance(k, str) and isinstance(v, str)} \
            if isinstance(got, dict) else {}
    out["pins"] = _pins(data.get("pins") if isinstance(data, dict) else None)
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
        save(book_id, book["answers"], root, views=book["views"], pins=book["pins"])


def save(book_id: str, answers: dict[str, str], root: Path | None = None, views: dict[str, str] | None = None,
         pins: dict | None = None) -> None:
    """Write the whole workbook atomically (a crash leaves the previous version, never half a file)."""
    root = root or WORKBOOKS
    path = path_of(book_id, root)
    if views is None or pins is None:
        old = _read(book_id, root) if path.exists() else {"views": {}, "pins": {}}
        views = old["views"] if views is None else views
        pins = old["pins"] if pins is None else pins
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
                                     "pins": pins, "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        except OSError as e:
            raise WorkbookError(f"your answer could not be saved on the server ({e.strerror or e})") from None


def save_answer(book_id: str, number: str, text: str, root: Path | None = None) -> None:
    """Change one answer (read, change, write: answers typed in two tabs of one browser both survive)."""
    with _lock:
        book = _read(book_id, root)
    book["answers"][number] = text
    save(book_id, book["answers"], root, views=book["views"], pins=book["pins"])


# -- pinned figures --------------------------------------------------------------------------------------------------
def files_of(book_id: str, root: Path | None = None) -> Path:
    """The folder of a workbook's pinned figures."""
    path = path_of(book_id, root)
    return path.with_suffix("")


def load_pins(book_id: str, root: Path | None = None) -> dict[str, list[dict[str, str]]]:
    """{prompt number: [{"id", "title", "caption", "view", "pinned"}]}, oldest first."""
    return _read(book_id, root)["pins"]


def pin_file(book_id: str, pin_id: str, kind: str, root: Path | None = None) -> bytes | None:
    """The bytes of a pin's "png" or "csv" (None when it has none, e.g. the CSV of an image)."""
    if not PIN_ID.match(pin_id) or kind not in ("png", "csv"):
        raise WorkbookError("not a pinned figure of this workbook")
    path = files_of(book_id, root) / f"{pin_id}.{kind}"
    if not path.exists():
        return None
    if path.stat().st_size > MAX_PIN_BYTES:
        raise WorkbookError(f"a pinned figure's {kind} is larger than {MAX_PIN_BYTES // 2**20} MB")
    return path.read_bytes()


def add_pin(book_id: str, number: str, *, title: str, caption: str, view: str, png: bytes, numbers: str,
            root: Path | None = None) -> str:
    """Keep a figure (PNG bytes, CSV of its numbers) with an answer; returns the pin's id. Files first, then the
    workbook naming them (atomically): a crash leaves unlisted files, never a listed file that is missing."""
    import secrets

    from engine.checkpoints import write_file_atomic

    root = root or WORKBOOKS
    data = numbers.encode("utf-8")
    if len(png) > MAX_PIN_BYTES or len(data) > MAX_PIN_BYTES:
        raise WorkbookError(f"this figure is larger than {MAX_PIN_BYTES // 2**20} MB as a file; it was not pinned")
    with _lock:
        book = _read(book_id, root)
    held = book["pins"].get(number, [])
    if len(held) >= MAX_PINS:
        raise WorkbookError(f"your answer to {number} already has {MAX_PINS} pinned figures; remove one on the "
                            "Worksheet first")
    pin_id = secrets.token_hex(6)
    folder = files_of(book_id, root)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_file_atomic(folder / f"{pin_id}.png", lambda f: f.write(png))
        if data:
            write_file_atomic(folder / f"{pin_id}.csv", lambda f: f.write(data))
    except OSError as e:
        raise WorkbookError(f"the figure could not be saved on the server ({e.strerror or e})") from None
    book["pins"][number] = held + [{"id": pin_id, "title": title[:200], "caption": caption[:1000],
                                    "view": view if view.startswith("/") and len(view) <= 2000 else "",
                                    "pinned": time.strftime("%Y-%m-%d %H:%M")}]
    save(book_id, book["answers"], root, views=book["views"], pins=book["pins"])
    return pin_id


def remove_pin(book_id: str, number: str, pin_id: str, root: Path | None = None) -> None:
    with _lock:
        book = _read(book_id, root)
    book["pins"][number] = [p for p in book["pins"].get(number, []) if p["id"] != pin_id]
    if not book["pins"][number]:
        del book["pins"][number]
    save(book_id, book["answers"], root, views=book["views"], pins=book["pins"])
    if PIN_ID.match(pin_id):
        for kind in ("png", "csv"):
            (files_of(book_id, root) / f"{pin_id}.{kind}").unlink(missing_ok=True)


def export_markdown(prompts, answers: dict[str, str], views: dict[str, str], base_url: str, date: str,
                    pins: dict[str, list[dict[str, str]]] | None = None, with_files: bool = False) -> str:
    """The learner's answers for a teacher: each prompt, the link to the learner's own view of its evidence (the
    last one they looked at after its "Show me", else the prompt's preset) on this server's address, the answer,
    and the figures pinned to it (title, caption, the link to the view it was pinned from; with_files: the PNG
    shown and its CSV of numbers linked, as laid out by export_zip)."""
    from urllib.parse import urlencode

    base = base_url.rstrip("/")
    parts = [f"# Diffusion Lab worksheet — {date}\n"]
    for p in prompts:
        page = p.page.split("/")[-1].removesuffix(".py")
        own = views.get(p.number)
        view = own or f"/{page}" + (f"?{urlencode(p.preset)}" if p.preset else "")
        title = page.replace("_", " ").capitalize()
        whose = "the view I looked at" if own else "the prompt's preset view"
        parts.append(f"## {p.number} {p.text}\n\nEvidence: [{title}]({base}{view}) ({whose})\n\n"
                     f"{answers.get(p.number) or '_(no answer yet)_'}\n")
        for k, pin in enumerate((pins or {}).get(p.number, []), 1):
            link = f" ([the view]({base}{pin['view']}))" if pin.get("view") else ""
            lines = [f"**Figure {p.number}.{k}: {pin['title']}**{link}, pinned {pin.get('pinned', '')}"]
            if with_files:
                lines.append(f"![{pin['title']}](figures/{pin['id']}.png)")
                if pin.get("has_csv"):
                    lines.append(f"Numbers plotted: [figures/{pin['id']}.csv](figures/{pin['id']}.csv)")
            if pin.get("caption") and pin["caption"] != pin["title"]:
                lines.append(f"Caption on screen: {pin['caption']}")
            parts.append("\n\n".join(lines) + "\n")
    return "\n".join(parts)


def export_zip(book_id: str, prompts, answers: dict[str, str], base_url: str, date: str,
               root: Path | None = None) -> bytes:
    """answers.md (as export_markdown, the pinned figures shown) and figures/<pin>.png + .csv in one zip."""
    import io
    import zipfile

    book = _read(book_id, root)
    pins = {n: [dict(pin) for pin in items] for n, items in book["pins"].items()}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for items in pins.values():
            for pin in items:
                for kind in ("png", "csv"):
                    data = pin_file(book_id, pin["id"], kind, root)
                    if data is not None:
                        z.writestr(f"figures/{pin['id']}.{kind}", data)
                        pin["has_csv"] = pin.get("has_csv") or kind == "csv"
        z.writestr("answers.md", export_markdown(prompts, answers, book["views"], base_url, date, pins,
                                                 with_files=True))
    return buf.getvalue()


def clear(book_id: str, root: Path | None = None) -> None:
    """Delete the workbook and its pinned figures."""
    import shutil

    path = path_of(book_id, root)
    with _lock:
        path.unlink(missing_ok=True)
        shutil.rmtree(files_of(book_id, root), ignore_errors=True)


# -- the browser's id ------------------------------------------------------------------------------------------------
def browser_id() -> str | None:
    """This browser's workbook id, or None until the browser has sent it (the first run of a page visit)."""
    from .browser_storage import stored

    book_id = stored("diffusion-lab-workbook", "worksheet.book_id", make_id=True)
    return book_id if book_id is not None and BOOK_ID.match(book_id) else None
