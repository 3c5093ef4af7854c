"""Reverse process: the sampling loop, classifier-free guidance, per-image randomness and the sample cache.

The samplers' updates (DDPM, DDIM, ...) are registered in samplers.py and their formulas live in schedule.py;
this module runs them. `sample_progressive` yields a `SamplerStep` per denoising step, so the Denoising page animates exactly the
code path that produces final samples (improved-diffusion's p_sample_loop_progressive); `sample` is a thin
consumer that returns the last image.

Classifier-free guidance (Ho & Salimans 2022), in the convention of TeaPearce's conditional MNIST DDPM:
    eps = (1 + w) * eps(x_t, t, y) - w * eps(x_t, t, null)
w = 0 is plain conditional sampling; larger w trades diversity for typical, confidently classified digits.
Conditional and unconditional predictions come from one batched forward pass of 2B images; with a limited
guidance interval (SampleConfig.guidance_interval) the steps outside it run the B conditional images alone.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import torch

from . import budget
from .config import SampleConfig
from .samplers import get as get_sampler
from .schedule import NoiseSchedule


@dataclass(frozen=True)
class SamplerStep:
    """One reverse step from timestep `t` to `t_prev` (-1 after the last step).

    x_t: the state entering the step; x_prev: the state leaving it (the final image after the last step);
    x0_pred: the model's estimate of the clean image from x_t ("pred_original_sample", to preview progress);
    eps_pred: the (guided) noise prediction; terms: the sampler's update split into named terms that add up to
    x_prev before any post_step (x̂₀ term, direction or x_t term, noise term). All (B, C, H, W), image units.
    """

    index: int
    t: int
    t_prev: int
    x_t: torch.Tensor
    x0_pred: torch.Tensor
    eps_pred: torch.Tensor
    x_prev: torch.Tensor
    terms: dict = field(default_factory=dict)


def guided_eps(model: torch.nn.Module, x_t: torch.Tensor, t: int, labels: torch.Tensor, guidance: float,
               style: torch.Tensor | None = None, *, schedule: NoiseSchedule) -> torch.Tensor:
    """Noise prediction with classifier-free guidance; one forward of 2B images when guidance > 0. The schedule
    turns a velocity model's output into a noise prediction (guidance is linear, so guiding either is the same)."""
    budget.check()                                           # a learner's request stops when its time is spent
    B = x_t.shape[0]
    tt = torch.full((B,), t, dtype=torch.long, device=x_t.device)
    cfg = model.cfg                                          # every denoiser here carries its ModelConfig
    if guidance == 0 or not (cfg.class_embedding or cfg.style_dim > 0):
        return schedule.eps_from_output(x_t, t, model(x_t, tt, labels, style))
    if labels.dim() == 2:                                    # soft labels: the null is one-hot on the null index
        null = torch.zeros_like(labels)
        null[:, cfg.null_class] = 1.0
    else:
        null = torch.full_like(labels, cfg.null_class)
    style2 = None
    if style is not None:
        style2 = torch.cat([style, torch.full_like(style, float("nan"))])
    eps = model(torch.cat([x_t, x_t]), torch.cat([tt, tt]), torch.cat([labels, null]), style2)   # (2B, C, H, W)
    eps_cond, eps_uncond = eps[:B], eps[B:]
    return schedule.eps_from_output(x_t, t, (1 + guidance) * eps_cond - guidance * eps_uncond)


class ImageNoise:
    """Every random draw of a sampling run, one generator per image, seeded from that image's seed.

    Draw k of image i comes from generator i alone, so a digit depends only on its own seed: the same seed
    gives the same digit in a batch of 1 or of 250, on any page and in the cache. The first draw of stream 0
    is x_T; the sampler's per-step noise follows it. Other streams (stream > 0) are independent sequences for
    other random needs of one image (re-noising the known pixels in inpainting and upscaling).
    """

    def __init__(self, seeds: Sequence[int], shape: Sequence[int], device: torch.device | str = "cpu",
                 stream: int = 0) -> None:
        self.shape = tuple(shape)                            # one image: (C, H, W)
        self.device = device
        self.generators = [torch.Generator().manual_seed(int(s) if stream == 0 else _stream_seed(int(s), stream))
                           for s in seeds]

    def draw(self) -> torch.Tensor:
        """(B, C, H, W) standard normal: the next draw of every image's generator."""
        return torch.stack([torch.randn(self.shape, generator=g) for g in self.generators]).to(self.device)


