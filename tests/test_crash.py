"""A stop never loses finished work: kill -9 leaves no corrupt checkpoint, and Ctrl-C or SIGTERM saves the step reached."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from engine.checkpoints import load_checkpoint


def _start_training(tmp_path, checkpoint_every: int, stdout=subprocess.DEVNULL):
    """A tiny `engine train` in a child process that would run for ages; returns (process, run folder)."""
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"model": {"base_channels": 8, "channel_mults": [1, 2], "attention": False},
                               "schedule": {"T": 50},
                               "train": {"steps": 100000, "batch_size": 8, "checkpoint_every": checkpoint_every,
                                         "sample_every": 50000, "log_every": 1},
                               "recommended": {"steps": 3}}))
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "engine", "train", "--config", str(cfg), "--out", str(out),
                             "--threads", "1", "--no-snapshots"], stdout=stdout, stderr=subprocess.DEVNULL,
                            text=True)
    return proc, out


def test_kill_9_mid_training_then_resume(tmp_path):
    proc, out = _start_training(tmp_path, checkpoint_every=3)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            meta = out / "meta.json"
            if meta.exists():
                try:
                    if json.loads(meta.read_text())["step"] >= 9:
                        break
                except (json.JSONDecodeError, KeyError):
                    pass
            time.sleep(0.05)
        else:
            raise AssertionError("training never checkpointed")
        time.sleep(0.37)                      # land somewhere inside the next steps / checkpoint write
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    saved = load_checkpoint(out)              # verifies sha256: never half-written
    assert saved.step >= 9 and saved.step % 3 == 0
    r = subprocess.run([sys.executable, "-m", "engine", "train", "--out", str(out), "--resume", "--steps",
                        str(saved.step + 3), "--threads", "1", "--no-snapshots"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"resuming {out} at step {saved.step}/" in r.stdout
    assert load_checkpoint(out).step == saved.step + 3
    steps = [json.loads(l)["step"] for l in (out / "metrics.jsonl").read_text().splitlines() if l.strip()]
    assert steps == sorted(set(steps)) and steps[-1] == saved.step + 3   # no duplicated or lost log lines


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_saves_the_step_reached_then_resume(tmp_path, sig):
    """Ctrl-C or SIGTERM (a closed terminal, `kill`, a scheduler) keeps every finished step, not only the last
    periodic checkpoint: here there is none before the signal."""
    proc, out = _start_training(tmp_path, checkpoint_every=50000, stdout=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        metrics = out / "metrics.jsonl"
        while time.time() < deadline and not (metrics.exists() and metrics.read_text().count("\n") >= 5):
            time.sleep(0.05)
        assert not (out / "weights.safetensors").exists()          # nothing saved yet
        proc.send_signal(sig)
        stdout, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + sig, stdout
    saved = load_checkpoint(out)
    assert saved.step >= 5
    assert f"{signal.Signals(sig).name}: saved a checkpoint at step {saved.step}/100000" in stdout
    logged = [json.loads(l)["step"] for l in (out / "metrics.jsonl").read_text().splitlines() if l.strip()]
    assert logged == list(range(1, saved.step + 1))                # every finished step is in the checkpoint
    r = subprocess.run([sys.executable, "-m", "engine", "train", "--out", str(out), "--resume", "--steps",
                        str(saved.step + 2), "--threads", "1", "--no-snapshots"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert load_checkpoint(out).step == saved.step + 2
