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
solvers keep their previous predictions there; memory["eps_at"](x, t) is the run's guided network, for a solver
that needs a second call within a step, as Heun does).
"""
from __future__ import annotations

import math
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


def _alpha_sigma_lambda(schedule: NoiseSchedule, t: int) -> tuple[float, float, float]:
    """(alpha_t, sigma_t, lambda_t) with x_t = alpha_t x0 + sigma_t eps and lambda_t = log(alpha_t / sigma_t), half
    the log-SNR: DPM-Solver's clock, in which the ODE's linear part integrates exactly (Lu et al. 2022, sec. 3).
    t = -1 is the clean image: alpha 1, sigma 0, lambda infinite. Python floats (float64) for exactness."""
    ab = schedule.alpha_bar_at(t)
    alpha, sigma = math.sqrt(ab), math.sqrt(1 - ab)
    return alpha, sigma, (math.inf if sigma == 0 else math.log(alpha / sigma))


def _dpmpp_2m_terms(schedule: NoiseSchedule, x_t: torch.Tensor, t: int, t_prev: int, x0: torch.Tensor,
                    before: dict | None, correction: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The DPM-Solver++(2M) update split into its terms (a corrector's shift of x_t, if given, as its own term).
    before: {"x0", "lambda"} of the previous step, or None: then, and onto the clean image, first order."""
    _, sigma_t, lam_t = _alpha_sigma_lambda(schedule, t)
    alpha_p, sigma_p, lam_p = _alpha_sigma_lambda(schedule, t_prev)
    h = lam_p - lam_t
    weight = alpha_p * -math.expm1(-h)                     # alpha_prev (1 - e^-h); 1 on the last step
    extrapolation = torch.zeros_like(x0)
    if before is not None and t_prev >= 0:
        r = (lam_t - before["lambda"]) / h
        extrapolation = (weight / (2 * r)) * (x0 - before["x0"])
    terms = {"x_t term": (sigma_p / sigma_t) * x_t}
    if correction is not None:
        terms["corrector term"] = (sigma_p / sigma_t) * correction
    terms.update({"x̂₀ term": weight * x0, "x̂₀ extrapolation term": extrapolation})
    return terms


def _previous(memory: dict, key: str, t: int) -> dict | None:
    """What the step that led to this x_t kept, if that step ended at t (a fresh run, or SDEdit's tail, has none)."""
    before = memory.get(key)
    return before if before is not None and before["t_prev"] == t else None


@register("dpmpp-2m", "DPM-Solver++(2M) (Lu et al. 2022): deterministic, second order from the last two x̂₀; "
          "a little better than DDIM at the same steps", needs_noise=lambda cfg: False)
def dpmpp_2m(schedule: NoiseSchedule, x_t: torch.Tensor, t: int, t_prev: int, eps: torch.Tensor, config,
             noise: torch.Tensor | None = None, memory: dict | None = None) -> StepOutput:
    """x_{t_prev} = (sigma_prev / sigma_t) x_t + alpha_prev (1 - e^-h) [x0 + (x0 - x0_before) / (2 r)]
    with h = lambda_prev - lambda_t and r = h_before / h   (Lu et al. 2022, "DPM-Solver++", alg. 2).

    Why it can need fewer steps than DDIM: x̂₀ drifts as t falls, and instead of holding it fixed over the step
    (DDIM), the step extrapolates its trend from the previous step's x̂₀, which it keeps in `memory`. Without a
    previous x̂₀ (the first step) and onto the clean image (the last step: sigma = 0, h infinite, x_prev = x̂₀) the
    step is first order, which is exactly DDIM at eta = 0; as the first step (from t = T-1) covers most of the
    log-SNR range, the gain over DDIM on our models is small (UniPC's corrector fixes that). Matches diffusers' DPMSolverMultistepScheduler
    (algorithm_type="dpmsolver++", solver_order=2, solver_type="midpoint", final_sigmas_type="zero"; clipping is
    its thresholding with sample_max_value=1) given the same timesteps and network outputs."""
    memory = {} if memory is None else memory
    x0, eps = _x0_and_eps(schedule, x_t, t, eps, config.clip_x0)
    terms = _dpmpp_2m_terms(schedule, x_t, t, t_prev, x0, _previous(memory, "dpmpp-2m", t))
    memory["dpmpp-2m"] = {"t_prev": t_prev, "x0": x0, "lambda": _alpha_sigma_lambda(schedule, t)[2]}
    return StepOutput(sum(terms.values()), x0, eps, terms)


