"""engine/training/trainer.py: the background Trainer thread, its controls and its immutable status."""
import time
from pathlib import Path

import pytest

from engine.training.runs import list_runs
from engine.training.trainer import Trainer, TrainerBusy, check_run_name, training_threads

from .conftest import TINY_MODEL, TINY_SAMPLE, TINY_SCHEDULE, TINY_TRAIN


def _wait(trainer, pred, timeout=60):
    t0 = time.time()
    while time.time() - t0 < timeout:
        s = trainer.status()
        if pred(s):
            return s
        time.sleep(0.05)
    raise AssertionError(f"timed out; status {trainer.status()}")


def test_start_pause_resume_stop_and_second_start_refused(tmp_path):
    tr = Trainer(tmp_path, threads=1)
    tr.start("a", TINY_MODEL, TINY_SCHEDULE, TINY_TRAIN.replace(steps=400), TINY_SAMPLE)
    _wait(tr, lambda s: s.step >= 3)
    with pytest.raises(TrainerBusy, match="'a' is already training"):
        tr.start("b", TINY_MODEL, TINY_SCHEDULE, TINY_TRAIN, TINY_SAMPLE)
    tr.pause()
    s1 = _wait(tr, lambda s: s.state == "paused")
    time.sleep(0.5)
    s2 = tr.status()
    assert s2.step - s1.step <= 1                                    # at most the step in flight
    tr.resume()
    _wait(tr, lambda s: s.step > max(s2.step + 2, 11))
    tr.stop(wait=30)
    s = _wait(tr, lambda s: s.state == "idle")
    assert "stopped at step" in s.message and s.last_checkpoint
    assert s.loss_history and s.snapshots and s.snapshots[0][1].shape == (20, 28, 28)
    assert any(v is not None for v in s.loss_by_bucket)
    runs = {r["name"]: r for r in list_runs(tmp_path)}
    assert runs["a"]["interrupted"] and runs["a"]["step"] == s.step


def test_finished_run_and_resume_after_interruption(tmp_path):
    tr = Trainer(tmp_path, threads=1)
    tr.start("r", TINY_MODEL, TINY_SCHEDULE, TINY_TRAIN.replace(steps=10, checkpoint_every=5), TINY_SAMPLE)
    s = _wait(tr, lambda s: s.state == "finished")
    assert s.step == 10
    tr2 = Trainer(tmp_path, threads=1)                               # a new server process, same folder
    tr2.resume_run("r", steps=14)
    s = _wait(tr2, lambda s: s.state == "finished")
    assert s.step == 14 and [h[0] for h in s.loss_history][-1] == 14


@pytest.mark.parametrize("error, expected", [
    ("nonfinite", "learning rate"), ("boom", "RuntimeError: boom"), ("disk", "disk full"),
])
def test_failure_is_visible_in_status_and_keeps_last_checkpoint(tmp_path, monkeypatch, error, expected):
    import engine.training.run as run_module
    from engine.checkpoints import load_checkpoint
    from engine.training.step import NonFiniteLoss

    real = run_module.train_step

    def flaky(model, opt, schedule, x0, labels, cfg, step, *a, **k):
        if step == 7:
            if error == "nonfinite":
                raise NonFiniteLoss("the loss became nan at step 7: the learning rate 0.002 is too high")
            if error == "disk":
                raise OSError(28, "No space left on device")
            raise RuntimeError("boom")
        return real(model, opt, schedule, x0, labels, cfg, step, *a, **k)

    monkeypatch.setattr(run_module, "train_step", flaky)
    tr = Trainer(tmp_path, threads=1)
    tr.start("bad", TINY_MODEL, TINY_SCHEDULE, TINY_TRAIN.replace(steps=50, checkpoint_every=5), TINY_SAMPLE)
    s = _wait(tr, lambda s: s.state == "failed")
    if error == "disk":          # the path, the system's reason, what to do
        expected = f"cannot write {tmp_path / 'bad'}: No space left on device (the disk is full: free some space)"
    assert expected in s.error
    assert load_checkpoint(tmp_path / "bad").step == 5               # the last good checkpoint stays


def test_run_names_cannot_escape_the_runs_folder():
    for bad in ("../x", "a/b", "", ".hidden", "a" * 60, "x\\y"):
        with pytest.raises(ValueError, match="run name"):
            check_run_name(bad)
    assert check_run_name("wide-1.5x_run") == "wide-1.5x_run"


def test_names_taken_or_without_checkpoint_are_refused_and_status_is_frozen(tmp_path):
    import dataclasses

    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("x")
    tr = Trainer(tmp_path, threads=1)
    with pytest.raises(FileExistsError, match="'taken' already exists"):
        tr.start("taken", TINY_MODEL, TINY_SCHEDULE, TINY_TRAIN, TINY_SAMPLE)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        tr.resume_run("nothing-here")
    s = tr.status()
    assert s.state == "idle" and not s.active
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.step = 5


def test_training_threads_leave_cores_for_the_server(monkeypatch):
    import os

    for cores, expected in ((1, 1), (2, 1), (4, 3), (8, 6), (None, 1)):
        monkeypatch.setattr(os, "cpu_count", lambda: cores)
        assert training_threads() == expected


def test_server_exit_saves_the_running_training_at_its_step(tmp_path):
    """The dashboard's server stopping (Ctrl-C, SIGTERM: Streamlit then exits normally) must not lose the steps
    trained since the last periodic checkpoint: here there is none before the exit."""
    import json
    import subprocess
    import sys

    from engine.checkpoints import load_checkpoint

    script = f"""
import sys, time
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
from engine.training.trainer import Trainer
from tests.conftest import TINY_MODEL, TINY_SAMPLE, TINY_SCHEDULE, TINY_TRAIN
tr = Trainer({str(tmp_path)!r}, threads=1)
tr.start("live", TINY_MODEL, TINY_SCHEDULE,
         TINY_TRAIN.replace(steps=100000, checkpoint_every=50000, sample_every=50000, log_every=1), TINY_SAMPLE)
while tr.status().step < 4:
    time.sleep(0.02)
print("exiting at", tr.status().step, flush=True)
sys.exit(0)
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    left_at = int(r.stdout.split("exiting at")[1])
    saved = load_checkpoint(tmp_path / "live")
    assert saved.step >= left_at >= 4
    logged = [json.loads(l)["step"] for l in (tmp_path / "live" / "metrics.jsonl").read_text().splitlines()]
    assert logged[-1] == saved.step


def test_the_run_lock_is_free_when_the_status_says_the_run_ended(tmp_path, monkeypatch):
    """A Start or Resume that the final status invites must not meet the ending thread's own lock."""
    from engine import checkpoints as ck

    tr = Trainer(tmp_path, threads=1)
    seen, publish = [], tr._publish

    def watching(**changes):
        if changes.get("state") in ("finished", "idle", "failed"):
            try:
                ck.RunLock(tmp_path / "r").acquire().release()
                seen.append("free")
            except ck.RunLocked:
                seen.append("held")
        publish(**changes)

    monkeypatch.setattr(tr, "_publish", watching)
    tr.start("r", TINY_MODEL, TINY_SCHEDULE, TINY_TRAIN.replace(steps=3, checkpoint_every=3), TINY_SAMPLE)
    _wait(tr, lambda s: s.state == "finished")
    assert seen == ["free"]
