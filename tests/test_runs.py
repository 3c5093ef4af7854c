"""engine/training/runs.py: the runs table, metrics logs and snapshots, read-only."""
import json

import numpy as np

from engine.training.run import TrainingRun
from engine.training.runs import list_runs, load_snapshots, model_size, read_metrics
from engine.unet import build_model, count_parameters

from .conftest import TINY_MODEL, TINY_SAMPLE, TINY_SCHEDULE, TINY_TRAIN


def test_read_metrics_skips_a_torn_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 0.5}\n{"step": 2, "loss": 0.4}\n{"step": 3, "lo')
    assert read_metrics(path) == [{"step": 1, "loss": 0.5}, {"step": 2, "loss": 0.4}]
    assert read_metrics(tmp_path / "missing.jsonl") == []


def test_snapshots_load_in_step_order_and_skip_unreadable_files(tmp_path):
    snaps = tmp_path / "snapshots"
    snaps.mkdir()
    for step in (20, 3, 100):
        np.save(snaps / f"step-{step:07d}.npy", np.full((2, 28, 28), step, dtype=np.uint8))
    (snaps / "step-0000050.npy").write_bytes(b"not an array")
    loaded = load_snapshots(tmp_path)
    assert [s for s, _ in loaded] == [3, 20, 100]
    assert all(a.shape == (2, 28, 28) and a.dtype == np.uint8 and int(a[0, 0, 0]) == s for s, a in loaded)
    assert load_snapshots(tmp_path / "nowhere") == []


def test_model_size_counts_the_architecture():
    params, mflop = model_size(TINY_MODEL)
    assert params == count_parameters(build_model(TINY_MODEL))
    wider_params, wider_mflop = model_size(TINY_MODEL.replace(base_channels=16))
    assert wider_params > params and wider_mflop > mflop > 0


def test_list_runs_reports_each_run_and_flags_broken_and_interrupted_ones(tmp_path):
    run = TrainingRun.create(TINY_MODEL, TINY_SCHEDULE, TINY_TRAIN.replace(steps=4), TINY_SAMPLE, tmp_path / "b-run")
    losses = []
    for _ in range(3):
        r = run.step()
        losses.append(r.loss)
        run.log({"step": run.step_count, "loss": r.loss})
    run.log({"step": 3, "judge_accuracy": 0.25})
    run.save()
    (tmp_path / "a-broken").mkdir()
    (tmp_path / "a-broken" / "config.json").write_text("{not json")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "loose-file.txt").write_text("x")
    rows = list_runs(tmp_path)
    assert [r["name"] for r in rows] == ["a-broken", "b-run"]
    assert "error" in rows[0] and "step" not in rows[0]
    row = rows[1]
    assert row["step"] == 3 and row["total"] == 4 and row["interrupted"] is True
    assert row["final_loss"] == round(sum(losses) / 3, 4) and row["judge_accuracy"] == 0.25
    assert row["params"] == count_parameters(run.model) and row["width"] == TINY_MODEL.base_channels
    meta = json.loads((tmp_path / "b-run" / "meta.json").read_text())
    assert row["images_per_s"] == round(meta["images_seen"] / meta["wall_time_s"], 1)
    assert list_runs(tmp_path / "nowhere") == []
