"""A training run: the network, its EMA, the optimiser, the data and the step counter, with atomic
checkpoints, fixed-seed snapshots and judge samples.

Used by the CLI's loop and by the background Trainer thread; it knows nothing about either (minGPT's trainer
habit). The constructor only stores configuration. `TrainingRun.create` (a new run) and `TrainingRun.resume`
(a run folder's last checkpoint) do the work: join the torchrun process group, initialise or load the weights,
load the data.

Randomness. Step k's batch is a function of (seed, rank, k) (see data.BatchSampler), and every random number
the step draws (augmentation shifts, timesteps, noise, label dropout, and dropout inside the network if it has
any) comes from a generator seeded with `step_seed(seed, rank, k)`. Nothing carries over from one step to the
next, so checkpointing, stopping or resuming a run never changes its numbers.
"""
from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .. import checkpoints as ck
from ..accel import to_device
from ..config import ModelConfig, SampleConfig, ScheduleConfig, TrainConfig
from ..data import BatchSampler, load as load_data
from ..devices import init_distributed
from ..schedule import NoiseSchedule
from ..unet import build_model
from .runs import METRICS, SNAPSHOTS, parse_record
from .step import EMA, NonFiniteLoss, StepResult, augment_batch, lr_at, make_optimizer, train_step


def init_model(model_config: ModelConfig, seed: int) -> nn.Module:
    """A freshly initialised network (on the CPU) whose weights depend on `seed` alone.

    PyTorch's layer initialisers draw from the global CPU generator, so it is seeded for the build and put
    back afterwards: the weights equal `torch.manual_seed(seed); build_model(...)`, and no global state changes.
    """
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        return build_model(model_config)


def saved_parameters(out: str | Path) -> int:
    """Parameters of the model checkpointed in run folder `out`, for the disk-space check before resuming it
    (0 when its config.json does not read: resuming then says why)."""
    from ..config import ConfigError
    from ..presets import parameter_count

    try:
        return parameter_count(ModelConfig.from_dict(ck.read_configs(out)[0]["model"]))
    except (ck.CheckpointError, ConfigError, KeyError, TypeError):
        return 0


def step_seed(seed: int, rank: int, step: int) -> int:
    """The seed of everything step `step` draws on process `rank`: a hash of the three (numpy's SeedSequence),
    so nearby seeds, ranks and steps give unrelated streams."""
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1, np.uint64)[0])


@contextlib.contextmanager
def _network_rng(seed: int, device: torch.device, enabled: bool):
    """Dropout layers draw from the global generator of their device: when enabled, seed it with the step's
    seed for the step and put it back afterwards (CPU and CUDA; other devices keep their global generator)."""
    if not enabled:
        yield
        return
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(seed)
        for index in cuda:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(seed)
        yield


def _load_init_weights(model: nn.Module, model_config: ModelConfig, init_from: str | Path) -> None:
    """Copy another checkpoint's weights into `model`: the same network, or the same network plus style
    inputs (a class model fine-tuned to style); every other difference in architecture is refused."""
    src = ck.load_checkpoint(init_from)
    if src.model_config.replace(style_dim=model_config.style_dim) != model_config:
        raise ck.CheckpointError(f"cannot start from {init_from}: its architecture differs from this run's")
    missing, unexpected = model.load_state_dict(src.model.state_dict(), strict=False)
    if unexpected or any(not k.startswith("cond.style_") for k in missing):
        raise ck.CheckpointError(f"cannot start from {init_from}: weights {missing + unexpected} do not fit")


@dataclass
class StepEvents:
    """What one `TrainingRun.train_one` call did besides the step itself."""

    result: StepResult
    logged: dict | None = None
    snapshot: torch.Tensor | None = None
    judged: dict | None = None
    checkpoint: Path | None = None


