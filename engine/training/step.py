"""One optimisation step and its helpers: the pure `train_step`, Min-SNR loss weights, batch augmentation,
the EMA of the weights, the learning-rate schedule and the optimiser.

`train_step` is a plain function of (model, optimiser, schedule, batch, config, step, generator): testable on
its own and shared by a TrainingRun, the background Trainer and the benchmark. It draws every random number
from the `generator` it is given and touches no global state.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import TrainConfig
from ..schedule import NoiseSchedule

MAX_SHIFT = 2          # augment_batch: random shifts of up to this many pixels in x and in y


class NonFiniteLoss(FloatingPointError):
    """The loss became NaN or infinite: almost always a learning rate too high for this model."""


@dataclass
class StepResult:
    loss: float                    # the weighted loss that was back-propagated
    lr: float                      # the learning rate this step used
    grad_norm: float               # the gradient's global norm before clipping
    t: torch.Tensor                # (B,) the timesteps drawn, for the loss-per-timestep chart
    loss_per_image: torch.Tensor   # (B,) unweighted MSE of each image (of eps, or of the velocity for a flow model)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW (betas 0.9, 0.99) at cfg.lr; train_step sets each step's learning rate from `lr_at`."""
    # foreach: one kernel per operation over all parameters instead of a loop of tiny ones; the fast path on
    # CPU and GPU alike for a model made of many small tensors
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99),
                             foreach=True)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up for `warmup_steps`, then cosine decay to lr_min_ratio * lr at `steps` (or constant)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "constant":
        return cfg.lr
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return cfg.lr * (cfg.lr_min_ratio + (1 - cfg.lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


class EMA:
    """Exponential moving average of the weights (the model we sample from), with the usual warm-up:
    decay_eff = min(decay, (1 + n) / (10 + n)) so the average is not dominated by the random init."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        ema_params = list(self.model.parameters())
        params = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema_params, params, 1 - d)          # ema <- ema + (1 - d) (param - ema)
        for b_ema, b in zip(self.model.buffers(), model.buffers()):
            b_ema.copy_(b)


def loss_weights(schedule: NoiseSchedule, t: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-gamma weights for epsilon-prediction, min(SNR, gamma) / SNR (Hang et al. 2023, eq. 10).

    Down-weights the low-noise timesteps (high SNR), whose eps-error is the largest (metrics.loss_by_noise_level)
    and which otherwise dominate the gradient; gamma = 0 gives 1, and so does a velocity model: flow matching's
    loss is the plain velocity MSE at every level (Lipman et al. 2023), which already weighs the noise error
    at level s by 1 / (1 - s)^2.
    """
    if gamma <= 0 or schedule.predicts_velocity:           # flow matching weighs every level alike
        return torch.ones_like(t, dtype=torch.float32)
    snr = schedule.snr[t.cpu()].to(torch.float32).to(t.device)
    return torch.clamp(snr, max=gamma) / snr


def augment_batch(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Light augmentation: each image shifted by its own random (dx, dy), each in -2..2 pixels.

    x: (B, 1, 28, 28) in [-1, 1]. Pixels shifted in from outside are background (-1); the shifts are drawn
    from `generator` (CPU), so a run is reproducible from its seed.
    """
    B = x.shape[0]
    dx = torch.randint(-MAX_SHIFT, MAX_SHIFT + 1, (B,), generator=generator)          # (B,)
    dy = torch.randint(-MAX_SHIFT, MAX_SHIFT + 1, (B,), generator=generator)          # (B,)
    m = MAX_SHIFT
    padded = F.pad(x, (m, m, m, m), value=-1.0)                                        # (B, 1, 32, 32)
    out = torch.empty_like(x)
    for i in range(B):
        out[i] = padded[i, :, m + dy[i]:m + 28 + dy[i], m + dx[i]:m + 28 + dx[i]]
    return out


def optimise(model: nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor, lr: float,
             grad_clip: float) -> float:
    """One optimiser step on `loss` at learning rate `lr`, gradients clipped to norm `grad_clip` (0: not clipped);
    returns the gradient norm before clipping. The training step and distillation both step through here."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = float(nn.utils.clip_grad_norm_(model.parameters(), grad_clip if grad_clip > 0 else float("inf")))
    optimizer.step()
    return grad_norm


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, schedule: NoiseSchedule,
               x0: torch.Tensor, labels: torch.Tensor, cfg: TrainConfig, step: int,
               generator: torch.Generator, ema: EMA | None = None, style: torch.Tensor | None = None) -> StepResult:
    """One optimisation step of the simplified DDPM objective (Ho et al. 2020, algorithm 1), or of flow
    matching for a "flow" schedule: the same x_t, the velocity noise - x0 as the target (schedule.training_target).

    x0: (B, 1, 28, 28) in [-1, 1]; labels: (B,) int64. Draws t ~ U{0..T-1}, eps ~ N(0, I) and the label
    dropout mask from `generator` (CPU), so a run is reproducible from its seed. Raises NonFiniteLoss.
    """
    device = x0.device
    B = x0.shape[0]
    model.train()
    t = torch.randint(0, schedule.T, (B,), generator=generator).to(device)                    # (B,)
    noise = torch.randn(x0.shape, generator=generator).to(device)                            # (B, 1, 28, 28)
    drop = (torch.rand(B, generator=generator) < cfg.p_uncond).to(device)                    # (B,) context mask
    cfg_model = getattr(model, "module", model).cfg              # DistributedDataParallel wraps the model
    cond_labels = torch.where(drop, torch.full_like(labels, cfg_model.null_class), labels)
    if style is not None:
        style = torch.where(drop[:, None], torch.full_like(style, float("nan")), style)
    x_t = schedule.q_sample(x0, t, noise)
    pred = model(x_t, t, cond_labels, style)
    per_image = ((pred - schedule.training_target(x0, noise)) ** 2).mean(dim=(1, 2, 3))       # (B,)
    loss = (per_image * loss_weights(schedule, t, cfg.min_snr_gamma)).mean()
    if not torch.isfinite(loss):
        raise NonFiniteLoss(
            f"the loss became {loss.item()} at step {step}: the learning rate {cfg.lr:g} is probably too high "
            f"for this model; try {cfg.lr / 10:g} (the CLI: `train --resume --lr {cfg.lr / 10:g}`; the Training page: "
            f"a new run with that learning rate)")
    lr = lr_at(step, cfg)
    grad_norm = optimise(model, optimizer, loss, lr, cfg.grad_clip)
    if ema is not None:
        ema.update(model)
    return StepResult(float(loss.detach()), lr, grad_norm, t.detach().cpu(), per_image.detach().cpu())
