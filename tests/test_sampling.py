import pytest
import torch

from engine import samplers
from engine.cache import SampleCache
from engine.config import SampleConfig
from engine.sampling import (ImageNoise, class_labels, guided_eps, initial_noise, sample, sample_cached,
                             sample_progressive, sampler_key, to_uint8, trajectory)
from engine.schedule import NoiseSchedule

from .conftest import TINY_SCHEDULE


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


# every registered sampler, in the configurations that draw noise at every step (and DDIM's deterministic one)
BATCH_CONFIGS = [SampleConfig(sampler="ddim", steps=5, guidance=1.0),
                 SampleConfig(sampler="ddim", steps=5, guidance=1.0, eta=1.0),
                 SampleConfig(sampler="ddpm", steps=50, guidance=1.0),
                 SampleConfig(sampler="ddpm", steps=10, guidance=0.0),
                 SampleConfig(sampler="dpmpp-2m", steps=5, guidance=1.0),
                 SampleConfig(sampler="unipc", steps=5, guidance=1.0),
                 SampleConfig(sampler="euler", steps=5, guidance=1.0),
                 SampleConfig(sampler="heun", steps=4, guidance=1.0)]


def test_every_registered_sampler_is_covered_by_the_batch_test():
    assert {c.sampler for c in BATCH_CONFIGS} == set(samplers.names())


@pytest.mark.parametrize("cfg", BATCH_CONFIGS, ids=lambda c: f"{c.sampler}-{c.steps}-eta{c.eta}")
def test_a_digit_depends_only_on_its_own_seed_not_on_its_batch(tiny_model, cfg):
    """Sampled alone or among others, seed 11 gives the same digit: every draw is the image's own.
    (Before, ancestral noise came from one generator per batch and 0 of 20 images agreed.)"""
    s = NoiseSchedule(TINY_SCHEDULE)
    labels = torch.tensor([1, 2, 3, 4])
    a = sample(tiny_model, s, labels, cfg, seeds=[10, 11, 12, 13])
    b = sample(tiny_model, s, labels, cfg, seeds=[10, 11, 12, 13])
    alone = torch.cat([sample(tiny_model, s, labels[i:i + 1], cfg, seeds=[10 + i]) for i in range(4)])
    reordered = sample(tiny_model, s, labels.flip(0), cfg, seeds=[13, 12, 11, 10]).flip(0)
    other = sample(tiny_model, s, labels, cfg, seeds=[10, 99, 12, 13])
    assert torch.equal(a, b)
    # equal up to float rounding of batch-size-dependent convolution kernels (~1e-6), far below one grey level
    assert (a - alone).abs().max() < 1e-4 and (a - reordered).abs().max() < 1e-4
    assert (a[1] - other[1]).abs().max() > 0.1                     # another seed: another digit
    assert (a[[0, 2, 3]] - other[[0, 2, 3]]).abs().max() < 1e-4    # ... and its neighbours are untouched


def test_image_noise_streams_are_per_image_and_distinct():
    a = ImageNoise([5, 6], (1, 4, 4))
    b = ImageNoise([6], (1, 4, 4))
    first, second = a.draw(), a.draw()
    assert torch.equal(first[1:], b.draw()) and torch.equal(second[1:], b.draw())
    assert not torch.equal(first, second)
    assert torch.equal(first, initial_noise((2, 1, 4, 4), [5, 6]))          # x_T is the first draw
    other_stream = ImageNoise([5, 6], (1, 4, 4), stream=1).draw()
    assert (other_stream - first).abs().max() > 0.5


def test_more_steps_than_noise_levels_is_an_error_not_a_silent_cap(tiny_model):
    s = NoiseSchedule(TINY_SCHEDULE)                                           # T = 50
    with pytest.raises(ValueError, match="T = 50"):
        sample(tiny_model, s, torch.tensor([1]), SampleConfig(steps=51), seeds=[0])


