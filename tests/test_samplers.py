"""The sampler registry and each registered step, checked against diffusers' schedulers as an oracle."""
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from engine import samplers
from engine.config import ConfigError, SampleConfig, ScheduleConfig
from engine.samplers import StepOutput
from engine.sampling import sample
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
        out_ = samplers.ddim(s, x, t, t_prev, eps, SampleConfig(eta=eta, clip_x0=clip), noise)
        x_prev, x0 = out_.x_prev, out_.x0_pred
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
            out_ = samplers.ddpm(s, x, t, t_prev, eps, SampleConfig(sampler="ddpm"), noise)
            x_prev, x0 = out_.x_prev, out_.x0_pred
            assert torch.allclose(x0, out.pred_original_sample, atol=1e-5)
            assert torch.allclose(x_prev, out.prev_sample, atol=1e-5), (n_steps, i)


def test_ddim_at_eta_1_has_the_ddpm_posterior_spread():
    """Song et al. eq. 16: sigma(eta = 1) is the DDPM posterior's standard deviation for the same (t, t_prev)."""
    s = NoiseSchedule()
    x = torch.zeros(1, 1, 2, 2)
    for t, t_prev in ((999, 959), (500, 499), (40, 0)):
        _, _, _, var = s.q_posterior(x, x, t, t_prev)
        assert torch.allclose(s.ddim_sigma(t, t_prev, 1.0, x) ** 2, var, rtol=1e-5)
        assert float(s.ddim_sigma(t, t_prev, 0.0, x)) == 0.0


def test_wrong_ddpm_step_is_exactly_the_posterior_mean():
    s = NoiseSchedule()
    g = torch.Generator().manual_seed(3)
    x, eps, noise = (torch.randn(2, 1, 28, 28, generator=g) for _ in range(3))
    right = samplers.ddpm(s, x, 500, 480, eps, SampleConfig(sampler="ddpm"), noise)
    wrong = samplers.ddpm(s, x, 500, 480, eps, SampleConfig(sampler="ddpm", add_noise=False), None)
    assert "noise term" not in wrong.terms
    assert torch.allclose(right.x_prev - right.terms["noise term"], wrong.x_prev, atol=1e-6)


def test_registry_names_feed_config_validation_and_unknown_names_are_named():
    assert samplers.names()[:2] == ("ddim", "ddpm")
    with pytest.raises(ConfigError, match="ddim, ddpm"):
        SampleConfig(sampler="lms")
    with pytest.raises(ValueError, match="unknown sampler 'lms'"):
        samplers.get("lms")


def test_a_new_sampler_is_one_function_plus_one_registration(tiny_model):
    """Register a (deliberately naive) x0-jump sampler: config accepts it, sampling runs it, removing it
    makes it unknown again."""
    @samplers.register("x0-jump", "jump to the prediction re-noised to t_prev", needs_noise=lambda cfg: False)
    def x0_jump(schedule, x_t, t, t_prev, eps, config, noise=None, memory=None):
        x0 = schedule.predict_x0_from_eps(x_t, t, eps).clamp(-1, 1)
        memory["calls"] = memory.get("calls", 0) + 1
        a_prev = schedule.alpha_bar_at(t_prev)
        return StepOutput(a_prev ** 0.5 * x0 + (1 - a_prev) ** 0.5 * eps, x0, eps, {})

    try:
        assert "x0-jump" in samplers.names()
        cfg = SampleConfig(sampler="x0-jump", steps=4, guidance=1.0)
        out = sample(tiny_model, NoiseSchedule(TINY_SCHEDULE), torch.tensor([2, 5]), cfg, seeds=[0, 1])
        assert out.shape == (2, 1, 28, 28) and torch.isfinite(out).all()
        with pytest.raises(ValueError, match="registered twice"):
            samplers.register("x0-jump", "again", needs_noise=lambda cfg: False)(x0_jump)
    finally:
        del samplers.SAMPLERS["x0-jump"]
    with pytest.raises(ConfigError):
        SampleConfig(sampler="x0-jump")
