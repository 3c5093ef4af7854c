"""Training: the pure `train_step`, the optimiser / EMA / learning-rate helpers, and the background Trainer.

`train_step` is a plain function of (model, batch, schedule, config, generator): testable on its own and
shared by the CLI, the background Trainer and the benchmarks.
"""
from __future__ import annotations

import atexit
import copy
import dataclasses
import functools
import json
import math
import os
import re
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import checkpoints as ck
from .config import ModelConfig, SampleConfig, ScheduleConfig, TrainConfig
from .data import BatchSampler, load as load_data
from .schedule import NoiseSchedule
from .unet import build_model, to_device


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
    cfg_model = getattr(model, "module", model).cfg              # DistributedDataParallel wraps the model
    cond_labels = torch.where(drop, torch.full_like(labels, cfg_model.null_class), labels)
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


def _distributed_rank_and_size() -> tuple[int, int]:
    """(rank, world size) when launched by torchrun (initialising the process group once), else (0, 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def replicas_identical(model: nn.Module) -> bool:
    """Under torchrun: do all ranks hold bit-identical weights? (True when not distributed)."""
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        return True
    flat = torch.cat([p.detach().reshape(-1).double() for p in model.parameters()])
    mine = torch.stack([flat.sum(), (flat * flat).sum(), flat.abs().max()]).to(next(model.parameters()).device)
    others = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(others, mine)
    return all(torch.equal(o, others[0]) for o in others)


def pick_device(requested: str = "auto") -> torch.device:
    """cuda, then mps, else cpu for "auto"; a requested device that is missing raises a clear error."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was requested but no CUDA GPU is available; use --device auto or cpu")
    if requested not in ("cpu", "cuda", "mps"):
        raise RuntimeError(f"unknown device {requested!r}; use auto, cpu, cuda or mps")
    return torch.device(requested)


@dataclass
class StepEvents:
    """What one `TrainingRun.train_one` call did besides the step itself."""

    result: StepResult
    logged: dict | None = None
    snapshot: torch.Tensor | None = None
    judged: dict | None = None
    checkpoint: Path | None = None


METRICS = "metrics.jsonl"
SNAPSHOTS = "snapshots"


