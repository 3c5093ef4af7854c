"""Multistep solvers in the sampler registry (DPM-Solver++(2M), UniPC), checked against diffusers' schedulers step
by step and run through the sampling loop with guidance, its interval, clipping and per-image seeds."""
import pytest
import torch
from diffusers import DPMSolverMultistepScheduler, UniPCMultistepScheduler

from engine import samplers
from engine.cli import build_parser
from engine.config import ConfigError, SampleConfig, ScheduleConfig
from engine.sampling import guided_eps, sample, sample_progressive, sampler_key, trajectory
from engine.schedule import NoiseSchedule

from .conftest import TINY_SCHEDULE

DPM = "dpmpp-2m"
MULTISTEP = ("dpmpp-2m", "unipc")


def _diffusers(name: str, T: int, steps: int, clip: bool, kind: str = "squaredcos_cap_v2"):
    """The oracle: the solver as diffusers ships it, on our trailing timesteps, ending on the clean image; our x0
    clipping is its thresholding with a fixed threshold of 1."""
    common = dict(num_train_timesteps=T, beta_schedule=kind, solver_order=2, lower_order_final=True,
                  final_sigmas_type="zero", timestep_spacing="trailing", thresholding=clip, sample_max_value=1.0)
    if name == "dpmpp-2m":
        ref = DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_type="midpoint", **common)
    else:
        ref = UniPCMultistepScheduler(solver_type="bh2", predict_x0=True, **common)
    ref.set_timesteps(steps)
    return ref


@pytest.mark.parametrize("name", MULTISTEP)
@pytest.mark.parametrize("steps", [2, 5, 10, 25])
@pytest.mark.parametrize("clip", [True, False])
def test_multistep_solver_matches_diffusers_step_by_step(name, steps, clip):
    """Every step, the first-order first one and the lower-order last one included: same x_t and network output
    in, same x_prev out. Unclipped, x̂₀ at t = 999 is ~1e3 (it divides by sqrt(alpha_bar) = 5e-5), so are the
    states after it, and diffusers computes in float32: there the match is relative to the step's largest value."""
    s = NoiseSchedule(ScheduleConfig(kind="cosine", T=1000))
    ref = _diffusers(name, 1000, steps, clip)
    step = samplers.get(name).step
    ts = s.timesteps(steps)
    assert ts == ref.timesteps.tolist()
    g = torch.Generator().manual_seed(0)
    x0_true = torch.rand(2, 1, 28, 28, generator=g) * 2 - 1
    x = torch.randn(2, 1, 28, 28, generator=g)
    memory: dict = {}
    cfg = SampleConfig(sampler=name, clip_x0=clip)
    for i, t in enumerate(ts):
        t_prev = ts[i + 1] if i + 1 < steps else -1
        a, b = s.signal_noise_coefficients(t)
        eps = (x - a * x0_true) / b + 0.3 * torch.randn(x.shape, generator=g)    # a network that is a bit off
        want = ref.step(eps, t, x).prev_sample
        got = step(s, x, t, t_prev, eps, cfg, None, memory)
        scale = 1.0 if clip else max(1.0, float(x.abs().max()), float(got.x0_pred.abs().max()))
        tol = 1e-5 * scale
        assert (got.x_prev - want).abs().max() < tol, (i, t, float((got.x_prev - want).abs().max()))
        assert torch.allclose(sum(got.terms.values()), got.x_prev, atol=1e-6)
        x = want


