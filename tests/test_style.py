import math

import numpy as np
import pytest

from engine.style import measure, slant_one, style_words, thickness_one


def _bar(width: int, shear: float = 0.0) -> np.ndarray:
    img = np.zeros((28, 28), np.uint8)
    for y in range(4, 24):
        x0 = int(round(14 - width / 2 + shear * (14 - y)))
        img[y, max(0, x0):x0 + width] = 255
    return img


@pytest.mark.parametrize("width", [2, 3, 5])
def test_thickness_of_a_bar_is_its_width(width):
    assert abs(thickness_one(_bar(width)) - width) < 0.8


def test_thicker_bars_measure_thicker():
    t = [thickness_one(_bar(w)) for w in (2, 3, 4, 6)]
    assert t == sorted(t)


@pytest.mark.parametrize("shear", [-0.4, 0.0, 0.3])
def test_slant_of_a_sheared_bar(shear):
    assert abs(slant_one(_bar(3, shear)) - math.degrees(math.atan(shear))) < 3.0


def test_measure_shapes_and_words():
    s = measure(np.stack([_bar(2), _bar(5, 0.3)]))
    assert s.shape == (2, 2) and s[1, 0] > s[0, 0] and s[1, 1] > 10
    ref = np.array([[1.0, -10], [2.0, 0], [3.0, 10]] * 10)
    assert style_words(3.0, 12, ref) == ["thick", "right-slanted"]
    assert style_words(1.0, -12, ref) == ["thin", "left-slanted"]


def test_style_model_trains_and_samples_with_requested_styles(tmp_path):
    import torch

    from engine.checkpoints import load_checkpoint
    from engine.config import SampleConfig
    from engine.style import compliance, sample_styles
    from engine.training.run import TrainingRun

    from .conftest import TINY_MODEL, TINY_SCHEDULE, TINY_TRAIN

    run = TrainingRun.create(TINY_MODEL.replace(style_dim=2), TINY_SCHEDULE, TINY_TRAIN.replace(steps=3),
                             SampleConfig(steps=3), tmp_path / "s")
    for _ in range(3):
        run.step()
    run.save()
    ck = load_checkpoint(tmp_path / "s")
    assert ck.meta["style_stats"]["names"] == ["thickness_px", "slant_deg"]
    x = sample_styles(ck, 4, [(2.0, 0.0), (3.5, 20.0)], SampleConfig(steps=3))
    assert x.shape == (2, 1, 28, 28) and not torch.allclose(x[0], x[1])
    rep = compliance(ck, None, SampleConfig(steps=2), thickness_grid=(2.0, 3.0), slant_grid=(0.0, 20.0),
                     digits=[1], seeds=1)
    assert set(rep) >= {"thickness_spearman", "slant_spearman"} and rep["n"] == 4


def test_style_model_can_start_from_a_class_model(tmp_path):
    import torch

    from engine.checkpoints import CheckpointError, save_checkpoint
    from engine.config import SampleConfig
    from engine.training.run import TrainingRun
    from engine.unet import build_model

    from .conftest import TINY_MODEL, TINY_SCHEDULE, TINY_TRAIN

    base = build_model(TINY_MODEL)
    path = save_checkpoint(tmp_path / "base", model=base, ema_model=base, model_config=TINY_MODEL,
                           schedule_config=TINY_SCHEDULE, train_config=None)
    run = TrainingRun.create(TINY_MODEL.replace(style_dim=2), TINY_SCHEDULE, TINY_TRAIN, SampleConfig(steps=2),
                             tmp_path / "style", init_from=path)
    assert torch.equal(run.model.stem.weight, base.stem.weight)
    with pytest.raises(CheckpointError, match="architecture differs"):
        TrainingRun.create(TINY_MODEL.replace(base_channels=16), TINY_SCHEDULE, TINY_TRAIN, SampleConfig(steps=2),
                           tmp_path / "other", init_from=path)