class TrainingRun:
    """Owns one run's state; `step()` advances it by one batch, `save()` writes an atomic checkpoint.

    out: the run's folder (the checkpoint files plus metrics.jsonl and snapshots/ as sidecars).
    """

    def __init__(self, model_config: ModelConfig, schedule_config: ScheduleConfig, train_config: TrainConfig,
                 recommended: SampleConfig, out: str | Path, device: str | torch.device = "cpu",
                 command: str = "", init_from: str | Path | None = None) -> None:
        self.model_config, self.schedule_config = model_config, schedule_config
        self.train_config, self.recommended = train_config, recommended
        self.out = Path(out)
        self.device = torch.device(device)
        self.command = command
        self.schedule = NoiseSchedule(schedule_config)
        self.rank, self.world_size = _distributed_rank_and_size()
        torch.manual_seed(train_config.seed)                      # weight initialisation (same on every rank)
        self.model = to_device(build_model(model_config), self.device)     # channels-last on a CPU
        if init_from is not None:                                 # "train on top of" another checkpoint
            src = ck.load_checkpoint(init_from, self.device)
            # The same network, or the same network plus style inputs (a class model fine-tuned to style):
            # every other difference in architecture is refused.
            if src.model_config.replace(style_dim=model_config.style_dim) != model_config:
                raise ck.CheckpointError(f"cannot start from {init_from}: its architecture differs from this run's")
            missing, unexpected = self.model.load_state_dict(src.model.state_dict(), strict=False)
            if unexpected or any(not k.startswith("cond.style_") for k in missing):
                raise ck.CheckpointError(f"cannot start from {init_from}: weights {missing + unexpected} do not fit")
        self.ema = EMA(self.model, train_config.ema_decay)
        self.optimizer = make_optimizer(self.model, train_config)
        self.trained = self.model                                  # what train_step calls (DDP-wrapped if distributed)
        if self.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.trained = DistributedDataParallel(self.model, device_ids=[self.device] if self.device.type == "cuda" else None)
        train_split, _ = load_data(train_config.dataset)
        # every rank draws its own batches (batch_size each): the global batch is world_size x batch_size
        self.batches = BatchSampler(train_split, train_config.batch_size, train_config.seed + 7919 * self.rank)
        self.styles: torch.Tensor | None = None
        self.style_stats: dict | None = None
        if model_config.style_dim:
            from .style import dataset_styles, normalise

            if model_config.style_dim != 2 or train_config.dataset != "mnist-5k":
                raise ValueError("style conditioning supports style_dim=2 (thickness, slant) on mnist-5k")
            raw, _ = dataset_styles(train_config.dataset)
            self.styles = torch.from_numpy(normalise(raw, raw))                         # (N, 2) z-scores
            self.style_stats = {"mean": raw.mean(0).tolist(), "std": (raw.std(0) + 1e-6).tolist(),
                                "names": ["thickness_px", "slant_deg"]}
        self.generator = torch.Generator().manual_seed(train_config.seed + 1 + 1_000_003 * self.rank)
        self.step_count = 0
        self.wall_time = 0.0
        self.images_seen = 0
        self.resume_commands: list[str] = []
        self.judge = None                      # set to a Judge to log judge accuracy with every snapshot
        self.loss_by_bucket: list[float | None] = [None] * 10
        self._rate_mark: tuple[float, int] | None = None

    def compile_model(self) -> str:
        """Train through torch.compile from now on (see accel.compile_for_training); returns what happened."""
        if self.world_size > 1:
            return "--compile is for single-process runs; training eagerly"
        from .accel import compile_for_training

        self.trained, seconds, error = compile_for_training(self.model, self.train_config.batch_size)
        if error:
            return f"torch.compile failed after {seconds:.0f} s ({error}); training eagerly"
        return f"compiled the training step in {seconds:.0f} s"

    # -- resume ----------------------------------------------------------------------------------------------------
    @classmethod
    def resume(cls, out: str | Path, device: str | torch.device = "cpu", steps: int | None = None,
               command: str = "") -> "TrainingRun":
        """Reopen a run folder at its last checkpoint, with the same step count, optimiser state and batches."""
        saved = ck.load_checkpoint(out, device, with_training_state=True)
        tc = saved.train_config
        if tc is None:
            raise ck.CheckpointError(f"{out} has no training config; it cannot be resumed")
        if steps is not None and steps != tc.steps:
            tc = tc.replace(steps=steps)
        run = cls(saved.model_config, saved.schedule_config, tc, saved.recommended, out, device,
                  saved.meta.get("command", "") or command)
        run.resume_commands = list(saved.meta.get("resume_commands", [])) + ([command] if command else [])
        run.model.load_state_dict(saved.raw_model.state_dict())
        run.ema.model.load_state_dict(saved.model.state_dict())
        run.ema.updates = int(saved.meta.get("ema_updates", saved.step))
        if saved.optimizer_state is not None and saved.meta.get("optimizer_param_groups"):
            ck.optimizer_from_tensors(run.optimizer, saved.optimizer_state, saved.meta["optimizer_param_groups"])
        run.step_count = saved.step
        run.wall_time = float(saved.meta.get("wall_time_s", 0.0))
        run.images_seen = int(saved.meta.get("images_seen", saved.step * tc.batch_size))
        run.batches.skip_to(saved.step)
        gstate = saved.meta.get("generator_seed_offset")
        run.generator = torch.Generator().manual_seed(tc.seed + 1 + (gstate if gstate is not None else saved.step)
                                                      + 1_000_003 * run.rank)
        run._truncate_metrics(saved.step)
        return run

    def _truncate_metrics(self, step: int) -> None:
        """Drop metric lines logged after the checkpoint we resume from (they will be logged again)."""
        path = self.out / METRICS
        if not path.exists():
            return
        keep = [r for r in read_metrics(path) if r.get("step", 0) <= step]
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))
        tmp.replace(path)

    # -- training --------------------------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.step_count >= self.train_config.steps

    def step(self) -> StepResult:
        t0 = time.perf_counter()
        x0, y = self.batches.next()
        x0, y = x0.to(self.device), y.to(self.device)
        if self.train_config.augment:
            x0 = augment_batch(x0, self.generator)
        style = self.styles[self.batches.last_index].to(self.device) if self.styles is not None else None
        result = train_step(self.trained, self.optimizer, self.schedule, x0, y, self.train_config, self.step_count,
                            self.generator, self.ema, style=style)
        self.step_count += 1
        self.images_seen += x0.shape[0]
        self.wall_time += time.perf_counter() - t0
        return result

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def log(self, record: dict) -> None:
        if not self.is_main:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / METRICS, "a") as f:
            f.write(json.dumps(record) + "\n")

    def save(self, extra_meta: dict | None = None) -> Path:
        """Atomic checkpoint of the run into its folder (sidecar files are carried over)."""
        meta = {
            "dataset": self.train_config.dataset, "command": self.command, "device": str(self.device),
            "wall_time_s": round(self.wall_time, 2), "images_seen": self.images_seen,
            "ema_updates": self.ema.updates, "generator_seed_offset": self.step_count,
            "resume_commands": self.resume_commands, "style_stats": self.style_stats,
            "torch": torch.__version__, **(extra_meta or {}),
        }
        # The generator is reseeded from the step on save, so a resumed run draws the same noise afterwards.
        self.generator = torch.Generator().manual_seed(self.train_config.seed + 1 + self.step_count
                                                       + 1_000_003 * self.rank)
        if not self.is_main:
            return self.out
        return ck.save_checkpoint(self.out, model=self.model, ema_model=self.ema.model,
                                   model_config=self.model_config, schedule_config=self.schedule_config,
                                   train_config=self.train_config, recommended=self.recommended,
                                   step=self.step_count, meta=meta, optimizer=self.optimizer, overwrite=True,
                                   keep_sidecars=True)

    def train_one(self, snapshots: bool = True) -> "StepEvents":
        """One step plus the periodic work: metrics log, fixed-seed snapshot (+ judge), atomic checkpoint."""
        tc = self.train_config
        r = self.step()
        self._update_buckets(r)
        ev = StepEvents(r)
        now = time.perf_counter()
        if self._rate_mark is None:
            self._rate_mark = (now - 1e-3, self.images_seen - r.t.shape[0])
        if self.step_count % tc.log_every == 0 or self.done:
            t_mark, n_mark = self._rate_mark
            ips = (self.images_seen - n_mark) / max(now - t_mark, 1e-9)
            self._rate_mark = (now, self.images_seen)
            ev.logged = {"step": self.step_count, "loss": round(r.loss, 6), "lr": r.lr,
                         "images_per_s": round(ips, 1), "wall_time_s": round(self.wall_time, 2)}
            self.log(ev.logged)
        if snapshots and self.is_main and (self.step_count % tc.sample_every == 0 or self.done):
            snap = self.snapshot()
            (self.out / SNAPSHOTS).mkdir(parents=True, exist_ok=True)
            np.save(self.out / SNAPSHOTS / f"step-{self.step_count:07d}.npy", snap.numpy())
            ev.snapshot = snap
            if self.judge is not None:
                ev.judged = self.judge_samples()
                self.log({"step": self.step_count, **ev.judged})
        if self.step_count % tc.checkpoint_every == 0 or self.done:
            ev.checkpoint = self.save()
        return ev

    def _update_buckets(self, r: StepResult) -> None:
        """Running mean (EMA, 0.05) of the unweighted loss in 10 timestep buckets (0-10 % of T, ...)."""
        b = (r.t * 10 // self.schedule.T).clamp(max=9)
        for k in range(10):
            m = b == k
            if m.any():
                v = float(r.loss_per_image[m].mean())
                old = self.loss_by_bucket[k]
                self.loss_by_bucket[k] = v if old is None else 0.95 * old + 0.05 * v

    @torch.inference_mode()
    def judge_samples(self, per_class: int = 5, steps: int = 10, seed: int = 4321) -> dict:
        """Judge accuracy of a small fixed-seed sample of the EMA model (DDIM-`steps`, recommended guidance)."""
        from .metrics import class_scores
        from .judge import predict
        from .sampling import class_labels, sample

        labels = class_labels(per_class)
        x = sample(self.ema.model, self.schedule, labels,
                   self.recommended.replace(seed=seed, steps=min(steps, self.schedule.T), sampler="ddim"))
        probs, _ = predict(self.judge, x.cpu())
        sc = class_scores(probs, labels)
        return {"judge_accuracy": sc["accuracy"], "judge_per_class": sc["per_class_accuracy"]}

    @torch.inference_mode()
    def snapshot(self, per_class: int = 2, seed: int = 1234) -> torch.Tensor:
        """Fixed-seed samples of the EMA model (DDIM, recommended guidance): (10*per_class, 28, 28) uint8."""
        from .sampling import class_labels, sample, to_uint8

        labels = class_labels(per_class)
        x = sample(self.ema.model, self.schedule, labels, self.recommended.replace(seed=seed))
        return to_uint8(x.cpu())


def read_metrics(path: str | Path) -> list[dict]:
    """Records of a metrics.jsonl; a torn last line (crash mid-write) is skipped."""
    out = []
    p = Path(path)
    if not p.exists():
        return out
    for line in p.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


# ---------------------------------------------------------------------------------------------------------------
# The background Trainer: one per server process, one run at a time, in a daemon thread that never touches
# the UI. Outside code calls start / pause / resume / stop and reads immutable TrainerStatus snapshots.
# ---------------------------------------------------------------------------------------------------------------

RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,47}$")
DEFAULT_RUNS_ROOT = Path(__file__).resolve().parent.parent / "checkpoints" / "runs"


