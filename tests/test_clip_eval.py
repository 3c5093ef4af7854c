import os
import time

import pytest
import torch

from engine.clip_eval import (ClipUnavailable, load_pretrained, multi_positive_loss, rank_report, save_digit_clip,
                              load_digit_clip, top_k_per_class, train_digit_clip, compare_techniques)
from engine.config import SampleConfig
from engine.judge import load_judge
from engine.schedule import NoiseSchedule

from .conftest import TINY_SCHEDULE


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    losses = []
    scorer, report = train_digit_clip(steps=40, batch_size=64, progress=lambda s, n, l: losses.append(l))
    path = save_digit_clip(scorer, tmp_path_factory.mktemp("clip") / "c", report)
    return scorer, report, losses, path


def test_tiny_clip_learns_and_round_trips(tiny_clip):
    scorer, report, losses, path = tiny_clip
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    assert 0.0 <= report.zero_shot_accuracy <= 1.0 and 0.0 <= report.style_retrieval_accuracy <= 1.0
    loaded = load_digit_clip(path)
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    assert torch.allclose(loaded.encode_images(x), scorer.encode_images(x), atol=5e-3)   # fp16 storage


def test_scores_are_in_range_and_top_k_is_exact(tiny_clip):
    scorer = tiny_clip[0]
    x = torch.rand(20, 1, 28, 28) * 2 - 1
    labels = torch.arange(20) % 10
    s = scorer.class_scores(x, labels)
    assert s.min() >= 0 and s.max() <= 2.5
    assert scorer.clip_score(x[:2], ["a handwritten 3", "the number seven"]).shape == (2,)
    scores = torch.rand(30)
    labels = torch.arange(30) % 10
    kept = top_k_per_class(scores, labels, 2)
    for c in range(10):
        m = labels == c
        assert kept[m].sum() == 2 and scores[m & kept].min() >= scores[m & ~kept].max()


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


def test_pretrained_clip_offline_fails_fast_with_a_clear_message():
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    t0 = time.time()
    with pytest.raises(ClipUnavailable, match="digit-CLIP"):
        load_pretrained("ViT-B-32", "laion2b_s34b_b79k")
    assert time.time() - t0 < 30


def test_rank_report_and_techniques_run(tiny_clip, tiny_model):
    scorer = tiny_clip[0]
    judge = load_judge()
    x = torch.rand(20, 1, 28, 28) * 2 - 1
    labels = torch.arange(20) % 10
    recs = rank_report(scorer, judge, x, labels, list(range(20)), k=1)
    assert len(recs) == 20 and sum(r["kept"] for r in recs) == 10
    assert set(recs[0]) >= {"class", "seed", "clip_score", "judge_confidence", "kept"}
    rows = compare_techniques(tiny_model, NoiseSchedule(TINY_SCHEDULE), scorer, judge,
                              SampleConfig(steps=3, guidance=1.0), per_class=1, n=2, guidance_scale=5.0)
    assert [r["technique"].split()[0] for r in rows] == ["plain", "best", "rejection", "CLIP"]
    assert rows[1]["mean_clip_score"] >= rows[0]["mean_clip_score"] - 1e-6      # reranking cannot lower the mean


def test_shipped_digit_clip_reaches_its_stated_zero_shot_accuracy():
    from engine.checkpoints import read_configs
    from engine.clip_eval import CLIP_PATH
    from engine.data import load

    _, meta = read_configs(CLIP_PATH)
    _, held = load("mnist-5k")
    scorer = load_digit_clip()
    acc = float((scorer.zero_shot(held.images).argmax(1) == held.labels).float().mean())
    assert acc >= 0.97 and abs(acc - meta["metrics"]["zero_shot_accuracy"]) < 0.005
