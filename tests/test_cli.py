"""The CLI as a user runs it: train a few steps, sample, and a corrupt checkpoint gives a clear message."""
import json
import subprocess
import sys

import numpy as np


def _engine(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd)


def test_train_then_sample_writes_the_npz_format(tmp_path):
    out = tmp_path / "run"
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps({
        "model": {"base_channels": 8, "channel_mults": [1, 2], "attention": False},
        "schedule": {"T": 100},
        "train": {"steps": 6, "batch_size": 16, "checkpoint_every": 3, "sample_every": 3, "log_every": 2},
        "recommended": {"steps": 4, "guidance": 1.0},
    }))
    r = _engine("train", "--config", str(cfg), "--out", str(out), "--threads", "1")
    assert r.returncode == 0, r.stderr
    assert (out / "weights.safetensors").exists() and len(list((out / "snapshots").glob("*.npy"))) == 2
    meta = json.loads((out / "meta.json").read_text())
    assert meta["step"] == 6 and "train --config" in meta["command"]
    r = _engine("train", "--config", str(cfg), "--out", str(out))
    assert r.returncode == 2 and "--resume" in r.stderr
    r = _engine("train", "--out", str(out), "--resume", "--steps", "8", "--threads", "1")
    assert r.returncode == 0 and "resuming" in r.stdout and json.loads((out / "meta.json").read_text())["step"] == 8

    npz = tmp_path / "s.npz"
    r = _engine("sample", "--checkpoint", str(out), "--per-class", "2", "--out", str(npz), "--seed", "5")
    assert r.returncode == 0, r.stderr
    d = np.load(npz, allow_pickle=False)
    assert d["images"].shape == (20, 28, 28) and d["images"].dtype == np.uint8
    assert d["labels"].dtype == np.int64 and d["labels"].tolist() == [c for c in range(10) for _ in range(2)]
    r2 = _engine("sample", "--checkpoint", str(out), "--per-class", "2", "--out", str(tmp_path / "t.npz"), "--seed", "5")
    assert r2.returncode == 0 and np.array_equal(np.load(tmp_path / "t.npz")["images"], d["images"])

    # export a slim copy, then re-export it in place with another recommended guidance: same weights, sidecars
    # (reports, provenance) kept, the earlier export remembered, stale cached samples dropped
    ship = tmp_path / "ship"
    r = _engine("export", "--checkpoint", str(out), "--out", str(ship), "--guidance", "1.5")
    assert r.returncode == 0, r.stderr
    (ship / "reports").mkdir()
    (ship / "reports" / "guidance_1.5.json").write_text("{}")
    (ship / "PROVENANCE.md").write_text("how it was made")
    (ship / "precomputed").mkdir()
    sha = json.loads((ship / "meta.json").read_text())["sha256"]
    r = _engine("export", "--checkpoint", str(ship), "--out", str(ship), "--force", "--guidance", "0.3")
    assert r.returncode == 0, r.stderr
    meta = json.loads((ship / "meta.json").read_text())
    assert json.loads((ship / "config.json").read_text())["recommended"]["guidance"] == 0.3
    assert meta["sha256"] == sha and "--guidance 1.5" in meta["earlier_exports"][0]
    assert (ship / "reports" / "guidance_1.5.json").exists() and (ship / "PROVENANCE.md").exists()
    assert not (ship / "precomputed").exists() and (ship / "snapshots").is_dir()
    r = _engine("export", "--checkpoint", str(ship), "--out", str(ship), "--force", "--guidance-interval", "0.5", "1")
    assert r.returncode == 0, r.stderr
    rec = json.loads((ship / "config.json").read_text())["recommended"]
    assert rec["guidance"] == 0.3 and rec["guidance_interval"] == [0.5, 1.0]
    r = _engine("sample", "--checkpoint", str(ship), "--out", str(npz), "--guidance-interval", "0.8", "0.2")
    assert r.returncode == 2 and "lo < hi" in r.stderr and "Traceback" not in r.stderr

    (out / "weights.safetensors").write_bytes(b"\x80\x04garbage")
    r = _engine("sample", "--checkpoint", str(out), "--out", str(npz))
    assert r.returncode == 2 and "never unpickles" in r.stderr and "Traceback" not in r.stderr


def test_bad_hyperparameter_is_a_message_not_a_traceback(tmp_path):
    r = _engine("train", "--preset", "tiny", "--steps", "-3", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "steps must be between" in r.stderr and "Traceback" not in r.stderr
    r = _engine("train", "--preset", "huge", "--out", str(tmp_path / "y"))
    assert r.returncode == 2 and "unknown preset" in r.stderr


def test_summary_prints_blocks():
    r = _engine("summary", "--preset", "default")
    assert r.returncode == 0 and "mid_attn" in r.stdout and "total" in r.stdout


def test_apply_commands_write_png_strips(tmp_path):
    from engine.checkpoints import save_checkpoint
    from engine.unet import build_model

    from .conftest import TINY_MODEL, TINY_SAMPLE, TINY_SCHEDULE

    ck = save_checkpoint(tmp_path / "m", model=build_model(TINY_MODEL), ema_model=None, model_config=TINY_MODEL,
                         schedule_config=TINY_SCHEDULE, train_config=None, recommended=TINY_SAMPLE)
    for task in ("inpaint", "edit", "upscale", "interpolate"):
        out = tmp_path / f"{task}.png"
        r = _engine("apply", task, "--checkpoint", str(ck), "--label", "8", "--out", str(out))
        assert r.returncode == 0, r.stderr
        from PIL import Image

        w, h = Image.open(out).size
        assert h == 112 and w == (8 if task == "interpolate" else 2) * 112