class TrainerBusy(RuntimeError):
    """A second start while a run is active (one machine, one training job)."""


def check_run_name(name: str) -> str:
    if not isinstance(name, str) or not RUN_NAME.match(name) or ".." in name:
        raise ValueError(f"run name must be 1-48 letters, digits, '-', '_' or '.', with no path separators; "
                         f"got {name!r}")
    return name


def training_threads() -> int:
    """Threads for the training thread: leave one core for the web server and the pages on small machines.

    Measured on the 2-core CPU: with both cores busy in torch, the UI's own small tensor ops slowed by ~70x;
    one training thread costs ~35 % of two-thread throughput and keeps every page responsive.
    """
    cores = os.cpu_count() or 1
    return max(1, cores - 1) if cores <= 4 else cores - 2


@dataclass(frozen=True)
class TrainerStatus:
    """An immutable snapshot of the Trainer; safe to read from any page, any session."""

    state: str                         # idle | running | paused | stopping | finished | failed
    run_name: str | None = None
    step: int = 0
    total: int = 0
    device: str = "cpu"
    images_per_s: float = 0.0
    eta_s: float | None = None
    loss_history: tuple = ()           # ((step, loss), ...) downsampled to <= 2000 points
    loss_by_bucket: tuple = (None,) * 10
    snapshots: tuple = ()              # ((step, uint8 array (20, 28, 28)), ...)
    judge_history: tuple = ()          # ((step, accuracy, {class: accuracy}), ...)
    last_checkpoint: str | None = None
    error: str | None = None
    message: str | None = None

    @property
    def active(self) -> bool:
        return self.state in ("running", "paused", "stopping")


