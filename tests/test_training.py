import math

import pytest
import torch

from engine.config import TrainConfig
from engine.schedule import NoiseSchedule
from engine.training import (EMA, NonFiniteLoss, TrainingRun, lr_at, loss_weights, make_optimizer, read_metrics,
                             train_step)
from engine.unet import build_model

from .conftest import TINY_MODEL, TINY_SAMPLE, TINY_SCHEDULE, TINY_TRAIN


def _batch(n=16):
    g = torch.Generator().manual_seed(0)
    x0 = (torch.rand(n, 1, 28, 28, generator=g) > 0.8).float() * 2 - 1
    return x0, torch.arange(n) % 10


def test_loss_falls_on_a_fixed_batch():
    torch.manual_seed(0)
    model = build_model(TINY_MODEL)
    cfg = TINY_TRAIN.replace(lr=3e-3, min_snr_gamma=0.0, p_uncond=0.0, warmup_steps=1, lr_schedule="constant")
    opt = make_optimizer(model, cfg)
    s = NoiseSchedule(TINY_SCHEDULE)
    x0, y = _batch()
    losses = []
    for step in range(60):
        g = torch.Generator().manual_seed(step % 4)      # the same 4 (t, noise) draws over and over
        losses.append(train_step(model, opt, s, x0, y, cfg, step, g).loss)
    assert sum(losses[-8:]) / 8 < 0.6 * sum(losses[:4]) / 4


def test_train_step_is_deterministic_given_seed():
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        model = build_model(TINY_MODEL)
        opt = make_optimizer(model, TINY_TRAIN)
        g = torch.Generator().manual_seed(42)
        x0, y = _batch()
        r = [train_step(model, opt, NoiseSchedule(TINY_SCHEDULE), x0, y, TINY_TRAIN, i, g).loss for i in range(3)]
        results.append((r, [p.clone() for p in model.parameters()]))
    assert results[0][0] == results[1][0]
    assert all(torch.equal(a, b) for a, b in zip(results[0][1], results[1][1]))


def test_label_dropout_uses_null_class():
    seen = []

    class Spy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.cfg = TINY_MODEL
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x, t, y, style=None):
            seen.append(y.clone())
            return x * self.w

    m = Spy()
    cfg = TINY_TRAIN.replace(p_uncond=0.5)
    x0, y = _batch(64)
    train_step(m, make_optimizer(m, cfg), NoiseSchedule(TINY_SCHEDULE), x0, y % 10, cfg, 0, torch.Generator().manual_seed(0))
    dropped = (seen[0] == 10).float().mean()
    assert 0.3 < dropped < 0.7
    assert torch.equal(seen[0][seen[0] != 10], (y % 10)[seen[0] != 10])


def test_non_finite_loss_raises_actionable_error():
    model = build_model(TINY_MODEL)
    with torch.no_grad():
        model.head[-1].weight.fill_(float("inf"))
    cfg = TINY_TRAIN.replace(lr=0.9)
    with pytest.raises(NonFiniteLoss, match="learning rate"):
        x0, y = _batch()
        train_step(model, make_optimizer(model, cfg), NoiseSchedule(TINY_SCHEDULE), x0, y, cfg, 0,
                   torch.Generator().manual_seed(0))


def test_lr_schedule_and_min_snr_weights():
    cfg = TrainConfig(steps=1000, lr=1e-3, warmup_steps=100, lr_min_ratio=0.1)
    assert math.isclose(lr_at(0, cfg), 1e-5)
    assert math.isclose(lr_at(100, cfg), 1e-3)
    assert math.isclose(lr_at(1000, cfg), 1e-4)
    s = NoiseSchedule()
    w = loss_weights(s, torch.tensor([0, 500, 999]), 5.0)
    assert w[0] < 0.01 and w[2] == 1.0                       # easy low-noise steps are down-weighted
    assert torch.equal(loss_weights(s, torch.tensor([0, 999]), 0.0), torch.ones(2))


def test_ema_moves_toward_the_model():
    model = build_model(TINY_MODEL)
    ema = EMA(model, 0.9)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    before = next(ema.model.parameters()).clone()
    ema.update(model)
    after = next(ema.model.parameters())
    target = next(model.parameters())
    assert ((after - target).abs() < (before - target).abs()).all()


def test_run_saves_and_resumes_with_same_step_and_batches(tmp_path):
    out = tmp_path / "run"
    run = TrainingRun(TINY_MODEL, TINY_SCHEDULE, TINY_TRAIN.replace(steps=6), TINY_SAMPLE, out)
    for _ in range(3):
        r = run.step()
        run.log({"step": run.step_count, "loss": r.loss})
    run.save()
    cont = [run.step().loss for _ in range(3)]
    resumed = TrainingRun.resume(out)
    assert resumed.step_count == 3
    again = [resumed.step().loss for _ in range(3)]
    assert again == pytest.approx(cont, rel=1e-5)
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2, 3]
    snap = resumed.snapshot(per_class=1)
    assert snap.shape == (10, 28, 28) and snap.dtype == torch.uint8
