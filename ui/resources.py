"""Process-wide resources behind st.cache_resource (one per server, shared by every session).

Everything returned here is either immutable in use (models in eval mode, data tensors, schedules) or
thread-safe by construction (the Trainer guards its state with a lock; the SampleCache with per-key locks).
"""
from __future__ import annotations

import os
from pathlib import Path

import streamlit as st
import torch

from engine.cache import SampleCache
from engine.checkpoints import CheckpointError, list_checkpoints, load_checkpoint
from engine.config import ScheduleConfig
from engine.data import load as load_data
from engine.judge import JUDGE_PATH, load_judge
from engine.schedule import NoiseSchedule
from engine.training.runs import DEFAULT_RUNS_ROOT
from engine.training.trainer import Trainer

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_ROOT = ROOT / "checkpoints"
RUNS_ROOT = Path(os.environ.get("DIFFUSION_LAB_RUNS", DEFAULT_RUNS_ROOT))

# Page computations run on the script threads; keep them to one torch thread so 30 tabs do not
# oversubscribe a laptop's cores (the trainer thread sets its own count at start).
torch.set_num_threads(1)


@st.cache_resource
def get_trainer() -> Trainer:
    return Trainer(RUNS_ROOT, judge_loader=lambda: load_judge(JUDGE_PATH))


@st.cache_resource
def get_sample_cache() -> SampleCache:
    """The on-disk sample cache, plus the entries shipped with the models (so first visits are instant)."""
    return SampleCache(read_only=sorted(SHIPPED_ROOT.glob("*/precomputed")))


@st.cache_resource
def get_data():
    """(train, heldout) splits of the bundled mnist-5k set."""
    return load_data("mnist-5k")


@st.cache_resource
def get_heldout_nearest() -> torch.Tensor:
    """Each held-out digit's distance to its nearest training digit: the memorisation check's reference."""
    from engine.metrics import nearest_neighbours

    train, held = get_data()
    return nearest_neighbours(held.images, train.images)[0]


@st.cache_resource
def get_schedule(kind: str = "cosine", T: int = 1000) -> NoiseSchedule:
    return NoiseSchedule(ScheduleConfig(kind=kind, T=T))


@st.cache_resource
def get_judge():
    """The shipped judge, or None (pages then hide judge numbers and say why)."""
    try:
        return load_judge(JUDGE_PATH)
    except CheckpointError:
        return None


@st.cache_resource(max_entries=6)
def _load_model(path: str, stamp: float):
    return load_checkpoint(path)


def model_report(path: str | Path, name: str = "report.json") -> dict:
    """The model's evaluate report (report.json beside its weights, or another `name` there, e.g.
    "reports/euler-4.json"), or {} when it has none or it is unreadable."""
    import json

    try:
        report = json.loads((Path(path) / name).read_text())
    except (OSError, ValueError):
        return {}
    return report if isinstance(report, dict) else {}


def load_model(path: str):
    """A checkpoint, reloaded when its folder changes on disk (a run that keeps training)."""
    meta = Path(path) / "meta.json"
    stamp = meta.stat().st_mtime if meta.exists() else 0.0
    return _load_model(path, stamp)


@st.cache_data(max_entries=16, show_spinner=False)
def model_mflop(path: str, sha: str) -> float:
    """Forward MFLOP per image of the checkpoint at `path` (sha: its weights' hash, the cache key)."""
    from engine.summary import total_flops

    return round(total_flops(load_model(path).model) / 1e6, 1)


def model_choices() -> dict[str, str]:
    """Label -> path of every diffusion model a learner may pick: shipped ones first, then runs."""
    out = {}
    for e in list_checkpoints(SHIPPED_ROOT):
        if e.get("kind", "diffusion") == "diffusion" and "error" not in e:
            out[f"shipped · {e['name']}"] = e["path"]
    for e in list_checkpoints(RUNS_ROOT):
        if e.get("kind", "diffusion") == "diffusion" and "error" not in e:
            out[f"run · {e['name']} (step {e['step']})"] = e["path"]
    return out


def device_label() -> str:
    if torch.cuda.is_available():
        return f"GPU · {torch.cuda.get_device_name(0)}"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "GPU · Apple MPS"
    return f"CPU · {os.cpu_count()} cores"


def require_model():
    """(path, Checkpoint) of the model picked in the sidebar; otherwise explain why and stop the page."""
    from engine.checkpoints import CheckpointError

    path = st.session_state.get("app.model_path")
    if path is None:
        st.warning("No diffusion model available. Train one on the Training page first.")
        st.stop()
    try:
        return path, load_model(path)
    except CheckpointError as e:
        from .errors import without_paths

        st.error(f"Cannot load this model: {without_paths(str(e))}")
        st.stop()