def _stream_seed(seed: int, stream: int) -> int:
    """A generator seed for (image seed, stream > 0) that no other image's stream 0 or other stream shares
    (hashed with numpy's SeedSequence, not an affine map, which would collide with some other seed)."""
    import numpy as np

    return int(np.random.SeedSequence([seed, stream]).generate_state(2, np.uint64)[0] >> 1)


def initial_noise(shape: Sequence[int], seeds: Sequence[int], device: torch.device | str = "cpu") -> torch.Tensor:
    """x_T for a batch: image i is the first draw of its own generator, seeded with seeds[i]; (B, C, H, W)."""
    if len(seeds) != shape[0]:
        raise ValueError(f"need one seed per image: {shape[0]} images, {len(seeds)} seeds")
    return ImageNoise(seeds, shape[1:], device).draw()


def reverse_timesteps(schedule: NoiseSchedule, config: SampleConfig) -> list[int]:
    """The config's `steps` timesteps from T-1 down to 0; more steps than the chain has is an error."""
    if config.steps > schedule.T:
        raise ValueError(f"{config.steps} sampling steps asked of a model with T = {schedule.T} noise levels; "
                         f"use at most {schedule.T}")
    return schedule.timesteps(config.steps)


@torch.inference_mode()
def sample_progressive(model: torch.nn.Module, schedule: NoiseSchedule, labels: torch.Tensor,
                       config: SampleConfig | None = None, *, seeds: Sequence[int] | None = None,
                       x_T: torch.Tensor | None = None, style: torch.Tensor | None = None,
                       timesteps: Sequence[int] | None = None,
                       post_step: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
                       eps_fn: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
                       ) -> Iterator[SamplerStep]:
    """Run the reverse process step by step with the config's registered sampler, yielding a SamplerStep each.

    labels: (B,) int64 classes (10 = unconditional) or (B, 11) soft class weights. seeds: one per image
    (default config.seed + i); every random draw of image i comes from its seed (ImageNoise).
    x_T: start state instead of seeded noise (SDEdit starts from a noised real digit). timesteps: descending
    list to run instead of the config's `steps` (SDEdit runs only the tail). post_step(t_prev, x_prev) may
    replace the state after each step (inpainting, ILVR). eps_fn(x_t, t) replaces the guided model call.
    """
    cfg = config or SampleConfig()
    sampler = get_sampler(cfg.sampler)
    device = next(model.parameters()).device
    labels = labels.to(device)
    B = labels.shape[0]
    shape = (model.cfg.in_channels, model.cfg.image_size, model.cfg.image_size)
    if seeds is None:
        seeds = [cfg.seed + i for i in range(B)]
    if len(seeds) != B:
        raise ValueError(f"need one seed per image: {B} images, {len(seeds)} seeds")
    noise_source = ImageNoise(seeds, shape, device)
    x = noise_source.draw() if x_T is None else x_T.to(device)
    ts = list(timesteps) if timesteps is not None else reverse_timesteps(schedule, cfg)
    stochastic = sampler.needs_noise(cfg)
    memory: dict = {}
    if style is not None:
        style = style.to(device)

    def eps_at(x_t: torch.Tensor, t: int) -> torch.Tensor:
        return (eps_fn(x_t, t) if eps_fn is not None
                else guided_eps(model, x_t, t, labels, cfg.guidance_at(t, schedule.T), style, schedule=schedule))

    memory["eps_at"] = eps_at                  # a second network call within a step (Heun)
    for i, t in enumerate(ts):
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        eps = eps_at(x, t)
        noise = noise_source.draw() if stochastic and t_prev >= 0 else None
        out = sampler.step(schedule, x, t, t_prev, eps, cfg, noise, memory)
        x_prev = out.x_prev if post_step is None else post_step(t_prev, out.x_prev)
        yield SamplerStep(i, t, t_prev, x, out.x0_pred, out.eps, x_prev, out.terms)
        x = x_prev


def sample(model: torch.nn.Module, schedule: NoiseSchedule, labels: torch.Tensor,
           config: SampleConfig | None = None, **kwargs) -> torch.Tensor:
    """Final samples only: (B, C, H, W) in [-1, 1]. Same arguments as sample_progressive."""
    x = None
    for step in sample_progressive(model, schedule, labels, config, **kwargs):
        x = step.x_prev
    assert x is not None
    return x.clamp(-1, 1)


