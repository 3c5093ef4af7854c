"""engine/training/step.py: the pure train_step, loss weights, augmentation, EMA, learning rate, optimiser."""
import math

import pytest
import torch
import torch.nn.functional as F

from engine.config import TrainConfig
from engine.schedule import NoiseSchedule
from engine.training.step import (EMA, MAX_SHIFT, NonFiniteLoss, augment_batch, loss_weights, lr_at,
                                  make_optimizer, train_step)
from engine.unet import build_model

from .conftest import TINY_MODEL, TINY_SCHEDULE, TINY_TRAIN


def _batch(n=16):
    g = torch.Generator().manual_seed(0)
    x0 = (torch.rand(n, 1, 28, 28, generator=g) > 0.8).float() * 2 - 1
    return x0, torch.arange(n) % 10


def _model(seed=0):
    torch.manual_seed(seed)
    return build_model(TINY_MODEL)


# -- train_step ----------------------------------------------------------------------------------------------------

def test_loss_falls_on_a_fixed_batch():
    model = _model()
    cfg = TINY_TRAIN.replace(lr=3e-3, min_snr_gamma=0.0, p_uncond=0.0, warmup_steps=1, lr_schedule="constant")
    opt = make_optimizer(model, cfg)
    s = NoiseSchedule(TINY_SCHEDULE)
    x0, y = _batch()
    losses = []
    for step in range(60):
        g = torch.Generator().manual_seed(step % 4)      # the same 4 (t, noise) draws over and over
        losses.append(train_step(model, opt, s, x0, y, cfg, step, g).loss)
    assert sum(losses[-8:]) / 8 < 0.6 * sum(losses[:4]) / 4


def test_train_step_is_deterministic_given_its_generator_and_ignores_the_global_rng():
    results = []
    for global_seed in (0, 1):
        model = _model()
        opt = make_optimizer(model, TINY_TRAIN)
        g = torch.Generator().manual_seed(42)
        x0, y = _batch()
        torch.manual_seed(global_seed)                   # a different global state must not matter
        r = [train_step(model, opt, NoiseSchedule(TINY_SCHEDULE), x0, y, TINY_TRAIN, i, g) for i in range(3)]
        results.append(([x.loss for x in r], [x.t for x in r], [p.clone() for p in model.parameters()]))
    assert results[0][0] == results[1][0]
    assert all(torch.equal(a, b) for a, b in zip(results[0][1], results[1][1]))
    assert all(torch.equal(a, b) for a, b in zip(results[0][2], results[1][2]))
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    x0, y = _batch()
    other = [train_step(_model(), make_optimizer(_model(), TINY_TRAIN), NoiseSchedule(TINY_SCHEDULE), x0, y,
                        TINY_TRAIN, 0, g).t for g in (g1, g2)]
    assert not torch.equal(other[0], other[1])           # the generator is really what draws t


def test_step_result_reports_the_timesteps_and_per_image_loss():
    model = _model()
    x0, y = _batch(12)
    cfg = TINY_TRAIN.replace(min_snr_gamma=0.0)          # weights 1: the loss is the mean of the per-image losses
    r = train_step(model, make_optimizer(model, cfg), NoiseSchedule(TINY_SCHEDULE), x0, y, cfg, 0,
                   torch.Generator().manual_seed(0))
    assert r.t.shape == (12,) and r.t.dtype == torch.int64 and 0 <= int(r.t.min()) and int(r.t.max()) < 50
    assert r.loss_per_image.shape == (12,)
    assert r.loss == pytest.approx(float(r.loss_per_image.mean()), rel=1e-6)
    assert r.lr == lr_at(0, cfg)


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
    train_step(m, make_optimizer(m, cfg), NoiseSchedule(TINY_SCHEDULE), x0, y % 10, cfg, 0,
               torch.Generator().manual_seed(0))
    dropped = (seen[0] == 10).float().mean()
    assert 0.3 < dropped < 0.7
    assert torch.equal(seen[0][seen[0] != 10], (y % 10)[seen[0] != 10])


def test_non_finite_loss_raises_actionable_error():
    model = build_model(TINY_MODEL)
    with torch.no_grad():
        model.head[-1].weight.fill_(float("inf"))
    cfg = TINY_TRAIN.replace(lr=0.9)
    x0, y = _batch()
    with pytest.raises(NonFiniteLoss, match="learning rate 0.9 is probably too high.*try 0.09"):
        train_step(model, make_optimizer(model, cfg), NoiseSchedule(TINY_SCHEDULE), x0, y, cfg, 0,
                   torch.Generator().manual_seed(0))


# -- learning rate, loss weights, optimiser ---------------------------------------------------------------------------