def test_progressive_terms_add_up_to_the_step(tiny_model):
    s = NoiseSchedule(TINY_SCHEDULE)
    for cfg in BATCH_CONFIGS:
        for st in sample_progressive(tiny_model, s, torch.tensor([3, 8]), cfg, seeds=[1, 2]):
            assert torch.allclose(sum(st.terms.values()), st.x_prev, atol=1e-6)
            assert ("noise term" in st.terms) == (samplers.get(cfg.sampler).needs_noise(cfg) and st.t_prev >= 0)


def test_cache_key_separates_stochastic_samples_drawn_before_per_image_noise(tmp_path, tiny_model):
    """Deterministic DDIM keeps its key (shipped precomputed samples stay valid); DDPM and DDIM with eta > 0
    get a new one, so no sample drawn with batch-wide noise is served from an old cache."""
    assert sampler_key(SampleConfig(sampler="ddim")) == {}
    assert sampler_key(SampleConfig(sampler="ddpm")) == {"noise": "per-image"}
    assert sampler_key(SampleConfig(sampler="ddim", eta=0.5)) == {"noise": "per-image"}

    class Ck:                                   # the two attributes sample_cached reads of a Checkpoint
        model, sha256 = tiny_model, "f" * 64
        schedule_config = TINY_SCHEDULE

    cache = SampleCache(tmp_path)
    cfg = SampleConfig(sampler="ddpm", steps=10)
    first = sample_cached(Ck, torch.tensor([1, 2]), cfg, [0, 1], cache=cache, batch=1)
    again = sample_cached(Ck, torch.tensor([1, 2]), cfg, [0, 1], cache=cache, batch=2)
    assert cache.misses == 1 and cache.hits == 1 and torch.equal(first, again)


def test_trajectory_keeps_the_last_frame_and_subsamples(tiny_model):
    s = NoiseSchedule(TINY_SCHEDULE)
    cfg = SampleConfig(sampler="ddpm", steps=50, guidance=1.0)
    tr = trajectory(tiny_model, s, torch.tensor([4]), cfg, seeds=[3], max_frames=10)
    assert len(tr["t"]) == tr["x_t"].shape[0] <= 10 and tr["t"][0] == 49 and tr["t"][-1] == -1
    assert tr["t"] == sorted(tr["t"], reverse=True)
    final = sample(tiny_model, s, torch.tensor([4]), cfg, seeds=[3])
    assert torch.allclose(tr["final"], final, atol=1e-6) and torch.equal(tr["x_t"][-1], tr["final"])


def test_guidance_zero_is_plain_conditional(tiny_model):
    s = NoiseSchedule(TINY_SCHEDULE)
    x = torch.randn(2, 1, 28, 28)
    y = torch.tensor([4, 5])
    plain = tiny_model(x, torch.full((2,), 20), y)
    assert torch.allclose(guided_eps(tiny_model, x, 20, y, 0.0, schedule=s), plain, atol=1e-6)
    w = 2.0
    uncond = tiny_model(x, torch.full((2,), 20), torch.full((2,), 10))
    assert torch.allclose(guided_eps(tiny_model, x, 20, y, w, schedule=s), (1 + w) * plain - w * uncond, atol=1e-5)
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
                     eps_fn=lambda x, t: guided_eps(tiny_model, x, t, y, 2.0 if t / s.T >= 0.5 else 0.0, schedule=s))
    assert torch.allclose(got, by_hand, atol=1e-6)
    every_step = sample(tiny_model, s, y, cfg.replace(guidance_interval=(0.0, 1.0)), seeds=[1, 2])
    assert not torch.allclose(got, every_step, atol=1e-3)


def test_noise_streams_of_different_seeds_never_coincide():
    """Stream k of seed s must not be stream 0 of another seed (an affine derivation, s * K + k, would make
    seed 0's stream 1 equal seed 1's stream 0)."""
    base = {s: ImageNoise([s], (1, 4, 4)).draw() for s in range(20)}
    for stream in (1, 2):
        for s in range(20):
            other = ImageNoise([s], (1, 4, 4), stream=stream).draw()
            assert all((other - b).abs().max() > 0.1 for b in base.values())
