"""The judge: a small CNN digit classifier, trained here, that scores generated digits independently.

Why a judge: the diffusion loss says how well noise is predicted, not whether samples look like the digit
asked for. The course's assessment uses a classifier (>= 95 % of generated digits recognised); so does this
project, during training, on the pages and in `python -m engine evaluate`.

Architecture: two conv blocks (conv-BN-ReLU x2, max-pool) and a 128-d penultimate layer whose activations are
the "judge features" used for the Frechet distance, diversity and memorisation checks.

"Not a digit": a softmax classifier must name one of its ten classes, and ours called 500 of 500 pure-noise
images "8" with confidence 1.00, so every accuracy chart taught that noise still "looks like" a digit. The
judge therefore abstains on inputs outside the distribution of digits, measured in its own feature space:
a class-conditional Gaussian with a shared covariance fitted on the training digits' features (Lee et al.
2018, "A simple unified framework for detecting out-of-distribution samples"), and an input whose
Mahalanobis distance to the nearest class mean exceeds a threshold is "not a digit". Why this and not an
11th class trained on noise: it keeps the classifier and its features (and so every Frechet distance in the
shipped reports) unchanged, needs no guess of what non-digits look like, and is calibrated on data: the
threshold is a margin (1.5x) over the largest distance of any training digit, so no training digit is
rejected by construction, held-out and generated digits (largest distances ~0.7x of it) are kept, and pure
noise (distances > 2.4x) is rejected. `calibrate_abstention` reports these figures.
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
ABSTENTION = "abstention.safetensors"
NOT_A_DIGIT = 10                  # the column of predict()'s probabilities that means "not a digit"


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

        self.abstention: dict[str, torch.Tensor] | None = None   # set by fit / load: class means, precision, threshold

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x))

    def distance(self, feats: torch.Tensor) -> torch.Tensor:
        """(N,) squared Mahalanobis distance of judge features to the nearest class's training mean."""
        a = self.abstention
        assert a is not None, "the judge has no abstention calibration"
        d = feats[:, None, :] - a["class_means"].to(feats)[None]                    # (N, 10, D)
        return torch.einsum("nkd,de,nke->nk", d, a["precision"].to(feats), d).min(1).values

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
    """(probabilities (N, 11), features (N, feature_dim)) for images (N, 1, 28, 28) in [-1, 1].

    Columns 0-9 are the digit classes; column 10 (NOT_A_DIGIT) is 1 where the judge abstains (the input lies
    outside the digits' feature distribution; its digit columns are then 0), so `probs.argmax(1) == label`
    counts an abstention as not recognised. A judge without an abstention calibration never abstains.
    """
    judge.eval()
    device = next(judge.parameters()).device
    probs, feats = [], []
    for i in range(0, x.shape[0], batch):
        f = judge.features(x[i:i + batch].to(device))
        p = F.softmax(judge.out(f), dim=1)
        out = torch.cat([p, torch.zeros(len(p), 1, device=p.device)], 1)
        if judge.abstention is not None:
            outside = judge.distance(f) > judge.abstention["threshold"].to(f)
            out[outside] = 0.0
            out[outside, NOT_A_DIGIT] = 1.0
        probs.append(out.cpu())
        feats.append(f.cpu())
    if not probs:
        return torch.empty(0, judge.cfg.num_classes + 1), torch.empty(0, judge.cfg.feature_dim)
    return torch.cat(probs), torch.cat(feats)


@torch.inference_mode()
def fit_abstention(judge: Judge, images: torch.Tensor, labels: torch.Tensor, margin: float = 1.5
                   ) -> dict[str, torch.Tensor]:
    """Fit the "not a digit" test on real digits (the train split): per-class means and a shared covariance
    of the judge features, threshold = margin x the largest squared distance of any of these digits."""
    judge.abstention = None
    _, f = predict(judge, images)
    f = f.double()
    missing = [c for c in range(judge.cfg.num_classes) if not (labels == c).any()]
    if missing:
        raise ValueError(f"fitting the 'not a digit' test needs digits of every class; none of {missing}")
    means = torch.stack([f[labels == c].mean(0) for c in range(judge.cfg.num_classes)])
    centred = f - means[labels]
    cov = centred.T @ centred / len(f) + 1e-3 * torch.eye(f.shape[1], dtype=f.dtype)   # ridge: 128 dims, 4k digits
    judge.abstention = {"class_means": means.float(), "precision": torch.linalg.inv(cov).float(),
                        "threshold": torch.tensor(0.0)}
    judge.abstention["threshold"] = torch.tensor(float(judge.distance(f.float()).max()) * margin)
    return judge.abstention


