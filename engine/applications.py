"""Putting the model to work: inpainting, editing (SDEdit), upscaling (ILVR) and interpolation.

Editing, upscaling and interpolation reuse the one reverse-process loop in sampling.py and change only where
it starts (SDEdit), what it is told (interpolation) or what happens after each step (upscaling: the
`post_step` hook). Inpainting needs RePaint's resampling loop, which steps back up the chain, so it runs its
own loop, but every formula it uses is the schedule's. Every random draw belongs to one image's seed
(sampling.ImageNoise), so a result does not depend on the batch it was made in.
Images are (B, 1, 28, 28) in [-1, 1] throughout; `label` is the class to steer towards.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import SampleConfig
from .samplers import ddpm
from .sampling import ImageNoise, guided_eps, initial_noise, reverse_timesteps, sample
from .schedule import NoiseSchedule


def _renoise(schedule: NoiseSchedule, x0: torch.Tensor, t: int, noise: ImageNoise) -> torch.Tensor:
    """x0 taken to noise level t by the forward process (t < 0: x0 itself), each image with its own noise."""
    if t < 0:
        return x0
    return schedule.q_sample(x0, torch.full((x0.shape[0],), t), noise.draw())


# -- masks -------------------------------------------------------------------------------------------------------
def make_mask(kind: str, seed: int = 0, size: int = 28) -> torch.Tensor:
    """(1, 1, size, size) float mask, 1 = known pixel kept from the input, 0 = to be filled by the model.

    kinds: "left" / "right" / "top" / "bottom" halves kept, "centre" (a 12x12 hole in the middle), "random"
    (70 % of pixels missing).
    """
    m = torch.ones(1, 1, size, size)
    h = size // 2
    if kind == "left":
        m[..., :, h:] = 0
    elif kind == "right":
        m[..., :, :h] = 0
    elif kind == "top":
        m[..., h:, :] = 0
    elif kind == "bottom":
        m[..., :h, :] = 0
    elif kind == "centre":
        m[..., 8:20, 8:20] = 0
    elif kind == "random":
        m = (torch.rand(1, 1, size, size, generator=torch.Generator().manual_seed(seed)) > 0.7).float()
    else:
        raise ValueError(f"unknown mask {kind!r}; use left, right, top, bottom, centre or random")
    return m


# -- inpainting (RePaint, Lugmayr et al. 2022) ---------------------------------------------------------------------
def inpaint(model, schedule: NoiseSchedule, x_known: torch.Tensor, mask: torch.Tensor, label: int,
            config: SampleConfig, seed: int = 0, resample: int = 1) -> torch.Tensor:
    """Fill the pixels where mask == 0, keeping the known ones (mask == 1).

    After every reverse step the known region is replaced by the input noised to the same level (RePaint
    eq. 8), so the model only ever invents the missing part, in harmony with what is known. resample > 1
    repeats each step that many times, re-noising the result back to t in between (RePaint's resampling),
    which lets the filled region adapt to the known one at the cost of resample x the time.
    """
    B = x_known.shape[0]
    seeds = [seed + i for i in range(B)]
    labels = torch.full((B,), label, dtype=torch.long)
    own = ImageNoise(seeds, x_known.shape[1:])                   # x_T, then the posterior and jump-back noise
    known = ImageNoise(seeds, x_known.shape[1:], stream=1)        # noise for the known pixels
    x = own.draw()
    ts = reverse_timesteps(schedule, config)
    ddpm_config = config.replace(sampler="ddpm", add_noise=True, clip_x0=True)   # RePaint: DDPM posterior steps
    for i, t in enumerate(ts):
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        for r in range(resample):
            with torch.inference_mode():
                eps = guided_eps(model, x, t, labels, config.guidance_at(t, schedule.T), schedule=schedule)
            step = ddpm(schedule, x, t, t_prev, eps, ddpm_config, own.draw() if t_prev >= 0 else None)
            x_prev = mask * _renoise(schedule, x_known, t_prev, known) + (1 - mask) * step.x_prev
            if r + 1 < resample and t_prev >= 0:      # jump back: x_t ~ q(x_t | x_{t_prev})  (RePaint sec. 4.2)
                x = schedule.q_jump(x_prev, t_prev, t, own.draw())
            else:
                x = x_prev
    return x.clamp(-1, 1)


# -- editing (SDEdit, Meng et al. 2022) ----------------------------------------------------------------------------
def sdedit(model, schedule: NoiseSchedule, x_input: torch.Tensor, label: int, strength: float,
           config: SampleConfig, seed: int = 0) -> torch.Tensor:
    """Noise the input to `strength` of the chain, then denoise towards class `label`.

    strength 0 returns the input unchanged; small strengths keep the input's shape and restyle it; strength 1
    starts from (almost) pure noise and ignores the input. Uses the config's sampler on the tail of the chain.
    """
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be between 0 and 1, got {strength}")
    B = x_input.shape[0]
    t0 = int(round(strength * (schedule.T - 1)))
    if strength == 0:
        return x_input.clone()
    seeds = [seed + i for i in range(B)]
    noise = ImageNoise(seeds, x_input.shape[1:], stream=2).draw()        # the noising; stream 0 is the sampler's
    x_t0 = schedule.q_sample(x_input, torch.full((B,), t0), noise)
    full = reverse_timesteps(schedule, config)
    ts = [t0] + [t for t in full if t < t0]
    labels = torch.full((B,), label, dtype=torch.long)
    return sample(model, schedule, labels, config, seeds=seeds, x_T=x_t0, timesteps=ts)


# -- upscaling (ILVR, Choi et al. 2021) ----------------------------------------------------------------------------
def low_pass(x: torch.Tensor, factor: int) -> torch.Tensor:
    """phi_N: average-pool by `factor`, then nearest-upsample back (keeps exactly the coarse content)."""
    return F.interpolate(F.avg_pool2d(x, factor), scale_factor=factor, mode="nearest")


def downsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    return F.avg_pool2d(x, factor)


def upscale(model, schedule: NoiseSchedule, x_low: torch.Tensor, label: int, config: SampleConfig,
            seed: int = 0) -> torch.Tensor:
    """From a (B, 1, 28/f, 28/f) image to 28x28: after each step, the low-pass of x_t is replaced by the
    low-pass of the (upsampled) input noised to the same level (ILVR eq. 6), so the result's coarse content
    is the input's and the model supplies the detail. The final image downsamples back to the input."""
    factor = 28 // x_low.shape[-1]
    if factor * x_low.shape[-1] != 28 or factor not in (2, 4):
        raise ValueError(f"input must be 14x14 or 7x7, got {tuple(x_low.shape[-2:])}")
    ref = F.interpolate(x_low, scale_factor=factor, mode="nearest")           # (B, 1, 28, 28)
    B = x_low.shape[0]
    seeds = [seed + i for i in range(B)]
    ref_noise = ImageNoise(seeds, ref.shape[1:], stream=1)

    def post_step(t_prev: int, x_prev: torch.Tensor) -> torch.Tensor:
        return x_prev - low_pass(x_prev, factor) + low_pass(_renoise(schedule, ref, t_prev, ref_noise), factor)

    labels = torch.full((B,), label, dtype=torch.long)
    out = sample(model, schedule, labels, config, seeds=seeds, post_step=post_step)
    # Clamping to [-1, 1] can shift the coarse content a little; alternate the two constraints (valid pixel
    # range, low-pass = input) until both hold (projection onto convex sets).
    for _ in range(50):
        out = (out - low_pass(out, factor) + low_pass(ref, factor)).clamp(-1, 1)
    return out


def bicubic(x_low: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x_low, size=(28, 28), mode="bicubic", align_corners=False).clamp(-1, 1)


# -- interpolation ---------------------------------------------------------------------------------------------------
def slerp(a: torch.Tensor, b: torch.Tensor, u: float) -> torch.Tensor:
    """Spherical interpolation between two noise tensors (keeps the norm a Gaussian sample should have)."""
    a_f, b_f = a.flatten(), b.flatten()
    omega = torch.acos((a_f @ b_f / (a_f.norm() * b_f.norm())).clamp(-1, 1))
    if omega.abs() < 1e-6:
        return (1 - u) * a + u * b
    return (torch.sin((1 - u) * omega) * a + torch.sin(u * omega) * b) / torch.sin(omega)


def interpolate_classes(model, schedule: NoiseSchedule, class_a: int, class_b: int, n: int, config: SampleConfig,
                        seed: int = 0) -> torch.Tensor:
    """n digits from one noise seed, the class embedding moving from class_a to class_b: (n, 1, 28, 28)."""
    k = model.cfg.num_classes + 1
    weights = torch.zeros(n, k)
    for i in range(n):
        u = i / max(1, n - 1)
        weights[i, class_a] += 1 - u
        weights[i, class_b] += u
    return sample(model, schedule, weights, config, seeds=[seed] * n)


def interpolate_seeds(model, schedule: NoiseSchedule, label: int, seed_a: int, seed_b: int, n: int,
                      config: SampleConfig) -> torch.Tensor:
    """n digits of one class whose starting noise moves from seed_a to seed_b along a great circle."""
    shape = (1, 1, model.cfg.image_size, model.cfg.image_size)
    a, b = initial_noise(shape, [seed_a]), initial_noise(shape, [seed_b])
    x_T = torch.cat([slerp(a, b, i / max(1, n - 1)) for i in range(n)])
    labels = torch.full((n,), label, dtype=torch.long)
    return sample(model, schedule, labels, config.replace(eta=0.0, sampler="ddim"), x_T=x_T)


# -- limits: inputs the model never saw -----------------------------------------------------------------------------
def out_of_distribution_inputs(real_digit: torch.Tensor) -> dict[str, torch.Tensor]:
    """A letter 'A', the real digit with inverted colours, a blank image, and pure noise: (1, 1, 28, 28) each."""
    letter = torch.full((1, 1, 28, 28), -1.0)
    for i in range(20):                             # two slanted strokes and a bar, drawn by hand
        y = 4 + i
        letter[0, 0, y, 14 - i // 2:16 - i // 2] = 1.0
        letter[0, 0, y, 13 + i // 2:15 + i // 2] = 1.0
    letter[0, 0, 16:18, 8:21] = 1.0
    return {"letter A": letter, "inverted digit": -real_digit, "blank": torch.full((1, 1, 28, 28), -1.0),
            "noise": torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(0)).clamp(-1, 1)}
