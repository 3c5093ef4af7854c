"""The runs folder and the shipped models, read-only: the runs table, a run's metrics log and its fixed-seed
snapshots, and what the Training page shows of a shipped model's own training history.

A run folder is a checkpoint (see engine.checkpoints) plus two sidecars written while it trains:
metrics.jsonl (one JSON record per logged step) and snapshots/step-NNNNNNN.npy (uint8 (20, 28, 28) films).
A shipped model (checkpoints/default, ...) is such a folder too, plus report.json from `python -m engine
evaluate` and, where measured, evidence/<panel>.json (see engine.evidence).
Nothing here writes: a folder a save is replacing is read from its newest complete copy (checkpoints.read_stable).
Every file is read bounded (size, JSON nesting, array shape), so one broken or hostile folder lists with an
`error` and leaves the others, and the pages, unaffected.
"""
from __future__ import annotations

import functools
import math
import os
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .. import checkpoints as ck
from ..config import ModelConfig, TrainConfig

METRICS = "metrics.jsonl"
SNAPSHOTS = "snapshots"
REPORT = "report.json"
DEFAULT_RUNS_ROOT = Path(__file__).resolve().parents[2] / "checkpoints" / "runs"
DEFAULT_SHIPPED_ROOT = Path(__file__).resolve().parents[2] / "checkpoints"
# The shipped diffusion models the runs table lists, as folders under the shipped root; a missing one (e.g. the
# T = 1 `one-step` model before it ships) is left out, a broken one is listed with its error.
SHIPPED_MODELS = ("default", "fast", "distilled", "flow", "ablations/deep", "ablations/no-skip", "ablations/no-time",
                  "ablations/plain-cnn", "one-step")
BUCKET_PANEL = "bucket_loss"           # evidence/bucket_loss.json: unweighted eps-MSE per t/T decile


MAX_METRICS_BYTES = 32 * 2**20      # a 12,000-step run logs ~1 MB; a bigger log is read from its tail
MAX_LINE_BYTES = 64 * 2**10         # one record (a judged step with per-class figures is ~300 bytes)
MAX_SNAPSHOT_IMAGES = 1000          # a film frame holds 20 (10 classes x 2)


def parse_record(line: bytes | str) -> dict | None:
    """One metrics.jsonl line as a dict, or None when it is torn, over-long, too deep or not an object."""
    raw = line.encode() if isinstance(line, str) else line
    if len(raw) > MAX_LINE_BYTES or not raw.strip():
        return None
    try:
        record = ck.parse_json(raw, METRICS)
    except ck.CheckpointError:
        return None
    return record if isinstance(record, dict) else None


def read_metrics(path: str | Path) -> list[dict]:
    """Records of a metrics.jsonl; a torn last line (crash mid-write) and unreadable lines are skipped. A log over
    MAX_METRICS_BYTES is read from its tail (the latest records)."""
    try:
        with open(path, "rb") as f:
            return _records(f)
    except FileNotFoundError:
        return []


def _records(f: BinaryIO | None) -> list[dict]:
    if f is None:
        return []
    size = os.fstat(f.fileno()).st_size
    if size > MAX_METRICS_BYTES:
        f.seek(size - MAX_METRICS_BYTES)
        f.readline()                                           # the cut first line
    return [r for r in map(parse_record, f.read(MAX_METRICS_BYTES).splitlines()) if r is not None]


def load_snapshots(run_folder: str | Path) -> list[tuple[int, np.ndarray]]:
    """The run's fixed-seed snapshots as [(step, uint8 array (N, 28, 28)), ...] in step order; unreadable files,
    and files that are not such an array with N <= MAX_SNAPSHOT_IMAGES (checked by size before loading), are
    skipped."""
    snaps = []
    for p in sorted((Path(run_folder) / SNAPSHOTS).glob("step-*.npy")):
        try:
            if p.stat().st_size > MAX_SNAPSHOT_IMAGES * 28 * 28 + 4096:     # the .npy header is < 4 KB
                continue
            a = np.load(p, allow_pickle=False)
            step = int(p.stem.split("-")[1])
        except (ValueError, OSError, EOFError):
            continue
        if isinstance(a, np.ndarray) and a.dtype == np.uint8 and a.ndim == 3 and a.shape[1:] == (28, 28) \
                and a.shape[0] <= MAX_SNAPSHOT_IMAGES:
            snaps.append((step, a))
    return snaps


