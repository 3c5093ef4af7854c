"""The sampler registry: a reverse-process update is one function plus one registration.

A sampler's step maps the state entering a step, x_t, and the network's (guided) noise prediction eps to the
state leaving it, x_{t_prev}, using only the schedule's maths (schedule.py owns every formula). The loop that
calls the network, draws each image's noise and yields every step lives in sampling.py; the CLI's `--sampler`
choices, the Denoising page's sampler list, config validation and the sample cache's key all read this
registry, so adding a sampler (a few-step solver, say) touches this file only.

A step function has the signature
    step(schedule, x_t, t, t_prev, eps, config, noise, memory) -> StepOutput
where t_prev = -1 after the last step, noise is a standard-normal tensor like x_t when the sampler's
`needs_noise(config)` is true (else None), and memory is a dict that lives for one sampling run (multistep
solvers keep their previous predictions there).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from .schedule import NoiseSchedule


@dataclass(frozen=True)
class StepOutput:
    """x_prev: the state leaving the step; x0_pred: the clean-image estimate the step used (clipped if the
    config clips); eps: the noise prediction the step used (DDIM recomputes it from a clipped x0_pred; DDPM keeps the network's); terms: the update split into the named
    terms that add up to x_prev (for the Denoising page's breakdown)."""

    x_prev: torch.Tensor
    x0_pred: torch.Tensor
    eps: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)


StepFn = Callable[..., StepOutput]


@dataclass(frozen=True)
class Sampler:
    name: str
    title: str                                   # what the pages show, with the paper
    step: StepFn
    needs_noise: Callable[[object], bool]        # config -> does this step draw fresh noise?
    version: int = 1                             # bump when the images a config produces change (cache key)


SAMPLERS: dict[str, Sampler] = {}


def register(name: str, title: str, needs_noise: Callable[[object], bool], version: int = 1
             ) -> Callable[[StepFn], StepFn]:
    """Decorator: add a step function to the registry under `name`."""
    def add(fn: StepFn) -> StepFn:
        if name in SAMPLERS:
            raise ValueError(f"sampler {name!r} is registered twice")
        SAMPLERS[name] = Sampler(name, title, fn, needs_noise, version)
        return fn
    return add


def names() -> tuple[str, ...]:
    """Registered sampler names, in registration order: the CLI's and the pages' choices."""
    return tuple(SAMPLERS)


def get(name: str) -> Sampler:
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name]


def _x0_and_eps(schedule: NoiseSchedule, x_t: torch.Tensor, t: int, eps: torch.Tensor, clip: bool
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """x0_pred from eps; clipped to the data range [-1, 1] with eps recomputed to match when `clip`."""
    x0 = schedule.predict_x0_from_eps(x_t, t, eps)
    if clip:
        x0 = x0.clamp(-1, 1)
        eps = schedule.predict_eps_from_x0(x_t, t, x0)
    return x0, eps


@register("ddim", "DDIM (Song et al. 2021): deterministic at eta = 0, any number of steps",
          needs_noise=lambda cfg: cfg.eta > 0)
def ddim(schedule: NoiseSchedule, x_t: torch.Tensor, t: int, t_prev: int, eps: torch.Tensor, config,
         noise: torch.Tensor | None = None, memory: dict | None = None) -> StepOutput:
    """x_{t_prev} = sqrt(a_prev) x0 + sqrt(1 - a_prev - sigma^2) eps + sigma z   (Song et al. 2021, eq. 12).

    Matches diffusers' DDIMScheduler.step(use_clipped_model_output=True) given the same t, t_prev and noise."""
    x0, eps = _x0_and_eps(schedule, x_t, t, eps, config.clip_x0)
    sigma = schedule.ddim_sigma(t, t_prev, config.eta, x_t)
    x0_term, direction = schedule.ddim_terms(x0, eps, t_prev, sigma)
    terms = {"x̂₀ term": x0_term, "direction term": direction}
    if config.eta > 0 and t_prev >= 0:
        if noise is None:
            raise ValueError("DDIM with eta > 0 needs a noise tensor")
        terms["noise term"] = sigma * noise
    return StepOutput(sum(terms.values()), x0, eps, terms)


@register("ddpm", "DDPM (Ho et al. 2020): ancestral sampling through the posterior, full or strided chain",
          needs_noise=lambda cfg: cfg.add_noise)
def ddpm(schedule: NoiseSchedule, x_t: torch.Tensor, t: int, t_prev: int, eps: torch.Tensor, config,
         noise: torch.Tensor | None = None, memory: dict | None = None) -> StepOutput:
    """x_{t_prev} ~ q(x_{t_prev} | x_t, x0_pred) = posterior mean + sigma z   (Ho et al. 2020, eq. 6-7, alg. 2).

    With t_prev = t - 1 this is the paper's sampler; with a stride it uses the strided chain's betas, as
    diffusers' DDPMScheduler does. config.add_noise = False drops sigma z: the "wrong sampler" of the page."""
    x0, _ = _x0_and_eps(schedule, x_t, t, eps, False)
    if config.clip_x0:
        x0 = x0.clamp(-1, 1)
    x0_term, xt_term, mean, variance = schedule.q_posterior(x0, x_t, t, t_prev)
    terms = {"x̂₀ term": x0_term, "x_t term": xt_term}
    if t_prev >= 0 and config.add_noise:
        if noise is None:
            raise ValueError("DDPM needs a noise tensor")
        terms["noise term"] = variance.clamp(min=1e-20).sqrt() * noise
    return StepOutput(sum(terms.values()), x0, eps, terms)
