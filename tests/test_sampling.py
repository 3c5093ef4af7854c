import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from engine.config import SampleConfig, ScheduleConfig
from engine.sampling import (class_labels, ddim_step, ddpm_step, guided_eps, initial_noise, sample,
                             sample_progressive, to_uint8)
from engine.schedule import NoiseSchedule

from .conftest import TINY_SCHEDULE


@pytest.mark.parametrize("eta, clip", [(0.0, False), (0.0, True), (0.5, True), (1.0, False)])
def test_ddim_step_matches_diffusers(eta, clip):
    T, n = 1000, 25
    ref = DDIMScheduler(num_train_timesteps=T, beta_schedule="squaredcos_cap_v2", clip_sample=clip,
                        timestep_spacing="trailing", set_alpha_to_one=True)
    ref.set_timesteps(n)
    s = NoiseSchedule(ScheduleConfig(kind="cosine", T=T))
    ts = s.timesteps(n)
    assert ts == ref.timesteps.tolist()
    g = torch.Generator().manual_seed(0)
    for i in (0, 12, n - 1):
        t, t_prev = ts[i], (ts[i + 1] if i + 1 < n else -1)
        x = torch.randn(2, 1, 28, 28, generator=g)
        eps = torch.randn(2, 1, 28, 28, generator=g)
        noise = torch.randn(2, 1, 28, 28, generator=g)
        out = ref.step(eps, t, x, eta=eta, use_clipped_model_output=True, variance_noise=noise)
        x_prev, x0, _ = ddim_step(s, x, t, t_prev, eps, eta=eta, clip_x0=clip, noise=noise)
        assert torch.allclose(x0, out.pred_original_sample, atol=1e-5)
        if t_prev >= 0:  # diffusers' final step uses alpha_bar(-1) = 1 too (set_alpha_to_one)
            assert torch.allclose(x_prev, out.prev_sample, atol=1e-5), (i, (x_prev - out.prev_sample).abs().max())


def test_ddpm_step_matches_diffusers():
    """Full-chain and strided ancestral steps equal DDPMScheduler.step given the same noise draw."""
    s = NoiseSchedule()
    g = torch.Generator().manual_seed(1)
    for n_steps in (1000, 50):
        ref = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", clip_sample=True,
                            timestep_spacing="trailing")
        ref.set_timesteps(n_steps)
        ts = s.timesteps(n_steps)
        assert ts == ref.timesteps.tolist()
        for i in (0, n_steps // 2, n_steps - 2):
            t, t_prev = ts[i], ts[i + 1]
            x = torch.randn(2, 1, 28, 28, generator=g)
            eps = torch.randn(2, 1, 28, 28, generator=g)
            out = ref.step(eps, t, x, generator=torch.Generator().manual_seed(5))
            noise = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(5))
            x_prev, x0 = ddpm_step(s, x, t, t_prev, eps, clip_x0=True, noise=noise)
            assert torch.allclose(x0, out.pred_original_sample, atol=1e-5)
            assert torch.allclose(x_prev, out.prev_sample, atol=1e-5), (n_steps, i)


def test_shapes_at_every_step_and_final(tiny_model):
    s = NoiseSchedule(TINY_SCHEDULE)
    labels = class_labels(1, classes=(0, 3, 7))
    for sampler, steps in (("ddim", 5), ("ddpm", 50), ("ddpm", 10)):
        cfg = SampleConfig(sampler=sampler, steps=steps, guidance=1.5)
        seen = list(sample_progressive(tiny_model, s, labels, cfg))
        assert len(seen) == steps
        assert [st.index for st in seen] == list(range(steps))
        assert seen[0].t == 49 and seen[-1].t_prev == -1
        for st in seen:
            for x in (st.x_t, st.x0_pred, st.eps_pred, st.x_prev):
                assert x.shape == (3, 1, 28, 28) and torch.isfinite(x).all()
        assert torch.equal(seen[1].x_t, seen[0].x_prev)