class TrainingRun:
    """Owns one run's state; `step()` advances it by one batch, `save()` writes an atomic checkpoint.

    out: the run's folder (the checkpoint files plus metrics.jsonl and snapshots/ as sidecars).
    Make runs with `TrainingRun.create(...)` or `TrainingRun.resume(out)`; the constructor stores configuration
    only (no I/O, no seeding, no process group), and a run made by it alone cannot train.
    """

    def __init__(self, model_config: ModelConfig, schedule_config: ScheduleConfig, train_config: TrainConfig,
                 recommended: SampleConfig, out: str | Path, device: str | torch.device = "cpu",
                 command: str = "", *, rank: int = 0, world_size: int = 1) -> None:
        self.model_config, self.schedule_config = model_config, schedule_config
        self.train_config, self.recommended = train_config, recommended
        self.out = Path(out)
        self.device = torch.device(device)
        self.command = command
        self.rank, self.world_size = rank, world_size
        self.schedule = NoiseSchedule(schedule_config)
        # Built by create() / resume() (see _build)
        self.model: nn.Module | None = None
        self.trained: nn.Module | None = None      # what train_step calls: the model, DDP- or compile-wrapped
        self.ema: EMA | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.batches: BatchSampler | None = None
        self.styles: torch.Tensor | None = None    # (N, 2) z-scored (thickness, slant) of the training digits
        self.style_stats: dict | None = None
        # Progress, stored in the checkpoint's meta
        self.step_count = 0
        self.wall_time = 0.0
        self.images_seen = 0
        self.resume_commands: list[str] = []
        self.resume_changes: dict[str, tuple] = {}     # recipe changes made on resume: {field: (before, now)}
        self.judge = None                      # set to a Judge to log judge accuracy with every snapshot
        self.loss_by_bucket: list[float | None] = [None] * 10
        self._rate_mark: tuple[float, int] | None = None

    # -- factories -----------------------------------------------------------------------------------------------
    @classmethod
    def create(cls, model_config: ModelConfig, schedule_config: ScheduleConfig, train_config: TrainConfig,
               recommended: SampleConfig, out: str | Path, device: str | torch.device = "cpu", command: str = "",
               init_from: str | Path | None = None) -> "TrainingRun":
        """A new run at step 0: joins the torchrun process group when launched by it, initialises the weights
        from train_config.seed (the same on every rank) or copies them from `init_from`, loads the data."""
        rank, world_size = init_distributed()
        run = cls(model_config, schedule_config, train_config, recommended, out, device, command,
                  rank=rank, world_size=world_size)
        model = init_model(model_config, train_config.seed)
        if init_from is not None:                                 # "train on top of" another checkpoint
            _load_init_weights(model, model_config, init_from)
        run._build(model)
        return run

    @classmethod
    def resume(cls, out: str | Path, device: str | torch.device = "cpu", steps: int | None = None,
               command: str = "", *, lr: float | None = None, batch_size: int | None = None) -> "TrainingRun":
        """Reopen a run folder at its last checkpoint: the same step count, weights, EMA and optimiser state,
        and the batches and noise the uninterrupted run would have drawn next. `steps` changes the total; `lr`
        and `batch_size` change the recipe from here on (say after a NaN stop), listed in `resume_changes`:
        the run then differs from an uninterrupted one. Callers hold the run's lock (see checkpoints.RunLock)."""
        saved = ck.load_checkpoint(out, device, with_training_state=True)
        tc = saved.train_config
        if tc is None:
            raise ck.CheckpointError(f"{out} has no training config; it cannot be resumed")
        asked = {"steps": steps, "lr": lr, "batch_size": batch_size}
        changes = {k: v for k, v in asked.items() if v is not None and v != getattr(tc, k)}
        old = tc
        tc = tc.replace(**changes)
        rank, world_size = init_distributed()
        run = cls(saved.model_config, saved.schedule_config, tc, saved.recommended, out, device,
                  saved.meta.get("command", "") or command, rank=rank, world_size=world_size)
        run.resume_changes = {k: (getattr(old, k), v) for k, v in changes.items() if k != "steps"}
        model = init_model(saved.model_config, tc.seed)
        model.load_state_dict(saved.raw_model.state_dict())
        run._build(model)
        run._restore(saved, command)
        return run

    def _build(self, model: nn.Module) -> None:
        """Everything a run trains with: the model on its device, its EMA, the optimiser, the data."""
        tc = self.train_config
        if self.model_config.style_dim and (self.model_config.style_dim != 2 or tc.dataset != "mnist-5k"):
            raise ValueError("style conditioning supports style_dim=2 (thickness, slant) on mnist-5k")
        self.model = to_device(model, self.device)                # the fast form: see accel.to_device
        self.ema = EMA(self.model, tc.ema_decay)
        self.optimizer = make_optimizer(self.model, tc)
        self.trained = self.model
        if self.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device] if self.device.type == "cuda" else None
            self.trained = DistributedDataParallel(self.model, device_ids=ids)
        train_split, _ = load_data(tc.dataset)
        # every rank draws its own batches (batch_size each): the global batch is world_size x batch_size
        self.batches = BatchSampler(train_split, tc.batch_size, tc.seed + 7919 * self.rank)
        if self.model_config.style_dim:
            from ..style import dataset_styles, normalise

            raw, _ = dataset_styles(tc.dataset)
            self.styles = torch.from_numpy(normalise(raw, raw))                         # (N, 2) z-scores
            self.style_stats = {"mean": raw.mean(0).tolist(), "std": (raw.std(0) + 1e-6).tolist(),
                                "names": ["thickness_px", "slant_deg"]}

    def _restore(self, saved: ck.Checkpoint, command: str) -> None:
        """Put a checkpoint's training state (EMA, optimiser, counters, data position) into this built run."""
        self.resume_commands = list(saved.meta.get("resume_commands", [])) + ([command] if command else [])
        self.ema.model.load_state_dict(saved.model.state_dict())
        self.ema.updates = int(saved.meta.get("ema_updates", saved.step))
        if saved.optimizer_state is not None and saved.meta.get("optimizer_param_groups"):
            ck.optimizer_from_tensors(self.optimizer, saved.optimizer_state, saved.meta["optimizer_param_groups"])
        self.step_count = saved.step
        self.wall_time = float(saved.meta.get("wall_time_s", 0.0))
        self.images_seen = int(saved.meta.get("images_seen", saved.step * self.train_config.batch_size))
        for group in self.optimizer.param_groups:           # train_step sets it every step; a changed lr shows now
            group["lr"] = lr_at(saved.step, self.train_config)
        # The data position is the images drawn so far: step x batch size unless the batch size changed on a resume
        size = self.batches.batch_size
        self.batches.batch_size = 1
        self.batches.skip_to(self.images_seen)
        self.batches.batch_size = size
        self._truncate_metrics(saved.step)

    def _truncate_metrics(self, step: int) -> None:
        """Drop metric lines logged after the checkpoint we resume from (they will be logged again), and torn
        ones; the kept lines are copied byte for byte, streamed (a log of any size), and swapped in atomically."""
        path = self.out / METRICS
        if not path.exists():
            return
        tmp = path.with_name(f".{METRICS}.tmp")
        with open(path, "rb") as src, open(tmp, "wb") as dst:
            for line in src:
                record = parse_record(line)
                logged = record.get("step", 0) if record is not None else None
                if isinstance(logged, (int, float)) and logged <= step:
                    dst.write(line if line.endswith(b"\n") else line + b"\n")
        tmp.replace(path)

    def _require_built(self) -> None:
        if self.model is None:
            raise RuntimeError("this TrainingRun holds only its configuration; make runs with "
                               "TrainingRun.create(...) or TrainingRun.resume(folder)")

    def compile_model(self) -> str:
        """Train through torch.compile from now on (see accel.compile_for_training); returns what happened."""
        self._require_built()
        if self.world_size > 1:
            return "--compile is for single-process runs; training eagerly"
        from ..accel import compile_for_training

        self.trained, seconds, error = compile_for_training(self.model, self.train_config.batch_size)
        if error:
            return f"torch.compile failed after {seconds:.0f} s ({error}); training eagerly"
        return f"compiled the training step in {seconds:.0f} s"

    # -- training --------------------------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.step_count >= self.train_config.steps

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def step(self) -> StepResult:
        """Train on the next batch. Everything the step draws comes from step_seed(seed, rank, step_count)."""
        self._require_built()
        t0 = time.perf_counter()
        seed = step_seed(self.train_config.seed, self.rank, self.step_count)
        generator = torch.Generator().manual_seed(seed)
        x0, y = self.batches.next()
        x0, y = x0.to(self.device), y.to(self.device)                    # (B, 1, 28, 28), (B,)
        if self.train_config.augment:
            x0 = augment_batch(x0, generator)
        style = self.styles[self.batches.last_index].to(self.device) if self.styles is not None else None
        with _network_rng(seed, self.device, enabled=self.model_config.dropout > 0):
            result = train_step(self.trained, self.optimizer, self.schedule, x0, y, self.train_config,
                                self.step_count, generator, self.ema, style=style)
        self.step_count += 1
        self.images_seen += x0.shape[0]
        self.wall_time += time.perf_counter() - t0
        return result

    def log(self, record: dict) -> None:
        """Append one record to metrics.jsonl (on the main process only)."""
        if not self.is_main:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / METRICS, "a") as f:
            f.write(json.dumps(record) + "\n")

    def save(self, extra_meta: dict | None = None) -> Path:
        """Atomic checkpoint of the run into its folder (sidecar files are carried over); only the main process
        writes. Saving changes nothing in the run: a run saved every step trains exactly as one never saved."""
        self._require_built()
        if not self.is_main:
            return self.out
        for name, p in self.model.named_parameters():       # never replace the last good checkpoint with NaNs
            if not bool(torch.isfinite(p).all()):
                raise NonFiniteLoss(f"the weights became NaN or infinite by step {self.step_count} ({name}); the "
                                    f"learning rate {self.train_config.lr:g} is probably too high. The last good "
                                    "checkpoint is kept")
        meta = {
            "dataset": self.train_config.dataset, "command": self.command, "device": str(self.device),
            "wall_time_s": round(self.wall_time, 2), "images_seen": self.images_seen,
            "ema_updates": self.ema.updates, "resume_commands": self.resume_commands,
            "style_stats": self.style_stats, "torch": torch.__version__, **(extra_meta or {}),
        }
        return ck.save_checkpoint(self.out, model=self.model, ema_model=self.ema.model,
                                  model_config=self.model_config, schedule_config=self.schedule_config,
                                  train_config=self.train_config, recommended=self.recommended,
                                  step=self.step_count, meta=meta, optimizer=self.optimizer, overwrite=True,
                                  keep_sidecars=True)

    def train_one(self, snapshots: bool = True) -> StepEvents:
        """One step plus the periodic work: metrics log, fixed-seed snapshot (+ judge), atomic checkpoint."""
        tc = self.train_config
        r = self.step()
        self._update_buckets(r)
        ev = StepEvents(r)
        now = time.perf_counter()
        if self._rate_mark is None:                          # the first step starts the images/s clock
            self._rate_mark = (now - 1e-3, self.images_seen - r.t.shape[0])
        if self.step_count % tc.log_every == 0 or self.done:
            t_mark, n_mark = self._rate_mark
            ips = (self.images_seen - n_mark) / max(now - t_mark, 1e-9)      # since the last logged step
            self._rate_mark = (now, self.images_seen)
            ev.logged = {"step": self.step_count, "loss": round(r.loss, 6), "lr": r.lr,
                         "images_per_s": round(ips, 1), "wall_time_s": round(self.wall_time, 2)}
            self.log(ev.logged)
        if snapshots and self.is_main and (self.step_count % tc.sample_every == 0 or self.done):
            self._snapshot_and_judge(ev)
        if self.step_count % tc.checkpoint_every == 0 or self.done:
            ev.checkpoint = self.save()
        return ev

    def _snapshot_and_judge(self, ev: StepEvents) -> None:
        snap = self.snapshot()
        (self.out / SNAPSHOTS).mkdir(parents=True, exist_ok=True)
        np.save(self.out / SNAPSHOTS / f"step-{self.step_count:07d}.npy", snap.numpy())
        ev.snapshot = snap
        if self.judge is not None:
            ev.judged = self.judge_samples()
            self.log({"step": self.step_count, **ev.judged})

    def _update_buckets(self, r: StepResult) -> None:
        """Running mean (EMA, 0.05) of the unweighted loss in 10 timestep buckets (0-10 % of T, ...)."""
        b = (r.t * 10 // self.schedule.T).clamp(max=9)
        for k in range(10):
            m = b == k
            if m.any():
                v = float(r.loss_per_image[m].mean())
                old = self.loss_by_bucket[k]
                self.loss_by_bucket[k] = v if old is None else 0.95 * old + 0.05 * v

    # -- looking at the model ----------------------------------------------------------------------------------------
    @torch.inference_mode()
    def judge_samples(self, per_class: int = 5, steps: int = 10, seed: int = 4321) -> dict:
        """Judge accuracy of a small fixed-seed sample of the EMA model (DDIM-`steps`, recommended guidance)."""
        from ..judge import predict
        from ..metrics import class_scores
        from ..sampling import class_labels, sample

        labels = class_labels(per_class)
        x = sample(self.ema.model, self.schedule, labels,
                   self.recommended.replace(seed=seed, steps=min(steps, self.schedule.T), sampler="ddim"))
        probs, _ = predict(self.judge, x.cpu())
        sc = class_scores(probs, labels)
        return {"judge_accuracy": sc["accuracy"], "judge_per_class": sc["per_class_accuracy"]}

    @torch.inference_mode()
    def snapshot(self, per_class: int = 2, seed: int = 1234) -> torch.Tensor:
        """Fixed-seed samples of the EMA model (DDIM, recommended guidance): (10*per_class, 28, 28) uint8."""
        from ..sampling import class_labels, sample, to_uint8

        labels = class_labels(per_class)
        x = sample(self.ema.model, self.schedule, labels, self.recommended.replace(seed=seed))
        return to_uint8(x.cpu())