class Trainer:
    """Runs one TrainingRun at a time in a daemon thread.

    All mutable state lives behind `self._lock`; the thread publishes a fresh TrainerStatus after each step,
    so readers never see a half-updated object. The thread never calls Streamlit.
    """

    def __init__(self, runs_root: str | Path = DEFAULT_RUNS_ROOT, judge_loader=None,
                 threads: int | None = None) -> None:
        self.runs_root = Path(runs_root)
        self._judge_loader = judge_loader
        self._threads = threads
        self._lock = threading.Lock()
        self._pause = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._status = TrainerStatus("idle")
        # The thread is a daemon (a stuck step must never keep the server from exiting), so at interpreter exit
        # (the dashboard stopped with Ctrl-C or SIGTERM) an active run is first stopped after its current step,
        # which saves a checkpoint there: without this, every step since the last periodic checkpoint is lost.
        atexit.register(self.stop, wait=60.0)

    # -- control -----------------------------------------------------------------------------------------------
    def status(self) -> TrainerStatus:
        with self._lock:
            return self._status

    def start(self, name: str, model_config: ModelConfig, schedule_config: ScheduleConfig,
              train_config: TrainConfig, recommended: SampleConfig, *, init_from: str | None = None,
              device: str = "auto") -> TrainerStatus:
        """Start a new run `name` under runs_root; raises TrainerBusy naming the active run."""
        check_run_name(name)
        out = self.runs_root / name
        with self._lock:
            self._refuse_if_busy()
            if out.exists() and any(out.iterdir()):
                raise FileExistsError(f"a run named {name!r} already exists; resume it or pick another name")
            self._launch(lambda: TrainingRun(model_config, schedule_config, train_config, recommended, out,
                                             pick_device(device), f"dashboard: start {name}", init_from=init_from),
                         name, train_config.steps)
            return self._status

    def resume_run(self, name: str, device: str = "auto", steps: int | None = None) -> TrainerStatus:
        """Continue run `name` from its last checkpoint (after a stop, a crash or a server restart)."""
        check_run_name(name)
        out = self.runs_root / name
        with self._lock:
            self._refuse_if_busy()
            if not (out / ck.WEIGHTS).exists() and not list(out.parent.glob(f".{name}.old-*")):
                raise FileNotFoundError(f"run {name!r} has no checkpoint to resume from")
            self._launch(lambda: TrainingRun.resume(out, pick_device(device), steps=steps,
                                                    command=f"dashboard: resume {name}"), name, steps or 0)
            return self._status

    def pause(self) -> None:
        with self._lock:
            if self._status.state == "running":
                self._pause.set()
                self._status = dataclasses.replace(self._status, state="paused", message="paused")

    def resume(self) -> None:
        with self._lock:
            if self._status.state == "paused":
                self._pause.clear()
                self._status = dataclasses.replace(self._status, state="running", message=None)

    def stop(self, wait: float | None = None) -> None:
        """Ask the run to stop after its current step (it writes a final checkpoint)."""
        with self._lock:
            thread = self._thread
            if self._status.active:
                self._stop.set()
                self._pause.clear()
                self._status = dataclasses.replace(self._status, state="stopping", message="stopping…")
        if wait and thread is not None:
            thread.join(wait)

    def join(self, timeout: float | None = None) -> None:
        t = self._thread
        if t is not None:
            t.join(timeout)

    # -- internals ---------------------------------------------------------------------------------------------
    def _refuse_if_busy(self) -> None:
        if self._status.active and self._thread is not None and self._thread.is_alive():
            raise TrainerBusy(f"run {self._status.run_name!r} is already training ({self._status.state}); "
                              "one training job at a time — pause or stop it first")

    def _launch(self, make_run, name: str, total: int) -> None:
        self._stop.clear()
        self._pause.clear()
        self._status = TrainerStatus("running", run_name=name, total=total, message="starting…")
        self._thread = threading.Thread(target=self._main, args=(make_run, name), daemon=True,
                                         name=f"trainer-{name}")
        self._thread.start()

    def _publish(self, **changes) -> None:
        with self._lock:
            self._status = dataclasses.replace(self._status, **changes)

    def _main(self, make_run, name: str) -> None:
        run = None
        try:
            torch.set_num_threads(self._threads or training_threads())
            run = make_run()
            if self._judge_loader is not None:
                try:
                    run.judge = self._judge_loader()
                except Exception:   # no judge: train anyway, without the accuracy chart
                    run.judge = None
            logged = read_metrics(run.out / METRICS)
            history = [(r["step"], r["loss"]) for r in logged if "loss" in r]
            judged = [(r["step"], r["judge_accuracy"], r.get("judge_per_class", {})) for r in logged
                      if "judge_accuracy" in r]
            snaps = _load_snapshots(run.out)
            self._publish(total=run.train_config.steps, step=run.step_count, device=str(run.device),
                          loss_history=tuple(history), judge_history=tuple(judged), snapshots=tuple(snaps),
                          message=None)
            rate = 0.0
            while not run.done:
                if self._stop.is_set():
                    break
                if self._pause.is_set():
                    time.sleep(0.1)
                    continue
                ev = run.train_one()
                if ev.logged:
                    history.append((run.step_count, ev.logged["loss"]))
                    if len(history) > 4000:                 # keep charts light: halve the resolution
                        history = history[::2]
                    rate = ev.logged["images_per_s"]
                if ev.snapshot is not None:
                    snaps.append((run.step_count, ev.snapshot.numpy()))
                if ev.judged is not None:
                    judged.append((run.step_count, ev.judged["judge_accuracy"], ev.judged["judge_per_class"]))
                left = run.train_config.steps - run.step_count
                eta = left * run.train_config.batch_size / rate if rate > 0 else None
                self._publish(step=run.step_count, images_per_s=rate, eta_s=eta, loss_history=tuple(history),
                              loss_by_bucket=tuple(run.loss_by_bucket), snapshots=tuple(snaps),
                              judge_history=tuple(judged),
                              last_checkpoint=str(ev.checkpoint) if ev.checkpoint else self._status.last_checkpoint)
            path = run.save()
            final = "finished" if run.done else "idle"
            self._publish(state=final, last_checkpoint=str(path), step=run.step_count,
                          message="finished" if run.done else f"stopped at step {run.step_count} (checkpoint saved)")
        except NonFiniteLoss as e:
            self._publish(state="failed", error=f"{e}. The last good checkpoint is kept.")
        except torch.OutOfMemoryError:
            self._publish(state="failed", error="out of memory: lower the batch size or the width. "
                                                "The last good checkpoint is kept.")
        except OSError as e:
            self._publish(state="failed", error=f"could not write the checkpoint ({e.strerror or e}); is the disk "
                                                "full? The previous checkpoint is still valid.")
        except Exception as e:  # anything else: visible in the status, never a silent dead thread
            self._publish(state="failed", error=f"{type(e).__name__}: {e}",
                          message=traceback.format_exc(limit=3))


