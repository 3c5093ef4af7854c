"""Reverse process: DDPM (ancestral) and DDIM samplers as generators that yield every step.

`sample_progressive` yields a `SamplerStep` per denoising step, so the Denoising page animates exactly the
code path that produces final samples (improved-diffusion's p_sample_loop_progressive); `sample` is a thin
consumer that returns the last image.

Classifier-free guidance (Ho & Salimans 2022), in the convention of TeaPearce's conditional MNIST DDPM:
    eps = (1 + w) * eps(x_t, t, y) - w * eps(x_t, t, null)
w = 0 is plain conditional sampling; larger w trades diversity for typical, confidently classified digits.
Conditional and unconditional predictions come from one batched forward pass of 2B images; with a limited
guidance interval (SampleConfig.guidance_interval) the steps outside it run the B conditional images alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch

from .config import SampleConfig
from .schedule import NoiseSchedule


@dataclass(frozen=True)
class SamplerStep:
    """One reverse step from timestep `t` to `t_prev` (-1 after the last step).

    x_t: the state entering the step; x_prev: the state leaving it (the final image after the last step);
    x0_pred: the model's estimate of the clean image from x_t ("pred_original_sample", to preview progress);
    eps_pred: the (guided) noise prediction. All (B, C, H, W) in [-1, 1] image units.
    """

    index: int
    t: int
    t_prev: int
    x_t: torch.Tensor
    x0_pred: torch.Tensor
    eps_pred: torch.Tensor
    x_prev: torch.Tensor


def guided_eps(model: torch.nn.Module, x_t: torch.Tensor, t: int, labels: torch.Tensor, guidance: float,
               style: torch.Tensor | None = None) -> torch.Tensor:
    """Noise prediction with classifier-free guidance; one forward of 2B images when guidance > 0."""
    B = x_t.shape[0]
    tt = torch.full((B,), t, dtype=torch.long, device=x_t.device)
    cfg = getattr(model, "cfg", None)
    conditional = cfg is None or cfg.class_embedding or cfg.style_dim > 0
    if guidance == 0 or not conditional:
        return model(x_t, tt, labels, style)
    null_index = cfg.null_class if cfg is not None else 10
    if labels.dim() == 2:                                    # soft labels: the null is one-hot on index 10
        null = torch.zeros_like(labels)
        null[:, null_index] = 1.0
    else:
        null = torch.full_like(labels, null_index)
    style2 = None
    if style is not None:
        style2 = torch.cat([style, torch.full_like(style, float("nan"))])
    eps = model(torch.cat([x_t, x_t]), torch.cat([tt, tt]), torch.cat([labels, null]), style2)   # (2B, C, H, W)
    eps_cond, eps_uncond = eps[:B], eps[B:]
    return (1 + guidance) * eps_cond - guidance * eps_uncond


def _alpha_bar(schedule: NoiseSchedule, t: int, like: torch.Tensor) -> torch.Tensor:
    """alpha_bar at t as a 0-dim tensor in like's dtype; alpha_bar(-1) = 1 (the clean image)."""
    value = 1.0 if t < 0 else float(schedule.alpha_bar[t])
    return torch.tensor(value, dtype=like.dtype, device=like.device)


