import pytest
import torch

from engine.applications import (bicubic, downsample, inpaint, interpolate_classes, interpolate_seeds, make_mask,
                                 out_of_distribution_inputs, sdedit, slerp, upscale)
from engine.config import SampleConfig
from engine.data import load
from engine.schedule import NoiseSchedule

from .conftest import TINY_SCHEDULE

CFG = SampleConfig(sampler="ddim", steps=8, guidance=1.0)


@pytest.fixture(scope="module")
def digit():
    _, held = load("mnist-5k")
    return held.images[:1]


def test_inpainting_keeps_known_pixels_and_fills_the_rest(tiny_model, digit):
    s = NoiseSchedule(TINY_SCHEDULE)
    mask = make_mask("left")
    out = inpaint(tiny_model, s, digit, mask, 3, CFG, seed=1, resample=2)
    assert out.shape == digit.shape
    known = mask.bool().expand_as(digit)
    assert torch.allclose(out[known], digit[known], atol=1e-5)     # the last step puts back x_known exactly
    assert not torch.allclose(out[~known], digit[~known], atol=0.1)


def test_sdedit_strength_zero_is_identity_and_one_ignores_input(tiny_model, digit):
    s = NoiseSchedule(TINY_SCHEDULE)
    assert torch.equal(sdedit(tiny_model, s, digit, 8, 0.0, CFG), digit)
    a = sdedit(tiny_model, s, digit, 8, 1.0, CFG, seed=3)
    b = sdedit(tiny_model, s, -digit, 8, 1.0, CFG, seed=3)
    assert (a - b).abs().mean() < 0.02                               # at full strength the input is (almost) forgotten
    c = sdedit(tiny_model, s, digit, 8, 0.2, CFG, seed=3)
    assert (c - digit).abs().mean() < (a - digit).abs().mean()
    with pytest.raises(ValueError, match="strength"):
        sdedit(tiny_model, s, digit, 8, 1.5, CFG)


@pytest.mark.parametrize("factor", [2, 4])
def test_upscaled_output_downsamples_back_to_the_input(tiny_model, digit, factor):
    s = NoiseSchedule(TINY_SCHEDULE)
    low = downsample(digit, factor)
    out = upscale(tiny_model, s, low, 5, CFG, seed=2)
    assert out.shape == (1, 1, 28, 28)
    assert (downsample(out, factor) - low).abs().max() < 0.1          # clamping to [-1, 1] may shave a little
    assert bicubic(low).shape == (1, 1, 28, 28)
    with pytest.raises(ValueError, match="14x14 or 7x7"):
        upscale(tiny_model, s, torch.zeros(1, 1, 10, 10), 5, CFG)


def test_interpolations_have_the_right_ends(tiny_model):
    s = NoiseSchedule(TINY_SCHEDULE)
    strip = interpolate_classes(tiny_model, s, 1, 7, 4, CFG, seed=5)
    assert strip.shape == (4, 1, 28, 28)
    from engine.sampling import sample

    end = sample(tiny_model, s, torch.tensor([7]), CFG, seeds=[5])
    assert torch.allclose(strip[-1:], end, atol=1e-4)                 # a one-hot mix equals the plain label
    seeds = interpolate_seeds(tiny_model, s, 2, 10, 11, 3, CFG)
    assert seeds.shape == (3, 1, 28, 28)
    a, b = torch.randn(100), torch.randn(100)
    assert torch.allclose(slerp(a, b, 0.0), a, atol=1e-5) and torch.allclose(slerp(a, b, 1.0), b, atol=1e-5)


def test_masks_and_ood_inputs(digit):
    for kind in ("left", "right", "top", "bottom", "centre", "random"):
        m = make_mask(kind)
        assert m.shape == (1, 1, 28, 28) and 0 < m.mean() < 1
    with pytest.raises(ValueError):
        make_mask("circle")
    ood = out_of_distribution_inputs(digit)
    assert set(ood) == {"letter A", "inverted digit", "blank", "noise"}
    assert all(v.shape == (1, 1, 28, 28) and v.min() >= -1 and v.max() <= 1 for v in ood.values())


def test_applications_give_each_image_the_same_result_in_any_batch(tiny_model):
    """Each image's randomness is its own (sampling.ImageNoise): inpainting (with RePaint's jumps), SDEdit with
    ancestral DDPM, and upscaling give image i the same result alone as in a batch of three."""
    _, held = load("mnist-5k")
    x = held.images[:3]
    s = NoiseSchedule(TINY_SCHEDULE)
    ddpm = SampleConfig(sampler="ddpm", steps=10, guidance=1.0)
    runs = {
        "inpaint": lambda batch, seed: inpaint(tiny_model, s, batch, make_mask("top"), 4, ddpm, seed=seed, resample=2),
        "sdedit": lambda batch, seed: sdedit(tiny_model, s, batch, 4, 0.6, ddpm, seed=seed),
        "upscale": lambda batch, seed: upscale(tiny_model, s, downsample(batch, 2), 4, ddpm, seed=seed),
    }
    for name, run in runs.items():
        together = run(x, 20)
        alone = torch.cat([run(x[i:i + 1], 20 + i) for i in range(3)])
        assert (together - alone).abs().max() < 1e-4, name
        assert (run(x[:1], 21) - together[:1]).abs().max() > 0.05, name     # another seed changes the result
