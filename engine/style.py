"""Stroke thickness and slant of digits, measured as Morpho-MNIST does (Castro et al. 2019, sec. 3).

thickness: twice the mean distance-transform value along the stroke's skeleton (the stroke's local width,
           averaged), in pixels of the 28x28 image; measured on a 4x upscaled binarised copy for precision.
slant:     the shear of the digit from second-order image moments, atan(-mu11 / mu02), in degrees;
           positive = leaning right (top to the right), the usual handwriting slant.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from scipy import ndimage
from skimage.morphology import skeletonize

UPSCALE = 4


def _as_uint8(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """(N, 28, 28) or (N, 1, 28, 28), uint8 or [-1, 1] floats -> (N, 28, 28) uint8."""
    a = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if a.ndim == 4:
        a = a[:, 0]
    if a.dtype != np.uint8:
        a = ((np.clip(a, -1, 1) + 1) * 127.5).round().astype(np.uint8)
    return a


def thickness_one(img: np.ndarray) -> float:
    big = np.kron(img.astype(np.float32), np.ones((UPSCALE, UPSCALE), np.float32))
    big = ndimage.gaussian_filter(big, sigma=UPSCALE / 2)            # smooth the blocky upscale
    ink = big > 128
    if ink.sum() < 4:
        return 0.0
    skeleton = skeletonize(ink)
    dist = ndimage.distance_transform_edt(ink)
    return float(2 * dist[skeleton].mean() / UPSCALE) if skeleton.any() else 0.0


def slant_one(img: np.ndarray) -> float:
    w = img.astype(np.float64)
    total = w.sum()
    if total <= 0:
        return 0.0
    ys, xs = np.mgrid[0:img.shape[0], 0:img.shape[1]]
    cx, cy = (w * xs).sum() / total, (w * ys).sum() / total
    mu11 = (w * (xs - cx) * (ys - cy)).sum() / total
    mu02 = (w * (ys - cy) ** 2).sum() / total
    return float(np.degrees(np.arctan2(-mu11, mu02)))


def measure(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """(N, 2) float32: [thickness in pixels, slant in degrees] for each image."""
    a = _as_uint8(images)
    return np.array([[thickness_one(x), slant_one(x)] for x in a], dtype=np.float32).reshape(-1, 2)


@lru_cache(maxsize=4)
def dataset_styles(name: str = "mnist-5k") -> tuple[np.ndarray, np.ndarray]:
    """(train styles (N, 2), held-out styles (M, 2)) of a data set, measured once per process."""
    from .data import load

    train, held = load(name)
    return measure(train.images), measure(held.images)


def normalise(styles: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Styles as z-scores of the training distribution (what a style-conditioned model takes as input)."""
    mu, sd = reference.mean(0), reference.std(0) + 1e-6
    return ((styles - mu) / sd).astype(np.float32)


def style_words(thickness: float, slant: float, reference: np.ndarray) -> list[str]:
    """Words for captions: 'thin' / 'thick' (outer thirds), 'left-slanted' / 'right-slanted' / 'upright'."""
    t_lo, t_hi = np.quantile(reference[:, 0], [1 / 3, 2 / 3])
    s_lo, s_hi = np.quantile(reference[:, 1], [1 / 3, 2 / 3])
    words = []
    if thickness <= t_lo:
        words.append("thin")
    elif thickness >= t_hi:
        words.append("thick")
    if slant <= s_lo:
        words.append("left-slanted")
    elif slant >= s_hi:
        words.append("right-slanted")
    else:
        words.append("upright")
    return words


def to_condition(thickness: float, slant: float, stats: dict) -> list[float]:
    """Physical style (pixels, degrees) -> the z-scored vector a style model takes, using its saved stats."""
    return [(thickness - stats["mean"][0]) / stats["std"][0], (slant - stats["mean"][1]) / stats["std"][1]]


@torch.inference_mode()
def sample_styles(checkpoint, digit: int, requests: list[tuple[float, float]], config, seed: int = 0) -> torch.Tensor:
    """One digit per requested (thickness px, slant deg), same seed for all: (R, 1, 28, 28) in [-1, 1]."""
    from .sampling import sample
    from .schedule import NoiseSchedule

    stats = checkpoint.meta.get("style_stats")
    if not stats or not checkpoint.model_config.style_dim:
        raise ValueError(f"{checkpoint.path} is not a style-conditioned model (train it with --preset style)")
    style = torch.tensor([to_condition(t, s, stats) for t, s in requests], dtype=torch.float32)
    labels = torch.full((len(requests),), digit, dtype=torch.long)
    return sample(checkpoint.model, NoiseSchedule(checkpoint.schedule_config), labels, config, seeds=[seed] * len(requests),
                  style=style)


def compliance(checkpoint, judge, config, thickness_grid=(1.8, 2.5, 3.2, 3.9), slant_grid=(-15.0, 0.0, 15.0, 30.0),
               digits=range(10), seeds: int = 2) -> dict:
    """Measured vs requested style on a grid: Spearman correlation for thickness and for slant, per-bin accuracy
    (the measured value closer to its own request than to any other bin), and judge accuracy."""
    from scipy.stats import spearmanr

    from .judge import predict

    req, meas, asked, right = [], [], [], []
    grid = [(t, s) for t in thickness_grid for s in slant_grid]
    for d in digits:
        for seed in range(seeds):
            x = sample_styles(checkpoint, d, grid, config, seed=seed)
            m = measure(x)
            req.extend(grid)
            meas.extend(m.tolist())
            asked.extend([d] * len(grid))
            if judge is not None:
                right.extend((predict(judge, x)[0].argmax(1) == d).tolist())
    req, meas = np.array(req), np.array(meas)

    def bin_acc(col: int, values) -> float:
        values = np.array(values)
        nearest = np.abs(meas[:, col][:, None] - values[None, :]).argmin(1)
        return float((values[nearest] == req[:, col]).mean())

    return {"thickness_spearman": round(float(spearmanr(req[:, 0], meas[:, 0]).statistic), 3),
            "slant_spearman": round(float(spearmanr(req[:, 1], meas[:, 1]).statistic), 3),
            "thickness_bin_accuracy": round(bin_acc(0, thickness_grid), 3),
            "slant_bin_accuracy": round(bin_acc(1, slant_grid), 3),
            "judge_accuracy": round(float(np.mean(right)), 4) if right else None, "n": int(len(req))}
