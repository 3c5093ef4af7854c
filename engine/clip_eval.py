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

from . import budget
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
        if budget.remaining() is not None:          # under a deadline: check it every few images, not every 500
            batch = min(batch, 32)
        with torch.inference_mode():
            for i in range(0, x.shape[0], batch):
                budget.check()
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
        eps = guided_eps(model, x_t, t, labels, config.guidance_at(t, schedule.T), schedule=schedule)
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
            rows[-1].update(clip_scores=[round(float(v), 4) for v in scores], judge_right=[bool(v) for v in right])

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
