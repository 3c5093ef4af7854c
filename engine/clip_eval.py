"""CLIP scoring with open_clip: a digit-reading CLIP trained here, and pretrained CLIP when available.

This module scores, ranks, selects and steers with CLIP; training the digit-CLIP lives in `clip_train.py`.

digit-CLIP: open_clip's own ViT + text transformer, sized for 28x28 digits (16 patches of 7x7, width 96, three
vision layers, two text layers; the bundled BPE tokenizer), built with `create_model(..., pretrained=None)`, so
it needs no network. Trained by `python -m engine train-clip` (see clip_train.py).

Scores (Hessel et al. 2021): CLIPScore = 2.5 * max(cos(image, caption), 0), in [0, 2.5].

Offline: open_clip (and the huggingface_hub it imports) is imported lazily, through `_open_clip()`, which sets
HF_HUB_OFFLINE=1 unless the caller already chose a value. See `_open_clip` for why there and not at import.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import checkpoints as ck
from .data import DIGIT_NAMES

CLIP_PATH = Path(__file__).resolve().parent.parent / "checkpoints" / "digit_clip"
CLIPSCORE_W = 2.5
DIGIT_CLIP_CFG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 28, "patch_size": 7, "width": 96, "layers": 3, "head_width": 32, "mlp_ratio": 2.0},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2, "mlp_ratio": 2.0},
}
CLASS_TEMPLATES = ("a handwritten digit {name}", "the number {name}", "a handwritten {d}", "a photo of the digit {d}")


class ClipUnavailable(RuntimeError):
    """A CLIP model that cannot be loaded here (no weights offline, bad path); the message says what to do."""


def _open_clip():
    """The open_clip module, imported on first use with the Hugging Face hub offline unless the caller chose.

    huggingface_hub reads HF_HUB_OFFLINE once, when it is first imported (open_clip imports it), so the flag has to
    be set before the first open_clip import in the process to make `load_pretrained` fail fast offline instead
    of waiting on the network. Setting it here, only when CLIP is actually used and only if unset, keeps that
    guarantee without importing this module changing the environment of everything else in the process (it
    used to be set at import). Entry points that want it for every library set it first thing themselves
    (dashboard.py, tests/conftest.py); a caller that wants downloads sets HF_HUB_OFFLINE=0 before this runs.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import open_clip

    return open_clip


def build_digit_clip() -> torch.nn.Module:
    """A freshly initialised digit-CLIP (DIGIT_CLIP_CFG) in fp32; no weights are downloaded."""
    return _open_clip().create_model("ViT-B-32", pretrained=None, embed_dim=DIGIT_CLIP_CFG["embed_dim"],
                                     vision_cfg=DIGIT_CLIP_CFG["vision_cfg"], text_cfg=DIGIT_CLIP_CFG["text_cfg"])


def digit_clip_tokenizer():
    """open_clip's bundled BPE tokenizer at the digit-CLIP's context length (16 tokens)."""
    return _open_clip().get_tokenizer("ViT-B-32", context_length=DIGIT_CLIP_CFG["text_cfg"]["context_length"])


