"""Training: the pure `train_step`, the optimiser / EMA / learning-rate helpers, and the background Trainer.

`train_step` is a plain function of (model, batch, schedule, config, generator): testable on its own and
shared by the CLI, the background Trainer and the benchmarks.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import TrainConfig
from .schedule import NoiseSchedule


class NonFiniteLoss(FloatingPointError):
    """The loss became NaN or infinite: almost always a learning rate too high for this model."""


@dataclass
class StepResult:
    loss: float
    lr: float
    grad_norm: float
    t: torch.Tensor          # (B,) the timesteps drawn, for the loss-per-timestep chart
    loss_per_image: torch.Tensor  # (B,) unweighted MSE of each image


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    # fused/foreach kernels are the fast path on CPU and GPU alike for many small tensors
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
        torch._foreach_lerp_(ema_params, params, 1 - d)
        for b_ema, b in zip(self.model.buffers(), model.buffers()):
            b_ema.copy_(b)


def loss_weights(schedule: NoiseSchedule, t: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-gamma weights for epsilon-prediction, min(SNR, gamma) / SNR (Hang et al. 2023, eq. 10).

    Down-weights the easy, low-noise timesteps, which otherwise dominate the gradient; gamma = 0 gives 1.
    """
    if gamma <= 0:
        return torch.ones_like(t, dtype=torch.float32)
    snr = schedule.snr[t.cpu()].to(torch.float32).to(t.device)
    return torch.clamp(snr, max=gamma) / snr


def augment_batch(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Light augmentation: random shifts of up to 2 pixels (background is -1)."""
    B = x.shape[0]
    dx = torch.randint(-2, 3, (B,), generator=generator)
    dy = torch.randint(-2, 3, (B,), generator=generator)
    padded = F.pad(x, (2, 2, 2, 2), value=-1.0)
    out = torch.empty_like(x)
    for i in range(B):
        out[i] = padded[i, :, 2 + dy[i]:30 + dy[i], 2 + dx[i]:30 + dx[i]]
    return out


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, schedule: NoiseSchedule,
               x0: torch.Tensor, labels: torch.Tensor, cfg: TrainConfig, step: int,
               generator: torch.Generator, ema: EMA | None = None, style: torch.Tensor | None = None) -> StepResult:
    """One optimisation step of the simplified DDPM objective (Ho et al. 2020, algorithm 1).

    x0: (B, 1, 28, 28) in [-1, 1]; labels: (B,) int64. Draws t ~ U{0..T-1}, eps ~ N(0, I) and the label
    dropout mask from `generator` (CPU), so a run is reproducible from its seed. Raises NonFiniteLoss.
    """
    device = x0.device
    B = x0.shape[0]
    model.train()
    t = torch.randint(0, schedule.T, (B,), generator=generator).to(device)                    # (B,)
    noise = torch.randn(x0.shape, generator=generator).to(device)                            # (B, 1, 28, 28)
    drop = (torch.rand(B, generator=generator) < cfg.p_uncond).to(device)                    # (B,) context mask
    cond_labels = torch.where(drop, torch.full_like(labels, model.cfg.null_class), labels)
    if style is not None:
        style = torch.where(drop[:, None], torch.full_like(style, float("nan")), style)
    x_t = schedule.q_sample(x0, t, noise)
    eps_pred = model(x_t, t, cond_labels, style)
    per_image = ((eps_pred - noise) ** 2).mean(dim=(1, 2, 3))                                 # (B,)
    loss = (per_image * loss_weights(schedule, t, cfg.min_snr_gamma)).mean()
    if not torch.isfinite(loss):
        raise NonFiniteLoss(
            f"the loss became {loss.item()} at step {step}: the learning rate {cfg.lr:g} is probably too high "
            f"for this model; try {cfg.lr / 10:g}")
    lr = lr_at(step, cfg)
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = float(nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else float("inf")))
    optimizer.step()
    if ema is not None:
        ema.update(model)
    return StepResult(float(loss.detach()), lr, grad_norm, t.detach().cpu(), per_image.detach().cpu())


# ---------------------------------------------------------------------------------------------------------------
# A training run: model + EMA + optimiser + data + step counter, with save / resume. Used by the CLI loop and
# by the background Trainer thread; it knows nothing about either (minGPT's trainer habit).
# ---------------------------------------------------------------------------------------------------------------
import json as _json
import time as _time
from pathlib import Path as _Path

from . import checkpoints as _ck
from .config import ModelConfig, SampleConfig, ScheduleConfig
from .data import BatchSampler, load as _load_data
from .unet import build_model


def pick_device(requested: str = "auto") -> torch.device:
    """cuda, then mps, else cpu for "auto"; a requested device that is missing raises a clear error."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was requested but no CUDA GPU is available; use --device auto or cpu")
    if requested not in ("cpu", "cuda", "mps"):
        raise RuntimeError(f"unknown device {requested!r}; use auto, cpu, cuda or mps")
    return torch.device(requested)


METRICS = "metrics.jsonl"
SNAPSHOTS = "snapshots"


