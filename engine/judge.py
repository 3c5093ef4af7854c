"""The judge: a small CNN digit classifier, trained here, that scores generated digits independently.

Why a judge: the diffusion loss says how well noise is predicted, not whether samples look like the digit
asked for. The course's assessment uses a classifier (>= 95 % of generated digits recognised); so does this
project, during training, on the pages and in `python -m engine evaluate`.

Architecture: two conv blocks (conv-BN-ReLU x2, max-pool) and a 128-d penultimate layer whose activations are
the "judge features" used for the Frechet distance, diversity and memorisation checks.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import checkpoints as ck
from .data import load as load_data

JUDGE_PATH = Path(__file__).resolve().parent.parent / "checkpoints" / "judge"


@dataclass(frozen=True)
class JudgeConfig:
    width: int = 32
    feature_dim: int = 128
    num_classes: int = 10
    dropout: float = 0.3

    def to_dict(self) -> dict:
        return {"width": self.width, "feature_dim": self.feature_dim, "num_classes": self.num_classes,
                "dropout": self.dropout}


class Judge(nn.Module):
    """x (B, 1, 28, 28) in [-1, 1] -> logits (B, 10); `features(x)` -> (B, feature_dim)."""

    def __init__(self, cfg: JudgeConfig = JudgeConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.width

        def block(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                                 nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                                 nn.MaxPool2d(2))

        self.body = nn.Sequential(block(1, w), block(w, 2 * w))                    # (B, 2w, 7, 7)
        self.fc = nn.Sequential(nn.Flatten(), nn.Dropout(cfg.dropout), nn.Linear(2 * w * 49, cfg.feature_dim),
                                nn.BatchNorm1d(cfg.feature_dim), nn.ReLU())
        self.out = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(cfg.feature_dim, cfg.num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(x))


def random_affine(x: torch.Tensor, generator: torch.Generator, max_rot: float = 12.0, max_shift: float = 2.5,
                  scale: tuple[float, float] = (0.9, 1.1), max_shear: float = 0.15) -> torch.Tensor:
    """Batched light augmentation (rotation, shift in pixels, scale, shear) with one affine_grid call."""
    B = x.shape[0]
    u = lambda: torch.rand(B, generator=generator) * 2 - 1                       # noqa: E731  U(-1, 1)
    rot = u() * math.radians(max_rot)
    s = scale[0] + (u() + 1) / 2 * (scale[1] - scale[0])
    sh = u() * max_shear
    tx, ty = u() * max_shift * 2 / 28, u() * max_shift * 2 / 28
    cos, sin = torch.cos(rot) / s, torch.sin(rot) / s
    theta = torch.stack([torch.stack([cos, -sin + sh, tx], 1), torch.stack([sin, cos, ty], 1)], 1)  # (B, 2, 3)
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    # images live in [-1, 1] with -1 background: pad with background, not zero
    return F.grid_sample(x + 1, grid, align_corners=False, padding_mode="zeros") - 1


@torch.inference_mode()
def predict(judge: Judge, x: torch.Tensor, batch: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """(probabilities (N, 10), features (N, feature_dim)) for images (N, 1, 28, 28) in [-1, 1]."""
    judge.eval()
    device = next(judge.parameters()).device
    probs, feats = [], []
    for i in range(0, x.shape[0], batch):
        f = judge.features(x[i:i + batch].to(device))
        probs.append(F.softmax(judge.out(f), dim=1).cpu())
        feats.append(f.cpu())
    if not probs:
        return torch.empty(0, judge.cfg.num_classes), torch.empty(0, judge.cfg.feature_dim)
    return torch.cat(probs), torch.cat(feats)


def accuracy(judge: Judge, x: torch.Tensor, labels: torch.Tensor) -> float:
    probs, _ = predict(judge, x)
    return int((probs.argmax(1) == labels.cpu()).sum()) / max(len(labels), 1)      # exact: 95 of 100 is 0.95


def train_judge(dataset: str = "mnist-5k", epochs: int = 30, batch_size: int = 128, lr: float = 3e-3,
                seed: int = 0, cfg: JudgeConfig = JudgeConfig(), progress=None) -> tuple[Judge, dict]:
    """Train on the train split with augmentation; returns (judge, report with held-out accuracy)."""
    train, held = load_data(dataset)
    torch.manual_seed(seed)
    judge = Judge(cfg)
    g = torch.Generator().manual_seed(seed)
    steps_per_epoch = math.ceil(len(train) / batch_size)
    opt = torch.optim.AdamW(judge.parameters(), lr=lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        judge.train()
        perm = torch.randperm(len(train), generator=g)
        for i in range(steps_per_epoch):
            idx = perm[i * batch_size:(i + 1) * batch_size]
            x = random_affine(train.images[idx], g)
            loss = F.cross_entropy(judge(x), train.labels[idx], label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if progress is not None:
            progress(epoch + 1, epochs, float(loss.detach()))
    acc = accuracy(judge, held.images, held.labels)
    report = {"dataset": dataset, "heldout_accuracy": round(acc, 4), "heldout_n": len(held), "epochs": epochs,
              "train_seconds": round(time.perf_counter() - t0, 1), "seed": seed}
    return judge.eval(), report


def save_judge(judge: Judge, path: str | Path, report: dict, command: str = "") -> Path:
    return ck.write_folder(path, {ck.WEIGHTS: ck.state_tensors(judge)}, {"kind": "judge", "judge": judge.cfg.to_dict()},
                           {"metrics": report, "command": command, "dataset": report.get("dataset")}, overwrite=True)


def load_judge(path: str | Path = JUDGE_PATH, device: str | torch.device = "cpu") -> Judge:
    """The shipped (or given) judge in eval mode; CheckpointError if missing or corrupt."""
    path = Path(path)
    config, _ = ck.read_configs(path)
    if config.get("kind") != "judge":
        raise ck.CheckpointError(f"{path} holds a {config.get('kind')!r} model, not a judge")
    try:
        cfg = JudgeConfig(**config["judge"])
    except (KeyError, TypeError) as e:
        raise ck.CheckpointError(f"{path / ck.CONFIG} is invalid: {e}") from None
    judge = Judge(cfg)
    ck.load_state(judge, ck.read_tensors(path), "", path / ck.WEIGHTS)
    return judge.to(device).eval()