class Scorer:
    """One scoring interface over digit-CLIP and pretrained open_clip models."""

    def __init__(self, model: torch.nn.Module, tokenizer, image_size: int, name: str,
                 mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.image_size = image_size
        self.name = name
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)
        self._class_text: torch.Tensor | None = None

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, 28, 28) in [-1, 1] -> the model's normalised 3-channel input."""
        x01 = (x.clamp(-1, 1) + 1) / 2
        if self.image_size != x.shape[-1]:
            x01 = F.interpolate(x01, size=(self.image_size, self.image_size), mode="bicubic").clamp(0, 1)
        return (x01.repeat(1, 3, 1, 1) - self.mean) / self.std

    def encode_images(self, x: torch.Tensor, batch: int = 500) -> torch.Tensor:
        feats = []
        with torch.inference_mode():
            for i in range(0, x.shape[0], batch):
                feats.append(self.model.encode_image(self._prep(x[i:i + batch]), normalize=True))
        return torch.cat(feats) if feats else torch.empty(0, 1)

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        with torch.inference_mode():
            return self.model.encode_text(self.tokenizer(texts), normalize=True)

    def class_text_features(self) -> torch.Tensor:
        """(10, D) mean of the class-template embeddings (prompt ensembling, Radford et al. 2021 sec. 3.1.4)."""
        if self._class_text is None:
            feats = []
            for d in range(10):
                t = self.encode_texts([tpl.format(name=DIGIT_NAMES[d], d=d) for tpl in CLASS_TEMPLATES])
                feats.append(F.normalize(t.mean(0), dim=0))
            self._class_text = torch.stack(feats)
        return self._class_text

    def clip_score(self, x: torch.Tensor, captions: list[str]) -> torch.Tensor:
        """CLIPScore of image i against captions[i]: 2.5 * max(cos, 0), (N,) in [0, 2.5]."""
        img = self.encode_images(x)
        txt = self.encode_texts(captions)
        return CLIPSCORE_W * (img * txt).sum(1).clamp(min=0)

    def class_scores(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """CLIPScore of each image against its class's ensembled prompt: (N,) in [0, 2.5]."""
        img = self.encode_images(x)
        return CLIPSCORE_W * (img * self.class_text_features()[labels]).sum(1).clamp(min=0)

    def zero_shot(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 10) class probabilities from cosine similarity to the class prompts, at the model's scale."""
        img = self.encode_images(x)
        scale = float(self.model.logit_scale.detach().exp()) if hasattr(self.model, "logit_scale") else 100.0
        return F.softmax(scale * img @ self.class_text_features().T, dim=1)


def load_digit_clip(path: str | Path = CLIP_PATH) -> Scorer:
    """The digit-CLIP saved at `path` (fp16 on disk, fp32 here) as a Scorer; CheckpointError if it is not one."""
    path = Path(path)
    config, _ = ck.read_configs(path)
    if config.get("kind") != "digit-clip":
        raise ck.CheckpointError(f"{path} holds a {config.get('kind')!r} model, not a digit-CLIP")
    model = build_digit_clip()
    tensors = {k: v.float() for k, v in ck.read_tensors(path).items()}
    ck.load_state(model, tensors, "", path / ck.WEIGHTS)
    return Scorer(model, digit_clip_tokenizer(), 28, "digit-CLIP (trained here)")


def load_pretrained(name: str = "ViT-B-32", pretrained: str = "laion2b_s34b_b79k") -> Scorer:
    """A pretrained open_clip model from the local cache or a file path; ClipUnavailable, fast, when absent."""
    open_clip = _open_clip()
    t0 = time.perf_counter()
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained)
    except (RuntimeError, FileNotFoundError, OSError) as e:
        raise ClipUnavailable(
            f"pretrained CLIP {name}/{pretrained} is not available here ({str(e).splitlines()[0][:160]}; "
            f"{time.perf_counter() - t0:.1f} s). Offline, only weights already in the Hugging Face cache or a "
            f"local file path work; Diffusion Lab uses its own digit-CLIP instead.") from None
    cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    return Scorer(model, open_clip.get_tokenizer(name), int(size), f"open_clip {name} ({pretrained})",
                  mean=cfg.get("mean", open_clip.OPENAI_DATASET_MEAN), std=cfg.get("std", open_clip.OPENAI_DATASET_STD))


