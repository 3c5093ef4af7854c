"""engine/training/runs.py: the runs table, metrics logs and snapshots, read-only."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import evidence
from engine.training.run import TrainingRun
from engine.training.runs import (DEFAULT_SHIPPED_ROOT, bucket_loss, judge_snapshots, list_runs, list_shipped,
                                  load_snapshots, loss_history, model_size, read_metrics)
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
    assert row["source"] == "run" and row["T"] == TINY_SCHEDULE.T and row["judged_on"] == "training log (step 3)"


def _tiny_model_folder(folder, losses, report=None, meta_images=None):
    """A checkpoint of the tiny model with the given logged losses (and report.json)."""
    run = TrainingRun.create(TINY_MODEL, TINY_SCHEDULE, TINY_TRAIN.replace(steps=2), TINY_SAMPLE, folder)
    run.step()
    run.step()
    for i, v in enumerate(losses):
        run.log({"step": 10 * (i + 1), "loss": v})
    run.log({"step": 2, "judge_accuracy": 0.3})            # a training-time reading the report must win over
    run.save()
    if report is not None:
        (folder / "report.json").write_text(json.dumps(report))
    return run


def test_list_shipped_lists_present_models_in_order_and_a_broken_one_with_its_error(tmp_path):
    losses = [1.0, 0.9] + [0.1 * (i + 1) for i in range(10)]        # the last 10 mean 0.55; all 12: 0.6167
    run = _tiny_model_folder(tmp_path / "default", losses,
                             {"accuracy": 0.994, "frechet_ratio_to_baseline": 1.92, "n_samples": 1000, "step": 2})
    _tiny_model_folder(tmp_path / "ablations" / "no-time", [0.2] * 3, {"accuracy": 0.5, "step": 2})
    _tiny_model_folder(tmp_path / "fast", [0.3])
    (tmp_path / "fast" / "meta.json").write_text("{ not json")        # one unreadable meta.json
    (tmp_path / "ablations" / "deep").mkdir()                          # an empty folder: listed with an error
    rows = list_shipped(tmp_path)
    # in the listing's order (default, fast, deep, no-skip, no-time, plain-cnn, one-step); missing ones left out
    assert [r["name"] for r in rows] == ["default", "fast", "deep", "no-time"]
    assert all(r["source"] == "shipped" for r in rows)
    fast, deep = rows[1], rows[2]
    assert "error" in fast and "meta.json" in fast["error"] and "params" not in fast
    assert "error" in deep
    d = rows[0]
    meta = json.loads((tmp_path / "default" / "meta.json").read_text())
    assert d["params"] == count_parameters(run.model) and d["mflop_per_image"] == model_size(TINY_MODEL)[1] > 0
    assert d["images_per_s"] == round(meta["images_seen"] / meta["wall_time_s"], 1)
    assert d["wall_time_s"] == round(meta["wall_time_s"], 1)
    assert d["final_loss"] == 0.55
    assert d["judge_accuracy"] == 0.994 and d["frechet_ratio"] == 1.92
    assert d["judged_on"] == "report.json (1000 samples)"
    assert d["T"] == TINY_SCHEDULE.T and d["step"] == 2
    nt = rows[3]
    assert nt["judge_accuracy"] == 0.5 and nt["frechet_ratio"] is None and nt["final_loss"] == 0.2
    assert list_shipped(tmp_path / "nowhere") == []


def test_a_report_of_an_older_step_does_not_stand_for_the_checkpoint(tmp_path):
    _tiny_model_folder(tmp_path / "default", [0.5], {"accuracy": 0.99, "frechet_ratio_to_baseline": 2.0, "step": 1})
    row = list_shipped(tmp_path)[0]
    assert row["judge_accuracy"] == 0.3 and row["frechet_ratio"] is None   # the logged reading at step 2


def test_the_shipped_models_are_listed_with_their_reports():
    rows = {r["name"]: r for r in list_shipped(DEFAULT_SHIPPED_ROOT)}
    assert {"default", "fast", "distilled", "deep", "no-skip", "no-time", "plain-cnn"} <= set(rows)
    for name, r in rows.items():
        assert "error" not in r, (name, r.get("error"))
        report = json.loads((Path(r["path"]) / "report.json").read_text())
        assert r["judge_accuracy"] == report["accuracy"]
        assert r["frechet_ratio"] == report["frechet_ratio_to_baseline"]
        losses = [x["loss"] for x in read_metrics(Path(r["path"]) / "metrics.jsonl") if "loss" in x]
        # a distilled student ships without a training log: its loss is against a teacher, not comparable
        assert r["final_loss"] == (round(sum(losses[-10:]) / 10, 4) if losses else None), name
    assert rows["fast"]["mflop_per_image"] < rows["default"]["mflop_per_image"] < rows["deep"]["mflop_per_image"]
    assert rows["default"]["T"] == 1000


def test_loss_history_leaves_out_the_warm_up_and_smooths_the_rest():
    metrics = [{"step": 10 * i, "loss": v} for i, v in enumerate([0.7, 0.5, 0.1, 0.04, 0.03, 0.02, 0.01], 1)]
    metrics.insert(3, {"step": 35, "judge_accuracy": 1.0})                 # not a loss record
    h = loss_history(metrics, skip_until=20, smooth=3)
    assert h["skipped_steps"] == [10, 20] and h["skipped_loss"] == [0.7, 0.5]
    assert h["steps"] == [30, 40, 50, 60, 70] and h["loss"] == [0.1, 0.04, 0.03, 0.02, 0.01]
    assert h["k"] == 3 and h["smooth_steps"] == [50, 60, 70]
    assert h["smoothed"] == pytest.approx([0.17 / 3, 0.09 / 3, 0.06 / 3])
    assert loss_history([], 100)["loss"] == [] and loss_history([], 100)["smoothed"] == []


def test_judge_snapshots_reads_k_per_class_in_class_order():
    from engine.data import load
    from engine.judge import load_judge
    from engine.sampling import to_uint8

    _, held = load("mnist-5k")
    real = to_uint8(torch.cat([held.of_class(c)[:2] for c in range(10)])).numpy()     # (20, 28, 28): 0,0,1,1,...
    shifted = np.roll(real, 2, axis=0)                       # every pair now sits under the next class's label
    readings = judge_snapshots(load_judge(), [(250, shifted), (500, real)])
    assert [r["step"] for r in readings] == [250, 500]
    assert readings[1]["accuracy"] >= 0.95 and readings[0]["accuracy"] <= 0.1
    assert len(readings[1]["correct"]) == 20 and readings[1]["per_class"][3] in (0.0, 0.5, 1.0)
    assert readings[1]["accuracy"] == pytest.approx(sum(readings[1]["correct"]) / 20)
    with pytest.raises(ValueError, match="expected K per class"):
        judge_snapshots(load_judge(), [(1, real[:7])])


def test_bucket_loss_reads_the_evidence_panel_and_ignores_bad_entries(tmp_path):
    assert bucket_loss(tmp_path) is None                                       # not measured
    buckets = [[i / 10, (i + 1) / 10] for i in range(10)]
    good = {"buckets": buckets, "mse": [0.1 - 0.009 * i for i in range(10)], "n_images": 50}
    evidence.record(tmp_path, "bucket_loss", {"seed": 0}, {"buckets": buckets, "mse": [0.1] * 9}, 1.0, "bad")
    assert bucket_loss(tmp_path) is None                                       # 9 values for 10 buckets
    evidence.record(tmp_path, "bucket_loss", {"seed": 1}, good, 2.0, "cmd small")
    evidence.record(tmp_path, "bucket_loss", {"seed": 2}, {**good, "n_images": 500}, 3.0, "cmd big")
    entry = bucket_loss(tmp_path)
    assert entry["result"]["n_images"] == 500 and entry["measured"]["command"] == "cmd big"
    assert entry["result"]["mse"] == good["mse"]
    (tmp_path / "evidence" / "bucket_loss.json").write_text("{ torn")
    assert bucket_loss(tmp_path) is None                                       # unreadable = not measured