@functools.lru_cache(maxsize=64)
def model_size(model_config: ModelConfig) -> tuple[int, float]:
    """(parameters, forward MFLOP per image) of an architecture; cached, since the runs table asks every rerun."""
    from ..summary import total_flops
    from ..unet import build_model, count_parameters

    model = build_model(model_config)
    return count_parameters(model), round(total_flops(model) / 1e6, 1)


def read_report(folder: str | Path) -> dict:
    """The folder's evaluate report (report.json), or {} when it has none or it is unreadable or too large."""
    try:
        with open(Path(folder) / REPORT, "rb") as f:
            return _report(f, Path(folder) / REPORT)
    except OSError:
        return {}


def _report(f: BinaryIO | None, where: Path) -> dict:
    try:
        report = ck.json_from(f, where) if f is not None else {}
    except ck.CheckpointError:
        return {}
    return report if isinstance(report, dict) else {}


def final_loss(metrics: list[dict], last: int = 10, ndigits: int | None = 4) -> float | None:
    """Mean of the last `last` logged losses (one logged loss is one batch's: the mean evens out the noise),
    rounded to `ndigits` (None: unrounded, for ratios of small losses)."""
    losses = [r["loss"] for r in metrics if isinstance(r.get("loss"), (int, float))]
    if not losses:
        return None
    mean = sum(losses[-last:]) / len(losses[-last:])
    return mean if ndigits is None else round(mean, ndigits)


def _model_row(folder: Path, name: str, source: str) -> dict:
    """One row of the runs table; a folder that does not parse gets an `error` instead of figures."""
    row: dict = {"name": name, "source": source, "path": str(folder)}
    try:
        row.update(ck.read_stable(folder, (ck.CONFIG, ck.META, METRICS, REPORT), _figures))
    except (ck.CheckpointError, KeyError, TypeError, ValueError, RuntimeError) as e:
        row["error"] = str(e) or type(e).__name__
    return row


def _figures(folder: Path, files: ck.Files) -> dict:
    """The runs table's figures of one model folder, from its files as read_stable opened them.

    Judge accuracy and Frechet ratio come from report.json when it was measured at this checkpoint's step
    (1,000 samples for a shipped model); otherwise judge accuracy is the last one logged during training
    (a few fixed-seed samples). `judged_on` says which.
    """
    config, meta = ck.configs_from(folder, files)
    mc = ModelConfig.from_dict(config["model"])
    tc = TrainConfig.from_dict(config["train"])
    T = int(config["schedule"]["T"])
    metrics = _records(files[METRICS])
    judged = [r for r in metrics if "judge_accuracy" in r]
    wall = float(meta.get("wall_time_s", 0.0))
    step = int(meta.get("step", 0))
    params, mflop = model_size(mc)
    report = _report(files[REPORT], folder / REPORT)
    if "accuracy" in report and report.get("step", step) == step:
        accuracy, frechet = float(report["accuracy"]), report.get("frechet_ratio_to_baseline")
        judged_on = f"report.json ({report.get('n_samples', '?')} samples)"
    elif judged:
        accuracy, frechet = judged[-1]["judge_accuracy"], None
        judged_on = f"training log (step {judged[-1].get('step')})"
    else:
        accuracy, judged_on, frechet = None, None, None
    return dict(step=step, total=tc.steps, T=T, params=params, mflop_per_image=mflop, wall_time_s=round(wall, 1),
                images_per_s=round(meta.get("images_seen", 0) / wall, 1) if wall else None,
                final_loss=final_loss(metrics), judge_accuracy=accuracy, judged_on=judged_on,
                frechet_ratio=frechet, width=mc.base_channels, depth=mc.num_res_blocks, arch=mc.arch,
                device=meta.get("device"), interrupted=step < tc.steps,
                objective="flow" if config["schedule"].get("kind") == "flow" else "eps")   # what final_loss measures


def _run_row(folder: Path) -> dict:
    return _model_row(folder, folder.name, "run")


def list_runs(runs_root: str | Path = DEFAULT_RUNS_ROOT) -> list[dict]:
    """Every run folder, by name: name, source ("run"), path, step / total, interrupted?, T, params, MFLOP per
    image, wall time, images/s, final loss (mean of the last 10 logged), judge accuracy (and `judged_on`),
    Frechet ratio (None without a report), width, depth, arch, device; a broken folder: name, path, error."""
    root = Path(runs_root)
    return [_run_row(root / name) for name in ck.folder_names(root)]


