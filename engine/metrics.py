"""Quality metrics of generated digits, all measured with the judge (engine/judge.py).

- accuracy / confidence: does the judge read the digit that was asked for?
- Frechet distance between judge features of generated and held-out real digits (the FID recipe of Heusel
  et al. 2017 with the judge in place of Inception), always beside the real-vs-real baseline (train split vs
  held-out split) so the number has a scale.
- diversity: mean pairwise feature distance within a class, relative to real digits of that class.
- memorisation: each sample's nearest training digit, against how close held-out real digits get.
- recognisability curves along the forward process (noised real digits) and the reverse process.
- speed against quality per sampler: seconds and judge accuracy of one batch under each sampler config (the
  Denoising page's chart and the benchmark's sampling rows).
"""
from __future__ import annotations

import time

import numpy as np
import torch
from scipy import linalg

from . import budget
from .judge import NOT_A_DIGIT, Judge, predict


def frechet_distance(feats_a: torch.Tensor | np.ndarray, feats_b: torch.Tensor | np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) between two feature sets (N, D)."""
    a, b = np.asarray(feats_a, dtype=np.float64), np.asarray(feats_b, dtype=np.float64)
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError("the Frechet distance needs at least 2 samples on each side")
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s_a @ s_b)
    if not np.isfinite(covmean).all():                  # singular product: regularise (as pytorch-fid does)
        eps = 1e-6 * np.eye(a.shape[1])
        covmean = linalg.sqrtm((s_a + eps) @ (s_b + eps))
    covmean = covmean.real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * np.trace(covmean))


def mean_pairwise_distance(feats: torch.Tensor) -> float:
    """Mean Euclidean distance between distinct rows of (N, D) features (0 for N < 2)."""
    n = feats.shape[0]
    if n < 2:
        return 0.0
    d = torch.cdist(feats.double(), feats.double())
    return float(d.sum() / (n * (n - 1)))


def class_scores(probs: torch.Tensor, labels: torch.Tensor) -> dict:
    """Accuracy, true-class confidence, the share the judge called "not a digit", per-class accuracy and the
    confusion matrix (rows = asked, columns = read; the last column is "not a digit")."""
    pred = probs.argmax(1)
    correct = (pred == labels).float()
    conf = probs[torch.arange(len(labels)), labels]
    k = probs.shape[1]
    confusion = torch.zeros(k, k, dtype=torch.long)
    for t, p in zip(labels.tolist(), pred.tolist()):
        confusion[t, p] += 1
    per_class = {int(c): round(float(correct[labels == c].mean()), 4) for c in labels.unique()}
    return {"accuracy": round(float(correct.mean()), 4), "confidence": round(float(conf.mean()), 4),
            "not_a_digit": round(float((pred == NOT_A_DIGIT).float().mean()), 4),
            "per_class_accuracy": per_class, "confusion": confusion.tolist()}


def nearest_neighbours(queries: torch.Tensor, reference: torch.Tensor, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-L2 nearest reference image for every query: (distance (N,), index (N,)). Images (N, 1, 28, 28)."""
    q = queries.reshape(queries.shape[0], -1).double()
    r = reference.reshape(reference.shape[0], -1).double()
    dists, idx = [], []
    for i in range(0, q.shape[0], batch):
        d = torch.cdist(q[i:i + batch], r)
        m = d.min(dim=1)
        dists.append(m.values)
        idx.append(m.indices)
    return torch.cat(dists).float(), torch.cat(idx)