def test_dpmpp_2m_is_ddim_on_its_first_step_and_lands_on_x0_on_its_last():
    """No previous x̂₀ on the first step and sigma = 0 on the last: both first order, i.e. DDIM at eta = 0;
    every step between extrapolates x̂₀."""
    s = NoiseSchedule()
    ts = s.timesteps(4)
    g = torch.Generator().manual_seed(2)
    cfg = SampleConfig(sampler=DPM)
    memory: dict = {}
    x = torch.randn(3, 1, 28, 28, generator=g)
    for i, t in enumerate(ts):
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        eps = torch.randn(x.shape, generator=g)
        out = samplers.dpmpp_2m(s, x, t, t_prev, eps, cfg, None, memory)
        ddim = samplers.ddim(s, x, t, t_prev, eps, SampleConfig(), None)
        extrapolation = out.terms["x̂₀ extrapolation term"].abs().max()
        if i == 0 or t_prev < 0:
            assert torch.allclose(out.x_prev, ddim.x_prev, atol=1e-5) and extrapolation == 0
        else:
            assert extrapolation > 1e-3 and (out.x_prev - ddim.x_prev).abs().max() > 1e-3
        x = out.x_prev
    assert torch.equal(out.x_prev, out.x0_pred) and out.x0_pred.abs().max() <= 1      # clipped x̂₀ is the digit


def test_unipc_predicts_like_dpmpp_2m_and_corrects_from_its_second_step():
    """UniP-2 with bh2 is the DPM-Solver++(2M) step; what UniPC adds is the corrector term, zero on the first step
    (nothing to correct yet) and on the last (it lands on x̂₀, whatever the corrected state), not between."""
    s = NoiseSchedule()
    ts = s.timesteps(5)
    g = torch.Generator().manual_seed(4)
    mem_dpm, mem_unipc = {}, {}
    x = torch.randn(2, 1, 28, 28, generator=g)
    for i, t in enumerate(ts):
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        eps = torch.randn(x.shape, generator=g)
        dpm = samplers.dpmpp_2m(s, x, t, t_prev, eps, SampleConfig(sampler=DPM), None, mem_dpm)
        uni = samplers.unipc(s, x, t, t_prev, eps, SampleConfig(sampler="unipc"), None, mem_unipc)
        assert torch.allclose(uni.x_prev - uni.terms["corrector term"], dpm.x_prev, atol=1e-5)
        assert (uni.terms["corrector term"].abs().max() > 1e-3) == (0 < i < len(ts) - 1)
        x = dpm.x_prev


def test_unipc_corrector_keeps_a_post_step_replacement():
    """Inpainting replaces pixels of each step's output (post_step). diffusers' corrector rebuilds the state from
    the previous one and would drop that; ours corrects the state it is given by the same amount."""
    s = NoiseSchedule()
    ts = s.timesteps(6)
    g = torch.Generator().manual_seed(5)
    memory: dict = {}
    x = torch.randn(1, 1, 28, 28, generator=g)
    cfg = SampleConfig(sampler="unipc")
    for i in range(2):
        x = samplers.unipc(s, x, ts[i], ts[i + 1], torch.randn(x.shape, generator=g), cfg, None, memory).x_prev
    x0 = torch.rand(x.shape, generator=g) * 1.8 - 0.9                  # the network's x̂₀ at t, whatever x_t is
    t, t_prev = ts[2], ts[3]
    replaced = x.clone()
    replaced[..., :14] = 0.5                                           # the known half, as inpainting sets it
    outs = [samplers.unipc(s, state, t, t_prev, s.predict_eps_from_x0(state, t, x0), cfg, None,
                           {"unipc": dict(memory["unipc"])}) for state in (x, replaced)]
    corrected = [o.terms["x_t term"] + o.terms["corrector term"] for o in outs]
    _, sigma_t = s.signal_noise_coefficients(t)
    _, sigma_p = s.signal_noise_coefficients(t_prev)
    assert torch.allclose(corrected[1] - corrected[0], sigma_p / sigma_t * (replaced - x), atol=1e-5)