# -- using CLIP scores to pick and to steer -------------------------------------------------------------------------
def top_k_per_class(scores: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """(N,) bool: the k highest-scoring images of every class (ties broken by order). Exactly k per class
    when a class has >= k images; every kept score >= every rejected score of its class."""
    kept = torch.zeros_like(labels, dtype=torch.bool)
    for c in labels.unique():
        idx = (labels == c).nonzero().flatten()
        order = idx[torch.argsort(scores[idx], descending=True, stable=True)]
        kept[order[:k]] = True
    return kept


def spearman(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """Spearman rank correlation (no ties correction needed for continuous scores)."""
    from scipy.stats import spearmanr

    r = spearmanr(np.asarray(a), np.asarray(b)).statistic
    return float(r) if r == r else 0.0


def rank_report(scorer: Scorer, judge, images: torch.Tensor, labels: torch.Tensor, seeds: list[int], k: int) -> list[dict]:
    """One record per image: class, seed, clip_score, judge_confidence, judge_class, zero-shot class, thickness,
    slant, kept (top k of its class by CLIP score). The ranks.json format."""
    from .judge import predict
    from .style import measure

    scores = scorer.class_scores(images, labels)
    zs = scorer.zero_shot(images)
    probs, _ = predict(judge, images)
    kept = top_k_per_class(scores, labels, k)
    st = measure(images)
    return [{"class": int(labels[i]), "seed": int(seeds[i]), "clip_score": round(float(scores[i]), 4),
             "judge_confidence": round(float(probs[i, labels[i]]), 4), "judge_class": int(probs[i].argmax()),
             "clip_zero_shot_class": int(zs[i].argmax()), "thickness": round(float(st[i, 0]), 3),
             "slant": round(float(st[i, 1]), 2), "kept": bool(kept[i])} for i in range(len(labels))]


def clip_guided_eps(model, schedule, scorer: Scorer, labels: torch.Tensor, config, scale: float):
    """eps_fn for sample_progressive: CFG noise prediction nudged up the CLIP similarity of x0_pred.

    Classifier guidance with CLIP as the classifier (GLIDE; gradient through x0_pred since our CLIP is trained
    on clean digits): eps' = eps - scale * sqrt(1 - alpha_bar_t) * grad_x cos(CLIP(x0_pred), text(y)).
    x0_pred = (x_t - sqrt(1 - a) eps) / sqrt(a) with eps held fixed, so d x0_pred / d x_t = 1 / sqrt(a).
    config: the SampleConfig whose classifier-free guidance (weight and interval) is applied first.
    """
    from .sampling import guided_eps

    text = scorer.class_text_features()[labels]                                     # (B, D)

    def eps_fn(x_t: torch.Tensor, t: int) -> torch.Tensor:
        eps = guided_eps(model, x_t, t, labels, config.guidance_at(t, schedule.T))
        if scale == 0:
            return eps
        with torch.inference_mode(False), torch.enable_grad():
            x = x_t.detach().clone().requires_grad_(True)
            x0 = schedule.predict_x0_from_eps(x, t, eps.detach().clone()).clamp(-1, 1)
            img = scorer.model.encode_image(scorer._prep(x0), normalize=True)
            sim = (img * text.detach().clone()).sum()
            (grad,) = torch.autograd.grad(sim, x)
        # GLIDE's classifier guidance in eps form: eps' = eps - scale * sqrt(1 - alpha_bar_t) * grad
        return eps - scale * (1 - schedule.alpha_bar_at(t)) ** 0.5 * grad

    return eps_fn


def compare_techniques(model, schedule, scorer: Scorer, judge, config, per_class: int = 5, n: int = 4,
                       threshold: float | None = None, guidance_scale: float = 20.0, seed: int = 0,
                       per_sample: bool = False) -> list[dict]:
    """Plain sampling vs best-of-n reranking vs rejection sampling vs CLIP guidance, for per_class digits of
    each class: judge accuracy, mean CLIPScore, diversity (mean pairwise judge-feature distance within a
    class), and the cost in generated samples and seconds. per_sample: each row also carries "clip_scores" and
    "judge_right" of its per_class * 10 digits, slot by slot (slot i is the same class and first seed in every row),
    so differences between techniques can be given confidence intervals."""
    from .judge import predict
    from .metrics import mean_pairwise_distance
    from .sampling import class_labels, sample

    labels = class_labels(per_class)
    B = len(labels)
    rows = []

    def summarise(name: str, x: torch.Tensor, generated: int, seconds: float) -> None:
        probs, feats = predict(judge, x)
        div = np.mean([mean_pairwise_distance(feats[labels == c]) for c in range(10)])
        scores, right = scorer.class_scores(x, labels), probs.argmax(1) == labels
        rows.append({"technique": name, "judge_accuracy": round(float(right.float().mean()), 4),
                     "mean_clip_score": round(float(scores.mean()), 4),
                     "diversity": round(float(div), 3), "samples_generated": generated,
                     "seconds": round(seconds, 2)})
        if per_sample:
            rows[-1].update(clip_scores=_r(scores), judge_right=[bool(v) for v in right])

    t0 = time.perf_counter()
    plain = sample(model, schedule, labels, config, seeds=[seed + i for i in range(B)])
    summarise("plain", plain, B, time.perf_counter() - t0)

    t0 = time.perf_counter()
    pool = torch.cat([sample(model, schedule, labels, config, seeds=[seed + j * 10_000 + i for i in range(B)])
                      for j in range(n)])                                               # (n*B, ...)
    pool_scores = scorer.class_scores(pool, labels.repeat(n)).view(n, B)
    best = pool.view(n, B, *pool.shape[1:])[pool_scores.argmax(0), torch.arange(B)]
    summarise(f"best of {n} (rerank)", best, n * B, time.perf_counter() - t0)

    # rejection: keep the first candidate per slot above the threshold (default: the plain median)
    thr = float(pool_scores[0].median()) if threshold is None else threshold
    t0 = time.perf_counter()
    ok = pool_scores >= thr                                                            # (n, B)
    first = torch.where(ok.any(0), ok.float().argmax(0), torch.full((B,), n - 1))
    chosen = pool.view(n, B, *pool.shape[1:])[first, torch.arange(B)]
    cost = int((first + 1).sum())
    summarise(f"rejection (score >= {thr:.2f})", chosen, cost, (time.perf_counter() - t0) + rows[0]["seconds"] * cost / B)

    t0 = time.perf_counter()
    fn = clip_guided_eps(model, schedule, scorer, labels, config, guidance_scale)
    guided = sample(model, schedule, labels, config, seeds=[seed + i for i in range(B)], eps_fn=fn)
    summarise(f"CLIP guidance (scale {guidance_scale:g})", guided, B, time.perf_counter() - t0)
    return rows


# -- statistics the page and the notes quote -----------------------------------------------------------------------
# Every pattern the CLIP page states comes with its 95 % confidence interval, computed from the data on screen, so
# a relation whose interval includes 0 is reported as "no clear relation" instead of as a finding.

# (scipy.special, not scipy.stats: the page's landing view computes these, and scipy.stats costs 0.5 s to import)

def ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of x, ties given the mean of the ranks they span (as Spearman's rho needs)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    r = np.empty(len(x))
    r[np.argsort(x, kind="stable")] = np.arange(1, len(x) + 1)
    _, group, counts = np.unique(x, return_inverse=True, return_counts=True)
    return (np.bincount(group, weights=r) / counts)[group]


def spearman_ci(a, b, level: float = 0.95) -> dict:
    """Spearman's rho of a and b (Pearson's r of their ranks) with a Fisher-z confidence interval.

    z = atanh(rho) is close to normal with standard error sqrt(1.06 / (n - 3)) for Spearman's rho (Fieller, Hartley
    & Pearson 1957), so the interval is tanh(z -/+ z_crit * se). Returns {"rho", "lo", "hi", "n"}; an undefined
    rho (n < 4, or a constant input) is 0 with the uninformative interval [-1, 1].
    """
    from scipy.special import ndtri

    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"spearman_ci needs two equally long inputs, got {a.shape[0]} and {b.shape[0]}")
    n = int(a.shape[0])
    if n < 4 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return {"rho": 0.0, "lo": -1.0, "hi": 1.0, "n": n}
    rho = float(np.corrcoef(ranks(a), ranks(b))[0, 1])
    z = np.arctanh(np.clip(rho, -0.999999, 0.999999))
    half = float(ndtri(0.5 + level / 2)) * np.sqrt(1.06 / (n - 3))
    return {"rho": rho, "lo": float(np.tanh(z - half)), "hi": float(np.tanh(z + half)), "n": n}


def _t_quantile(p: float, dof: float) -> float:
    from scipy.special import stdtrit

    return float(stdtrit(dof, p))


def mean_ci(values, level: float = 0.95) -> dict:
    """Mean of `values` with a Student-t confidence interval: {"mean", "lo", "hi", "n"} (lo = hi = mean for n < 2)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    n = int(v.shape[0])
    if n == 0:
        raise ValueError("mean_ci needs at least one value")
    m = float(v.mean())
    if n < 2:
        return {"mean": m, "lo": m, "hi": m, "n": n}
    half = _t_quantile(0.5 + level / 2, n - 1) * float(v.std(ddof=1)) / np.sqrt(n)
    return {"mean": m, "lo": m - half, "hi": m + half, "n": n}


def diff_ci(a, b, level: float = 0.95) -> dict:
    """mean(a) - mean(b) with Welch's confidence interval: {"diff", "lo", "hi", "mean_a", "mean_b", "n_a", "n_b"}."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"diff_ci needs at least two values on each side, got {len(a)} and {len(b)}")
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    d = float(a.mean() - b.mean())
    se = float(np.sqrt(va + vb))
    if se == 0:
        return {"diff": d, "lo": d, "hi": d, "mean_a": float(a.mean()), "mean_b": float(b.mean()),
                "n_a": len(a), "n_b": len(b)}
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))      # Welch-Satterthwaite
    half = _t_quantile(0.5 + level / 2, dof) * se
    return {"diff": d, "lo": d - half, "hi": d + half, "mean_a": float(a.mean()), "mean_b": float(b.mean()),
            "n_a": len(a), "n_b": len(b)}