def ddim_step(schedule: NoiseSchedule, x_t: torch.Tensor, t: int, t_prev: int, eps: torch.Tensor,
              eta: float = 0.0, clip_x0: bool = True, noise: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One DDIM update (Song et al. 2021, eq. 12). Returns (x_prev, x0_pred, eps_used).

    Matches diffusers' DDIMScheduler.step(use_clipped_model_output=True) given the same t, t_prev and noise.
    """
    a_t, a_prev = _alpha_bar(schedule, t, x_t), _alpha_bar(schedule, t_prev, x_t)
    # 1. predicted x_0 from the predicted noise (eq. 12, "predicted x_0")
    x0 = (x_t - (1 - a_t).sqrt() * eps) / a_t.sqrt()
    if clip_x0:
        x0 = x0.clamp(-1, 1)
        eps = (x_t - a_t.sqrt() * x0) / (1 - a_t).sqrt()      # keep eps consistent with the clipped x_0
    # 2. sigma_t(eta) (eq. 16); eta = 1 gives the DDPM posterior variance
    var = (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)
    sigma = eta * var.sqrt()
    # 3. "direction pointing to x_t" and the update
    x_prev = a_prev.sqrt() * x0 + (1 - a_prev - sigma ** 2).clamp(min=0).sqrt() * eps
    if eta > 0 and t_prev >= 0:
        if noise is None:
            raise ValueError("ddim_step with eta > 0 needs a noise tensor")
        x_prev = x_prev + sigma * noise
    return x_prev, x0, eps


def ddpm_step(schedule: NoiseSchedule, x_t: torch.Tensor, t: int, t_prev: int, eps: torch.Tensor,
              clip_x0: bool = True, noise: torch.Tensor | None = None, add_noise: bool = True
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """One ancestral step x_t -> x_{t_prev} through the posterior q(x_prev | x_t, x0_pred) (Ho et al. eq. 6-7).

    With t_prev = t - 1 this is the paper's sampler; with a stride it uses the betas of the strided chain
    (beta' = 1 - alpha_bar_t / alpha_bar_prev), as diffusers' DDPMScheduler does. Returns (x_prev, x0_pred).
    add_noise=False drops the sigma * z term: the "wrong sampler" that collapses to blurry averages.
    """
    a_t, a_prev = _alpha_bar(schedule, t, x_t), _alpha_bar(schedule, t_prev, x_t)
    beta = 1 - a_t / a_prev                                    # beta of the (possibly strided) step
    x0 = (x_t - (1 - a_t).sqrt() * eps) / a_t.sqrt()
    if clip_x0:
        x0 = x0.clamp(-1, 1)
    mean = (a_prev.sqrt() * beta / (1 - a_t)) * x0 + ((1 - beta).sqrt() * (1 - a_prev) / (1 - a_t)) * x_t
    if t_prev < 0 or not add_noise:
        return mean, x0
    if noise is None:
        raise ValueError("ddpm_step needs a noise tensor")
    var = (1 - a_prev) / (1 - a_t) * beta
    return mean + var.clamp(min=1e-20).sqrt() * noise, x0


def initial_noise(shape: Sequence[int], seeds: Sequence[int], device: torch.device | str = "cpu") -> torch.Tensor:
    """x_T for a batch: image i is drawn from its own generator seeded with seeds[i].

    So a digit depends only on its own seed, not on what else is in the batch; (B, C, H, W) float32.
    """
    B = shape[0]
    if len(seeds) != B:
        raise ValueError(f"need one seed per image: {B} images, {len(seeds)} seeds")
    out = torch.empty(tuple(shape), dtype=torch.float32)
    for i, s in enumerate(seeds):
        g = torch.Generator().manual_seed(int(s))
        out[i] = torch.randn(tuple(shape[1:]), generator=g)
    return out.to(device)


@torch.inference_mode()
def sample_progressive(model: torch.nn.Module, schedule: NoiseSchedule, labels: torch.Tensor,
                       config: SampleConfig | None = None, *, seeds: Sequence[int] | None = None,
                       x_T: torch.Tensor | None = None, style: torch.Tensor | None = None,
                       timesteps: Sequence[int] | None = None,
                       post_step: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
                       eps_fn: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
                       ) -> Iterator[SamplerStep]:
    """Run the reverse process step by step, yielding a SamplerStep after each one.

    labels: (B,) int64 classes (10 = unconditional). seeds: one per image (default config.seed + i).
    x_T: start state instead of seeded noise (SDEdit starts from a noised real digit). timesteps: descending
    list to run instead of the config's `steps` (SDEdit runs only the tail). post_step(t_prev, x_prev) may
    replace the state after each step (inpainting, ILVR). eps_fn(x_t, t) replaces the guided model call.
    """
    cfg = config or SampleConfig()
    device = next(model.parameters()).device
    labels = labels.to(device)
    B = labels.shape[0]                                       # labels: (B,) ints or (B, 11) soft weights
    shape = (B, model.cfg.in_channels, model.cfg.image_size, model.cfg.image_size)
    if seeds is None:
        seeds = [cfg.seed + i for i in range(B)]
    x = initial_noise(shape, seeds, device) if x_T is None else x_T.to(device)
    ts = list(timesteps) if timesteps is not None else schedule.timesteps(min(cfg.steps, schedule.T))
    step_gen = torch.Generator(device="cpu").manual_seed(int(seeds[0]) * 1_000_003 + 7 if len(seeds) else cfg.seed)
    if style is not None:
        style = style.to(device)
    for i, t in enumerate(ts):
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        eps = (eps_fn(x, t) if eps_fn is not None
               else guided_eps(model, x, t, labels, cfg.guidance_at(t, schedule.T), style))
        needs_noise = t_prev >= 0 and (cfg.sampler == "ddpm" and cfg.add_noise or cfg.sampler == "ddim" and cfg.eta > 0)
        noise = torch.randn(shape, generator=step_gen).to(device) if needs_noise else None
        if cfg.sampler == "ddim":
            x_prev, x0, eps = ddim_step(schedule, x, t, t_prev, eps, cfg.eta, cfg.clip_x0, noise)
        else:
            x_prev, x0 = ddpm_step(schedule, x, t, t_prev, eps, cfg.clip_x0, noise, cfg.add_noise)
        if post_step is not None:
            x_prev = post_step(t_prev, x_prev)
        yield SamplerStep(i, t, t_prev, x, x0, eps, x_prev)
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
    key = cache_key(weights=checkpoint.sha256, sample=config.to_dict(), seeds=seeds, labels=labels.tolist())
    return cache.get_or_compute(key, compute)["images"]


def trajectory(model: torch.nn.Module, schedule: NoiseSchedule, labels: torch.Tensor, config: SampleConfig,
               seeds: Sequence[int], max_frames: int = 50) -> dict:
    """The reverse process for a few digits, subsampled to <= max_frames steps (always keeping the last).

    Returns {"t": [...], "x_t": (F, B, 1, H, W), "x0_pred": (F, B, 1, H, W), "final": (B, 1, H, W)} on the CPU;
    frame i is the state entering step i, so the slider shows x_t beside the model's guess x0_pred.
    """
    steps = list(sample_progressive(model, schedule, labels, config, seeds=seeds))
    n = len(steps)
    if n <= max_frames - 1:
        keep = list(range(n))
    else:
        keep = sorted({round(i * (n - 1) / (max_frames - 2)) for i in range(max_frames - 1)})
    final = steps[-1].x_prev.clamp(-1, 1).cpu()
    # one extra frame after the last step: the finished digit (t = -1, x_t = x0_pred = the sample)
    return {"t": [steps[i].t for i in keep] + [-1],
            "x_t": torch.stack([steps[i].x_t.cpu() for i in keep] + [final]),
            "x0_pred": torch.stack([steps[i].x0_pred.cpu() for i in keep] + [final]),
            "final": final}
