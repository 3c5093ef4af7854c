"""Checkpoints as folders of safetensors + JSON; never pickle.

    <dir>/weights.safetensors   model.* and ema.* tensors (EMA weights are what we sample from)
    <dir>/optimizer.safetensors optional: AdamW moments, for exact resume
    <dir>/config.json           {"kind", "model", "schedule", "train", "recommended"}: everything to rebuild it
    <dir>/meta.json             step, data set, sha256 of each weights file, metrics, the command, wall time

Saving. A checkpoint folder is written complete under a temporary name beside it (`.NAME.tmp-*`: sidecars,
weights, config.json, then meta.json last, so a copy whose meta.json is there and whose hashes match is
complete), then swapped in: the old folder is renamed to `.NAME.old-*`, the new one renamed in, the old one
deleted. A crash at any instant leaves at least one complete copy: the folder itself, or an `.old-*` / `.tmp-*`
copy beside it.

Reading never writes: `resolve` finds the newest complete copy where it is, and `read_stable` reads it again
when a save replaces it mid-read. Only the process holding the run's lock (`RunLock`, one trainer per run
folder) puts a copy back and deletes the leftovers (`recover_checkpoint`).

Every file read from a model folder is bounded (`read_json`: size and nesting depth; safetensors headers;
see engine.training.runs for metrics and snapshots): a hostile or broken file gives a CheckpointError for its
folder, never a crash of the page or command that lists it.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import hashlib
import itertools
import json
import os
import re
import shutil
import signal
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, TypeVar

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes, save_file

from .config import ConfigError, ModelConfig, SampleConfig, ScheduleConfig, TrainConfig
from .accel import to_device
from .unet import build_model

WEIGHTS = "weights.safetensors"
OPTIMIZER = "optimizer.safetensors"
CONFIG = "config.json"
META = "meta.json"
PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")  # pickle protocol 2+ and torch.save's zip container
MAX_JSON_BYTES = 4 * 2**20          # config / meta / report / evidence: a real one is a few KB (evidence < 1 MB)
MAX_JSON_DEPTH = 64                 # nesting; the deepest shipped JSON file is 8 levels
MAX_HEADER_BYTES = 100 * 2**20      # a safetensors header (JSON); ours are a few KB
READ_ATTEMPTS = 3                   # reads of a folder a save replaced mid-read (see read_stable)
CRASH_HOOK = "DIFFUSION_LAB_TEST_CRASH_AT"   # tests only: see _crash_point
_COPY = re.compile(r"^\.(?P<name>.+)\.(?:tmp|old)-[A-Za-z0-9_]+$")   # what a save leaves beside folder NAME
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
T = TypeVar("T")
Files = dict[str, "BinaryIO | None"]    # a model folder's files, opened by read_stable


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message says which file and why."""


class RunFolderError(CheckpointError, ValueError):
    """A run folder that cannot be trained in (not writable, too little space, not a run, ...). A ValueError
    too, so callers that turn bad input into a message catch it."""


class RunLocked(CheckpointError):
    """Another trainer (a process, or the dashboard) holds the run folder's lock."""


@dataclass
class Checkpoint:
    """A loaded diffusion model: its EMA network (eval mode), configs and metadata."""

    path: Path
    model: torch.nn.Module
    model_config: ModelConfig
    schedule_config: ScheduleConfig
    train_config: TrainConfig | None
    recommended: SampleConfig
    meta: dict[str, Any]
    raw_model: torch.nn.Module | None = None  # the non-EMA weights, for resuming training
    optimizer_state: dict[str, torch.Tensor] | None = None

    @property
    def sha256(self) -> str:
        return self.meta.get("sha256", {}).get(WEIGHTS, "")

    @property
    def step(self) -> int:
        return int(self.meta.get("step", 0))

    @property
    def name(self) -> str:
        return self.path.name


# -- bounded reading -----------------------------------------------------------------------------------------------
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)   # unrolled: linear even on an unclosed string
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")