def direction(ci: dict) -> int:
    """+1 if a confidence interval lies above 0, -1 if below, 0 if it includes 0 (no clear relation/difference)."""
    if ci["lo"] > 0:
        return 1
    if ci["hi"] < 0:
        return -1
    return 0


# -- evidence: what the CLIP page shows on arrival, measured once by `python -m engine precompute --clip` -------------
# Panels (engine/evidence.py) stored beside the model, all keyed by the diffusion weights' and the digit-CLIP's
# sha256 so a retrained model or CLIP never reads another's numbers:
#   clip_ranking     10 per class at one sampler setting: rank_report records and CLIP zero-shot probabilities
#   clip_real        the 1,000 held-out real digits scored the same way (the baseline)
#   clip_spread      one scale for many sources: the model (guided, unguided), early training snapshots, the
#                    ablation models and real digits, with the best and worst tiles of each
#   clip_sweep       the same seeds at several guidance weights
#   clip_techniques  compare_techniques (plain, best-of-n, rejection, CLIP guidance)
RANK_PER_CLASS = 10
SWEEP_WEIGHTS = (0.0, 1.0, 2.0, 4.0)          # plus the model's recommended weight
TECHNIQUES = {"per_class": 3, "n": 4, "max_steps": 20, "scale": 20.0}
ABLATIONS = ("no-skip", "no-time", "plain-cnn")
ABLATIONS_ROOT = CLIP_PATH.parent / "ablations"
EARLY_SNAPSHOTS = 3                           # the first, second and fourth snapshot (250, 500, 1000 for the default)
EXAMPLES = 3                                  # best and worst tiles stored per spread source
DIGIT_CLIP = "digit-CLIP"