class TrainingRun:
    """Owns one run's state; `step()` advances it by one batch, `save()` writes an atomic checkpoint.

    out: the run's folder (the checkpoint files plus metrics.jsonl and snapshots/ as sidecars).
    """

    def __init__(self, model_config: ModelConfig, schedule_config: ScheduleConfig, train_config: TrainConfig,
                 recommended: SampleConfig, out: str | _Path, device: str | torch.device = "cpu",
                 command: str = "", init_from: str | _Path | None = None) -> None:
        self.model_config, self.schedule_config = model_config, schedule_config
        self.train_config, self.recommended = train_config, recommended
        self.out = _Path(out)
        self.device = torch.device(device)
        self.command = command
        self.schedule = NoiseSchedule(schedule_config)
        torch.manual_seed(train_config.seed)                      # weight initialisation
        self.model = build_model(model_config).to(self.device)
        if init_from is not None:                                 # "train on top of" another checkpoint
            src = _ck.load_checkpoint(init_from, self.device)
            if src.model_config != model_config:
                raise _ck.CheckpointError(f"cannot start from {init_from}: its architecture differs from this run's")
            self.model.load_state_dict(src.model.state_dict())
        self.ema = EMA(self.model, train_config.ema_decay)
        self.optimizer = make_optimizer(self.model, train_config)
        train_split, _ = _load_data(train_config.dataset)
        self.batches = BatchSampler(train_split, train_config.batch_size, train_config.seed)
        self.generator = torch.Generator().manual_seed(train_config.seed + 1)
        self.step_count = 0
        self.wall_time = 0.0
        self.images_seen = 0

    # -- resume ----------------------------------------------------------------------------------------------------
    @classmethod
    def resume(cls, out: str | _Path, device: str | torch.device = "cpu", steps: int | None = None,
               command: str = "") -> "TrainingRun":
        """Reopen a run folder at its last checkpoint, with the same step count, optimiser state and batches."""
        ck = _ck.load_checkpoint(out, device, with_training_state=True)
        tc = ck.train_config
        if tc is None:
            raise _ck.CheckpointError(f"{out} has no training config; it cannot be resumed")
        if steps is not None and steps != tc.steps:
            tc = tc.replace(steps=steps)
        run = cls(ck.model_config, ck.schedule_config, tc, ck.recommended, out, device,
                  command or ck.meta.get("command", ""))
        run.model.load_state_dict(ck.raw_model.state_dict())
        run.ema.model.load_state_dict(ck.model.state_dict())
        run.ema.updates = int(ck.meta.get("ema_updates", ck.step))
        if ck.optimizer_state is not None and ck.meta.get("optimizer_param_groups"):
            _ck.optimizer_from_tensors(run.optimizer, ck.optimizer_state, ck.meta["optimizer_param_groups"])
        run.step_count = ck.step
        run.wall_time = float(ck.meta.get("wall_time_s", 0.0))
        run.images_seen = int(ck.meta.get("images_seen", ck.step * tc.batch_size))
        run.batches.skip_to(ck.step)
        gstate = ck.meta.get("generator_seed_offset")
        run.generator = torch.Generator().manual_seed(tc.seed + 1 + (gstate if gstate is not None else ck.step))
        run._truncate_metrics(ck.step)
        return run

    def _truncate_metrics(self, step: int) -> None:
        """Drop metric lines logged after the checkpoint we resume from (they will be logged again)."""
        path = self.out / METRICS
        if not path.exists():
            return
        keep = [r for r in read_metrics(path) if r.get("step", 0) <= step]
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(_json.dumps(r) + "\n" for r in keep))
        tmp.replace(path)

    # -- training --------------------------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.step_count >= self.train_config.steps

    def step(self) -> StepResult:
        t0 = _time.perf_counter()
        x0, y = self.batches.next()
        x0, y = x0.to(self.device), y.to(self.device)
        if self.train_config.augment:
            x0 = augment_batch(x0, self.generator)
        result = train_step(self.model, self.optimizer, self.schedule, x0, y, self.train_config, self.step_count,
                            self.generator, self.ema)
        self.step_count += 1
        self.images_seen += x0.shape[0]
        self.wall_time += _time.perf_counter() - t0
        return result

    def log(self, record: dict) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / METRICS, "a") as f:
            f.write(_json.dumps(record) + "\n")

    def save(self, extra_meta: dict | None = None) -> _Path:
        """Atomic checkpoint of the run into its folder (sidecar files are carried over)."""
        meta = {
            "dataset": self.train_config.dataset, "command": self.command, "device": str(self.device),
            "wall_time_s": round(self.wall_time, 2), "images_seen": self.images_seen,
            "ema_updates": self.ema.updates, "generator_seed_offset": self.step_count,
            "torch": torch.__version__, **(extra_meta or {}),
        }
        # The generator is reseeded from the step on save, so a resumed run draws the same noise afterwards.
        self.generator = torch.Generator().manual_seed(self.train_config.seed + 1 + self.step_count)
        return _ck.save_checkpoint(self.out, model=self.model, ema_model=self.ema.model,
                                   model_config=self.model_config, schedule_config=self.schedule_config,
                                   train_config=self.train_config, recommended=self.recommended,
                                   step=self.step_count, meta=meta, optimizer=self.optimizer, overwrite=True,
                                   keep_sidecars=True)

    @torch.inference_mode()
    def snapshot(self, per_class: int = 2, seed: int = 1234) -> torch.Tensor:
        """Fixed-seed samples of the EMA model (DDIM, recommended guidance): (10*per_class, 28, 28) uint8."""
        from .sampling import class_labels, sample, to_uint8

        labels = class_labels(per_class)
        x = sample(self.ema.model, self.schedule, labels, self.recommended.replace(seed=seed))
        return to_uint8(x.cpu())


def read_metrics(path: str | _Path) -> list[dict]:
    """Records of a metrics.jsonl; a torn last line (crash mid-write) is skipped."""
    out = []
    p = _Path(path)
    if not p.exists():
        return out
    for line in p.read_text().splitlines():
        try:
            out.append(_json.loads(line))
        except _json.JSONDecodeError:
            continue
    return out
