"""engine/introspect.py: what the Architecture page shows from inside a denoiser."""
import math

import pytest
import torch
import torch.nn as nn

from engine.accel import to_device
from engine.config import ScheduleConfig
from engine.introspect import class_embedding_table, context_mask, feature_maps, time_embedding_table, told_t_prediction
from engine.schedule import NoiseSchedule
from engine.unet import build_model, sinusoidal_embedding

from .conftest import TINY_MODEL


def test_feature_maps_name_each_level_and_scale_every_channel_to_0_1(tiny_model):
    x_t = torch.randn(1, 1, 28, 28)
    maps = feature_maps(tiny_model, x_t, 20, 3, max_channels=3)
    assert list(maps) == ["down0 (28x28)", "down1 (14x14)", "middle (14x14)", "up1 (14x14)", "up0 (28x28)"]
    for name, fm in maps.items():
        size = int(name.split("(")[1].split("x")[0])
        assert fm.shape == (3, size, size), name
        lo, hi = fm.amin(dim=(1, 2)), fm.amax(dim=(1, 2))
        assert torch.allclose(lo, torch.zeros(3), atol=1e-6) and torch.allclose(hi, torch.ones(3), atol=1e-4), name


def test_feature_maps_are_the_same_for_the_textbook_and_the_fast_model(tiny_model):
    fast = to_device(build_model(TINY_MODEL), "cpu").eval()
    fast.load_state_dict(tiny_model.state_dict())
    x_t = torch.randn(1, 1, 28, 28)
    a, b = feature_maps(tiny_model, x_t, 30, 7), feature_maps(fast, x_t, 30, 7)
    assert list(a) == list(b)
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-3, atol=1e-3)


def test_feature_maps_depend_on_the_label_and_the_timestep(tiny_model):
    x_t = torch.randn(1, 1, 28, 28)
    base = feature_maps(tiny_model, x_t, 20, 3)["up0 (28x28)"]
    assert not torch.allclose(base, feature_maps(tiny_model, x_t, 20, 8)["up0 (28x28)"])
    assert not torch.allclose(base, feature_maps(tiny_model, x_t, 45, 3)["up0 (28x28)"])


def test_time_embedding_table_spans_0_to_T_minus_1_and_is_the_models_encoding():
    ts, table = time_embedding_table(1000, 32, points=200)
    assert len(ts) == 200 and ts[0] == 0 and ts[-1] == 999 and ts == sorted(ts)
    assert table.shape == (200, 32)
    torch.testing.assert_close(table, sinusoidal_embedding(torch.tensor(ts), 32))
    short_ts, short = time_embedding_table(50, 8, points=200)       # fewer steps than points: every t once
    assert short_ts == list(range(50)) and short.shape == (50, 8)
    assert abs(float(table[-1, 0]) - math.cos(999)) < 1e-4            # feature 0 has frequency 1


def test_class_embedding_table_is_the_models_eleven_rows_with_the_null_class_last(tiny_model):
    table = class_embedding_table(tiny_model)
    assert table.shape == (TINY_MODEL.num_classes + 1, tiny_model.cond.class_emb.embedding_dim)
    assert torch.equal(table, tiny_model.cond.class_emb.weight.detach())
    assert table.requires_grad is False
    assert class_embedding_table(build_model(TINY_MODEL.replace(class_embedding=False))) is None


def test_context_mask_drops_about_p_of_the_labels_to_the_null_class():
    labels = torch.arange(20_000) % 10
    drop, seen = context_mask(labels, 0.3, torch.Generator().manual_seed(0))
    assert abs(float(drop.float().mean()) - 0.3) < 0.015
    assert torch.all(seen[drop] == 10) and torch.equal(seen[~drop], labels[~drop])
    again, _ = context_mask(labels, 0.3, torch.Generator().manual_seed(0))
    assert torch.equal(drop, again)                                   # the generator decides, nothing else
    assert not context_mask(labels, 0.0, torch.Generator().manual_seed(1))[0].any()
    assert context_mask(labels, 1.0, torch.Generator().manual_seed(1))[0].all()
    _, custom = context_mask(labels[:5], 1.0, torch.Generator(), null_class=99)
    assert torch.all(custom == 99)


class _Oracle(nn.Module):
    """Predicts the exact noise of x_t around a known x0 *for the timestep it is told*: right only when told
    the true t, as a perfectly trained denoiser would be."""

    def __init__(self, schedule: NoiseSchedule, x0: torch.Tensor) -> None:
        super().__init__()
        self.schedule, self.x0 = schedule, x0

    def forward(self, x_t, t, y, style=None):
        a = self.schedule.alpha_bar[t].float().view(-1, 1, 1, 1)
        return (x_t - a.sqrt() * self.x0) / (1 - a).sqrt()


@pytest.mark.parametrize("t_true, t_told", [(300, 30), (300, 900)])
def test_told_t_prediction_recovers_x0_only_with_the_true_timestep(t_true, t_told):
    schedule = NoiseSchedule(ScheduleConfig(T=1000))
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(1, 1, 28, 28, generator=g) * 1.6 - 0.8
    noise = torch.randn(1, 1, 28, 28, generator=g)
    out = told_t_prediction(_Oracle(schedule, x0), schedule, x0, 3, t_true, t_told, noise)
    torch.testing.assert_close(out["x_t"], schedule.q_sample(x0, torch.tensor([t_true]), noise))
    assert out["right_mse"] < 1e-8
    assert out["wrong_mse"] > 1e-3
    torch.testing.assert_close(out["right"], x0, rtol=1e-4, atol=1e-4)