def digit_clip_id(path: str | Path = CLIP_PATH) -> str:
    """Which digit-CLIP scored a measurement: "digit-CLIP@<first 12 hex of its weights' sha256>" (read from its
    meta.json; no weights are loaded)."""
    _, meta = ck.read_configs(Path(path))
    return f"{DIGIT_CLIP}@{meta.get('sha256', {}).get(ck.WEIGHTS, '')[:12]}"


def batch_seeds(seed: int, n: int) -> list[int]:
    """The seeds of a batch of n digits drawn "with seed `seed`": seed * n, ..., seed * n + n - 1, so the batches of
    two seeds share no digit (seed + i would make seed 1's batch seed 0's shifted by one: n - 1 digits in common)."""
    return [int(seed) * n + i for i in range(n)]


def ranking_params(weights_sha: str, config, clip_id: str, per_class: int = RANK_PER_CLASS) -> dict:
    """Evidence key of a ranked batch: per_class digits of each class, seeds batch_seeds(config.seed, 10 * per_class).
    """
    return {"weights": weights_sha, "sample": config.to_dict(), "per_class": per_class, "clip": clip_id}


def real_params(clip_id: str) -> dict:
    return {"data": "mnist-5k held-out", "clip": clip_id}


def spread_params(weights_sha: str, config, clip_id: str, per_class: int = RANK_PER_CLASS) -> dict:
    return {"weights": weights_sha, "sample": config.to_dict(), "per_class": per_class, "clip": clip_id,
            "ablations": list(ABLATIONS), "snapshots": EARLY_SNAPSHOTS}


