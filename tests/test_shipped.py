"""Every shipped model loads, matches the sha256 in its metadata, records the command that made it, and passes
a short smoke check. The full quality numbers live in each folder's report, not in timed tests."""
import json
from pathlib import Path

import pytest
import torch

from engine.checkpoints import list_checkpoints, load_checkpoint, read_configs, sha256_file

ROOT = Path(__file__).resolve().parent.parent / "checkpoints"
SHIPPED = list_checkpoints(ROOT) + list_checkpoints(ROOT / "ablations")
QUALITY_BAR = {"default": 0.9, "fast": 0.9, "style": 0.9, "distilled": 0.9, "flow": 0.9}     # ablations are meant to be worse: they only have to run


def test_the_shipped_set_is_present_and_small():
    names = {e["name"] for e in SHIPPED}
    assert {"default", "judge", "digit_clip"} <= names, names
    size = sum(f.stat().st_size for f in ROOT.rglob("*") if f.is_file() and "runs" not in f.parts
               and "cache" not in f.parts)
    # 31.7 MB with the `fast` model, 33.7 MB with its 4-step distilled student (2.1 MB of EMA weights), 36.2 MB
    # with its flow-matching twin (2.0 MB of weights, 0.5 MB of log, reports and evidence; no training film)
    assert size < 37 * 2**20, f"checkpoints/ holds {size / 2**20:.1f} MB"


@pytest.mark.parametrize("entry", SHIPPED, ids=[e["name"] for e in SHIPPED])
def test_shipped_checkpoint_integrity(entry):
    path = Path(entry["path"])
    config, meta = read_configs(path)
    assert meta.get("command", "").startswith("python -m engine"), "the producing command must be recorded"
    for name, digest in meta["sha256"].items():
        assert sha256_file(path / name) == digest


@pytest.mark.parametrize("entry", [e for e in SHIPPED if e.get("kind") == "diffusion"],
                         ids=[e["name"] for e in SHIPPED if e.get("kind") == "diffusion"])
def test_shipped_diffusion_model_samples_recognisable_digits(entry):
    from engine.judge import load_judge, predict
    from engine.sampling import class_labels, sample
    from engine.schedule import NoiseSchedule

    ck = load_checkpoint(entry["path"])
    labels = class_labels(2)
    style = None
    if ck.model_config.style_dim:
        style = torch.zeros(len(labels), ck.model_config.style_dim)          # the average style
    x = sample(ck.model, NoiseSchedule(ck.schedule_config), labels, ck.recommended.replace(steps=min(10, ck.schedule_config.T)),
               style=style)
    assert torch.isfinite(x).all() and x.shape == (20, 1, 28, 28)
    acc = float((predict(load_judge(), x)[0].argmax(1) == labels).float().mean())
    bar = QUALITY_BAR.get(entry["name"])
    if bar is not None:
        assert acc >= bar, f"{entry['name']}: only {acc:.0%} of 20 DDIM-10 samples recognised"
    report = Path(entry["path"]) / "report.json"
    assert report.exists(), "shipped diffusion models carry their evaluate report"
    assert 0.0 <= json.loads(report.read_text())["accuracy"] <= 1.0