def memorisation(samples: torch.Tensor, train_images: torch.Tensor, heldout_images: torch.Tensor | None,
                 quantile: float = 0.01, heldout_nearest: torch.Tensor | None = None) -> dict:
    """How close samples come to training digits, against the closeness of real unseen digits.

    threshold = the `quantile` of held-out digits' nearest-train distances: a held-out digit is that close to
    some training digit only 1 % of the time. The fraction of samples closer than that is the memorisation
    rate; near `quantile` means "no more copying than real handwriting shows".
    `heldout_nearest` may be passed precomputed (the held-out digits' nearest-train distances do not depend on the
    samples, and cost 1,000 x 4,000 distances: the dashboard computes them once per server).
    """
    d_samples, idx = nearest_neighbours(samples, train_images)
    d_real = heldout_nearest if heldout_nearest is not None else nearest_neighbours(heldout_images, train_images)[0]
    threshold = float(torch.quantile(d_real, quantile))
    return {"nearest_train_l2": d_samples.tolist(), "nearest_train_index": idx.tolist(),
            "heldout_nearest_l2_median": round(float(d_real.median()), 3),
            "sample_nearest_l2_median": round(float(d_samples.median()), 3),
            "threshold_l2": round(threshold, 3), "quantile": quantile,
            "fraction_closer_than_threshold": round(float((d_samples < threshold).float().mean()), 4)}


