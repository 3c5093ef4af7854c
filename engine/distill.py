"""Progressive distillation of a model's guided DDIM sampler into a few-step student.

Method (Salimans & Ho 2022, "Progressive Distillation for Fast Sampling of Diffusion Models", alg. 2), with the
guidance baked into the student (Meng et al. 2023, "On Distillation of Guided Diffusion Models"): the student is
the same network, started from the teacher's weights, and is sampled with plain class conditioning (guidance 0:
one network evaluation per step). Round k halves the steps: the student learns to make in ONE DDIM step what the
current teacher makes in TWO. In round 1 the teacher is the model's guided DDIM sampler at its recommended
guidance and interval; afterwards it is the previous round's student (unguided).

For a training digit x, a student grid point t with next point t'' and the teacher's point t' between them:

    z_t  = alpha_t x + sigma_t eps                                  (the forward process, fresh noise)
    z_t' = DDIM(z_t -> t'), z_t'' = DDIM(z_t' -> t'')               (the teacher, exactly as the sampler steps)
    x~   = (z_t'' - (sigma_t''/sigma_t) z_t) / (alpha_t'' - (sigma_t''/sigma_t) alpha_t)     (their eq. 8)

x~ is the clean image for which ONE DDIM step from z_t lands on z_t'' (t'' = -1, the clean image, gives x~ =
z_t''). The student predicts eps, so its clean-image estimate is x^ = (z_t - sigma_t eps^) / alpha_t; the loss
is the truncated-SNR weighted x-space error  max(SNR_t, 1) |x^ - x~|^2  (their sec. 4), with two adjustments this
project's sampler and schedule need (`student_x0` and `distill_loss`):

- the sampler clips x^ to [-1, 1] (clip_x0), so the loss is taken on the clipped x^, the one the step uses;
- at t = T-1 the cosine schedule has alpha_bar = 2.4e-9, and x^ = (z - sigma eps^) / alpha divides the network's
  eps error by alpha = 4.9e-5. No eps-predicting network is that accurate (the `fast` teacher's eps error there is
  0.009, so its x^ is noise amplified 20,000x: 1.19 rms from the digit after clipping, where the class mean is
  0.49), and the x-space weight 1 would be an eps-space weight 1 / SNR = 4e8 that swamps every other timestep.
  Salimans & Ho change the parameterisation for this reason; a student that is the same network cannot. What a
  student CAN control there is the sign of each pixel of its clipped x^: with eps^ = (z - kappa x~) / sigma and
  kappa = KAPPA (0.05, five times that eps error) instead of alpha, the sampler's clipped x^ is clip((kappa /
  alpha) x~), the sign of x~ except where |x~| < 1e-3: the clipped estimate nearest to x~ that survives the
  network's error. So at t = T-1 the loss is |eps^ - (z - kappa x~) / sigma|^2 (eps-space, weight 1).
  Measured in exploratory runs on `fast` (32 -> 4, 150 iterations x 64 per round, 200 samples): with it, the 4-step student reads 97.5 %;
  with the literal target in eps-space it reads 52 %, with t = T-1 left out 10 %; the teacher's own DDIM-4, 89 %.

The timestep grid of every round is exactly the sampler's: `NoiseSchedule.timesteps(steps)` (trailing spacing),
which `sampling.reverse_timesteps` uses. For T = 1000 the grids of 32, 16, 8, 4 and 2 steps are nested (every
other point of the 2n-step grid is the n-step grid), so a student of n steps sampled by `python -m engine sample`
with DDIM-n runs exactly the steps it was distilled on. A round whose grids are not nested is refused.

Everything a round draws (batches, timesteps, noise) comes from generators seeded by (seed, round, iteration):
a run is reproducible from its settings (up to the floating-point summation order of the thread count).
"""
from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from . import budget
from . import checkpoints as ck
from .config import ConfigError, SampleConfig, TrainConfig, _check_range
from .schedule import NoiseSchedule

