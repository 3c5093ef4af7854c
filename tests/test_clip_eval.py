"""engine/clip_eval.py: scoring, ranking and selection with the shipped digit-CLIP; offline behaviour.

Training the digit-CLIP is tested in test_clip_train.py, the page's precomputed panels in test_clip_evidence.py,
the confidence intervals in test_stats.py.
"""
import os
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import torch

from engine.checkpoints import CheckpointError
from engine.clip_eval import (CLIP_PATH, CLIPSCORE_W, ClipUnavailable, compare_techniques,
                              load_digit_clip, load_pretrained, rank_report, spearman, top_k_per_class)
from engine.config import SampleConfig
from engine.judge import load_judge, predict
from engine.schedule import NoiseSchedule

from .conftest import TINY_SCHEDULE


def test_importing_clip_eval_changes_no_environment_and_imports_no_open_clip():
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    code = ("import os, sys, engine.clip_eval, engine.clip_train; "
            "print(os.environ.get('HF_HUB_OFFLINE'), 'open_clip' in sys.modules, 'huggingface_hub' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["None", "False", "False"]


def test_pretrained_clip_fails_fast_offline_even_when_the_caller_set_nothing():
    """The first use of open_clip sets HF_HUB_OFFLINE=1 (before huggingface_hub reads it) unless the caller chose."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    code = ("import os, time; from engine.clip_eval import ClipUnavailable, load_pretrained\n"
            "t = time.time()\n"
            "try:\n load_pretrained('ViT-B-32', 'laion2b_s34b_b79k')\n"
            "except ClipUnavailable as e:\n print(os.environ['HF_HUB_OFFLINE'], round(time.time() - t), 'digit-CLIP' in str(e))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    flag, seconds, says_what_to_do = r.stdout.split()
    assert flag == "1" and int(seconds) < 30 and says_what_to_do == "True"


def test_a_callers_offline_choice_is_kept():
    """HF_HUB_OFFLINE=0 (a caller that wants downloads) survives the first use of open_clip. In a subprocess:
    huggingface_hub reads the flag once per process, and this one must stay offline."""
    code = ("import os; from engine.clip_eval import _open_clip; _open_clip(); import huggingface_hub.constants as c; "
            "print(os.environ['HF_HUB_OFFLINE'], c.HF_HUB_OFFLINE)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, HF_HUB_OFFLINE="0"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["0", "False"]


def test_pretrained_clip_offline_fails_fast_with_a_clear_message():
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    t0 = time.time()
    with pytest.raises(ClipUnavailable, match="digit-CLIP"):
        load_pretrained("ViT-B-32", "laion2b_s34b_b79k")
    assert time.time() - t0 < 30


def test_load_digit_clip_refuses_another_kind_of_model():
    with pytest.raises(CheckpointError, match="not a digit-CLIP"):
        load_digit_clip(CLIP_PATH.parent / "judge")


def test_clip_score_is_2_5_times_the_positive_cosine(scorer, held):
    x = held.images[:6]
    captions = ["a handwritten 3", "the number seven", "a photo of the digit 0", "a thick handwritten 1",
                "a handwritten digit nine", "a thin handwritten 2"]
    cos = (scorer.encode_images(x) * scorer.encode_texts(captions)).sum(1)
    torch.testing.assert_close(scorer.clip_score(x, captions), CLIPSCORE_W * cos.clamp(min=0))


def test_the_right_class_scores_higher_than_a_wrong_one(scorer, held):
    x, y = held.images[:200], held.labels[:200]
    right = scorer.class_scores(x, y)
    wrong = scorer.class_scores(x, (y + 1) % 10)
    assert right.min() >= 0 and right.max() <= CLIPSCORE_W
    assert (right > wrong).float().mean() > 0.9
    probs = scorer.zero_shot(x)
    torch.testing.assert_close(probs.sum(1), torch.ones(200))
    assert (probs.argmax(1) == y).float().mean() > 0.9


def test_top_k_per_class_keeps_exactly_the_best_k_of_each_class():
    scores = torch.rand(30, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(30) % 10
    kept = top_k_per_class(scores, labels, 2)
    for c in range(10):
        m = labels == c
        assert kept[m].sum() == 2 and scores[m & kept].min() >= scores[m & ~kept].max()
    ties = top_k_per_class(torch.ones(4), torch.zeros(4, dtype=torch.long), 2)
    assert ties.tolist() == [True, True, False, False]                   # ties broken by order
    assert top_k_per_class(scores, labels, 5).all()                      # k above the class size keeps all


def test_spearman_reads_ranks_not_values():
    a = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert spearman(a, a ** 3) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                                     # scipy warns about the constant input
        assert spearman(a, torch.ones(4)) == 0.0                           # undefined (constant): 0, not NaN


def test_rank_report_records_what_the_scorer_and_the_judge_say(scorer, held):
    judge = load_judge()
    x, labels = held.images[:20], held.labels[:20]
    recs = rank_report(scorer, judge, x, labels, list(range(100, 120)), k=1)
    assert len(recs) == 20 and [r["seed"] for r in recs] == list(range(100, 120))
    kept_classes = [r["class"] for r in recs if r["kept"]]
    assert sorted(kept_classes) == sorted(set(labels.tolist()))         # one per class present
    scores = scorer.class_scores(x, labels)
    probs, _ = predict(judge, x)
    for i, r in enumerate(recs):
        assert r["class"] == int(labels[i]) and r["clip_score"] == round(float(scores[i]), 4)
        assert r["judge_class"] == int(probs[i].argmax())
    for c in set(kept_classes):                                          # the kept one is its class's best
        best = max((r for r in recs if r["class"] == c), key=lambda r: r["clip_score"])
        assert best["kept"]


def test_techniques_run_and_reranking_cannot_lower_the_mean_score(scorer, tiny_model):
    judge = load_judge()
    rows = compare_techniques(tiny_model, NoiseSchedule(TINY_SCHEDULE), scorer, judge,
                              SampleConfig(steps=3, guidance=1.0), per_class=1, n=2, guidance_scale=5.0)
    assert [r["technique"].split()[0] for r in rows] == ["plain", "best", "rejection", "CLIP"]
    assert rows[1]["mean_clip_score"] >= rows[0]["mean_clip_score"] - 1e-6      # reranking cannot lower the mean
    assert [r["samples_generated"] for r in rows][:2] == [10, 20]


def test_shipped_digit_clip_reaches_its_stated_zero_shot_accuracy(scorer, held):
    from engine.checkpoints import read_configs

    _, meta = read_configs(CLIP_PATH)
    acc = float((scorer.zero_shot(held.images).argmax(1) == held.labels).float().mean())
    assert acc >= 0.97 and abs(acc - meta["metrics"]["zero_shot_accuracy"]) < 0.005


# -- statistics behind every claim on the CLIP page ------------------------------------------------------------------


# -- the evidence the page lands on ------------------------------------------------------------------------------------


def test_techniques_per_sample_columns_agree_with_their_summary(scorer, tiny_model):
    judge = load_judge()
    rows = compare_techniques(tiny_model, NoiseSchedule(TINY_SCHEDULE), scorer, judge,
                              SampleConfig(steps=3, guidance=1.0), per_class=1, n=2, guidance_scale=5.0,
                              per_sample=True)
    for r in rows:
        assert len(r["clip_scores"]) == len(r["judge_right"]) == 10
        assert np.mean(r["clip_scores"]) == pytest.approx(r["mean_clip_score"], abs=1e-3)
        assert np.mean(r["judge_right"]) == pytest.approx(r["judge_accuracy"], abs=1e-3)
    best, plain = np.array(rows[1]["clip_scores"]), np.array(rows[0]["clip_scores"])
    assert (best >= plain - 1e-4).all()                    # best of n includes the plain draw: never lower per slot


# -- the shipped evidence is of the digits the page shows --------------------------------------------------------------


def test_clip_guidance_moves_the_clean_estimate_towards_the_caption(scorer, held, monkeypatch):
    """The direction of CLIP guidance: eps' = eps - s * sqrt(1 - a) * grad moves x0_pred up the gradient of the
    CLIP similarity, so with a positive scale the guided x0_pred scores higher for the asked class than the
    unguided one, and with a negative scale lower (noised real digits; the network's eps is held at 0 so that
    only guidance moves x0_pred)."""
    import engine.sampling
    from engine.clip_eval import clip_guided_eps
    from engine.config import ScheduleConfig

    monkeypatch.setattr(engine.sampling, "guided_eps", lambda model, x, t, y, w, style=None, schedule=None: torch.zeros_like(x))
    schedule = NoiseSchedule(ScheduleConfig())
    labels, t = held.labels[:8], 200
    noise = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    x_t = schedule.q_sample(held.images[:8], torch.full((8,), t), noise)

    def score_after(scale: float) -> float:
        eps = clip_guided_eps(None, schedule, scorer, labels, SampleConfig(guidance=0.0), scale)(x_t, t)
        x0 = schedule.predict_x0_from_eps(x_t, t, eps).clamp(-1, 1)
        return float(scorer.class_scores(x0, labels).mean())

    base, up, down = score_after(0.0), score_after(2.0), score_after(-2.0)
    assert up > base > down
