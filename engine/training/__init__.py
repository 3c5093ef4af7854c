"""Training, one room per concern:

- `step`: the pure `train_step` (Ho et al. 2020, algorithm 1), Min-SNR loss weights, batch augmentation, the EMA
  of the weights, the learning-rate schedule and the optimiser.
- `run`: a TrainingRun (model, EMA, optimiser, data, step counter; checkpoints, snapshots, judge samples), made
  by `TrainingRun.create` or `TrainingRun.resume`.
- `trainer`: the background Trainer thread the dashboard shares, and its immutable TrainerStatus.
- `runs`: the runs folder, read-only (the runs table, metrics logs, snapshots).

The names below are re-exported so that `from engine.training import Trainer` keeps working.
"""
from ..devices import pick_device, replicas_identical  # noqa: F401
from .run import StepEvents, TrainingRun, init_model, step_seed  # noqa: F401
from .runs import DEFAULT_RUNS_ROOT, METRICS, SNAPSHOTS, list_runs, load_snapshots, model_size, read_metrics  # noqa: F401
from .step import (EMA, NonFiniteLoss, StepResult, augment_batch, loss_weights, lr_at, make_optimizer,  # noqa: F401
                   train_step)
from .trainer import Trainer, TrainerBusy, TrainerStatus, check_run_name, training_threads  # noqa: F401

__all__ = [
    "EMA", "NonFiniteLoss", "StepResult", "augment_batch", "loss_weights", "lr_at", "make_optimizer", "train_step",
    "StepEvents", "TrainingRun", "init_model", "step_seed",
    "Trainer", "TrainerBusy", "TrainerStatus", "check_run_name", "training_threads",
    "DEFAULT_RUNS_ROOT", "METRICS", "SNAPSHOTS", "list_runs", "load_snapshots", "model_size", "read_metrics",
    "pick_device", "replicas_identical",
]