def _load_snapshots(out: Path) -> list[tuple[int, "object"]]:
    snaps = []
    for p in sorted((out / SNAPSHOTS).glob("step-*.npy")):
        try:
            snaps.append((int(p.stem.split("-")[1]), np.load(p, allow_pickle=False)))
        except (ValueError, OSError):
            continue
    return snaps


@functools.lru_cache(maxsize=64)
def model_size(model_config: ModelConfig) -> tuple[int, float]:
    """(parameters, forward MFLOP per image) of an architecture; cached, since the runs table asks every rerun."""
    from .summary import total_flops
    from .unet import count_parameters

    model = build_model(model_config)
    return count_parameters(model), round(total_flops(model) / 1e6, 1)


def list_runs(runs_root: str | Path = DEFAULT_RUNS_ROOT) -> list[dict]:
    """Every run folder: name, step / total, interrupted?, params, wall time, images/s, last loss, judge."""
    out = []
    root = Path(runs_root)
    if not root.is_dir():
        return out
    for d in sorted(root.iterdir()):
        if not d.is_dir() or d.name.startswith("."):
            continue
        ck.recover_checkpoint(d)
        row: dict = {"name": d.name, "path": str(d)}
        try:
            config, meta = ck.read_configs(d)
            mc = ModelConfig.from_dict(config["model"])
            tc = TrainConfig.from_dict(config["train"])
            metrics = read_metrics(d / METRICS)
            losses = [r["loss"] for r in metrics if "loss" in r]
            judged = [r["judge_accuracy"] for r in metrics if "judge_accuracy" in r]
            wall = float(meta.get("wall_time_s", 0.0))
            params, mflop = model_size(mc)
            row.update(step=int(meta.get("step", 0)), total=tc.steps, params=params, mflop_per_image=mflop,
                       wall_time_s=round(wall, 1),
                       images_per_s=round(meta.get("images_seen", 0) / wall, 1) if wall else None,
                       final_loss=round(sum(losses[-10:]) / len(losses[-10:]), 4) if losses else None,
                       judge_accuracy=judged[-1] if judged else None, width=mc.base_channels,
                       depth=mc.num_res_blocks, arch=mc.arch)
            row["interrupted"] = row["step"] < tc.steps
        except (ck.CheckpointError, KeyError, TypeError, ValueError) as e:
            row["error"] = str(e)
        out.append(row)
    return out