def class_labels(per_class: int, classes: Sequence[int] = tuple(range(10))) -> torch.Tensor:
    """Labels in class order, `per_class` of each: [0]*K + [1]*K + ... as (10K,) int64."""
    return torch.tensor([c for c in classes for _ in range(per_class)], dtype=torch.long)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Display edge: [-1, 1] images (B, 1, H, W) -> (B, H, W) uint8 with 0 = background, 255 = ink (MNIST)."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[:, 0]


def sample_cached(checkpoint, labels: torch.Tensor, config: SampleConfig, seeds: Sequence[int] | None = None,
                  cache=None, batch: int = 250, schedule: NoiseSchedule | None = None) -> torch.Tensor:
    """Final samples of a loaded Checkpoint through the content-addressed SampleCache (if given).

    The key covers the weights' sha256, the full sampler config, the seeds and the labels, so a hit is
    exactly what sampling would return. Returns (B, C, H, W) in [-1, 1] on the CPU.
    """
    from .cache import cache_key

    if seeds is None:
        seeds = [config.seed + i for i in range(labels.shape[0])]
    seeds = [int(s) for s in seeds]
    schedule = schedule or NoiseSchedule(checkpoint.schedule_config)

    def compute() -> dict[str, torch.Tensor]:
        parts = []
        for i in range(0, labels.shape[0], batch):
            parts.append(sample(checkpoint.model, schedule, labels[i:i + batch], config, seeds=seeds[i:i + batch]).cpu())
        return {"images": torch.cat(parts) if parts else torch.empty(0, 1, 28, 28)}

    if cache is None or not checkpoint.sha256:
        return compute()["images"]
    key = cache_key(weights=checkpoint.sha256, sample=config.to_dict(), seeds=seeds, labels=labels.tolist(),
                    **sampler_key(config))
    return cache.get_or_compute(key, compute)["images"]


def sampler_key(config: SampleConfig) -> dict:
    """What, besides the config, decides the images a config produces: the registered sampler's version and,
    for samplers that draw noise at every step, how that noise is drawn. Empty for the deterministic DDIM of
    version 1, so the shipped precomputed samples keep their keys."""
    sampler = get_sampler(config.sampler)
    key = {} if sampler.version == 1 else {"sampler_version": sampler.version}
    if sampler.needs_noise(config):
        key["noise"] = "per-image"          # before: one generator per batch, so an image depended on its batch
    return key


def trajectory(model: torch.nn.Module, schedule: NoiseSchedule, labels: torch.Tensor, config: SampleConfig,
               seeds: Sequence[int], max_frames: int = 50) -> dict:
    """The reverse process for a few digits, subsampled to <= max_frames steps (always keeping the last).

    Returns {"t": [...], "x_t": (F, B, 1, H, W), "x0_pred": (F, B, 1, H, W), "eps_pred": (F, B, 1, H, W),
    "terms": {name: (F, B, 1, H, W)}, "final": (B, 1, H, W)} on the CPU; frame i is the state entering step i,
    with the step's update split into its terms (they add up to the next state), so the slider shows x_t
    beside the model's guess x0_pred and how the sampler combines them. The extra last frame is the finished
    digit (t = -1; its terms are zero).
    """
    steps = list(sample_progressive(model, schedule, labels, config, seeds=seeds))
    n = len(steps)
    if n <= max_frames - 1:
        keep = list(range(n))
    else:
        keep = sorted({round(i * (n - 1) / (max_frames - 2)) for i in range(max_frames - 1)})
    final = steps[-1].x_prev.clamp(-1, 1).cpu()
    names = list(dict.fromkeys(name for st in steps for name in st.terms))
    zero = torch.zeros_like(final)
    return {"t": [steps[i].t for i in keep] + [-1],
            "x_t": torch.stack([steps[i].x_t.cpu() for i in keep] + [final]),
            "x0_pred": torch.stack([steps[i].x0_pred.cpu() for i in keep] + [final]),
            "eps_pred": torch.stack([steps[i].eps_pred.cpu() for i in keep] + [zero]),
            "terms": {name: torch.stack([steps[i].terms.get(name, zero).cpu() for i in keep] + [zero])
                      for name in names},
            "final": final}