KAPPA = 0.05           # at t = T-1: the scale of x~ in the student's eps target (see the module doc)
LOSS = ("x-space squared error of the clipped x^ the sampler uses, weight max(SNR_t, 1); at t = T-1 (alpha = "
        "4.9e-5) eps-space |eps^ - (z - 0.05 x~) / sigma|^2, which teaches the sign of x~ there")
METRICS = "metrics.jsonl"
SNAPSHOTS = "snapshots"
DISCREPANCY_PER_CLASS = 20          # the fixed batch the discrepancy is measured on: 200 held-out digits
MAX_ROUNDS = 10


# -- settings --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DistillSettings:
    """One distillation: start_steps -> end_steps by halving, each round `iterations` optimiser steps of
    `batch_size` digits at learning rate `lr` (linear warm-up over `warmup` steps, cosine decay to 5 %)."""

    start_steps: int = 32
    end_steps: int = 4
    iterations: int = 500
    batch_size: int = 128
    lr: float = 2e-4
    warmup: int = 20
    ema_decay: float = 0.995            # 0: no EMA (the student is the raw weights)
    grad_clip: float = 1.0
    seed: int = 0
    dataset: str = "mnist-5k"
    log_every: int = 10

    def __post_init__(self) -> None:
        _check_range("--start-steps", self.start_steps, 2, 10000, integer=True)
        _check_range("--end-steps", self.end_steps, 1, 10000, integer=True)
        _check_range("--iterations (per round)", self.iterations, 1, 1_000_000, integer=True)
        _check_range("--batch-size", self.batch_size, 1, 4096, integer=True)
        _check_range("--lr", self.lr, 1e-8, 1.0)
        _check_range("--warmup", self.warmup, 0, 1_000_000, integer=True)
        _check_range("--ema-decay", self.ema_decay, 0.0, 0.99999)
        _check_range("grad_clip", self.grad_clip, 0.0, 1000.0)
        _check_range("--seed", self.seed, 0, 2**31 - 1, integer=True)
        _check_range("log_every", self.log_every, 1, 1_000_000, integer=True)
        if self.end_steps >= self.start_steps:
            raise ConfigError(f"--end-steps {self.end_steps} must be fewer than --start-steps {self.start_steps}: "
                              "each round halves the number of steps")
        ratio = self.start_steps // self.end_steps
        if self.start_steps % self.end_steps or ratio & (ratio - 1):
            reachable, n = [], self.start_steps
            while n % 2 == 0:
                n //= 2
                reachable.append(str(n))
            hint = (f"--end-steps can be {', '.join(reachable)}" if reachable
                    else "an odd --start-steps cannot be halved")
            raise ConfigError(f"--start-steps {self.start_steps} cannot be halved down to --end-steps "
                              f"{self.end_steps} ({self.start_steps} / {self.end_steps} is not a power of two); {hint}")
        if self.rounds > MAX_ROUNDS:
            raise ConfigError(f"{self.rounds} rounds asked ({self.start_steps} -> {self.end_steps}); at most "
                              f"{MAX_ROUNDS}")

    @property
    def rounds(self) -> int:
        return (self.start_steps // self.end_steps).bit_length() - 1

    def round_steps(self) -> list[tuple[int, int]]:
        """(teacher steps, student steps) of each round: [(32, 16), (16, 8), (8, 4)] for 32 -> 4."""
        out, n = [], self.start_steps
        while n > self.end_steps:
            out.append((n, n // 2))
            n //= 2
        return out


# -- the grids ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RoundGrid:
    """A round's timesteps as (S,) int64 tensors, one entry per student step i: the student steps t[i] -> end[i]
    (-1 after the last step), the teacher steps t[i] -> mid[i] -> end[i]."""

    t: torch.Tensor
    mid: torch.Tensor
    end: torch.Tensor

    @property
    def steps(self) -> int:
        return int(self.t.shape[0])


def round_grid(schedule: NoiseSchedule, student_steps: int) -> RoundGrid:
    """The grids of a round from 2n to n steps, read from the sampler's own `schedule.timesteps`; ValueError when
    the n-step grid is not every other point of the 2n-step grid (then a student could not be sampled on the
    steps it learned)."""
    if 2 * student_steps > schedule.T:
        raise ValueError(f"a round from {2 * student_steps} to {student_steps} steps needs T >= "
                         f"{2 * student_steps}; this model has T = {schedule.T}")
    teacher = schedule.timesteps(2 * student_steps)
    student = schedule.timesteps(student_steps)
    if teacher[0::2] != student or len(set(teacher)) != len(teacher):
        raise ValueError(f"the sampler's {student_steps}-step grid {student} is not every other point of its "
                         f"{2 * student_steps}-step grid {teacher} (T = {schedule.T}); choose other --start-steps")
    ends = student[1:] + [-1]
    return RoundGrid(torch.tensor(student), torch.tensor(teacher[1::2]), torch.tensor(ends))


# -- the maths ---------------------------------------------------------------------------------------------------------
def alpha_bar(schedule: NoiseSchedule, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """alpha_bar_t per image, (B, 1, 1, 1) in like's dtype; t = -1 (the clean image) gives 1, as in the sampler."""
    table = torch.cat([torch.ones(1, dtype=torch.float64), schedule.alpha_bar])
    return table[t.cpu() + 1].to(device=like.device, dtype=like.dtype).view(-1, *([1] * (like.dim() - 1)))


def ddim_step(schedule: NoiseSchedule, z: torch.Tensor, t: torch.Tensor, t_prev: torch.Tensor, eps: torch.Tensor,
              clip: bool) -> torch.Tensor:
    """The deterministic DDIM step (eta = 0) of engine/samplers.py, one timestep per image: x0 from eps, clipped
    to [-1, 1] with eps recomputed when `clip`, then sqrt(a_prev) x0 + sqrt(1 - a_prev) eps."""
    x0 = schedule.predict_x0_from_eps(z, t, eps)
    if clip:
        x0 = x0.clamp(-1, 1)
        eps = schedule.predict_eps_from_x0(z, t, x0)
    a_prev = alpha_bar(schedule, t_prev, z)
    return a_prev.sqrt() * x0 + (1 - a_prev).clamp(min=0).sqrt() * eps


EpsFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def guided_eps_fn(model: nn.Module, guidance: float, interval: tuple[float, float], T: int) -> EpsFn:
    """eps(z, t, y) of the sampler's classifier-free guidance, one timestep per image: (1 + w) eps(z, y) -
    w eps(z, null) where lo <= t/T <= hi, the conditional model alone elsewhere (sampling.guided_eps).

    With guidance, every image goes through one forward of 2B (conditional and null), as sampling.guided_eps
    batches it, and the guided combination is kept where t is in the interval: the batch shapes never change (a
    CPU's convolution kernels are prepared per shape), at little more work than forwarding only the guided
    images twice."""
    lo, hi = interval
    null = model.cfg.null_class

    def eps_fn(z: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if guidance == 0:
            return model(z, t, y)
        frac = t.double() / T
        guided = ((frac >= lo) & (frac <= hi)).view(-1, *([1] * (z.dim() - 1))).to(z.device)
        e = model(torch.cat([z, z]), torch.cat([t, t]), torch.cat([y, torch.full_like(y, null)]))
        cond, uncond = e[:len(z)], e[len(z):]
        return torch.where(guided, (1 + guidance) * cond - guidance * uncond, cond)

    return eps_fn


@torch.no_grad()
def teacher_two_steps(schedule: NoiseSchedule, eps_fn: EpsFn, z: torch.Tensor, y: torch.Tensor,
                      t: torch.Tensor, mid: torch.Tensor, end: torch.Tensor, clip: bool) -> torch.Tensor:
    """z_t'' from z_t by two DDIM steps of the teacher, t -> mid -> end (end = -1: the clean image)."""
    z_mid = ddim_step(schedule, z, t, mid, eps_fn(z, t, y), clip)
    return ddim_step(schedule, z_mid, mid, end, eps_fn(z_mid, mid, y), clip)


def one_step_coefficients(schedule: NoiseSchedule, t: torch.Tensor, end: torch.Tensor, like: torch.Tensor
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """(r, c) with one DDIM step t -> end from z_t with clean-image estimate x being r z_t + c x:
    r = sigma_end / sigma_t, c = alpha_end - r alpha_t. Float64, (B, 1, 1, 1)."""
    a_t = alpha_bar(schedule, t, like.double())
    a_e = alpha_bar(schedule, end, like.double())
    r = (1 - a_e).clamp(min=0).sqrt() / (1 - a_t).sqrt()
    return r, a_e.sqrt() - r * a_t.sqrt()


def distillation_target(schedule: NoiseSchedule, z: torch.Tensor, t: torch.Tensor, end: torch.Tensor,
                        z_end: torch.Tensor) -> torch.Tensor:
    """x~ = (z_end - (sigma_end / sigma_t) z_t) / (alpha_end - (sigma_end / sigma_t) alpha_t)  (Salimans & Ho
    2022, eq. 8): the clean image with which one DDIM step from z_t lands on z_end. With the teacher's clipped
    steps it is a convex combination of the two clean-image estimates the teacher used, so it lies in [-1, 1]."""
    r, c = one_step_coefficients(schedule, t, end, z)
    return ((z_end.double() - r * z.double()) / c).to(z.dtype)


def student_x0(schedule: NoiseSchedule, z: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, clip: bool
               ) -> torch.Tensor:
    """The student's clean-image estimate as its DDIM step uses it: (z - sigma eps) / alpha, clipped to [-1, 1]
    when the sampler clips (outside [-1, 1] the step sees the clipped value, so only that value is taught)."""
    x0 = schedule.predict_x0_from_eps(z, t, eps)
    return x0.clamp(-1, 1) if clip else x0


def first_step_eps_target(schedule: NoiseSchedule, z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The student's eps target at t = T-1: (z - KAPPA x~) / sigma_{T-1}, whose clipped x^ is the sign of x~."""
    return (z - KAPPA * target) / math.sqrt(1 - float(schedule.alpha_bar[-1]))


def distill_loss(schedule: NoiseSchedule, student: nn.Module, z: torch.Tensor, y: torch.Tensor, t: torch.Tensor,
                 target: torch.Tensor, clip: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, per-image x-space MSE of the clipped estimate) of the student's one step against x~.

    Per image: max(SNR_t, 1) |x^ - x~|^2 (truncated SNR, Salimans & Ho sec. 4) on the clipped x^; at t = T-1, where
    x^ divides by alpha = 5e-5, |eps^ - (z - KAPPA x~) / sigma|^2, which teaches the sign of x~ (module doc)."""
    eps = student(z, t, y)
    x0 = student_x0(schedule, z, t, eps, clip)
    per_image = ((x0 - target) ** 2).mean(dim=(1, 2, 3))
    loss = per_image * schedule.snr[t.cpu()].clamp(min=1.0).to(device=z.device, dtype=z.dtype)
    first = t == schedule.T - 1
    if bool(first.any()):
        per_eps = ((eps - first_step_eps_target(schedule, z, target)) ** 2).mean(dim=(1, 2, 3))
        loss = torch.where(first, per_eps, loss)
    return loss.mean(), per_image.detach()


@torch.no_grad()
def student_one_step(schedule: NoiseSchedule, student: nn.Module, z: torch.Tensor, y: torch.Tensor,
                     t: torch.Tensor, end: torch.Tensor, clip: bool) -> torch.Tensor:
    """z_end from z_t by one DDIM step of the (unguided) student."""
    return ddim_step(schedule, z, t, end, student(z, t, y), clip)


# -- measuring a round -------------------------------------------------------------------------------------------------
@dataclass
class FixedBatch:
    """States z_t at every grid point of a round, from held-out digits and fixed noise: the discrepancy is
    measured on the same states before and after the round."""

    z: torch.Tensor
    y: torch.Tensor
    t: torch.Tensor
    mid: torch.Tensor
    end: torch.Tensor


def fixed_batch(schedule: NoiseSchedule, grid: RoundGrid, images: torch.Tensor, labels: torch.Tensor,
                seed: int = 1234) -> FixedBatch:
    """The images, each at grid point (index mod steps), noised with a generator seeded by `seed`."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.arange(len(labels)) % grid.steps
    t = grid.t[idx]
    z = schedule.q_sample(images, t, torch.randn(images.shape, generator=g))
    return FixedBatch(z, labels, t, grid.mid[idx], grid.end[idx])


@torch.no_grad()
def discrepancy(schedule: NoiseSchedule, student: nn.Module, teacher_eps: EpsFn, batch: FixedBatch, clip: bool,
                device: torch.device | str = "cpu") -> dict[str, float]:
    """How far the student's one DDIM step lands from the teacher's two, on the batch's states:

    "steps": mean squared difference of the landing states over the grid points below T-1 (what a round
    minimises there); "first_step": the same at t = T-1, where the student is taught only the sign of x~ (so it
    need not fall); "first_step_sign": the share of pixels whose clipped x^ there has the sign of x~."""
    was = student.training
    student.eval()
    z, y = batch.z.to(device), batch.y.to(device)
    t, mid, end = batch.t.to(device), batch.mid.to(device), batch.end.to(device)
    two = teacher_two_steps(schedule, teacher_eps, z, y, t, mid, end, clip)
    eps = student(z, t, y)
    one = ddim_step(schedule, z, t, end, eps, clip)
    student.train(was)
    err = ((one - two) ** 2).mean(dim=(1, 2, 3))
    first = t == schedule.T - 1
    out = {"steps": float(err[~first].mean()) if bool((~first).any()) else 0.0}
    if bool(first.any()):
        target = distillation_target(schedule, z[first], t[first], end[first], two[first])
        x0 = student_x0(schedule, z[first], t[first], eps[first], clip)
        out["first_step"] = float(err[first].mean())
        out["first_step_sign"] = float((torch.sign(x0) == torch.sign(target)).float().mean())
    return out


# -- a round -----------------------------------------------------------------------------------------------------------
@dataclass
class RoundResult:
    """What one round made: the student (EMA weights when an EMA was kept) and its record."""

    student: nn.Module
    raw: nn.Module
    record: dict = field(default_factory=dict)
    completed: bool = True


def _lr_config(s: DistillSettings) -> TrainConfig:
    return TrainConfig(steps=s.iterations, batch_size=s.batch_size, lr=s.lr, warmup_steps=min(s.warmup, s.iterations),
                       lr_schedule="cosine", lr_min_ratio=0.05, grad_clip=s.grad_clip,
                       ema_decay=min(s.ema_decay, 0.99999), dataset=s.dataset, seed=s.seed)


def distill_round(schedule: NoiseSchedule, teacher_eps: EpsFn, student: nn.Module, grid: RoundGrid,
                  settings: DistillSettings, train_images: torch.Tensor, train_labels: torch.Tensor, *,
                  round_index: int = 1, clip: bool = True, measure: FixedBatch | None = None,
                  progress: Callable[[dict], None] | None = None, stop: Callable[[], bool] | None = None,
                  device: torch.device | str = "cpu") -> RoundResult:
    """Train `student` (in place; the same network as the teacher, started from its weights) for
    settings.iterations steps to match two teacher DDIM steps with one of its own on `grid`.

    progress(record) is called every iteration with {"round", "steps", "iteration", "iterations", "loss", "lr",
    "seconds"} (seconds: the round's training time so far).
    stop() is checked before every iteration (and budget.check(), so a budget.deadline around the call ends it
    with BudgetExceeded): a stopped round returns its student so far with completed=False.
    """
    from .data import BatchSampler, Split
    from .training.run import step_seed
    from .training.step import EMA, lr_at, make_optimizer, optimise

    tc = _lr_config(settings)
    student.train()
    for p in student.parameters():
        p.requires_grad_(True)
    optimizer = make_optimizer(student, tc)
    ema = EMA(student, settings.ema_decay) if settings.ema_decay > 0 else None
    batches = BatchSampler(Split("train", train_images, train_labels, ()), settings.batch_size,
                           settings.seed + 7919 * round_index)
    before = discrepancy(schedule, student, teacher_eps, measure, clip, device) if measure is not None else None
    losses: list[float] = []
    seconds = 0.0
    done = 0
    completed = True
    for it in range(settings.iterations):
        if stop is not None and stop():
            completed = False
            break
        budget.check()
        t0 = time.perf_counter()
        g = torch.Generator().manual_seed(step_seed(settings.seed, round_index, it))
        x0, y = batches.next()
        x0, y = x0.to(device), y.to(device)
        i = torch.randint(0, grid.steps, (x0.shape[0],), generator=g)
        t, mid, end = grid.t[i].to(device), grid.mid[i].to(device), grid.end[i].to(device)
        z = schedule.q_sample(x0, t, torch.randn(x0.shape, generator=g).to(device))
        z_end = teacher_two_steps(schedule, teacher_eps, z, y, t, mid, end, clip)
        target = distillation_target(schedule, z, t, end, z_end)
        loss, _ = distill_loss(schedule, student, z, y, t, target, clip)
        if not torch.isfinite(loss):
            from .training.step import NonFiniteLoss

            raise NonFiniteLoss(f"the distillation loss became {loss.item()} in round {round_index} at iteration "
                                f"{it}: try a lower --lr than {settings.lr:g}")
        lr = lr_at(it, tc)
        optimise(student, optimizer, loss, lr, settings.grad_clip)
        if ema is not None:
            ema.update(student)
        seconds += time.perf_counter() - t0
        done += 1
        losses.append(float(loss.detach()))
        if progress is not None:
            progress({"round": round_index, "steps": grid.steps, "iteration": it + 1,
                      "iterations": settings.iterations, "loss": losses[-1], "lr": lr, "seconds": seconds})
    student.eval()
    result = ema.model if ema is not None else student
    after = discrepancy(schedule, result, teacher_eps, measure, clip, device) if measure is not None else None
    tail = losses[-max(1, min(50, len(losses) // 5)):] if losses else []
    record = {"round": round_index, "teacher_steps": 2 * grid.steps, "student_steps": grid.steps,
              "iterations": done, "seconds": round(seconds, 1),
              "seconds_per_iteration": round(seconds / done, 4) if done else None,
              "loss_first": round(losses[0], 6) if losses else None,
              "loss_last_mean": round(sum(tail) / len(tail), 6) if tail else None}
    for name, d in (("before", before), ("after", after)):
        for key, value in (d or {}).items():
            record[f"{'discrepancy' if key == 'steps' else key}_{name}"] = round(value, 6)
    return RoundResult(result, student, record, completed)


# -- the whole distillation, into checkpoint folders ------------------------------------------------------------------
@dataclass
class Distilled:
    """What `distill` wrote: the final folder, each kept round's folder, and the record stored in meta.json."""

    path: Path
    round_paths: list[Path]
    record: dict
    completed: bool


def round_folder(out: str | Path, steps: int) -> Path:
    """Where an intermediate round's student is kept: beside `out`, named OUT-<steps>steps."""
    out = Path(out)
    return out.with_name(f"{out.name}-{steps}steps")


def student_sample_config(teacher_recommended: SampleConfig, steps: int) -> SampleConfig:
    """How a student is sampled: DDIM (eta 0) at its own steps, guidance 0, clipping as the teacher's sampler."""
    return teacher_recommended.replace(sampler="ddim", steps=steps, guidance=0.0, eta=0.0,
                                       guidance_interval=(0.0, 1.0))


def _log(out: Path, record: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / METRICS, "a") as f:
        f.write(json.dumps(record) + "\n")


@torch.no_grad()
def _look(model: nn.Module, schedule: NoiseSchedule, config: SampleConfig, judge) -> tuple[np.ndarray, float | None]:
    """Fixed-seed film frame (2 per class, seed 1234) and, with a judge, the accuracy of 10 per class (seed 4321),
    at the student's own sampling settings (as a training run's snapshots)."""
    from .sampling import class_labels, sample, to_uint8

    frame = to_uint8(sample(model, schedule, class_labels(2), config.replace(seed=1234)).cpu()).numpy()
    accuracy = None
    if judge is not None:
        from .judge import predict

        labels = class_labels(10)
        x = sample(model, schedule, labels, config.replace(seed=4321))
        accuracy = float((predict(judge, x.cpu())[0].argmax(1) == labels).float().mean())
    return frame, accuracy


def distill(teacher_path: str | Path, out: str | Path, settings: DistillSettings, *, command: str = "",
            device: str | torch.device = "cpu", judge=None, progress: Callable[[dict], None] | None = None,
            stop: Callable[[], bool] | None = None, say: Callable[[str], None] = lambda s: None) -> Distilled:
    """Distil checkpoint `teacher_path` round by round into `out` (a checkpoint folder like a training run's:
    weights.safetensors with model.* and ema.*, config.json, meta.json, metrics.jsonl, snapshots/), keeping each
    intermediate round's student beside it (`round_folder`). The caller checks `out` and holds its lock.

    `out`'s recommended sampling is DDIM at the final steps with guidance 0; meta.json's "distillation" records
    the teacher (path, sha256), the settings and each round (iterations, seconds, discrepancy before / after,
    judge accuracy). Stopped early (stop() true), `out` holds the student of the round that was running, and
    meta records that the distillation is incomplete.
    """
    from .data import load as load_data

    device = torch.device(device)
    out = Path(out)
    teacher_ck = ck.load_checkpoint(teacher_path, device)
    schedule = NoiseSchedule(teacher_ck.schedule_config)
    if schedule.predicts_velocity:
        raise ConfigError("the teacher is a flow-matching (velocity) model; distillation here is written for "
                          "noise-predicting teachers (e.g. checkpoints/fast)")
    if settings.start_steps > schedule.T:
        raise ConfigError(f"--start-steps {settings.start_steps} is more than the teacher's T = {schedule.T}")
    grids = [round_grid(schedule, s) for _, s in settings.round_steps()]     # every round checked before any work
    rec = teacher_ck.recommended
    clip = rec.clip_x0
    train, held = load_data(settings.dataset)
    measure_idx = torch.cat([torch.nonzero(held.labels == c).view(-1)[:DISCREPANCY_PER_CLASS] for c in range(10)])
    teacher_train = teacher_ck.train_config or TrainConfig()
    total = settings.iterations * settings.rounds
    tc = teacher_train.replace(steps=total, batch_size=settings.batch_size, lr=settings.lr,
                               warmup_steps=min(settings.warmup, settings.iterations), lr_schedule="cosine",
                               lr_min_ratio=0.05, ema_decay=settings.ema_decay, grad_clip=settings.grad_clip,
                               seed=settings.seed, dataset=settings.dataset, p_uncond=0.0, min_snr_gamma=0.0,
                               augment=False, checkpoint_every=settings.iterations,
                               sample_every=settings.iterations, log_every=settings.log_every)
    record = {
        "method": "progressive distillation (Salimans & Ho 2022) of the teacher's guided DDIM sampler, the guidance "
                  "baked into the student (Meng et al. 2023); the student is sampled with guidance 0",
        "loss": LOSS,
        "teacher": str(teacher_path), "teacher_sha256": teacher_ck.sha256, "teacher_step": teacher_ck.step,
        "teacher_sampling": rec.replace(sampler="ddim", eta=0.0, steps=settings.start_steps).to_dict(),
        "settings": asdict(settings), "threads": torch.get_num_threads(), "device": str(device),
        "rounds": [], "complete": False,
    }
    teacher_model = teacher_ck.model.eval()
    teacher_eps = guided_eps_fn(teacher_model, rec.guidance, rec.guidance_interval, schedule.T)
    student = copy.deepcopy(teacher_model)
    round_paths: list[Path] = []
    wall0 = time.perf_counter()
    step = 0
    images = 0
    result = None
    for k, grid in enumerate(grids, start=1):
        if k > 1:
            whose = "the previous student, unguided"
        elif rec.guidance > 0:
            lo, hi = rec.guidance_interval
            whose = f"the guided sampler, w = {rec.guidance:g} while {lo:g} <= t/T <= {hi:g}"
        else:
            whose = "its DDIM sampler, unguided"
        say(f"round {k}/{len(grids)}: {2 * grid.steps} -> {grid.steps} steps (teacher: {whose})")
        measure = fixed_batch(schedule, grid, held.images[measure_idx], held.labels[measure_idx])

        def logged(p: dict, base=step) -> None:
            if p["iteration"] % settings.log_every == 0 or p["iteration"] == p["iterations"]:
                _log(out, {"step": base + p["iteration"], "round": p["round"], "student_steps": p["steps"],
                           "loss": round(p["loss"], 6), "lr": p["lr"],
                           "images_per_s": round(p["iteration"] * settings.batch_size / max(p["seconds"], 1e-9), 1),
                           "wall_time_s": round(time.perf_counter() - wall0, 2)})
            if progress is not None:
                progress(p)

        result = distill_round(schedule, teacher_eps, student, grid, settings, train.images, train.labels,
                               round_index=k, clip=clip, measure=measure, progress=logged, stop=stop, device=device)
        step += result.record["iterations"]
        images += result.record["iterations"] * settings.batch_size
        config = student_sample_config(rec, grid.steps)
        frame, accuracy = _look(result.student, schedule, config, judge)
        result.record["judge_accuracy_100"] = accuracy
        record["rounds"].append(result.record)
        (out / SNAPSHOTS).mkdir(parents=True, exist_ok=True)
        np.save(out / SNAPSHOTS / f"step-{step:07d}.npy", frame)
        _log(out, {"step": step, "round": k, "student_steps": grid.steps,
                   **({"judge_accuracy": accuracy} if accuracy is not None else {}),
                   **{key: v for key, v in result.record.items() if "_before" in key or "_after" in key}})
        r = result.record
        say(f"round {k}: {r['iterations']} iterations in {r['seconds']:.0f} s; one step vs the teacher's two "
            f"(mean squared difference, held-out states below t = T-1): {r['discrepancy_before']} -> "
            f"{r['discrepancy_after']}; sign of x~ at t = T-1 {r.get('first_step_sign_before', 0):.1%} -> "
            f"{r.get('first_step_sign_after', 0):.1%}"
            + (f"; judge accuracy {accuracy:.0%} of 100 at DDIM-{grid.steps}" if accuracy is not None else ""))
        last = k == len(grids) or not result.completed
        record["complete"] = last and result.completed
        meta = _meta(record, command, device, time.perf_counter() - wall0, images, step,
                     ema_updates=step if settings.ema_decay > 0 else 0)
        if last:
            ck.save_checkpoint(out, model=result.raw, ema_model=result.student if settings.ema_decay > 0 else None,
                               model_config=teacher_ck.model_config, schedule_config=teacher_ck.schedule_config,
                               train_config=tc, recommended=config, step=step, meta=meta, overwrite=True,
                               keep_sidecars=True)
            break
        path = round_folder(out, grid.steps)
        ck.save_checkpoint(path, model=result.student, ema_model=result.student,
                           model_config=teacher_ck.model_config, schedule_config=teacher_ck.schedule_config,
                           train_config=tc.replace(steps=step), recommended=config, step=step, meta=meta,
                           include_raw=False, overwrite=True)
        round_paths.append(path)
        # the next round: this student is the (unguided) teacher, and a copy of it the next student
        teacher_model = result.student.eval()
        for p in teacher_model.parameters():
            p.requires_grad_(False)
        teacher_eps = guided_eps_fn(teacher_model, 0.0, (0.0, 1.0), schedule.T)
        student = copy.deepcopy(teacher_model)
    return Distilled(out, round_paths, record, bool(record["complete"]))


def _meta(record: dict, command: str, device, wall: float, images: int, step: int, ema_updates: int) -> dict:
    return {"dataset": record["settings"]["dataset"], "command": command, "device": str(device),
            "wall_time_s": round(wall, 2), "images_seen": images, "ema_updates": ema_updates,
            "resume_commands": [], "style_stats": None, "torch": torch.__version__,
            "distillation": json.loads(json.dumps(record))}