def _unic_bh2(schedule: NoiseSchedule, t: int, x0: torch.Tensor, before: dict) -> torch.Tensor:
    """UniC, the corrector of UniPC (Zhao et al. 2023, alg. 1, B(h) = e^h - 1 "bh2", data prediction): redo the
    previous step, from the state that entered it to t, now that x̂₀ at t is known too, i.e. with the x̂₀ at both
    ends of the step (order 1: their mean; order 2: also the x̂₀ before, weights rho solving the order
    conditions). Costs no network call: x̂₀ at t is the one this step needs anyway."""
    alpha_t, sigma_t, lam_t = _alpha_sigma_lambda(schedule, t)
    _, sigma_s, lam_s = _alpha_sigma_lambda(schedule, before["t"])
    m0 = before["x0"]
    h = lam_t - lam_s
    phi = math.expm1(-h)                                   # e^-h - 1 (< 0): h phi_1(h) and B(h) of bh2 at once
    base = (sigma_t / sigma_s) * before["x"] - alpha_t * phi * m0
    if before["order"] == 1:
        return base - alpha_t * phi * 0.5 * (x0 - m0)
    rk = (before["lambda_before"] - lam_s) / h             # where the x̂₀ before sits, in units of h (< 0)
    b1 = (phi / -h - 1) / phi
    b2 = ((phi / -h - 1) / -h - 0.5) * 2 / phi
    rho0 = (b1 - b2) / (1 - rk)                            # solves [[1, 1], [rk, 1]] rho = (b1, b2)
    rho1 = b1 - rho0
    d1 = (before["x0_before"] - m0) / rk
    return base - alpha_t * phi * (rho0 * d1 + rho1 * (x0 - m0))


@register("unipc", "UniPC (Zhao et al. 2023): DPM-Solver++(2M) plus a corrector that redoes each step with the "
          "next x̂₀, at no extra network call; the best digits at 5-15 steps", needs_noise=lambda cfg: False)
def unipc(schedule: NoiseSchedule, x_t: torch.Tensor, t: int, t_prev: int, eps: torch.Tensor, config,
          noise: torch.Tensor | None = None, memory: dict | None = None) -> StepOutput:
    """Correct x_t by c with UniC, then step from x_t + c with UniP-2, which (bh2, order 2) is exactly the
    DPM-Solver++(2M) step   (Zhao et al. 2023, "UniPC", alg. 1 and 3).

    Why it beats DPM-Solver++(2M) at few steps: a predictor never revisits a step, and on our trailing steps the
    first one (from t = T-1, alpha_bar ~ 2e-9) covers most of the log-SNR range; the corrector redoes each step
    once the x̂₀ at its end is known (on the last step c is multiplied by sigma = 0: it no longer matters). c is
    kept as a shift of the state the last step predicted, so a post_step's replacement (inpainting) stays.
    Matches diffusers' UniPCMultistepScheduler(solver_type="bh2", solver_order=2, predict_x0=True,
    final_sigmas_type="zero"; clipping is its thresholding with sample_max_value=1) given the same network outputs
    (diffusers rebuilds the corrected state from the previous one, which drops a post_step's change)."""
    memory = {} if memory is None else memory
    x0, eps = _x0_and_eps(schedule, x_t, t, eps, config.clip_x0)
    before = _previous(memory, "unipc", t)
    correction = torch.zeros_like(x_t) if before is None else _unic_bh2(schedule, t, x0, before) - before["pred"]
    terms = _dpmpp_2m_terms(schedule, x_t, t, t_prev, x0, before, correction)
    x_prev = sum(terms.values())
    memory["unipc"] = {"t": t, "t_prev": t_prev, "x": x_t + correction, "pred": x_prev, "x0": x0,
                       "lambda": _alpha_sigma_lambda(schedule, t)[2],
                       "order": 2 if before is not None and t_prev >= 0 else 1,
                       "x0_before": None if before is None else before["x0"],
                       "lambda_before": None if before is None else before["lambda"]}
    return StepOutput(x_prev, x0, eps, terms)