def list_shipped(shipped_root: str | Path = DEFAULT_SHIPPED_ROOT, names: tuple[str, ...] = SHIPPED_MODELS
                 ) -> list[dict]:
    """The shipped models present under `shipped_root`, in the order of `names`, as rows like `list_runs`'
    (source "shipped", name = the folder's own name, e.g. "no-time"). Judge accuracy and Frechet ratio are the
    model's report.json (`accuracy`, `frechet_ratio_to_baseline`). A missing folder is left out; one that does
    not parse (say an unreadable meta.json) is listed with `error` and the others are unaffected."""
    root = Path(shipped_root)
    rows = []
    for rel in names:
        folder = root / rel
        if folder.is_dir():
            rows.append(_model_row(folder, Path(rel).name, "shipped"))
    return rows


# -- a model's recorded training history (the Training page's panels before anyone trains) -------------------------
def loss_history(metrics: list[dict], skip_until: int = 0, smooth: int = 20) -> dict:
    """The logged losses after step `skip_until` (e.g. the learning-rate warm-up, whose first losses of ~0.7
    would squash a chart of the rest) and their running mean over `smooth` logged points.

    Returns {"steps", "loss"} (the kept records), {"smooth_steps", "smoothed"} (len - k + 1 points, each the mean
    of the k records ending there), "k", and {"skipped_steps", "skipped_loss"} (the left-out records)."""
    records = [(int(r["step"]), float(r["loss"])) for r in metrics
               if isinstance(r.get("loss"), (int, float)) and math.isfinite(r["loss"]) and "step" in r]
    kept = [(s, v) for s, v in records if s > skip_until]
    skipped = [(s, v) for s, v in records if s <= skip_until]
    steps = [s for s, _ in kept]
    loss = [v for _, v in kept]
    k = min(smooth, len(loss))
    smoothed = np.convolve(loss, np.ones(k) / k, mode="valid").tolist() if k else []
    return {"steps": steps, "loss": loss, "k": k, "smooth_steps": steps[k - 1:] if k else [], "smoothed": smoothed,
            "skipped_steps": [s for s, _ in skipped], "skipped_loss": [v for _, v in skipped]}


def judge_snapshots(judge, snapshots: list[tuple[int, np.ndarray]]) -> list[dict]:
    """The judge's reading of each fixed-seed snapshot (uint8 (10K, 28, 28), K per class in class order 0..9,
    as `TrainingRun.snapshot` writes them): [{"step", "accuracy", "per_class" {c: acc}, "not_a_digit",
    "correct" (bool per image)}, ...]. An abstention ("not a digit") counts as not recognised."""
    import torch

    from ..judge import NOT_A_DIGIT, predict
    from ..sampling import class_labels

    out = []
    for step, images in snapshots:
        n = images.shape[0]
        if n % 10:
            raise ValueError(f"snapshot at step {step} holds {n} images; expected K per class for 10 classes")
        labels = class_labels(n // 10)                                                    # (N,) 0,0,1,1,...
        x = torch.from_numpy(np.ascontiguousarray(images)).float().div(127.5).sub(1.0)[:, None]  # (N, 1, 28, 28)
        probs, _ = predict(judge, x)                                                      # (N, 11)
        pred = probs.argmax(1)
        correct = pred == labels
        out.append({"step": int(step), "accuracy": float(correct.float().mean()),
                    "per_class": {c: float(correct[labels == c].float().mean()) for c in range(10)},
                    "not_a_digit": float((pred == NOT_A_DIGIT).float().mean()),
                    "correct": correct.tolist()})
    return out


def bucket_loss(model_dir: str | Path) -> dict | None:
    """The model's measured loss per noise bucket (evidence/bucket_loss.json), or None if not measured.

    Returns the stored entry with result {"buckets": [[lo, hi], ...] (fractions of T), "mse": [...] (unweighted
    eps-MSE per bucket), "n_images"}; where several were measured, the one on the most images. Entries whose
    result is malformed are ignored (an unreadable file counts as not measured, see engine.evidence)."""
    from .. import evidence

    best = None
    for entry in evidence.read_panel(model_dir, BUCKET_PANEL).values():
        if not isinstance(entry, dict) or not _valid_buckets(entry.get("result")):
            continue
        n = entry["result"].get("n_images")
        if best is None or (isinstance(n, int) and n > (best["result"].get("n_images") or 0)):
            best = entry
    return best


def _valid_buckets(result) -> bool:
    if not isinstance(result, dict):
        return False
    buckets, mse = result.get("buckets"), result.get("mse")
    return (isinstance(buckets, list) and isinstance(mse, list) and len(buckets) == len(mse) > 0
            and all(isinstance(b, list) and len(b) == 2 and all(isinstance(v, (int, float)) for v in b)
                    for b in buckets)
            and all(isinstance(v, (int, float)) and math.isfinite(v) for v in mse))
