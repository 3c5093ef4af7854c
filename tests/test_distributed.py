"""torchrun with 2 CPU processes (gloo on loopback): the replicas' weights stay identical."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.checkpoints import load_checkpoint


def test_two_process_gloo_training_keeps_replicas_identical(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed next to this python")
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"model": {"base_channels": 8, "channel_mults": [1, 2], "attention": False},
                               "schedule": {"T": 50},
                               "train": {"steps": 4, "batch_size": 8, "checkpoint_every": 2, "log_every": 1},
                               "recommended": {"steps": 3}}))
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1")
    r = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "engine", "train", "--config",
                        str(cfg), "--out", str(out), "--threads", "1", "--no-snapshots", "--device", "cpu"],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "distributed: 2 processes, replicas identical: True" in r.stdout
    assert load_checkpoint(out).step == 4