def _matching_subset(pool_labels: torch.Tensor, wanted: torch.Tensor, seed: int) -> torch.Tensor:
    """Indices into pool_labels with the same number of each class as `wanted` (drawn without replacement)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for c, n in zip(*torch.unique(wanted, return_counts=True)):
        idx = (pool_labels == c).nonzero().flatten()
        out.append(idx[torch.randperm(len(idx), generator=g)[:int(n)]])
    return torch.cat(out)


def quality_report(judge: Judge, samples: torch.Tensor, labels: torch.Tensor, train_images: torch.Tensor,
                   train_labels: torch.Tensor, heldout_images: torch.Tensor, heldout_labels: torch.Tensor) -> dict:
    """Everything `python -m engine evaluate` prints, for samples (N, 1, 28, 28) in [-1, 1] with asked labels.

    train_labels are needed for the class-matched real-vs-real Frechet baseline.
    """
    probs, feats = predict(judge, samples)
    report = class_scores(probs, labels)
    _, feats_held = predict(judge, heldout_images)
    # The Frechet distance is biased upwards for small sets (~ dimension / N), so the real-vs-real baseline
    # uses as many training digits as there are samples, with the same classes: train subset vs held-out.
    subset = _matching_subset(train_labels, labels, seed=0)
    _, feats_train = predict(judge, train_images[subset])
    report["frechet_distance"] = round(frechet_distance(feats, feats_held), 3)
    report["frechet_baseline_train_vs_heldout"] = round(frechet_distance(feats_train, feats_held), 3)
    report["frechet_n"] = int(len(labels))
    report["frechet_ratio_to_baseline"] = round(report["frechet_distance"] /
                                                max(report["frechet_baseline_train_vs_heldout"], 1e-9), 3)
    div = {}
    for c in labels.unique().tolist():
        gen = mean_pairwise_distance(feats[labels == c])
        real = mean_pairwise_distance(feats_held[heldout_labels == c])
        div[int(c)] = round(gen / real, 3) if real > 0 else None
    report["diversity_relative_to_real"] = div
    vals = [v for v in div.values() if v is not None]
    report["diversity_mean"] = round(float(np.mean(vals)), 3) if vals else None
    mem = memorisation(samples, train_images, heldout_images)
    report["memorisation"] = {k: v for k, v in mem.items() if k not in ("nearest_train_l2", "nearest_train_index")}
    return report


@torch.inference_mode()
def forward_recognisability(judge: Judge, schedule, images: torch.Tensor, labels: torch.Tensor,
                            fractions: list[float], seed: int = 0, progress=None) -> dict:
    """Judge accuracy and true-class confidence on real digits noised to each fraction of T, per class.
    progress(done, total), if given, is called after each noise level.

    Returns {"fraction": [...], "accuracy": {class: [...]}, "confidence": {class: [...]}, "overall": [...]}.
    """
    g = torch.Generator().manual_seed(seed)
    out = {"fraction": list(fractions), "accuracy": {}, "confidence": {}, "overall": [], "not_a_digit": []}
    classes = labels.unique().tolist()
    for c in classes:
        out["accuracy"][int(c)] = []
        out["confidence"][int(c)] = []
    for k, f in enumerate(fractions):
        if progress is not None and k:
            progress(k, len(fractions))
        t = min(schedule.T - 1, int(round(f * (schedule.T - 1))))
        noise = torch.randn(images.shape, generator=g)
        x_t = images if f == 0 else schedule.q_sample(images, torch.full((images.shape[0],), t), noise)
        probs, _ = predict(judge, x_t)
        right = (probs.argmax(1) == labels).float()
        conf = probs[torch.arange(len(labels)), labels]
        out["overall"].append(round(float(right.mean()), 4))
        out["not_a_digit"].append(round(float((probs.argmax(1) == NOT_A_DIGIT).float().mean()), 4))
        for c in classes:
            m = labels == c
            out["accuracy"][int(c)].append(round(float(right[m].mean()), 4))
            out["confidence"][int(c)].append(round(float(conf[m].mean()), 4))
    return out


@torch.inference_mode()
def reverse_recognisability(model, schedule, judge: Judge, config, per_class: int = 10, seed: int = 0,
                            progress=None) -> dict:
    """Judge accuracy / confidence on x_t and on x0_pred at every reverse step, per class (worksheet 1.3).
    progress(done, total), if given, is called after each sampling step.

    per_class seeds for each of the 10 classes; returns fraction of denoising done (0 = pure noise, 1 = final)
    and per-class curves for "x_t" and "x0_pred".
    """
    from .sampling import class_labels, sample_progressive

    labels = class_labels(per_class)
    seeds = [seed + i for i in range(labels.shape[0])]
    out = {"done": [], "x_t": {"accuracy": {c: [] for c in range(10)}, "overall": [], "not_a_digit": []},
           "x0_pred": {"accuracy": {c: [] for c in range(10)}, "overall": [], "not_a_digit": []},
           "x0_confidence": {c: [] for c in range(10)}}
    steps = []
    for st in sample_progressive(model, schedule, labels, config, seeds=seeds):
        steps.append(st)
        if progress is not None:
            progress(len(steps), config.steps)
    n = len(steps)
    for i, st in enumerate(steps):
        out["done"].append(round((i + 1) / n, 4))
        for name, x in (("x_t", st.x_prev), ("x0_pred", st.x0_pred)):
            probs, _ = predict(judge, x.clamp(-1, 1).cpu())
            right = (probs.argmax(1) == labels).float()
            out[name]["overall"].append(round(float(right.mean()), 4))
            out[name]["not_a_digit"].append(round(float((probs.argmax(1) == NOT_A_DIGIT).float().mean()), 4))
            for c in range(10):
                out[name]["accuracy"][c].append(round(float(right[labels == c].mean()), 4))
            if name == "x0_pred":
                conf = probs[torch.arange(len(labels)), labels]
                for c in range(10):
                    out["x0_confidence"][c].append(round(float(conf[labels == c].mean()), 4))
    return out


@torch.inference_mode()
def loss_by_noise_level(model, schedule, images: torch.Tensor, labels: torch.Tensor, buckets: int = 10,
                        seed: int = 0, batch: int = 250, progress=None) -> dict:
    """The unweighted noise-prediction error ||eps - eps_hat||^2 (per pixel) of a trained model on real digits,
    per bucket of noise level t/T: every image is noised once per bucket, at a t drawn uniformly inside it.

    This is the training objective without its Min-SNR weights, so buckets compare on one scale. With
    eps-prediction the error is LARGEST at low noise: there x_t is almost the clean digit and the small noise
    in it is hard to separate from the strokes, while at high noise x_t is almost eps itself.
    Returns {"buckets": [[lo, hi], ...], "mse": [...], "n_images": N}.
    """
    g = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    model.eval()
    edges = [i / buckets for i in range(buckets + 1)]
    out = {"buckets": [[edges[i], edges[i + 1]] for i in range(buckets)], "mse": [], "n_images": len(images)}
    for lo, hi in out["buckets"]:
        first, last = int(lo * schedule.T), max(int(lo * schedule.T), int(hi * schedule.T) - 1)
        total = 0.0
        for i in range(0, len(images), batch):
            x0, y = images[i:i + batch], labels[i:i + batch]
            t = torch.randint(first, last + 1, (len(x0),), generator=g)
            eps = torch.randn(x0.shape, generator=g)
            x_t = schedule.q_sample(x0, t, eps)
            budget.check()
            pred = schedule.eps_from_output(x_t, t, model(x_t.to(device), t.to(device), y.to(device)).cpu())
            total += float(((pred - eps) ** 2).mean(dim=(1, 2, 3)).sum())           # eps-MSE, whatever it predicts
        out["mse"].append(round(total / len(images), 5))
        if progress is not None:
            progress(len(out["mse"]), buckets)
    return out


def first_recognised(done: list[float], accuracy_by_class: dict, threshold: float = 0.9) -> dict:
    """Per class, the first fraction of denoising at which accuracy reaches `threshold` (None if never)."""
    return {c: next((d for d, y in zip(done, ys) if y >= threshold), None) for c, ys in accuracy_by_class.items()}


def synchronize(device: str | torch.device) -> None:
    """Wait for the work queued on `device`, so a wall-clock time covers it (a no-op on a CPU)."""
    kind = torch.device(device).type
    if kind == "cuda":
        torch.cuda.synchronize(device)
    elif kind == "mps":
        torch.mps.synchronize()


def sampling_figures(checkpoint, judge: Judge | None, configs: list, per_class: int, progress=None) -> list[dict]:
    """Seconds and judge accuracy for `per_class` guided digits per class under each sampler config.

    checkpoint: a loaded checkpoints.Checkpoint (its model runs on its own device); configs: SampleConfigs, timed
    one after the other in this order (the first pays any warm-up). Returns one row per config:
    {"sampler", "steps", "n" (digits), "seconds" (wall clock, GPU work included), "judge_accuracy" (fraction of
    digits the judge reads as the class asked for; absent when judge is None)}.
    """
    from .sampling import class_labels, sample
    from .schedule import NoiseSchedule

    labels = class_labels(per_class)
    schedule = NoiseSchedule(checkpoint.schedule_config)
    out = []
    device = next(checkpoint.model.parameters()).device
    total, done = sum(c.steps for c in configs), 0
    for cfg in configs:
        if progress is not None:
            progress(done, total)                   # weighted by steps: DDPM-1000 is most of the wait
        done += cfg.steps
        synchronize(device)
        t0 = time.perf_counter()
        x = sample(checkpoint.model, schedule, labels, cfg)
        synchronize(device)
        dt = time.perf_counter() - t0
        row = {"sampler": cfg.sampler, "steps": cfg.steps, "n": len(labels), "seconds": round(dt, 3)}
        if judge is not None:
            probs, _ = predict(judge, x)
            row["judge_accuracy"] = round(float((probs.argmax(1) == labels).float().mean()), 4)
            row["judge_confidence"] = round(float(probs[torch.arange(len(labels)), labels].mean()), 4)
        out.append(row)
    return out


def guidance_grid(checkpoint, judge: Judge | None, config, weights: list[float], seeds: int, cache=None,
                  progress=None) -> dict:
    """The class x guidance-weight grid: `seeds` digits of each class at each weight w (seeds 0..).

    Returns {"weights": [...], "images": uint8 (W, 10, 28, 28) as nested lists, the first seed of each cell,
    "accuracy": (W, 10) judge accuracy per cell over its `seeds` digits, "confidence": (W, 10) mean judge
    probability of the asked class (both None without a judge)}.
    """
    from .sampling import class_labels, sample_cached, to_uint8

    labels = class_labels(seeds)
    images, acc, conf = [], [], []
    for k, w in enumerate(weights):
        if progress is not None:
            progress(k, len(weights))
        x = sample_cached(checkpoint, labels, config.replace(guidance=w), cache=cache)
        images.append(to_uint8(x[::seeds]).tolist())
        if judge is not None:
            probs, _ = predict(judge, x)
            right = (probs.argmax(1) == labels).float().view(10, seeds).mean(1)
            true_p = probs[torch.arange(len(labels)), labels].view(10, seeds).mean(1)
            acc.append([round(float(v), 4) for v in right])
            conf.append([round(float(v), 4) for v in true_p])
    judged = judge is not None
    return {"weights": list(weights), "images": images, "accuracy": acc if judged else None,
            "confidence": conf if judged else None}
