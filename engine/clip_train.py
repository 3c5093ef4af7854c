"""Training the digit-CLIP (`python -m engine train-clip`): captions, the contrastive loss, the run, its report.

The model, its scorer and loading live in `clip_eval.py`; this module only makes and saves new weights.

Captions come from templates naming the digit and its measured style ("a thick, right-slanted handwritten 7",
"the number seven", ...), with style words from `style.py` (Morpho-MNIST thickness and slant).

Duplicate captions: with only 10 digits a batch holds many images of one class, and plain InfoNCE would
push apart an image and a caption that correctly describe it. We use a multi-positive contrastive loss
(as in SupCon / UniCL): caption j counts as a positive for image i whenever it is a correct description of
it (same digit, style words a subset of the image's), and the soft target spreads over all positives.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import checkpoints as ck
from .clip_eval import DIGIT_CLIP_CFG, Scorer, build_digit_clip, digit_clip_tokenizer
from .data import DIGIT_NAMES, load as load_data
from .judge import random_affine
from .style import dataset_styles, style_words


def caption_for(digit: int, words: list[str], rng: random.Random) -> tuple[str, frozenset]:
    """A random caption for a digit with its style words; returns (text, the style words it uses).

    Each style word is kept with probability 0.6; one of four templates is picked, one of which ("the number
    seven") names no style, so the words it uses are the empty set.
    """
    name = DIGIT_NAMES[digit]
    use = [w for w in words if rng.random() < 0.6]
    kind = rng.randrange(4)
    adj = ", ".join(use)
    if kind == 0:
        text = f"a {adj + ' ' if adj else ''}handwritten {digit}"
    elif kind == 1:
        text = f"a {adj + ' ' if adj else ''}handwritten digit {name}"
    elif kind == 2:
        text, use = f"the number {name}", []
    else:
        text = f"a photo of a {adj + ' ' if adj else ''}{digit}"
    return text, frozenset(use)


def multi_positive_loss(img: torch.Tensor, txt: torch.Tensor, positives: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Symmetric contrastive loss with soft targets over every correct caption / image in the batch.

    img, txt: (B, D) normalised; positives: (B, B) bool, [i, j] = caption j describes image i (diagonal true).
    Returns a scalar: the mean of the image->text and text->image cross-entropies.
    """
    logits = scale * img @ txt.T                                                   # (B, B)
    p = positives.float()
    loss_i = -(F.log_softmax(logits, 1) * p / p.sum(1, keepdim=True)).sum(1).mean()
    loss_t = -(F.log_softmax(logits.T, 1) * p.T / p.T.sum(1, keepdim=True)).sum(1).mean()
    return (loss_i + loss_t) / 2


def caption_positives(labels: torch.Tensor, used: list[frozenset], image_words: list[frozenset]) -> torch.Tensor:
    """(B, B) bool: caption j is a correct description of image i (same digit, its style words a subset of i's)."""
    B = len(used)
    same = labels[:, None] == labels[None, :]                                        # (B, B)
    fits = torch.tensor([[used[j] <= image_words[i] for j in range(B)] for i in range(B)])
    return same & fits


@dataclass
class ClipReport:
    """What a digit-CLIP training run measured on the held-out digits (stored in meta.json's metrics)."""

    zero_shot_accuracy: float
    style_retrieval_accuracy: float
    steps: int
    seconds: float

    def to_dict(self) -> dict:
        return {"zero_shot_accuracy": round(self.zero_shot_accuracy, 4),
                "style_retrieval_accuracy": round(self.style_retrieval_accuracy, 4), "steps": self.steps,
                "train_seconds": round(self.seconds, 1), "heldout_n": 1000, "dataset": "mnist-5k"}


def style_retrieval_accuracy(scorer: Scorer, images: torch.Tensor, labels: torch.Tensor, styles: np.ndarray,
                             reference: np.ndarray) -> float:
    """Fraction (in [0, 1]; chance is 0.5) of the thick or thin digits for which CLIP prefers the right word.

    images (N, 1, 28, 28) in [-1, 1] with labels (N,); styles (N, 2) their measured (thickness, slant);
    reference: the styles that define "thick" and "thin" (the outer thirds of thickness, see style.style_words).
    Only digits that `style_words` calls thick or thin count; for each, CLIP compares "a thick handwritten d"
    with "a thin handwritten d". Raises ValueError when no digit is thick or thin (there is nothing to measure).
    """
    img = scorer.encode_images(images)                                              # (N, D)
    text = {}                                                                      # digit -> (2, D): thick, thin
    right, total = 0, 0
    for i in range(len(labels)):
        words = style_words(float(styles[i, 0]), float(styles[i, 1]), reference)
        want = "thick" if "thick" in words else "thin" if "thin" in words else None
        if want is None:
            continue
        d = int(labels[i])
        if d not in text:
            text[d] = scorer.encode_texts([f"a thick handwritten {d}", f"a thin handwritten {d}"])
        sims = img[i] @ text[d].T                                                  # (2,)
        right += int((sims[0] > sims[1]) == (want == "thick"))
        total += 1
    if total == 0:
        raise ValueError(f"none of the {len(labels)} digits is thick or thin by the reference styles: "
                         "style retrieval needs digits in the outer thirds of thickness")
    return right / total


def evaluate_clip(scorer: Scorer) -> tuple[float, float]:
    """(zero-shot accuracy, thick/thin style retrieval accuracy) on the 1,000 held-out digits of mnist-5k."""
    _, held = load_data("mnist-5k")
    train_styles, held_styles = dataset_styles()
    acc = float((scorer.zero_shot(held.images).argmax(1) == held.labels).float().mean())
    style = style_retrieval_accuracy(scorer, held.images, held.labels, held_styles, train_styles)
    return acc, style


def train_digit_clip(steps: int = 3000, batch_size: int = 256, lr: float = 1e-3, seed: int = 0,
                     progress=None) -> tuple[Scorer, ClipReport]:
    """Train a digit-CLIP from scratch on the mnist-5k train split; returns (scorer, held-out report).

    AdamW with a one-cycle learning rate, random rotations of up to 8 degrees (no shear: it would change the
    slant the captions describe), the multi-positive loss, logit scale capped at 100 as in CLIP.
    progress(step, steps, loss) is called after every step.
    """
    train, _ = load_data("mnist-5k")
    train_styles, _ = dataset_styles()
    words = [style_words(float(a), float(b), train_styles) for a, b in train_styles]
    torch.manual_seed(seed)
    rng = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    model = build_digit_clip()
    tok = digit_clip_tokenizer()
    scorer = Scorer(model, tok, 28, "digit-CLIP (trained here)")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    t0 = time.perf_counter()
    for step in range(steps):
        model.train()
        idx = torch.randint(0, len(train), (batch_size,), generator=g)
        x = random_affine(train.images[idx], g, max_rot=8, max_shear=0.0)   # shear would change the slant
        caps = [caption_for(int(train.labels[i]), words[i], rng) for i in idx.tolist()]
        positives = caption_positives(train.labels[idx], [c[1] for c in caps],
                                      [frozenset(words[i]) for i in idx.tolist()])
        img = model.encode_image(scorer._prep(x), normalize=True)
        txt = model.encode_text(tok([c[0] for c in caps]), normalize=True)
        loss = multi_positive_loss(img, txt, positives, model.logit_scale.exp())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        if progress is not None:
            progress(step + 1, steps, float(loss.detach()))
    model.eval()
    scorer._class_text = None
    acc, style = evaluate_clip(scorer)
    return scorer, ClipReport(acc, style, steps, time.perf_counter() - t0)


def save_digit_clip(scorer: Scorer, path: str | Path, report: ClipReport, command: str = "") -> Path:
    """Write the digit-CLIP folder at `path` (replacing one there); returns the path.

    Weights stored as fp16 (half the size; scores change < 1e-3), loaded back as fp32 by clip_eval.load_digit_clip.
    """
    tensors = {k: v.half() if v.is_floating_point() else v for k, v in ck.state_tensors(scorer.model).items()}
    return ck.write_folder(path, {ck.WEIGHTS: tensors}, {"kind": "digit-clip", "open_clip": DIGIT_CLIP_CFG},
                           {"metrics": report.to_dict(), "command": command, "dataset": "mnist-5k"}, overwrite=True)