def json_depth(data: bytes) -> int:
    """How deeply `data` (JSON text) nests arrays and objects, by a linear scan of the brackets outside strings:
    json.loads itself recurses, so a file nested 100,000 deep would raise RecursionError inside it."""
    brackets = np.frombuffer(_NOT_BRACKET.sub(b"", _STRING.sub(b"", data)), np.uint8)
    if brackets.size == 0:
        return 0
    opens = (brackets == ord("[")) | (brackets == ord("{"))
    return int(np.cumsum(np.where(opens, 1, -1)).max())


def parse_json(data: bytes | str, where: str | Path, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """json.loads with the nesting checked first; CheckpointError naming `where` for anything unreadable."""
    raw = data.encode() if isinstance(data, str) else data
    if raw.count(b"[") + raw.count(b"{") > max_depth and json_depth(raw) > max_depth:   # counting first: cheap
        raise CheckpointError(f"{where} nests more than {max_depth} levels deep; no Diffusion Lab file does, so it "
                              "is not read")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as e:    # JSONDecodeError, UnicodeDecodeError, too-long integers
        raise CheckpointError(f"{where} is not valid JSON ({e})") from None


def read_json(path: str | Path, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """The JSON value in file `path`, read only if at most `max_bytes` and `MAX_JSON_DEPTH` deep: CheckpointError
    otherwise. OSError (missing file, a folder, no permission) is left to the caller."""
    with open(path, "rb") as f:
        return json_from(f, path, max_bytes)


def json_from(f: BinaryIO, where: str | Path, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """read_json on an open binary file."""
    data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise CheckpointError(f"{where} is larger than {max_bytes / 2**20:g} MB; no Diffusion Lab file of its kind "
                              "is, so it is not read")
    return parse_json(data, where)


def _model_json(f: BinaryIO | None, path: Path) -> dict:
    """config.json / meta.json of a model folder (f: the open file, None when missing): a JSON object, else
    CheckpointError."""
    if f is None:
        raise CheckpointError(f"{path.parent} is not a checkpoint: {path.name} is missing")
    try:
        data = json_from(f, path)
    except CheckpointError as e:
        raise CheckpointError(f"{e}; the checkpoint is corrupt") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold a JSON object")
    return data


def _open_or_none(path: Path, stack: contextlib.ExitStack) -> BinaryIO | None:
    try:
        return stack.enter_context(open(path, "rb"))
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


def _read_json(path: Path) -> dict:
    with contextlib.ExitStack() as stack:
        return _model_json(_open_or_none(path, stack), path)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def expected_sha256(meta: dict, folder: Path, filename: str) -> str:
    """meta.json's sha256 of `filename`; CheckpointError when it is missing or not 64 hex digits (a checkpoint
    that cannot be verified is not loaded: skipping the check would load any file put in its place)."""
    hashes = meta.get("sha256")
    if not isinstance(hashes, dict):
        raise CheckpointError(f"{folder / META}'s sha256 is missing or malformed (not a table of file hashes); "
                              "the checkpoint cannot be verified")
    digest = hashes.get(filename)
    if not isinstance(digest, str) or not _HEX64.match(digest):
        what = "missing" if digest is None else "malformed"
        raise CheckpointError(f"{folder / META}'s sha256 for {filename} is {what}; the checkpoint cannot be "
                              "verified")
    return digest.lower()


# -- writing -------------------------------------------------------------------------------------------------------
def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_file_atomic(path: str | Path, write: Callable[[Any], None]) -> None:
    """write(f) into a temp file beside `path` (binary), fsync, then os.replace: a reader or a crash sees the
    old file or the new one, never half of one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)                        # mkstemp makes 0600; reports and evidence are shared files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: Any, indent: int | None = 2) -> None:
    """Write JSON to `path` atomically (see write_file_atomic); indent=None: compact."""
    text = json.dumps(data, indent=indent, sort_keys=True, separators=None if indent else (",", ":"))
    write_file_atomic(path, lambda f: f.write(text.encode()))


def optimizer_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Flatten an optimizer state dict into safetensors-storable tensors + JSON-able hyperparameters."""
    sd = opt.state_dict()
    tensors = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            tensors[f"{pid}.{k}"] = torch.as_tensor(v).detach().cpu().contiguous()
    return tensors, {"param_groups": sd["param_groups"]}


def optimizer_from_tensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: dict[str, Any]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in tensors.items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": groups["param_groups"]})
    for group in opt.param_groups:        # moments in their parameter's memory layout (channels-last on a CPU)
        for p in group["params"]:
            for k, v in opt.state.get(p, {}).items():
                if torch.is_tensor(v) and v.shape == p.shape and v.stride() != p.stride():
                    opt.state[p][k] = torch.empty_like(p).copy_(v)


_crash_counts: dict[str, int] = {}
_old_names = itertools.count()


def _crash_point(name: str, partial: Path | None = None) -> None:
    """Test hook, inert unless the environment sets DIFFUSION_LAB_TEST_CRASH_AT=NAME[:N]: then the process
    SIGKILLs itself the N-th time (default 1) a save reaches point NAME ("mid-file": first cutting the file
    just written, `partial`, to half; "before-meta", "tmp-written", "between-renames", "before-cleanup"), so the
    crash tests can stop a save at the instants a random kill rarely hits."""
    spec = os.environ.get(CRASH_HOOK)
    if not spec or spec.partition(":")[0] != name:
        return
    _crash_counts[name] = _crash_counts.get(name, 0) + 1
    if _crash_counts[name] >= int(spec.partition(":")[2] or 1):
        if partial is not None:
            os.truncate(partial, partial.stat().st_size // 2)
        os.kill(os.getpid(), signal.SIGKILL)


def _copy_sidecars(src: Path, dst: Path, managed: set[str]) -> None:
    """The folder's other files (metrics, snapshots, reports, evidence) into the new copy; dotfiles (temporary
    files of other writers) are not copied."""
    for item in src.iterdir():
        if item.name in managed or item.name.startswith("."):
            continue
        if item.is_dir():
            shutil.copytree(item, dst / item.name)
        else:
            shutil.copy2(item, dst / item.name)


def write_folder(path: str | Path, tensors: dict[str, dict[str, torch.Tensor]], config: dict[str, Any],
                 meta: dict[str, Any], *, overwrite: bool = False, keep_sidecars: bool = False) -> Path:
    """Write a model folder atomically: one safetensors file per entry of `tensors`, config.json, meta.json.

    meta.json gets the sha256 of every weights file and is written last: a copy with a meta.json whose hashes
    match is complete. With overwrite=True an existing folder is replaced: the new one is completed under
    `.NAME.tmp-*`, the old one renamed to `.NAME.old-*`, the new one renamed in, the old one deleted; a crash
    in between leaves a complete copy that `resolve` reads and `recover_checkpoint` puts back. keep_sidecars
    copies the old folder's other files (metrics, snapshots, reports) into the new one, before meta.json.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not overwrite:
        raise CheckpointError(f"{path} already exists; choose another name or pass overwrite")
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    try:
        if path.is_dir() and keep_sidecars:
            _copy_sidecars(path, tmp, set(tensors) | {WEIGHTS, OPTIMIZER, CONFIG, META})
        hashes = {}
        for filename, named in tensors.items():
            save_file(named, str(tmp / filename), metadata={"format": "diffusion-lab"})
            _crash_point("mid-file", tmp / filename)
            hashes[filename] = sha256_file(tmp / filename)
        full_meta = {"sha256": hashes, "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **meta}
        (tmp / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True))
        os.chmod(tmp, 0o755)                                   # mkdtemp makes 0700; checkpoints are shared
        for f in tmp.iterdir():
            if f.is_file():
                os.chmod(f, 0o644)
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        _crash_point("before-meta")
        with open(tmp / META, "w") as f:                       # last: its presence marks a complete copy
            json.dump(full_meta, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp / META, 0o644)
        _fsync_dir(tmp)
        _crash_point("tmp-written")
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}_{next(_old_names)}")
            os.rename(path, old)
            _crash_point("between-renames")
            try:
                os.rename(tmp, path)
            except BaseException:
                os.rename(old, path)                           # put the previous checkpoint back
                raise
            _crash_point("before-cleanup")
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
        _fsync_dir(path.parent)
        return path
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def state_tensors(module: torch.nn.Module, prefix: str = "") -> dict[str, torch.Tensor]:
    """A module's state dict as independent, contiguous CPU tensors (what safetensors can store)."""
    return {f"{prefix}{k}": v.detach().cpu().clone().contiguous() for k, v in module.state_dict().items()}


def save_checkpoint(path: str | Path, *, model: torch.nn.Module, ema_model: torch.nn.Module | None,
                    model_config: ModelConfig, schedule_config: ScheduleConfig, train_config: TrainConfig | None,
                    recommended: SampleConfig | None = None, step: int = 0, meta: dict[str, Any] | None = None,
                    optimizer: torch.optim.Optimizer | None = None, overwrite: bool = False,
                    keep_sidecars: bool = False, include_raw: bool = True) -> Path:
    """Write a diffusion checkpoint folder atomically (see write_folder) and return its path.

    include_raw=False keeps only the EMA weights: half the size, enough to sample (shipped models).
    """
    tensors = state_tensors(model, "model.") if include_raw or ema_model is None else {}
    if ema_model is not None:
        tensors.update(state_tensors(ema_model, "ema."))
    files = {WEIGHTS: tensors}
    opt_groups = None
    if optimizer is not None:
        files[OPTIMIZER], opt_groups = optimizer_to_tensors(optimizer)
    config = {
        "kind": "diffusion",
        "model": model_config.to_dict(),
        "schedule": schedule_config.to_dict(),
        "train": train_config.to_dict() if train_config else None,
        "recommended": (recommended or SampleConfig()).to_dict(),
    }
    full_meta = {"step": step, "optimizer_param_groups": opt_groups, **(meta or {})}
    return write_folder(path, files, config, full_meta, overwrite=overwrite, keep_sidecars=keep_sidecars)


# -- copies a save leaves beside a folder; resolving and recovering ------------------------------------------------
def save_copies(path: str | Path) -> list[Path]:
    """The `.NAME.tmp-*` and `.NAME.old-*` folders saves of `path` left beside it (being written, moved aside,
    or orphaned by a crash)."""
    path = Path(path)
    out = []
    for p in path.parent.glob(f".{glob.escape(path.name)}.*-*"):
        m = _COPY.match(p.name)
        if m and m["name"] == path.name and p.is_dir():
            out.append(p)
    return sorted(out)


def complete_step(folder: Path) -> int | None:
    """The step of a complete checkpoint copy: its meta.json (written last) reads, config.json reads, and every
    file meta.json hashes, weights.safetensors among them, matches its sha256. None for anything less."""
    try:
        meta = _read_json(folder / META)
        _read_json(folder / CONFIG)
        hashes = meta["sha256"]
        if WEIGHTS not in hashes:
            return None
        for filename in hashes:
            if sha256_file(folder / filename) != expected_sha256(meta, folder, filename):
                return None
        return int(meta.get("step", 0))
    except (CheckpointError, OSError, KeyError, TypeError, ValueError):
        return None


def _newest_copy(path: Path) -> tuple[int, Path] | None:
    steps = [(s, c) for c in save_copies(path) if (s := complete_step(c)) is not None]
    return max(steps, default=None)


def resolve(path: str | Path) -> Path:
    """Where checkpoint `path` is to be read now: the folder itself, or (a save between its two renames, or a
    crash there) the newest complete copy beside it; `path` when there is neither. Never writes."""
    return _found(Path(path)) or Path(path)


def _found(path: Path) -> Path | None:
    """resolve's answer, None when there is nothing to read. A swap finishing while the copies are checked
    (they vanish: renamed in, deleted) is looked at again."""
    for _ in range(READ_ATTEMPTS):
        if path.is_dir():
            return path
        newest = _newest_copy(path)
        if newest:
            return newest[1]
        if not save_copies(path):           # nothing beside it: unless it was renamed in meanwhile, no checkpoint
            return path if path.is_dir() else None
    return None


def _identity(folder: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(folder)
    except OSError:
        return None
    return st.st_ino, st.st_ctime_ns


def read_stable(path: str | Path, names: tuple[str, ...], parse: Callable[[Path, Files], T]) -> T:
    """parse(folder, files) on the newest complete copy of checkpoint `path` (see resolve), `files` holding each
    of `names` open for reading (None where missing).

    A training run replaces its folder at every checkpoint. Every file is opened first, in one go, and read
    afterwards: an open file keeps its contents when its folder is swapped out and deleted, so they all come
    from one copy when the folder stood still while they were opened. When it did not (a swap in that instant),
    or a copy beside the folder failed to read (a save may be deleting it), they are opened again, READ_ATTEMPTS
    times at most; then the copy's error, or CheckpointError "being saved, try again". An error of the folder
    itself, standing still, is real and raised at once (OSError as a CheckpointError naming the file).
    """
    path, copy_error = Path(path), None
    for attempt in range(READ_ATTEMPTS):
        if attempt:
            time.sleep(0.02 * attempt)                         # let the save finish its swap
        folder = _found(path)
        if folder is None:
            raise CheckpointError(f"no checkpoint folder at {path}")
        before = _identity(folder)
        with contextlib.ExitStack() as stack:
            try:
                files = {name: _open_or_none(folder / name, stack) for name in names}
                if before is None or _identity(folder) != before:
                    continue                                   # renamed or deleted meanwhile: a swap
                return parse(folder, files)
            except (CheckpointError, OSError) as e:
                error = e if isinstance(e, CheckpointError) else \
                    CheckpointError(f"cannot read {e.filename or folder}: {e.strerror or e}")
                if folder == path and _identity(folder) == before:
                    raise error from None
                copy_error = error
    raise copy_error or CheckpointError(f"{path} is being saved right now (its training run replaces it at every "
                                        "checkpoint); try again in a moment")


def recover_checkpoint(path: str | Path) -> bool:
    """Only under the run's lock (RunLock), when a trainer starts on `path`: put the newest complete checkpoint
    (the folder itself or a copy a crashed save left beside it) in place and delete every other copy.

    Returns True when a copy replaced the folder. A crash in here leaves what a crashed save leaves, so the next
    start recovers again.
    """
    path = Path(path)
    copies = save_copies(path)
    if not copies:
        return False
    newest = _newest_copy(path)
    live = complete_step(path) if path.is_dir() else None
    moved = False
    if newest is not None and (live is None or newest[0] > live):
        if path.exists():
            aside = path.with_name(f".{path.name}.old-{os.getpid()}_{next(_old_names)}")
            os.rename(path, aside)
            copies.append(aside)
        os.rename(newest[1], path)
        copies.remove(newest[1])
        moved = True
    for copy in copies:
        shutil.rmtree(copy, ignore_errors=True)
    _fsync_dir(path.parent)
    return moved


def folder_names(root: str | Path) -> list[str]:
    """Names of the model folders under `root`, sorted: every visible folder, and every checkpoint that is, for
    now, only a complete copy beside its name (a save between its renames, or a crash there). Each name is
    checked after the scan, through resolve, so a save renaming entries during the scan does not hide its run."""
    root = Path(root)
    if not root.is_dir():
        return []
    names = set()
    for d in os.listdir(root):
        m = _COPY.match(d)
        if m or not d.startswith("."):
            names.add(m["name"] if m else d)
    return sorted(n for n in names if _found(root / n) is not None)


# -- one trainer per run folder ------------------------------------------------------------------------------------
def write_problem(path: str | Path, e: OSError) -> str:
    """One line for a failed write: the path, the system's reason, and what to do about it."""
    hint = {errno.ENOSPC: "the disk is full: free some space", errno.EDQUOT: "the disk quota is used up",
            errno.EROFS: "the file system is read-only: choose another folder",
            errno.EACCES: "no permission: choose a folder you can write to",
            errno.EPERM: "no permission: choose a folder you can write to",
            errno.EFBIG: "a file-size limit (ulimit -f) stops the write",
            errno.ENOTDIR: "a part of the path is a file, not a folder",
            errno.EEXIST: "a file of that name is in the way of a folder"}.get(e.errno)
    return f"cannot write {path}: {e.strerror or e}" + (f" ({hint})" if hint else "")


class RunLock:
    """One trainer per run folder: an exclusive flock on `.NAME.lock` beside the folder.

    Beside it, not inside: the folder itself is replaced at every checkpoint. The OS drops a flock when its
    process dies, kill -9 included, so a stale lock never blocks; the file holds "PID HOST" of the holder for
    the message, and is removed on release. Use as a context manager, or acquire() / release().
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.file = self.path.with_name(f".{self.path.name}.lock")
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        """Take the lock; RunLocked naming the holder's PID, RunFolderError when the folder cannot be written."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            while True:
                fd = os.open(self.file, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = os.read(fd, 200).decode(errors="replace").split()
                    os.close(fd)
                    who = f"process {holder[0]}" + (f" on {holder[1]}" if len(holder) > 1 else "") if holder \
                        else "another process"
                    raise RunLocked(f"run {self.path} is being trained by {who}; stop it first") from None
                try:                            # the holder may have removed the file between our open and flock
                    same = os.fstat(fd).st_ino == os.stat(self.file).st_ino
                except FileNotFoundError:
                    same = False
                if same:
                    break
                os.close(fd)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        except OSError as e:
            raise RunFolderError(write_problem(e.filename or self.file, e)) from None
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.file.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def checkpoint_bytes(n_params: int) -> int:
    """Disk size of one training checkpoint: weights + EMA (fp32) and AdamW's two moments, plus JSON."""
    return 16 * n_params + 2**16


def check_writable(out: str | Path, n_params: int) -> None:
    """Before training into run folder `out`: its parent exists and takes a file (and `out` too, when it exists),
    the disk has room for ~3 checkpoints (a save keeps the old one until the new one is complete; plus
    sidecars), and no file-size limit is below one weights file. RunFolderError naming the path otherwise."""
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        for folder in (out.parent, out) if out.is_dir() else (out.parent,):
            fd, probe = tempfile.mkstemp(dir=folder, prefix=".probe-", suffix=".tmp")
            try:
                os.write(fd, b"\0" * 4096)
                os.fsync(fd)
            finally:
                os.close(fd)
                os.unlink(probe)
    except OSError as e:
        raise RunFolderError(write_problem(e.filename or out.parent, e)) from None
    need, free = 3 * checkpoint_bytes(n_params), shutil.disk_usage(out.parent).free
    if free < need:
        raise RunFolderError(f"{out.parent} has {free / 2**20:.1f} MB free; this model's checkpoints need about "
                             f"{need / 2**20:.1f} MB (3 x {checkpoint_bytes(n_params) / 2**20:.1f} MB: a save keeps "
                             "the previous checkpoint until the new one is complete). Free some space or choose "
                             "another folder")
    import resource

    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY and limit < 8 * n_params + 2**16:
        raise RunFolderError(f"this process may not write files over {limit} bytes (ulimit -f); a weights file of "
                             f"this model is about {8 * n_params + 2**16} bytes. Raise the limit to train into {out}")


# -- loading -------------------------------------------------------------------------------------------------------
def read_configs(path: str | Path) -> tuple[dict, dict]:
    """(config.json, meta.json) of a checkpoint folder (or its newest complete copy), as JSON objects."""
    return read_stable(path, (CONFIG, META), configs_from)


def configs_from(folder: Path, files: Files) -> tuple[dict, dict]:
    """(config.json, meta.json) from a model folder's files as read_stable opened them."""
    if not folder.is_dir():
        raise CheckpointError(f"no checkpoint folder at {folder}")
    return _model_json(files[CONFIG], folder / CONFIG), _model_json(files[META], folder / META)


def read_tensors(folder: str | Path, filename: str = WEIGHTS, verify: bool = True) -> dict[str, torch.Tensor]:
    """The tensors of one weights file in a model folder, checked against meta.json's sha256."""
    def parse(f: Path, files: Files) -> dict[str, torch.Tensor]:
        _, meta = configs_from(f, files)
        return _tensors_from(files[filename], f / filename, expected_sha256(meta, f, filename) if verify else None)

    return read_stable(folder, (CONFIG, META, filename), parse)


def _load_safetensors(path: Path, expected_sha: str | None) -> dict[str, torch.Tensor]:
    with contextlib.ExitStack() as stack:
        return _tensors_from(_open_or_none(path, stack), path, expected_sha)


def _tensors_from(f: BinaryIO | None, path: Path, expected_sha: str | None) -> dict[str, torch.Tensor]:
    """One safetensors file (f: open, None when missing), read once into memory so the hash and the tensors come
    from the same bytes, and checked: not a pickle, header bounded and valid, not truncated, the expected
    sha256, every value finite."""
    if f is None:
        raise CheckpointError(f"{path.parent} is not a checkpoint: {path.name} is missing")
    data = f.read()
    if not data:
        raise CheckpointError(f"{path} is empty (0 bytes): the checkpoint was never completely written")
    # A safetensors file is an 8-byte little-endian header length followed by a JSON object ('{'). Only when
    # that shape is absent do we look for pickle / zip magic: a header length can itself begin with 0x80.
    looks_safetensors = len(data) >= 9 and data[8:9] == b"{"
    if not looks_safetensors and data.startswith(PICKLE_MAGIC):
        raise CheckpointError(f"{path} is a pickle / torch.save file, not safetensors. Diffusion Lab never "
                              "unpickles files, because loading a pickle can run arbitrary code.")
    if not looks_safetensors:
        raise CheckpointError(f"{path} is not a safetensors file (it does not start with a header)")
    header_len = int.from_bytes(data[:8], "little")
    if header_len > MAX_HEADER_BYTES:
        raise CheckpointError(f"{path} declares a {header_len / 2**20:.0f} MB header (ours are a few KB); it is not "
                              "read")
    if header_len > len(data) - 8:
        raise CheckpointError(f"{path} is truncated or not a safetensors file (header larger than the file)")
    try:
        header = parse_json(data[8:8 + header_len], path)
        data_end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    except (CheckpointError, AttributeError, KeyError, TypeError, IndexError, ValueError):
        raise CheckpointError(f"{path} is not a safetensors file (its header is not valid)") from None
    if not isinstance(data_end, int) or 8 + header_len + data_end > len(data):
        raise CheckpointError(f"{path} is truncated: {len(data)} bytes on disk, {8 + header_len + data_end} expected")
    if expected_sha is not None:
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected_sha:
            raise CheckpointError(f"{path} does not match the sha256 recorded in meta.json "
                                  f"({actual[:12]}… vs {expected_sha[:12]}…): the file is corrupt or was replaced")
    try:
        tensors = load_safetensors_bytes(data)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path} could not be read as safetensors ({e})") from None
    for name, v in tensors.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise CheckpointError(f"{path}: tensor {name} holds NaN or infinite values, so the model cannot be "
                                  "used (the run diverged before this save, or the file was altered). Use an "
                                  "earlier checkpoint, or retrain with a lower learning rate")
    return tensors


def load_state(model: torch.nn.Module, tensors: dict[str, torch.Tensor], prefix: str, path: Path) -> None:
    """Load `prefix*` tensors into `model`, or raise CheckpointError saying what does not match."""
    state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    if not state:
        raise CheckpointError(f"{path} holds no '{prefix}*' weights")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
             if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensors (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[0]})")
        if wrong:
            parts.append(f"{len(wrong)} with other shapes (e.g. {wrong[0]})")
        raise CheckpointError(f"config.json in {path.parent} does not match its weights: " + "; ".join(parts)
                              + ". The weights come from a different architecture.")
    model.load_state_dict(state)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu", *, with_training_state: bool = False,
                    verify: bool = True) -> Checkpoint:
    """Load a diffusion checkpoint folder (or, mid-save, its newest complete copy; see read_stable); raises
    CheckpointError naming the bad file and the reason. Checkpoint.path is `path` as given."""
    ck = read_stable(path, (CONFIG, META, WEIGHTS, OPTIMIZER),
                     lambda folder, files: _checkpoint_from(folder, files, with_training_state, verify))
    ck.path = Path(path)
    to_device(ck.model, device).eval()       # the fast form (UpConv; channels-last on a CPU): see accel.to_device
    if ck.raw_model is not None:
        ck.raw_model = ck.raw_model.to(device)
    return ck


def _checkpoint_from(path: Path, files: Files, with_training_state: bool, verify: bool) -> Checkpoint:
    config, meta = configs_from(path, files)
    if config.get("kind", "diffusion") != "diffusion":
        raise CheckpointError(f"{path} holds a {config.get('kind')!r} model, not a diffusion model")
    try:
        mc = ModelConfig.from_dict(config["model"])
        sc = ScheduleConfig.from_dict(config["schedule"])
        tc = TrainConfig.from_dict(config["train"]) if config.get("train") else None
        rec = SampleConfig.from_dict(config.get("recommended") or {})
    except (KeyError, TypeError, ConfigError) as e:
        raise CheckpointError(f"{path / CONFIG} is invalid: {e}") from None
    tensors = _tensors_from(files[WEIGHTS], path / WEIGHTS, expected_sha256(meta, path, WEIGHTS) if verify else None)
    model = build_model(mc)
    has_ema = any(k.startswith("ema.") for k in tensors)
    load_state(model, tensors, "ema." if has_ema else "model.", path / WEIGHTS)
    ck = Checkpoint(path, model, mc, sc, tc, rec, meta)
    if with_training_state:
        raw = build_model(mc)
        load_state(raw, tensors, "model.", path / WEIGHTS)
        ck.raw_model = raw
        if files[OPTIMIZER] is not None:
            ck.optimizer_state = _tensors_from(files[OPTIMIZER], path / OPTIMIZER,
                                               expected_sha256(meta, path, OPTIMIZER) if verify else None)
    return ck


def list_checkpoints(root: str | Path) -> list[dict[str, Any]]:
    """Checkpoint folders directly under `root` (see folder_names), by name.

    Each entry: path, name, step, kind, metrics, mtime; folders that fail to parse are listed with `error`, the
    others are unaffected. Folders without a config.json are left out.
    """
    root = Path(root)
    out = []
    for name in folder_names(root):
        d = root / name
        entry: dict[str, Any] = {"path": str(d), "name": name}
        try:
            found = read_stable(d, (CONFIG, META), _listing_from)
        except CheckpointError as e:
            entry["error"] = str(e)
        else:
            if found is None:
                continue
            entry.update(found)
        out.append(entry)
    return out


def _listing_from(folder: Path, files: Files) -> dict[str, Any] | None:
    if files[CONFIG] is None and folder.is_dir():
        return None                                            # a folder, but not a model's
    config, meta = configs_from(folder, files)
    return dict(kind=config.get("kind", "diffusion"), step=meta.get("step", 0), metrics=meta.get("metrics", {}),
                mtime=os.fstat(files[META].fileno()).st_mtime)