# -- flow matching's samplers: Euler and Heun on the linear path ------------------------------------------------------
def _velocity(schedule: NoiseSchedule, x_t: torch.Tensor, t: int, eps: torch.Tensor, clip: bool
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x0_pred, eps, v = eps - x0_pred): the velocity of the linear path x = (1 - s) x0 + s eps through x_t."""
    x0, eps = _x0_and_eps(schedule, x_t, t, eps, clip)
    return x0, eps, eps - x0


@register("euler", "Euler (flow matching's sampler, Liu et al. 2022): a straight step along the predicted velocity "
          "v = ε̂ − x̂₀ on the linear path; the same update as DDIM", needs_noise=lambda cfg: False)
def euler(schedule: NoiseSchedule, x_t: torch.Tensor, t: int, t_prev: int, eps: torch.Tensor, config,
          noise: torch.Tensor | None = None, memory: dict | None = None) -> StepOutput:
    """k' x_{t_prev} = k x_t + (s' - s) v: Euler's method on the linear path's ODE dx/ds = v, where every schedule's
    x_t sits on that path at k x_t (schedule.flow_coordinates; for a flow model k x_t is the path's own point).

    Holding x̂₀ and ε̂ over the step, it lands on (1 - s') x̂₀ + s' ε̂, rescaled: DDIM's update at eta = 0 (Song et
    al. 2021, eq. 12), so both give the same images on every model (tested). DDIM was flow matching's Euler
    sampler all along; what a flow model changes is the path it was trained on, which is straighter."""
    x0, eps, v = _velocity(schedule, x_t, t, eps, config.clip_x0)
    k, s = schedule.flow_coordinates(t)
    k_prev, s_prev = schedule.flow_coordinates(t_prev)
    terms = {"x_t term": (k / k_prev) * x_t, "velocity term": ((s_prev - s) / k_prev) * v}
    return StepOutput(sum(terms.values()), x0, eps, terms)


@register("heun", "Heun (Karras et al. 2022, on the linear path): an Euler step, the velocity where it lands, "
          "then the step redone with the mean of both; second order, two network calls per step",
          needs_noise=lambda cfg: False)
def heun(schedule: NoiseSchedule, x_t: torch.Tensor, t: int, t_prev: int, eps: torch.Tensor, config,
         noise: torch.Tensor | None = None, memory: dict | None = None) -> StepOutput:
    """k' x_{t_prev} = k x_t + (s' - s) (v + v') / 2 with v' the velocity at the Euler step's landing point
    (Karras et al. 2022, alg. 1, in the linear path's coordinates, as flow models sample; Esser et al. 2024).

    The second velocity needs a second network call, which memory["eps_at"](x, t) makes (the sampling loop puts
    it there, with the run's guidance). The last step, onto the clean image, is Euler's (v' would be asked at
    s = 0, where the path has arrived): N steps cost 2N - 1 network calls."""
    x0, eps, v = _velocity(schedule, x_t, t, eps, config.clip_x0)
    k, s = schedule.flow_coordinates(t)
    k_prev, s_prev = schedule.flow_coordinates(t_prev)
    if t_prev >= 0:
        eps_at = (memory or {}).get("eps_at")
        if eps_at is None:
            raise ValueError("Heun calls the network twice per step: run it through sampling.sample_progressive, "
                             "which gives it memory['eps_at']")
        landing = (k * x_t + (s_prev - s) * v) / k_prev
        v = 0.5 * (v + _velocity(schedule, landing, t_prev, eps_at(landing, t_prev), config.clip_x0)[2])
    terms = {"x_t term": (k / k_prev) * x_t, "velocity term": ((s_prev - s) / k_prev) * v}
    return StepOutput(sum(terms.values()), x0, eps, terms)