def noise_images(n: int = 500, seed: int = 0) -> torch.Tensor:
    """n pure N(0, 1) images (B, 1, 28, 28): what the forward process makes of any digit at t = T."""
    return torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def abstention_report(judge: Judge, heldout_images: torch.Tensor, heldout_labels: torch.Tensor,
                      n_noise: int = 500) -> dict:
    """What the "not a digit" test does: on n_noise pure-noise images, the share it abstains on and the
    largest share any one digit class gets; on held-out real digits, accuracy (abstentions count as wrong)
    and the share abstained on."""
    probs, _ = predict(judge, noise_images(n_noise))
    pred = probs.argmax(1)
    held, _ = predict(judge, heldout_images)
    held_pred = held.argmax(1)
    return {"noise_n": n_noise,
            "noise_abstained": round(float((pred == NOT_A_DIGIT).float().mean()), 4),
            "noise_max_class_share": round(float(torch.bincount(pred, minlength=11)[:10].max()) / n_noise, 4),
            "heldout_accuracy": int((held_pred == heldout_labels).sum()) / len(heldout_labels),
            "heldout_abstained": round(float((held_pred == NOT_A_DIGIT).float().mean()), 4),
            "threshold": round(float(judge.abstention["threshold"]), 2) if judge.abstention else None}


def read_images_npz(path: str | Path, max_images: int = 100_000) -> torch.Tensor:
    """Images from an .npz as `python -m engine sample` writes it (key `images`, (N, 28, 28) uint8, 0 =
    background, 255 = ink) -> (N, 1, 28, 28) float in [-1, 1]. Anything else is a ValueError naming the problem;
    pickled object arrays are refused, never loaded."""
    import numpy as np

    try:
        f = np.load(path, allow_pickle=False)
    except (OSError, EOFError, ValueError) as e:                # ValueError: numpy took it for a pickle
        raise ValueError(f"{path} is not a readable .npz file ({str(e)[:80]})") from None
    if not isinstance(f, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} holds a single array; write an .npz with an 'images' array (np.savez)")
    with f:
        if "images" not in f.files:
            raise ValueError(f"{path} has no 'images' array (it has: {', '.join(f.files) or 'nothing'})")
        try:
            images = f["images"]
        except ValueError as e:                                  # an object array: refused, never unpickled
            raise ValueError(f"{path}: 'images' is not a plain array ({str(e)[:80]})") from None
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise ValueError(f"{path}: images must be (N, 28, 28) uint8, got {images.shape} {images.dtype}")
    if len(images) > max_images:
        raise ValueError(f"{path}: {len(images)} images; at most {max_images} at a time")
    return torch.from_numpy(images.astype(np.float32) / 127.5 - 1.0)[:, None]


def judge_records(judge: Judge, images: torch.Tensor) -> list[dict]:
    """One record per image: index, pred (0-9, or None for "not a digit") and the confidence of that reading
    (the softmax probability of pred; for "not a digit", 1.0)."""
    probs, _ = predict(judge, images)
    conf, pred = probs.max(1)
    return [{"index": i, "pred": None if int(c) == NOT_A_DIGIT else int(c), "confidence": round(float(p), 4)}
            for i, (p, c) in enumerate(zip(conf, pred))]


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
    judge.eval()
    fit_abstention(judge, train.images, train.labels)
    acc = accuracy(judge, held.images, held.labels)
    report = {"dataset": dataset, "heldout_accuracy": round(acc, 4), "heldout_n": len(held), "epochs": epochs,
              "train_seconds": round(time.perf_counter() - t0, 1), "seed": seed,
              "abstention": abstention_report(judge, held.images, held.labels)}
    return judge, report


def calibrate_abstention(path: str | Path = JUDGE_PATH, dataset: str = "mnist-5k", command: str = "") -> dict:
    """Fit the "not a digit" test of the judge at `path` on its training split and save it beside the weights
    (the weights are rewritten unchanged); returns the abstention report, also recorded in meta.json."""
    train, held = load_data(dataset)
    judge = load_judge(path, with_abstention=False)
    fit_abstention(judge, train.images, train.labels)
    report = abstention_report(judge, held.images, held.labels)
    _, meta = ck.read_configs(path)
    metrics = dict(meta.get("metrics", {}), abstention=report)
    commands = {"command": meta.get("command", ""), "abstention_command": command}
    save_judge(judge, path, metrics, **commands)
    return report


def save_judge(judge: Judge, path: str | Path, report: dict, command: str = "", abstention_command: str = "") -> Path:
    files = {ck.WEIGHTS: ck.state_tensors(judge)}
    if judge.abstention is not None:
        files[ABSTENTION] = {k: v.contiguous() for k, v in judge.abstention.items()}
    meta = {"metrics": report, "command": command, "dataset": report.get("dataset")}
    if abstention_command:
        meta["abstention_command"] = abstention_command
    return ck.write_folder(path, files, {"kind": "judge", "judge": judge.cfg.to_dict()}, meta, overwrite=True)


def load_judge(path: str | Path = JUDGE_PATH, device: str | torch.device = "cpu", with_abstention: bool = True) -> Judge:
    """The shipped (or given) judge in eval mode, with its "not a digit" calibration when the folder has one;
    CheckpointError if missing or corrupt."""
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
    if with_abstention and (path / ABSTENTION).exists():
        a = ck.read_tensors(path, ABSTENTION)
        if set(a) != {"class_means", "precision", "threshold"}:
            raise ck.CheckpointError(f"{path / ABSTENTION} does not hold a judge's abstention calibration")
        judge.abstention = a
    return judge.to(device).eval()
