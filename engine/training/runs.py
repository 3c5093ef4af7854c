"""The runs folder, read-only: the runs table, a run's metrics log and its fixed-seed snapshots.

A run folder is a checkpoint (see engine.checkpoints) plus two sidecars written while it trains:
metrics.jsonl (one JSON record per logged step) and snapshots/step-NNNNNNN.npy (uint8 (20, 28, 28) films).
Nothing here writes, except `recover_checkpoint` putting back a copy an interrupted save moved aside.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from .. import checkpoints as ck
from ..config import ModelConfig, TrainConfig

METRICS = "metrics.jsonl"
SNAPSHOTS = "snapshots"
DEFAULT_RUNS_ROOT = Path(__file__).resolve().parents[2] / "checkpoints" / "runs"


def read_metrics(path: str | Path) -> list[dict]:
    """Records of a metrics.jsonl; a torn last line (crash mid-write) is skipped."""
    out = []
    p = Path(path)
    if not p.exists():
        return out
    for line in p.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def load_snapshots(run_folder: str | Path) -> list[tuple[int, np.ndarray]]:
    """The run's fixed-seed snapshots as [(step, uint8 array (N, 28, 28)), ...] in step order; unreadable
    files are skipped."""
    snaps = []
    for p in sorted((Path(run_folder) / SNAPSHOTS).glob("step-*.npy")):
        try:
            snaps.append((int(p.stem.split("-")[1]), np.load(p, allow_pickle=False)))
        except (ValueError, OSError):
            continue
    return snaps


@functools.lru_cache(maxsize=64)
def model_size(model_config: ModelConfig) -> tuple[int, float]:
    """(parameters, forward MFLOP per image) of an architecture; cached, since the runs table asks every rerun."""
    from ..summary import total_flops
    from ..unet import build_model, count_parameters

    model = build_model(model_config)
    return count_parameters(model), round(total_flops(model) / 1e6, 1)


def _run_row(folder: Path) -> dict:
    """One row of the runs table; a folder that does not parse gets an `error` instead of figures."""
    row: dict = {"name": folder.name, "path": str(folder)}
    try:
        config, meta = ck.read_configs(folder)
        mc = ModelConfig.from_dict(config["model"])
        tc = TrainConfig.from_dict(config["train"])
        metrics = read_metrics(folder / METRICS)
        losses = [r["loss"] for r in metrics if "loss" in r]
        judged = [r["judge_accuracy"] for r in metrics if "judge_accuracy" in r]
        wall = float(meta.get("wall_time_s", 0.0))
        params, mflop = model_size(mc)
        row.update(step=int(meta.get("step", 0)), total=tc.steps, params=params, mflop_per_image=mflop,
                   wall_time_s=round(wall, 1),
                   images_per_s=round(meta.get("images_seen", 0) / wall, 1) if wall else None,
                   final_loss=round(sum(losses[-10:]) / len(losses[-10:]), 4) if losses else None,
                   judge_accuracy=judged[-1] if judged else None, width=mc.base_channels,
                   depth=mc.num_res_blocks, arch=mc.arch)
        row["interrupted"] = row["step"] < tc.steps
    except (ck.CheckpointError, KeyError, TypeError, ValueError) as e:
        row["error"] = str(e)
    return row


def list_runs(runs_root: str | Path = DEFAULT_RUNS_ROOT) -> list[dict]:
    """Every run folder, by name: name, path, step / total, interrupted?, params, MFLOP per image, wall time,
    images/s, final loss (mean of the last 10 logged), last judge accuracy, width, depth, arch."""
    root = Path(runs_root)
    if not root.is_dir():
        return []
    rows = []
    for d in sorted(root.iterdir()):
        if not d.is_dir() or d.name.startswith("."):
            continue
        ck.recover_checkpoint(d)
        rows.append(_run_row(d))
    return rows
