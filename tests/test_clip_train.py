"""engine/clip_train.py: captions, the multi-positive loss, a short digit-CLIP training run, save and load."""
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.checkpoints import read_configs
from engine.clip_eval import load_digit_clip
from engine.clip_train import (caption_for, caption_positives, multi_positive_loss, save_digit_clip,
                               style_retrieval_accuracy, train_digit_clip)
from engine.data import DIGIT_NAMES


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    losses = []
    scorer, report = train_digit_clip(steps=100, batch_size=64, progress=lambda s, n, l: losses.append(l))
    path = save_digit_clip(scorer, tmp_path_factory.mktemp("clip") / "c", report, command="test")
    return scorer, report, losses, path


def test_tiny_clip_learns_and_round_trips(tiny_clip):
    scorer, report, losses, path = tiny_clip
    assert len(losses) == report.steps == 100
    assert sum(losses[-5:]) / 5 < 0.95 * sum(losses[:5]) / 5
    # 100 steps (seconds): above chance (10 % zero-shot, 50 % thick vs thin) on the 1,000 held-out digits
    assert report.zero_shot_accuracy > 0.15 and report.style_retrieval_accuracy > 0.6
    loaded = load_digit_clip(path)
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    assert torch.allclose(loaded.encode_images(x), scorer.encode_images(x), atol=5e-3)   # fp16 storage
    config, meta = read_configs(path)
    assert config["kind"] == "digit-clip" and meta["metrics"] == report.to_dict() and meta["command"] == "test"


def test_captions_name_the_digit_and_use_only_its_style_words():
    rng = random.Random(0)
    words = ["thick", "right-slanted"]
    texts = set()
    for digit in range(10):
        for _ in range(30):
            text, used = caption_for(digit, words, rng)
            texts.add(text.split()[0] + " " + text.split()[1])
            assert str(digit) in text or DIGIT_NAMES[digit] in text
            assert used <= set(words) and all(w in text for w in used)
            if text.startswith("the number"):
                assert used == frozenset()
    assert len(texts) >= 4                                       # every template is reached
    assert caption_for(7, words, random.Random(5)) == caption_for(7, words, random.Random(5))


def test_a_caption_is_a_positive_only_for_images_it_correctly_describes():
    labels = torch.tensor([3, 3, 5])
    used = [frozenset({"thick"}), frozenset(), frozenset({"thin"})]
    image_words = [frozenset({"thick", "upright"}), frozenset({"thin"}), frozenset({"thin"})]
    pos = caption_positives(labels, used, image_words)
    assert pos.tolist() == [[True, True, False],      # image 0 (a thick 3): "thick 3" and "3" fit, the 5 does not
                            [False, True, False],     # image 1 (a thin 3): "thick 3" does not fit
                            [False, False, True]]


def test_multi_positive_loss_is_infonce_when_only_the_diagonal_is_positive():
    g = torch.Generator().manual_seed(0)
    img = F.normalize(torch.randn(6, 8, generator=g), dim=1)
    txt = F.normalize(torch.randn(6, 8, generator=g), dim=1)
    scale = torch.tensor(10.0)
    logits = scale * img @ txt.T
    target = torch.arange(6)
    infonce = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    torch.testing.assert_close(multi_positive_loss(img, txt, torch.eye(6, dtype=torch.bool), scale), infonce)


def test_multi_positive_loss_pulls_an_image_towards_every_correct_caption():
    """Two different correct captions of one digit: plain InfoNCE pushes the image away from the second
    caption; the multi-positive loss pulls it towards both."""
    t0, t1 = torch.tensor([1.0, 0.0]), torch.tensor([0.6, 0.8])
    txt = torch.stack([t0, t1])
    for positives, towards in ((torch.ones(2, 2, dtype=torch.bool), True), (torch.eye(2, dtype=torch.bool), False)):
        img = torch.stack([t0, t1]).clone().requires_grad_(True)
        multi_positive_loss(img, txt, positives, torch.tensor(10.0)).backward()
        step = -img.grad[0]                                        # gradient-descent direction for image 0
        assert (float(step @ (t1 - t0)) > 0) == towards


class _ThicknessScorer:
    """A stand-in CLIP that sees thickness in pixel (0, 0) and maps 'thick' / 'thin' to opposite directions."""

    def __init__(self, swap_words: bool = False) -> None:
        self.swap = swap_words

    def encode_images(self, x):
        v = torch.stack([x[:, 0, 0, 0], torch.zeros(len(x))], 1)
        return F.normalize(v, dim=1)

    def encode_texts(self, texts):
        sign = {"thick": 1.0, "thin": -1.0}
        out = []
        for t in texts:
            s = sign["thick" if "thick" in t else "thin"] * (-1 if self.swap else 1)
            out.append([s, 0.0])
        return torch.tensor(out)


def test_style_retrieval_accuracy_is_the_fraction_of_thick_or_thin_digits_read_right():
    reference = np.stack([np.linspace(0, 1, 99), np.zeros(99)], 1)        # thirds at 1/3 and 2/3
    styles = np.array([[0.05, 0.0], [0.95, 0.0], [0.9, 0.0], [0.5, 0.0]])  # thin, thick, thick, neither
    images = torch.zeros(4, 1, 28, 28)
    images[:, 0, 0, 0] = torch.tensor([-1.0, 1.0, 1.0, -1.0])             # the middle one "looks" thin
    labels = torch.tensor([1, 1, 7, 4])
    assert style_retrieval_accuracy(_ThicknessScorer(), images, labels, styles, reference) == 1.0
    assert style_retrieval_accuracy(_ThicknessScorer(swap_words=True), images, labels, styles, reference) == 0.0
    images[2, 0, 0, 0] = -1.0                                                # one thick digit now looks thin
    assert style_retrieval_accuracy(_ThicknessScorer(), images, labels, styles, reference) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="thick or thin"):
        style_retrieval_accuracy(_ThicknessScorer(), images[3:], labels[3:], styles[3:], reference)
