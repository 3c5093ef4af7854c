"""engine/cli/train.py: `python -m engine train` as a user runs it (stop signals: test_crash.py; torchrun:
test_distributed.py)."""
import json
import signal
import subprocess
import sys

import pytest

from engine.cli.train import _parse_sets, _StopRequests
from engine.training.runs import read_metrics

TINY_JSON = {
    "model": {"base_channels": 8, "channel_mults": [1, 2], "attention": False},
    "schedule": {"T": 100},
    "train": {"steps": 6, "batch_size": 16, "checkpoint_every": 3, "sample_every": 3, "log_every": 2},
    "recommended": {"steps": 4, "guidance": 1.0},
}


def _engine(*args):
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True, timeout=300)


def test_train_refuses_to_overwrite_resumes_and_starts_over_with_force(tmp_path):
    out = tmp_path / "run"
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY_JSON))
    r = _engine("train", "--config", str(cfg), "--out", str(out), "--threads", "1")
    assert r.returncode == 0, r.stderr
    assert "training 0." in r.stdout and "6 steps of 16 images" in r.stdout and "done: 6 steps" in r.stdout
    assert (out / "weights.safetensors").exists() and len(list((out / "snapshots").glob("*.npy"))) == 2
    meta = json.loads((out / "meta.json").read_text())
    assert meta["step"] == 6 and "train --config" in meta["command"]
    r = _engine("train", "--config", str(cfg), "--out", str(out))
    assert r.returncode == 2 and "--resume" in r.stderr
    r = _engine("train", "--out", str(out), "--resume", "--steps", "8", "--threads", "1")
    assert r.returncode == 0 and f"resuming {out} at step 6/8" in r.stdout
    meta = json.loads((out / "meta.json").read_text())
    assert meta["step"] == 8 and "--resume --steps 8" in meta["resume_commands"][0]
    r = _engine("train", "--config", str(cfg), "--out", str(out), "--force", "--steps", "2", "--threads", "1",
                "--no-snapshots")
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "meta.json").read_text())["step"] == 2
    assert [m["step"] for m in read_metrics(out / "metrics.jsonl")] == [2]       # the old log went with --force
    assert not (out / "snapshots").exists()


def test_bad_hyperparameter_is_a_message_not_a_traceback(tmp_path):
    r = _engine("train", "--preset", "tiny", "--steps", "-3", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "steps must be between" in r.stderr and "Traceback" not in r.stderr
    r = _engine("train", "--preset", "huge", "--out", str(tmp_path / "y"))
    assert r.returncode == 2 and "unknown preset" in r.stderr
    r = _engine("train", "--preset", "tiny", "--model-set", "width", "--out", str(tmp_path / "z"))
    assert r.returncode == 2 and "--model-set expects KEY=VALUE, got 'width'" in r.stderr


def test_model_set_values_are_parsed_as_json_or_kept_as_text():
    assert _parse_sets(["skip_connections=false", "attention=True", "base_channels=24", "arch=cnn",
                        "channel_mults=[1,2]", "dropout=0.1"]) == {
        "skip_connections": False, "attention": True, "base_channels": 24, "arch": "cnn",
        "channel_mults": [1, 2], "dropout": 0.1}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        _parse_sets(["base_channels"])


def test_a_first_stop_signal_asks_a_second_one_leaves():
    stop = _StopRequests()
    assert not stop.agreed(1) and stop.name == ""
    stop._handle(signal.SIGTERM, None)
    assert stop.agreed(1) and stop.name == "SIGTERM" and stop.signum == signal.SIGTERM
    with pytest.raises(KeyboardInterrupt):
        stop._handle(signal.SIGINT, None)
