import math

import pytest
import torch
from diffusers import DDPMScheduler

from engine.config import ScheduleConfig
from engine.schedule import NoiseSchedule


@pytest.mark.parametrize("kind, diffusers_name", [("linear", "linear"), ("cosine", "squaredcos_cap_v2")])
def test_matches_diffusers_ddpm_scheduler(kind, diffusers_name):
    ref = DDPMScheduler(num_train_timesteps=1000, beta_schedule=diffusers_name)
    s = NoiseSchedule(ScheduleConfig(kind=kind, T=1000))
    assert torch.allclose(s.betas.float(), ref.betas, atol=1e-5)
    assert torch.allclose(s.alpha_bar.float(), ref.alphas_cumprod, atol=1e-5)
    for t in (0, 1, 487, 999):
        assert abs(float(s.posterior_variance[t]) - float(ref._get_variance(t).clamp(min=0))) < 1e-5 or t == 0
    # add_noise == q_sample on the same inputs
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 1, 28, 28, generator=g) * 2 - 1
    noise = torch.randn(4, 1, 28, 28, generator=g)
    t = torch.tensor([0, 250, 487, 999])
    assert torch.allclose(s.q_sample(x0, t, noise), ref.add_noise(x0, noise, t), atol=1e-5)


def test_known_closed_form_value_at_487():
    # diffusers' own test asserts this linear-schedule variance at t = 487
    s = NoiseSchedule(ScheduleConfig(kind="linear", T=1000))
    assert abs(float(s.posterior_variance[487]) - 0.00979) < 1e-5


def test_default_chain_ends_in_noise():
    s = NoiseSchedule()
    assert float(s.alpha_bar[-1]) < 1e-3
    # the mistake the issue warns about: linear T=400 keeps 13 % of the signal amplitude, sqrt(alpha_bar_T)
    assert float(NoiseSchedule(ScheduleConfig(kind="linear", T=400)).alpha_bar[-1].sqrt()) > 0.1


def test_x0_from_eps_inverts_q_sample():
    s = NoiseSchedule()
    x0 = torch.rand(3, 1, 28, 28) * 2 - 1
    noise = torch.randn(3, 1, 28, 28)
    t = torch.tensor([5, 300, 900])
    xt = s.q_sample(x0, t, noise)
    assert torch.allclose(s.predict_x0_from_eps(xt, t, noise), x0, atol=1e-3)


def test_snr_decreases_and_t_range_checked():
    s = NoiseSchedule()
    assert torch.all(s.snr[1:] < s.snr[:-1])
    with pytest.raises(ValueError, match="timestep must be in"):
        s.q_sample(torch.zeros(1, 1, 28, 28), torch.tensor([1000]))


def test_coefficients_and_timesteps():
    s = NoiseSchedule()
    a, b = s.signal_noise_coefficients(500)
    assert abs(a * a + b * b - 1) < 1e-9
    ts = s.timesteps(25)
    assert ts[0] == 999 and len(ts) == 25 and ts == sorted(ts, reverse=True) and ts[-1] == 39
    assert s.timesteps(1000) == list(range(999, -1, -1))
    with pytest.raises(ValueError):
        s.timesteps(0)


def test_q_sample_seeded_is_deterministic():
    s = NoiseSchedule()
    x0 = torch.zeros(2, 1, 28, 28)
    t = torch.tensor([100, 200])
    a = s.q_sample(x0, t, generator=torch.Generator().manual_seed(3))
    b = s.q_sample(x0, t, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert math.isclose(float(a.std()), float((1 - s.alpha_bar[t]).sqrt().mean()), rel_tol=0.2)


def test_posterior_of_the_full_chain_matches_the_paper_and_its_mean_recovers_x_prev_in_expectation():
    """q_posterior(t, t-1) has beta-tilde as its variance (eq. 7), and its mean is the exact Gaussian
    conditional: averaging x_{t-1} drawn by the forward process given (x_0, x_t) gives the mean."""
    s = NoiseSchedule()
    x0 = torch.rand(1, 1, 4, 4) * 2 - 1
    for t in (1, 250, 999):
        xt = s.q_sample(x0, torch.tensor([t]), torch.randn(1, 1, 4, 4))
        _, _, mean, var = s.q_posterior(x0, xt, t)
        assert abs(float(var) - float(s.posterior_variance[t])) < 1e-6
        # strided chain with stride 1 is the paper's chain
        _, _, mean1, var1 = s.q_posterior(x0, xt, t, t - 1)
        assert torch.equal(mean, mean1) and torch.equal(var, var1)
    # a t_prev of -1 (the clean image) has zero variance and mean x0 when x0 is exact
    xt = s.q_sample(x0, torch.tensor([10]), torch.randn(1, 1, 4, 4))
    _, _, mean, var = s.q_posterior(x0, xt, 10, -1)
    assert float(var) == 0.0 and torch.allclose(mean, x0, atol=1e-5)


def test_q_jump_composes_with_q_sample():
    """Jumping s -> t after q_sample to s has the marginal of q_sample straight to t: mean sqrt(a_t) x0 and
    variance 1 - a_t (checked on many pixels)."""
    s = NoiseSchedule()
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((1, 1, 200, 200), 0.5)
    xs = s.q_sample(x0, torch.tensor([300]), torch.randn(x0.shape, generator=g))
    xt = s.q_jump(xs, 300, 700, torch.randn(x0.shape, generator=g))
    a_t = float(s.alpha_bar[700])
    assert abs(float(xt.mean()) - 0.5 * math.sqrt(a_t)) < 0.01
    assert abs(float(xt.var()) - (1 - a_t)) < 0.01


def test_x0_and_eps_conversions_accept_an_int_or_per_image_timesteps():
    s = NoiseSchedule()
    x0 = torch.rand(2, 1, 28, 28) * 2 - 1
    noise = torch.randn(2, 1, 28, 28)
    xt = s.q_sample(x0, torch.tensor([400, 400]), noise)
    assert torch.allclose(s.predict_x0_from_eps(xt, 400, noise), s.predict_x0_from_eps(xt, torch.tensor([400, 400]), noise))
    assert torch.allclose(s.predict_eps_from_x0(xt, 400, x0), noise, atol=1e-4)
    assert s.alpha_bar_at(-1) == 1.0
    with pytest.raises(ValueError, match="timestep"):
        s.alpha_bar_at(1000)


def test_fraction_outside_the_chain_is_an_error_not_a_clamp():
    from engine.schedule import fraction_to_t

    s = NoiseSchedule()
    assert fraction_to_t(s, 0.0) == 0 and fraction_to_t(s, 1.0) == 999 and fraction_to_t(s, 0.5) == 500
    with pytest.raises(ValueError, match="between 0 and 1"):
        fraction_to_t(s, 1.2)