def test_same_seed_same_digits_and_independent_of_batch(tiny_model):
    s = NoiseSchedule(TINY_SCHEDULE)
    cfg = SampleConfig(steps=5, guidance=1.0)
    a = sample(tiny_model, s, torch.tensor([1, 2, 3]), cfg, seeds=[10, 11, 12])
    b = sample(tiny_model, s, torch.tensor([1, 2, 3]), cfg, seeds=[10, 11, 12])
    c = sample(tiny_model, s, torch.tensor([2]), cfg, seeds=[11])
    d = sample(tiny_model, s, torch.tensor([1, 2, 3]), cfg, seeds=[10, 99, 12])
    assert torch.equal(a, b)
    assert torch.allclose(a[1:2], c, atol=1e-5)          # DDIM: a digit depends only on its own seed
    assert not torch.allclose(a[1], d[1])


def test_guidance_zero_is_plain_conditional(tiny_model):
    s = NoiseSchedule(TINY_SCHEDULE)
    x = torch.randn(2, 1, 28, 28)
    y = torch.tensor([4, 5])
    plain = tiny_model(x, torch.full((2,), 20), y)
    assert torch.allclose(guided_eps(tiny_model, x, 20, y, 0.0), plain, atol=1e-6)
    w = 2.0
    uncond = tiny_model(x, torch.full((2,), 20), torch.full((2,), 10))
    assert torch.allclose(guided_eps(tiny_model, x, 20, y, w), (1 + w) * plain - w * uncond, atol=1e-5)
    cfg0 = SampleConfig(steps=5, guidance=0.0)
    assert not torch.allclose(sample(tiny_model, s, y, cfg0, seeds=[1, 2]),
                              sample(tiny_model, s, y, cfg0.replace(guidance=3.0), seeds=[1, 2]))


def test_wrong_sampler_differs_and_uint8_edge(tiny_model):
    s = NoiseSchedule(TINY_SCHEDULE)
    y = torch.tensor([1, 1])
    right = sample(tiny_model, s, y, SampleConfig(sampler="ddpm", steps=50), seeds=[0, 1])
    wrong = sample(tiny_model, s, y, SampleConfig(sampler="ddpm", steps=50, add_noise=False), seeds=[0, 1])
    assert not torch.allclose(right, wrong)
    u = to_uint8(torch.tensor([[-1.0, 0.0, 1.0]]).view(1, 1, 1, 3))
    assert u.dtype == torch.uint8 and u.tolist() == [[[0, 128, 255]]]


def test_initial_noise_needs_one_seed_per_image():
    with pytest.raises(ValueError, match="one seed per image"):
        initial_noise((2, 1, 28, 28), [1])


def test_guidance_interval_guides_only_inside_it_with_one_forward_of_b_images_outside(tiny_model):
    s = NoiseSchedule(TINY_SCHEDULE)
    y = torch.tensor([3, 7])
    cfg = SampleConfig(steps=5, guidance=2.0, guidance_interval=(0.5, 1.0))
    ts = s.timesteps(5)
    batches = []
    hook = tiny_model.register_forward_pre_hook(lambda m, args: batches.append(args[0].shape[0]))
    try:
        got = sample(tiny_model, s, y, cfg, seeds=[1, 2])
    finally:
        hook.remove()
    assert batches == [4 if t / s.T >= 0.5 else 2 for t in ts] and 2 in batches and 4 in batches
    # the same chain written out by hand: full guidance inside the interval, plain conditional outside
    by_hand = sample(tiny_model, s, y, cfg, seeds=[1, 2],
                     eps_fn=lambda x, t: guided_eps(tiny_model, x, t, y, 2.0 if t / s.T >= 0.5 else 0.0))
    assert torch.allclose(got, by_hand, atol=1e-6)
    every_step = sample(tiny_model, s, y, cfg.replace(guidance_interval=(0.0, 1.0)), seeds=[1, 2])
    assert not torch.allclose(got, every_step, atol=1e-3)
