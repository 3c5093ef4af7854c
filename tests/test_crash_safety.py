"""A checkpoint survives a crash at any instant: `python -m engine train` (a checkpoint every step) is killed again
and again, at random or at the exact instants of a save (DIFFUSION_LAB_TEST_CRASH_AT: mid-file, complete but not
yet in place, between the two renames, before the old copy is deleted); every `--resume` continues from the
newest complete checkpoint, and the run ends with no copy left beside it and the weights of a run never killed."""
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time

import torch
from safetensors.torch import load_file

from engine.checkpoints import CRASH_HOOK, OPTIMIZER, WEIGHTS
from engine.config import ModelConfig, SampleConfig, ScheduleConfig, TrainConfig
from engine.training.run import TrainingRun
from engine.training.runs import read_metrics

CONFIG = {"model": {"base_channels": 8, "channel_mults": [1, 2], "attention": False}, "schedule": {"T": 50},
          "train": {"batch_size": 8, "warmup_steps": 2, "checkpoint_every": 1, "sample_every": 100000,
                    "log_every": 1},
          "recommended": {"steps": 3}}
POINTS = ("mid-file", "before-meta", "tmp-written", "between-renames", "before-cleanup")


def _complete_steps(out) -> list[int]:
    """Steps of every complete copy of the run, by this test's own reading: the folder and the copies a save
    leaves beside it whose meta.json parses and whose files match its sha256."""
    steps = []
    for d in [out, *out.parent.glob(f".{out.name}.old-*"), *out.parent.glob(f".{out.name}.tmp-*")]:
        try:
            meta = json.loads((d / "meta.json").read_text())
            if all(hashlib.sha256((d / f).read_bytes()).hexdigest() == h for f, h in meta["sha256"].items()):
                steps.append(meta["step"])
        except (OSError, ValueError, KeyError):
            continue
    return steps


def _live_step(out) -> int:
    try:
        return json.loads((out / "meta.json").read_text())["step"]
    except (OSError, ValueError, KeyError):
        return -1


def _run_once(tmp_path, out, steps, crash_at=None, kill_after=None):
    """One `engine train` (new the first time, --resume after), killed by the crash hook at `crash_at`, or by
    SIGKILL `kill_after` seconds after its first new checkpoint; returns (exit code, stdout)."""
    cfg = tmp_path / "c.json"
    if not cfg.exists():
        cfg.write_text(json.dumps({**CONFIG, "train": {**CONFIG["train"], "steps": steps}}))
    source = ["--resume"] if out.exists() or _complete_steps(out) else ["--config", str(cfg)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop(CRASH_HOOK, None)
    if crash_at:
        env[CRASH_HOOK] = crash_at
    start = _live_step(out)
    proc = subprocess.Popen([sys.executable, "-m", "engine", "train", *source, "--out", str(out), "--threads", "1",
                             "--no-snapshots", "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        if kill_after is not None:
            deadline = time.time() + 120
            while _live_step(out) <= start and proc.poll() is None and time.time() < deadline:
                time.sleep(0.005)
            time.sleep(kill_after)
            proc.send_signal(signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    return proc.returncode, stdout + stderr


def _crash_cycles(tmp_path, plan, steps):
    """Kill a run once per entry of `plan` ((crash point or None, N or seconds)), checking every resume."""
    out = tmp_path / "run"
    reached = 0
    for point, n in plan:
        expected = max(_complete_steps(out), default=None)
        crash_at, kill_after = (f"{point}:{n}", None) if point else (None, n)
        code, printed = _run_once(tmp_path, out, steps, crash_at, kill_after)
        assert code == -signal.SIGKILL, printed                    # killed, not failed
        if expected is not None and ("resuming" in printed or point):   # (only a random kill can land before it)
            assert f"resuming {out} at step {expected}/{steps}" in printed, (point, n, printed)
            assert expected >= reached                              # never behind the last complete save
            reached = expected
        assert "Traceback" not in printed
    expected = max(_complete_steps(out))
    code, printed = _run_once(tmp_path, out, steps)                # to the end, undisturbed
    assert code == 0 and f"resuming {out} at step {expected}/{steps}" in printed and expected >= reached, printed
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".run.")]
    assert leftovers == [], leftovers                              # no orphan .tmp-* / .old-* / lock
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == list(range(1, steps + 1))
    return out


def _uninterrupted(tmp_path, steps):
    """The same run never killed, in this process (one thread, like the child's --threads 1)."""
    c = CONFIG
    run = TrainingRun.create(ModelConfig.from_dict(c["model"]), ScheduleConfig.from_dict(c["schedule"]),
                             TrainConfig.from_dict({**c["train"], "steps": steps}),
                             SampleConfig.from_dict(c["recommended"]), tmp_path / "reference")
    while not run.done:
        run.train_one(snapshots=False)
    return run.out


def _same_files(a, b):
    for name in (WEIGHTS, OPTIMIZER):
        x, y = load_file(str(a / name)), load_file(str(b / name))
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x), name


def test_a_kill_at_each_instant_of_a_save_resumes_from_the_newest_complete_checkpoint(tmp_path):
    plan = [("tmp-written", 2), ("between-renames", 2), ("mid-file", 3), ("before-cleanup", 1)]
    out = _crash_cycles(tmp_path, plan, steps=12)
    _same_files(out, _uninterrupted(tmp_path, 12))


def test_twenty_kills_at_random_instants_and_inside_every_step_of_a_save(tmp_path):
    rng = random.Random(7)
    plan = [(POINTS[i // 2 % len(POINTS)], rng.randint(1, 4)) if i % 2 else (None, rng.uniform(0.0, 0.1))
            for i in range(20)]                                   # every instant of a save twice, random kills between
    plan[0] = (None, 0.05)                                        # the first run gets to its first checkpoint
    out = _crash_cycles(tmp_path, plan, steps=120)
    _same_files(out, _uninterrupted(tmp_path, 120))