@pytest.mark.parametrize("name", MULTISTEP)
def test_multistep_solver_through_the_sampling_loop_with_guidance_and_its_interval_matches_diffusers(
        tiny_model, name):
    """sampling.py drives the registered step with the guided eps (guided only where t/T >= 0.5 here): the same
    run as diffusers' scheduler fed the same guided network outputs; guidance and its interval both matter."""
    s = NoiseSchedule(TINY_SCHEDULE)                                     # T = 50
    labels, seeds = torch.tensor([2, 7, 7]), [4, 5, 6]
    cfg = SampleConfig(sampler=name, steps=6, guidance=2.0, guidance_interval=(0.5, 1.0))
    steps = list(sample_progressive(tiny_model, s, labels, cfg, seeds=seeds))
    assert [st.t for st in steps] == s.timesteps(6) and steps[-1].t_prev == -1

    ref = _diffusers(name, s.T, cfg.steps, clip=True)
    assert ref.timesteps.tolist() == s.timesteps(6)
    x = steps[0].x_t                                                     # x_T: the seeds' first draws
    with torch.no_grad():
        for t in ref.timesteps.tolist():
            w = 2.0 if t / s.T >= 0.5 else 0.0
            x = ref.step(guided_eps(tiny_model, x, t, labels, w, schedule=s), t, x).prev_sample
    assert (steps[-1].x_prev - x).abs().max() < 1e-5

    final = sample(tiny_model, s, labels, cfg, seeds=seeds)
    everywhere = sample(tiny_model, s, labels, cfg.replace(guidance_interval=(0.0, 1.0)), seeds=seeds)
    unguided = sample(tiny_model, s, labels, cfg.replace(guidance=0.0), seeds=seeds)
    assert (final - everywhere).abs().max() > 1e-3 and (final - unguided).abs().max() > 1e-3


@pytest.mark.parametrize("name", MULTISTEP)
def test_multistep_digits_depend_only_on_their_seed_and_clipping_matters(tiny_model, name):
    s = NoiseSchedule(TINY_SCHEDULE)
    cfg = SampleConfig(sampler=name, steps=5, guidance=1.0)
    labels = torch.tensor([1, 2, 3])
    batch = sample(tiny_model, s, labels, cfg, seeds=[10, 11, 12])
    alone = torch.cat([sample(tiny_model, s, labels[i:i + 1], cfg, seeds=[10 + i]) for i in range(3)])
    assert (batch - alone).abs().max() < 1e-4
    unclipped = sample(tiny_model, s, labels, cfg.replace(clip_x0=False), seeds=[10, 11, 12])
    assert (batch - unclipped).abs().max() > 1e-3


@pytest.mark.parametrize("name, names", [
    ("dpmpp-2m", ["x_t term", "x̂₀ term", "x̂₀ extrapolation term"]),
    ("unipc", ["x_t term", "corrector term", "x̂₀ term", "x̂₀ extrapolation term"])])
def test_multistep_terms_add_up_on_the_denoising_pages_trajectory(tiny_model, name, names):
    """The Denoising page's breakdown: every frame's terms add up to the next x_t (the last to the digit)."""
    tr = trajectory(tiny_model, NoiseSchedule(TINY_SCHEDULE), torch.tensor([4]),
                    SampleConfig(sampler=name, steps=5, guidance=1.0), seeds=[3])
    assert list(tr["terms"]) == names
    total = sum(tr["terms"].values())
    assert torch.allclose(total[:-1], tr["x_t"][1:], atol=1e-5)         # frame i's terms give frame i + 1's x_t


def test_registry_derived_choices_take_the_multistep_solvers():
    """CLI choices, config validation (and its message), the cache key and the page list all read the registry."""
    assert samplers.names() == ("ddim", "ddpm", "dpmpp-2m", "unipc", "euler", "heun")
    with pytest.raises(ConfigError, match="ddim, ddpm, dpmpp-2m, unipc, euler, heun"):
        SampleConfig(sampler="lms")
    parser = build_parser()
    for name in MULTISTEP:
        assert not samplers.get(name).needs_noise(SampleConfig(sampler=name, eta=1.0))
        assert samplers.get(name).version == 1
        assert sampler_key(SampleConfig(sampler=name)) == {}    # deterministic: the config alone is the key
        assert SampleConfig(sampler=name).to_dict()["sampler"] == name
        for command in (["sample"], ["evaluate"], ["export", "--checkpoint", "a", "--out", "b"]):
            assert parser.parse_args(command + ["--sampler", name, "--steps", "8"]).sampler == name
