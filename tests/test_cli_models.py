"""engine/cli/models.py: `export` (and re-export in place) and `summary` as a user runs them; the logic behind
export / precompute / style-eval is tested in test_export.py."""
import json
import subprocess
import sys

from engine.training.run import TrainingRun

from .conftest import TINY_MODEL, TINY_SAMPLE, TINY_SCHEDULE, TINY_TRAIN


def _engine(*args):
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True, timeout=300)


def test_export_then_reexport_in_place_keeps_weights_sidecars_and_history(tmp_path):
    run = TrainingRun.create(TINY_MODEL, TINY_SCHEDULE, TINY_TRAIN.replace(steps=2, sample_every=1), TINY_SAMPLE,
                             tmp_path / "run")
    while not run.done:
        run.train_one()
    ship = tmp_path / "ship"
    r = _engine("export", "--checkpoint", str(run.out), "--out", str(ship), "--guidance", "1.5")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"exported {run.out} (step 2) -> {ship}: ") and r.stdout.strip().endswith(" MB")
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
    assert "--guidance 0.3" in meta["export_command"] and meta["exported_from"] == str(ship)
    assert (ship / "reports" / "guidance_1.5.json").exists() and (ship / "PROVENANCE.md").exists()
    assert not (ship / "precomputed").exists() and (ship / "snapshots").is_dir()
    r = _engine("export", "--checkpoint", str(ship), "--out", str(ship), "--force", "--guidance-interval", "0.5", "1")
    assert r.returncode == 0, r.stderr
    rec = json.loads((ship / "config.json").read_text())["recommended"]
    assert rec["guidance"] == 0.3 and rec["guidance_interval"] == [0.5, 1.0]
    r = _engine("export", "--checkpoint", str(ship), "--out", str(ship), "--guidance", "2")
    assert r.returncode == 2 and "Traceback" not in r.stderr                  # no --force: the copy is kept


def test_summary_prints_blocks():
    r = _engine("summary", "--preset", "default")
    assert r.returncode == 0 and "mid_attn" in r.stdout and "total" in r.stdout
