"""engine/cli/sample.py: `sample`, `apply` (and the sampling flags shared with `evaluate` and `export`)."""
import subprocess
import sys

import numpy as np
import pytest

from engine.checkpoints import save_checkpoint
from engine.cli import build_parser, main

from .conftest import TINY_MODEL, TINY_SAMPLE, TINY_SCHEDULE


def _engine(*args):
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture
def checkpoint(tmp_path, tiny_model):
    return save_checkpoint(tmp_path / "m", model=tiny_model, ema_model=None, model_config=TINY_MODEL,
                           schedule_config=TINY_SCHEDULE, train_config=None, recommended=TINY_SAMPLE)


def test_sample_writes_the_npz_format_and_the_same_seed_gives_the_same_images(tmp_path, checkpoint):
    npz = tmp_path / "s.npz"
    r = _engine("sample", "--checkpoint", str(checkpoint), "--per-class", "2", "--out", str(npz), "--seed", "5")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"wrote 20 samples (ddim, 5 steps, guidance 1.0) to {npz}")
    d = np.load(npz, allow_pickle=False)
    assert d["images"].shape == (20, 28, 28) and d["images"].dtype == np.uint8
    assert d["labels"].dtype == np.int64 and d["labels"].tolist() == [c for c in range(10) for _ in range(2)]
    assert len({d["images"][i].tobytes() for i in range(20)}) == 20                  # 20 seeds, 20 images
    again = tmp_path / "t.npz"
    assert main(["sample", "--checkpoint", str(checkpoint), "--per-class", "2", "--out", str(again),
                 "--seed", "5", "--device", "cpu"]) == 0
    assert np.array_equal(np.load(again)["images"], d["images"])


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_an_image_does_not_depend_on_the_batch_it_was_drawn_in(tmp_path, checkpoint, sampler):
    outs = []
    for batch in (1, 20):
        out = tmp_path / f"{sampler}-{batch}.npz"
        assert main(["sample", "--checkpoint", str(checkpoint), "--per-class", "2", "--sampler", sampler, "--eta",
                     "1", "--steps", "5", "--batch", str(batch), "--out", str(out), "--device", "cpu"]) == 0
        outs.append(np.load(out)["images"])
    assert np.array_equal(outs[0], outs[1])


def test_bad_settings_and_corrupt_checkpoints_are_messages_not_tracebacks(tmp_path, checkpoint):
    npz = tmp_path / "s.npz"
    r = _engine("sample", "--checkpoint", str(checkpoint), "--out", str(npz), "--guidance-interval", "0.8", "0.2")
    assert r.returncode == 2 and "lo < hi" in r.stderr and "Traceback" not in r.stderr
    r = _engine("sample", "--checkpoint", str(checkpoint), "--out", str(npz), "--sampler", "lms")
    assert r.returncode == 2 and "invalid choice: 'lms'" in r.stderr
    (checkpoint / "weights.safetensors").write_bytes(b"\x80\x04garbage")
    r = _engine("sample", "--checkpoint", str(checkpoint), "--out", str(npz))
    assert r.returncode == 2 and "never unpickles" in r.stderr and "Traceback" not in r.stderr


def test_sampler_choices_come_from_the_registry(monkeypatch):
    import engine.samplers as samplers

    assert "ddim" in samplers.names() and "ddpm" in samplers.names()
    monkeypatch.setitem(samplers.SAMPLERS, "new-solver", samplers.SAMPLERS["ddim"])
    parser = build_parser()
    for command in (["sample"], ["evaluate"], ["export", "--checkpoint", "a", "--out", "b"]):
        assert parser.parse_args(command + ["--sampler", "new-solver"]).sampler == "new-solver"
        with pytest.raises(SystemExit):
            parser.parse_args(command + ["--sampler", "not-registered"])


def test_apply_commands_write_png_strips(tmp_path, checkpoint):
    from PIL import Image

    for task in ("inpaint", "edit", "upscale", "interpolate"):
        out = tmp_path / f"{task}.png"
        r = _engine("apply", task, "--checkpoint", str(checkpoint), "--label", "8", "--out", str(out))
        assert r.returncode == 0, r.stderr
        w, h = Image.open(out).size
        assert h == 112 and w == (8 if task == "interpolate" else 2) * 112
