"""Evidence that ships with a model: measurements a page would otherwise make a learner wait for.

A worksheet prompt's "Show me" must land with its evidence drawn (recognisability curves, the class x guidance
grid, sampler speed and quality, loss per noise level, CLIP sweeps, ...). Those cost 10-250 s on a 2-core CPU,
so `python -m engine precompute --checkpoint DIR` measures them once with the engine's own functions and
stores the results beside the model, in DIR/evidence/<panel>.json; a page looks its settings up there and
computes only what was not measured (new runs, other settings), with progress.

Each panel file holds entries keyed by the exact parameters of the measurement:
    {"panel": name, "entries": {key: {"params": {...}, "result": {...}, "seconds": s, "measured": {...}}}}
`measured` records the command, the machine and the date. Results are plain JSON (lists, numbers, strings);
integer dict keys (per-class results) come back as ints. Files are written atomically and read defensively:
an unreadable panel file counts as "not measured", never as an error page.
"""
from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

from .cache import cache_key
from .checkpoints import CheckpointError, read_json, write_json_atomic

FOLDER = "evidence"
MAX_BYTES = 2 * 2**20          # one panel file; a bigger one is not read (a shipped panel is a few KB to ~200 KB)


def _restore_int_keys(obj: Any) -> Any:
    """JSON turns {0: ...} into {"0": ...}; per-class results want their int keys back."""
    if isinstance(obj, dict):
        return {(int(k) if isinstance(k, str) and k.lstrip("-").isdigit() else k): _restore_int_keys(v)
                for k, v in obj.items()}
    if isinstance(obj, list):
        if not obj or not isinstance(obj[0], (dict, list)):     # a list of numbers (a curve, a row of pixels)
            return obj
        return [_restore_int_keys(v) for v in obj]
    return obj


def panel_path(model_dir: str | Path, panel: str) -> Path:
    if not panel.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"panel name must be letters, digits, '_' or '-', got {panel!r}")
    return Path(model_dir) / FOLDER / f"{panel}.json"


def read_panel(model_dir: str | Path, panel: str) -> dict:
    """All entries of one panel ({} when the model has none, or the file is unreadable or too large)."""
    path = panel_path(model_dir, panel)
    try:
        data = read_json(path, MAX_BYTES)          # bounded in size and nesting (see checkpoints.read_json)
    except (OSError, CheckpointError):
        return {}
    entries = data.get("entries") if isinstance(data, dict) else None
    return entries if isinstance(entries, dict) else {}


def params_key(params: dict) -> str:
    return cache_key(**params)


def lookup(model_dir: str | Path, panel: str, **params) -> dict | None:
    """The stored entry measured with exactly these parameters ({"result", "seconds", "measured", "params"}),
    or None if it was not measured."""
    entry = read_panel(model_dir, panel).get(params_key(params))
    if not isinstance(entry, dict) or "result" not in entry:
        return None
    return _restore_int_keys(entry)


def machine() -> str:
    """The machine a measurement ran on, as a learner would name it."""
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} GPU"
    return f"{os.cpu_count()}-core CPU ({platform.machine()}), {torch.get_num_threads()} torch threads"


def record(model_dir: str | Path, panel: str, params: dict, result: Any, seconds: float, command: str) -> Path:
    """Store (or replace) one measurement of `panel` with these parameters, keeping the panel's other entries."""
    path = panel_path(model_dir, panel)
    entries = read_panel(model_dir, panel)
    entries[params_key(params)] = {
        "params": params, "result": result, "seconds": round(float(seconds), 2),
        "measured": {"command": command, "machine": machine(), "date": time.strftime("%Y-%m-%d")}}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"panel": panel, "entries": entries}, indent=None)
    return path


def measure(model_dir: str | Path, panel: str, params: dict, fn, command: str) -> dict:
    """Run fn() (returning a JSON-able result), time it and record it; returns the stored entry."""
    t0 = time.perf_counter()
    result = fn()
    record(model_dir, panel, params, result, time.perf_counter() - t0, command)
    return lookup(model_dir, panel, **params)