def test_lr_warms_up_linearly_then_decays_by_a_cosine():
    cfg = TrainConfig(steps=1000, lr=1e-3, warmup_steps=100, lr_min_ratio=0.1)
    assert math.isclose(lr_at(0, cfg), 1e-5)
    assert math.isclose(lr_at(49, cfg), 5e-4)
    assert math.isclose(lr_at(100, cfg), 1e-3)
    assert math.isclose(lr_at(550, cfg), 1e-3 * (0.1 + 0.9 * 0.5))        # half way: cos(pi / 2) = 0
    assert math.isclose(lr_at(1000, cfg), 1e-4) and math.isclose(lr_at(5000, cfg), 1e-4)
    lrs = [lr_at(s, cfg) for s in range(100, 1001, 50)]
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    flat = cfg.replace(lr_schedule="constant")
    assert lr_at(99, flat) == lr_at(99, cfg) and lr_at(700, flat) == 1e-3


def test_min_snr_weights_are_min_snr_gamma_over_snr():
    s = NoiseSchedule()
    t = torch.tensor([0, 100, 500, 900, 999])
    w = loss_weights(s, t, 5.0)
    snr = s.snr[t].float()
    torch.testing.assert_close(w, torch.minimum(snr, torch.tensor(5.0)) / snr)
    assert w[0] < 0.01 and w[-1] == 1.0                  # easy low-noise steps are down-weighted, noisy ones not
    assert torch.equal(loss_weights(s, torch.tensor([0, 999]), 0.0), torch.ones(2))


def test_optimizer_is_adamw_over_every_parameter_with_the_configured_settings():
    model = _model()
    cfg = TINY_TRAIN.replace(lr=1e-3, weight_decay=0.01)
    opt = make_optimizer(model, cfg)
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["foreach"] is True
    assert opt.defaults["lr"] == 1e-3 and opt.defaults["weight_decay"] == 0.01
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))


# -- EMA -------------------------------------------------------------------------------------------------------------

def test_ema_update_follows_the_warm_up_formula():
    model = _model()
    ema = EMA(model, 0.9)
    before = [p.clone() for p in ema.model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)
    d = min(0.9, 2 / 11)                                  # first update: (1 + 1) / (10 + 1)
    for b, e, p in zip(before, ema.model.parameters(), model.parameters()):
        torch.testing.assert_close(e, b + (1 - d) * (p - b))
    for _ in range(200):
        ema.update(model)
    assert ema.updates == 201
    assert all(torch.allclose(e, p, atol=1e-5) for e, p in zip(ema.model.parameters(), model.parameters()))
    assert not any(p.requires_grad for p in ema.model.parameters()) and not ema.model.training


# -- augmentation ----------------------------------------------------------------------------------------------------

def _shifted(img, dx, dy):
    """img (1, 28, 28) moved right by dx and down by dy; pixels coming in are background (-1)."""
    m = MAX_SHIFT
    padded = F.pad(img, (m, m, m, m), value=-1.0)
    return padded[:, m - dy:m - dy + 28, m - dx:m - dx + 28]


def _shift_of(out, img):
    """The (dx, dy) in -MAX_SHIFT..MAX_SHIFT that turns img into out, or None."""
    for dy in range(-MAX_SHIFT, MAX_SHIFT + 1):
        for dx in range(-MAX_SHIFT, MAX_SHIFT + 1):
            if torch.equal(out, _shifted(img, dx, dy)):
                return dx, dy
    return None


def test_augment_shifts_each_image_by_at_most_two_pixels_with_background_fill():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 28, 28, generator=g) * 2 - 1    # ink everywhere, up to the edges
    out = augment_batch(x, torch.Generator().manual_seed(3))
    assert out.shape == x.shape and out.dtype == x.dtype
    shifts = [_shift_of(out[i], x[i]) for i in range(64)]
    assert None not in shifts                              # every image is its input, moved by <= 2 px
    assert len(set(shifts)) > 10                           # each image draws its own shift, not one per batch
    assert {abs(dx) for dx, _ in shifts} == {0, 1, 2} and {abs(dy) for _, dy in shifts} == {0, 1, 2}


def test_augment_keeps_a_blank_background_blank_and_a_centred_digit_inside():
    x = torch.full((32, 1, 28, 28), -1.0)
    x[:, :, 10:18, 12:16] = 1.0                            # a stroke well inside the frame
    out = augment_batch(x, torch.Generator().manual_seed(1))
    assert set(out.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal((out == 1.0).sum(dim=(1, 2, 3)), (x == 1.0).sum(dim=(1, 2, 3)))   # nothing cut off
    blank = augment_batch(torch.full((4, 1, 28, 28), -1.0), torch.Generator().manual_seed(1))
    assert torch.equal(blank, torch.full((4, 1, 28, 28), -1.0))


def test_augment_is_reproducible_from_the_generator():
    x = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    a = augment_batch(x, torch.Generator().manual_seed(7))
    b = augment_batch(x, torch.Generator().manual_seed(7))
    c = augment_batch(x, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(x, torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1)  # input untouched