def sweep_params(weights_sha: str, config, clip_id: str, per_class: int = RANK_PER_CLASS) -> dict:
    """The sweep's weights: SWEEP_WEIGHTS plus config.guidance; every other setting (interval, steps, seeds) is
    config's, so the point at the recommended weight is the ranked batch itself."""
    weights = sorted({float(w) for w in SWEEP_WEIGHTS} | {float(config.guidance)})
    return {"weights": weights_sha, "sample": config.to_dict(), "guidance": weights, "per_class": per_class,
            "clip": clip_id}


def technique_params(weights_sha: str, config, clip_id: str, scale: float = TECHNIQUES["scale"]) -> dict:
    return {"weights": weights_sha, "sample": technique_config(config).to_dict(), "scale": float(scale),
            "per_class": TECHNIQUES["per_class"], "n": TECHNIQUES["n"], "clip": clip_id}


def technique_config(config):
    """The comparison samples with at most TECHNIQUES["max_steps"] steps (CLIP guidance back-propagates each)."""
    return config.replace(steps=min(config.steps, TECHNIQUES["max_steps"]))


def _r(x, nd: int = 4) -> list:
    return [round(float(v), nd) for v in np.asarray(x).ravel()]


def encode_tile(img: np.ndarray) -> str:
    """(28, 28) uint8 -> base64 of its raw bytes (1,048 characters; a JSON int list would be ~3x larger)."""
    import base64

    a = np.ascontiguousarray(img, dtype=np.uint8)
    if a.shape != (28, 28):
        raise ValueError(f"a tile is a (28, 28) uint8 image, got shape {a.shape}")
    return base64.b64encode(a.tobytes()).decode("ascii")


def decode_tile(s: str) -> np.ndarray:
    """encode_tile's inverse: (28, 28) uint8."""
    import base64

    return np.frombuffer(base64.b64decode(s), dtype=np.uint8).reshape(28, 28).copy()


def score_table(scorer: Scorer, judge, images: torch.Tensor, labels: torch.Tensor) -> dict:
    """Columns for images (N, 1, 28, 28) in [-1, 1] asked to be `labels`: class, clip_score (CLIPScore against the
    class prompts), judge_class (0-9, or judge.NOT_A_DIGIT = 10 when the judge abstains), judge_confidence (the
    judge's probability of the asked class; 0 when it abstains), thickness (px), slant (degrees)."""
    from .judge import predict
    from .style import measure

    scores = scorer.class_scores(images, labels)
    probs, _ = predict(judge, images)                                           # (N, 11)
    style = measure(images)                                                     # (N, 2)
    return {"class": [int(c) for c in labels], "clip_score": _r(scores),
            "judge_class": [int(c) for c in probs.argmax(1)],
            "judge_confidence": _r(probs[torch.arange(len(labels)), labels]),
            "thickness": _r(style[:, 0], 3), "slant": _r(style[:, 1], 2)}


def ranked_batch(checkpoint, scorer: Scorer, judge, config, per_class: int = RANK_PER_CLASS, keep: int = 3,
                 cache=None) -> tuple[dict, torch.Tensor]:
    """(result, images): per_class digits of each class sampled with `config` (seeds batch_seeds(config.seed, N),
    classes in order), their rank_report records and CLIP zero-shot probabilities (N, 10); images (N, 1, 28, 28)
    in [-1, 1]."""
    from .sampling import class_labels, sample_cached

    labels = class_labels(per_class)
    seeds = batch_seeds(config.seed, len(labels))
    x = sample_cached(checkpoint, labels, config, seeds=seeds, cache=cache)
    records = rank_report(scorer, judge, x, labels, seeds, keep)
    zs = scorer.zero_shot(x)
    return {"records": records, "zero_shot": [_r(p, 3) for p in zs]}, x


