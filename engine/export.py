"""Shipping a trained model, and the evidence stored beside it ("evidence ships with the model"):

- `export_checkpoint`: a slim copy of a run for shipping (EMA weights only), its sidecars kept;
- `precompute_samples`: the samples the pages open with, stored in the model's folder;
- `evaluate_style`: a style model's requested-vs-measured compliance, recorded in the model's report.json.

The CLI's `export`, `precompute` and `style-eval` commands are thin wrappers around these.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .checkpoints import load_checkpoint, save_checkpoint, write_json_atomic

EXPORT_SIDECARS = ("metrics.jsonl", "snapshots", "report.json", "reports", "PROVENANCE.md")
PRECOMPUTED = "precomputed"
REPORT = "report.json"


@dataclass(frozen=True)
class Exported:
    path: Path          # the exported folder
    step: int           # the training step of the weights
    bytes: int          # total size of the folder


def _copy(src: Path, dst: Path) -> None:
    (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)


def export_checkpoint(src: str | Path, out: str | Path, recommend: dict | None = None, command: str = "",
                      overwrite: bool = False) -> Exported:
    """A slim, shippable copy of checkpoint `src` in `out`: EMA weights only (what sampling uses), no optimiser
    state; the sidecars (EXPORT_SIDECARS) are kept. `out` may be `src` itself (with overwrite=True).

    recommend: SampleConfig fields to record as the recommended settings (e.g. the guidance the evaluation
    supports best); the rest stay the checkpoint's. Cached samples (precomputed/) are not kept: they belong to
    the old recommended settings; rerun `precompute_samples`. Earlier export commands are remembered in meta.
    """
    src = Path(src)
    ck = load_checkpoint(src)
    meta = {k: v for k, v in ck.meta.items() if k not in ("sha256", "saved_at", "optimizer_param_groups")}
    if "export_command" in meta:                              # re-exporting a shipped copy keeps its history
        meta.setdefault("earlier_exports", []).append(meta["export_command"])
    meta["exported_from"] = str(src)
    meta["export_command"] = command
    recommended = ck.recommended.replace(**(recommend or {}))
    with tempfile.TemporaryDirectory() as staging:           # sidecars first: `out` may be `src` itself
        kept = [item.name for item in src.iterdir() if item.name in EXPORT_SIDECARS]
        for name in kept:
            _copy(src / name, Path(staging) / name)
        path = save_checkpoint(out, model=ck.model, ema_model=ck.model, model_config=ck.model_config,
                               schedule_config=ck.schedule_config, train_config=ck.train_config,
                               recommended=recommended, step=ck.step, meta=meta, include_raw=False,
                               overwrite=overwrite)
        for name in kept:
            _copy(Path(staging) / name, path / name)
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return Exported(path, ck.step, size)


def precompute_samples(checkpoint: str | Path) -> tuple[int, float, Path]:
    """The samples the pages open with, cached in `checkpoint`/precomputed so a first visit needs no sampling:
    the CLIP page's 10 per class, seeds 0..99, at the recommended settings. Returns (count, seconds, folder)."""
    from .cache import SampleCache
    from .sampling import class_labels, sample_cached

    ck = load_checkpoint(checkpoint)
    cache = SampleCache(Path(checkpoint) / PRECOMPUTED, max_bytes=50 * 2**20)
    labels = class_labels(10)
    t0 = time.perf_counter()
    sample_cached(ck, labels, ck.recommended.replace(seed=0), seeds=list(range(len(labels))), cache=cache)
    return len(labels), time.perf_counter() - t0, cache.root


def evaluate_style(checkpoint: str | Path, sampling: dict | None = None, seeds: int = 2, command: str = "") -> dict:
    """Requested vs measured thickness and slant of a style model (style.compliance, judged), recorded under
    "style" in the model's report.json (written atomically; the report's other sections are kept).

    sampling: SampleConfig fields over the checkpoint's recommended ones. Returns the style report.
    """
    from .judge import load_judge
    from .style import compliance

    ck = load_checkpoint(checkpoint)
    t0 = time.perf_counter()
    rep = compliance(ck, load_judge(), ck.recommended.replace(**(sampling or {})), seeds=seeds)
    rep.update(seconds=round(time.perf_counter() - t0, 1), command=command)
    path = Path(checkpoint) / REPORT
    report = json.loads(path.read_text()) if path.exists() else {}
    report["style"] = rep
    write_json_atomic(path, report)
    return rep