def real_baseline(scorer: Scorer, judge, heldout) -> dict:
    """score_table of the held-out real digits, plus zero_shot_class (CLIP's own reading of each)."""
    table = score_table(scorer, judge, heldout.images, heldout.labels)
    table["zero_shot_class"] = [int(c) for c in scorer.zero_shot(heldout.images).argmax(1)]
    return table


def score_sources(scorer: Scorer, judge, sources: list[dict], examples: int = EXAMPLES) -> list[dict]:
    """Score several sets of digits on one scale. Each source: {"name", "kind", "detail", "images" (N, 1, 28, 28)
    in [-1, 1], "labels" (N,)}. Returns one dict per source: name, kind, detail, n, the score_table columns, and
    "examples": the `examples` highest- and lowest-scoring tiles ({"rank": "best"|"worst", "index", "tile":
    encode_tile}), best first, worst last."""
    from .sampling import to_uint8

    out = []
    for src in sources:
        table = score_table(scorer, judge, src["images"], src["labels"])
        order = np.argsort(-np.asarray(table["clip_score"]), kind="stable")
        k = min(examples, len(order) // 2)
        pix = to_uint8(src["images"]).numpy()
        picks = [("best", int(i)) for i in order[:k]] + [("worst", int(i)) for i in order[len(order) - k:]]
        out.append({"name": src["name"], "kind": src["kind"], "detail": src.get("detail", ""), "n": len(table["class"]),
                    **table, "examples": [{"rank": r, "index": i, "tile": encode_tile(pix[i])} for r, i in picks]})
    return out


def early_snapshots(snapshots: list[tuple[int, np.ndarray]],
                    count: int = EARLY_SNAPSHOTS) -> list[tuple[int, np.ndarray]]:
    """The first snapshot and the ones at 2x, 4x, ... its step (the early part of training, where quality moves);
    snapshots: [(step, uint8 (N, 28, 28)), ...] in step order."""
    if not snapshots:
        return []
    by_step = dict(snapshots)
    first = snapshots[0][0]
    wanted = [first * 2 ** i for i in range(count)]
    return [(s, by_step[s]) for s in wanted if s in by_step]


def spread_sources(checkpoint, config, per_class: int = RANK_PER_CLASS, ablations=None,
                   ablations_root: str | Path | None = None, heldout=None, cache=None) -> list[dict]:
    """The images the spread scores, sampled with the engine's own functions (seeds batch_seeds(config.seed, N)):
    the model at `config`, the same seeds unguided (w = 0), its early training snapshots (checkpoint.path /
    snapshots, 2 per class), each ablation model (default: ABLATIONS under ABLATIONS_ROOT) at its own recommended
    settings, and the held-out real digits."""
    from .data import load as load_data, uint8_to_model
    from .sampling import class_labels, sample_cached
    from .training.runs import load_snapshots

    labels = class_labels(per_class)
    seeds = batch_seeds(config.seed, len(labels))

    def how(c) -> str:
        lo = c.guidance_interval[0]
        gi = "" if c.guidance == 0 or lo == 0 else f" while t/T ≥ {lo:g}"
        return f"{c.sampler.upper()}-{c.steps}, w = {c.guidance:g}{gi}"

    sources = [{"name": f"{checkpoint.name} (w = {config.guidance:g})", "kind": "model", "detail": how(config),
                "images": sample_cached(checkpoint, labels, config, seeds=seeds, cache=cache), "labels": labels}]
    unguided = config.replace(guidance=0.0)
    sources.append({"name": f"{checkpoint.name} unguided (w = 0)", "kind": "unguided", "detail": how(unguided),
                    "images": sample_cached(checkpoint, labels, unguided, seeds=seeds, cache=cache), "labels": labels})
    for step, snap in early_snapshots(load_snapshots(checkpoint.path)):
        n = snap.shape[0]
        sources.append({"name": f"{checkpoint.name} at step {step}", "kind": "snapshot",
                        "detail": f"training snapshot, {n // 10} per class", "images": uint8_to_model(snap),
                        "labels": class_labels(n // 10)})
    for name in ABLATIONS if ablations is None else ablations:
        abl = ck.load_checkpoint(Path(ABLATIONS_ROOT if ablations_root is None else ablations_root) / name)
        cfg = abl.recommended.replace(seed=config.seed)
        sources.append({"name": f"ablation {name}", "kind": "ablation", "detail": how(cfg),
                        "images": sample_cached(abl, labels, cfg, seeds=seeds, cache=cache), "labels": labels})
    if heldout is None:
        heldout = load_data("mnist-5k")[1]
    sources.append({"name": "real held-out digits", "kind": "real", "detail": f"{len(heldout)} MNIST digits",
                    "images": heldout.images, "labels": heldout.labels})
    return sources


def guidance_sweep(checkpoint, scorer: Scorer, judge, config, weights, per_class: int = RANK_PER_CLASS,
                   cache=None) -> list[dict]:
    """The same seeds (batch_seeds(config.seed, N)) at each guidance weight, everything else as `config`: one row per
    weight with its score_table columns."""
    from .sampling import class_labels, sample_cached

    labels = class_labels(per_class)
    seeds = batch_seeds(config.seed, len(labels))
    rows = []
    for w in weights:
        x = sample_cached(checkpoint, labels, config.replace(guidance=float(w)), seeds=seeds, cache=cache)
        rows.append({"guidance": float(w), **score_table(scorer, judge, x, labels)})
    return rows


def precompute_evidence(checkpoint_dir: str | Path, command: str, progress=print) -> list[tuple[str, float]]:
    """Measure every panel the CLIP page lands on for the model at `checkpoint_dir` (its recommended settings, seed 0,
    digit-CLIP, CLIP-guidance scale TECHNIQUES["scale"]) and store them in `checkpoint_dir`/evidence/clip_*.json.

    Samples are drawn afresh (no sample cache), so each panel's recorded seconds are what the page would spend
    computing it; a few minutes in all on a 2-core CPU. Returns [(panel, seconds), ...].
    """
    from . import evidence
    from .data import load as load_data
    from .judge import load_judge
    from .schedule import NoiseSchedule

    checkpoint = ck.load_checkpoint(checkpoint_dir)
    scorer, judge = load_digit_clip(), load_judge()
    clip_id = digit_clip_id()
    config = checkpoint.recommended.replace(seed=0)
    sha = checkpoint.sha256
    heldout = load_data("mnist-5k")[1]
    done = []

    def measure(panel: str, params: dict, fn) -> None:
        entry = evidence.measure(checkpoint_dir, panel, params, fn, command)
        done.append((panel, entry["seconds"]))
        progress(f"  {panel}: {entry['seconds']:.1f} s")

    measure("clip_ranking", ranking_params(sha, config, clip_id),
            lambda: ranked_batch(checkpoint, scorer, judge, config)[0])
    measure("clip_real", real_params(clip_id), lambda: real_baseline(scorer, judge, heldout))
    measure("clip_spread", spread_params(sha, config, clip_id),
            lambda: score_sources(scorer, judge, spread_sources(checkpoint, config, heldout=heldout)))
    sp = sweep_params(sha, config, clip_id)
    measure("clip_sweep", sp, lambda: guidance_sweep(checkpoint, scorer, judge, config, sp["guidance"]))
    tp = technique_params(sha, config, clip_id)
    measure("clip_techniques", tp, lambda: compare_techniques(
        checkpoint.model, NoiseSchedule(checkpoint.schedule_config), scorer, judge, technique_config(config),
        per_class=tp["per_class"], n=tp["n"], guidance_scale=tp["scale"], seed=config.seed, per_sample=True))
    return done
