"""engine/clip_eval.py: scoring, ranking and selection with the shipped digit-CLIP; offline behaviour.

Training the digit-CLIP is tested in test_clip_train.py; the direction of CLIP guidance elsewhere.
"""
import os
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import torch

from engine import clip_eval as ce
from engine.checkpoints import CheckpointError
from engine.clip_eval import (CLIP_PATH, CLIPSCORE_W, ClipUnavailable, compare_techniques,
                              load_digit_clip, load_pretrained, rank_report, spearman, top_k_per_class)
from engine.config import SampleConfig
from engine.data import load
from engine.judge import load_judge, predict
from engine.schedule import NoiseSchedule

from .conftest import TINY_SCHEDULE


@pytest.fixture(scope="module")
def scorer():
    return load_digit_clip()


@pytest.fixture(scope="module")
def held():
    return load("mnist-5k")[1]


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
def test_spearman_ci_is_fisher_z_with_the_spearman_standard_error():
    """rho = 0.5 at n = 103: tanh(atanh(0.5) -/+ 1.96 * sqrt(1.06 / 100)) = [0.3342, 0.6358] (Fieller et al. 1957);
    the Pearson standard error 1 / sqrt(n - 3) would give the narrower [0.3394, 0.6322]."""
    from scipy.stats import norm

    rng = np.random.default_rng(0)
    x = rng.normal(size=103)
    y = x + rng.normal(size=103) * 1.2
    ci = ce.spearman_ci(x, y)
    assert ci["rho"] == pytest.approx(spearman(x, y)) and ci["n"] == 103
    z, half = np.arctanh(ci["rho"]), norm.ppf(0.975) * np.sqrt(1.06 / 100)
    assert (ci["lo"], ci["hi"]) == pytest.approx((np.tanh(z - half), np.tanh(z + half)))
    half = norm.ppf(0.975) * np.sqrt(1.06 / 100)
    z = np.arctanh(0.5)
    assert (np.tanh(z - half), np.tanh(z + half)) == pytest.approx((0.3342, 0.6358), abs=1e-4)
    assert ce.spearman_ci(x, x ** 3)["lo"] > 0.99                           # monotone: rho 1, a tight interval


def test_spearman_ci_says_nothing_when_it_cannot_know():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=2000), rng.normal(size=2000)
    ci = ce.spearman_ci(a, b)
    assert ci["lo"] < 0 < ci["hi"] and ce.direction(ci) == 0              # independent data: no clear relation
    small = ce.spearman_ci(a[:20], a[:20] + rng.normal(size=20) * 3)
    big = ce.spearman_ci(a, a + rng.normal(size=2000) * 3)
    assert (small["hi"] - small["lo"]) > 3 * (big["hi"] - big["lo"])       # the interval shrinks with n
    assert ce.direction(big) == 1 and ce.direction(ce.spearman_ci(a, -a)) == -1
    assert ce.spearman_ci([1, 2, 3, 4, 5], [2, 2, 2, 2, 2]) == {"rho": 0.0, "lo": -1.0, "hi": 1.0, "n": 5}
    assert ce.spearman_ci([1, 2, 3], [3, 1, 2])["lo"] == -1.0               # n < 4: undefined, not a finding
    with pytest.raises(ValueError, match="equally long"):
        ce.spearman_ci([1, 2, 3, 4], [1, 2, 3])


def test_mean_and_difference_intervals_match_scipy():
    from scipy import stats

    rng = np.random.default_rng(2)
    a, b = rng.normal(1.62, 0.03, size=100), rng.normal(1.61, 0.05, size=1000)
    m = ce.mean_ci(a)
    lo, hi = stats.t.interval(0.95, 99, loc=a.mean(), scale=stats.sem(a))
    assert (m["mean"], m["lo"], m["hi"], m["n"]) == pytest.approx((a.mean(), lo, hi, 100))
    d = ce.diff_ci(a, b)
    ref = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert d["diff"] == pytest.approx(a.mean() - b.mean()) and (d["lo"], d["hi"]) == pytest.approx((ref.low, ref.high))
    assert ce.diff_ci(b, a)["diff"] == pytest.approx(-d["diff"])             # the sign says which is higher
    assert ce.mean_ci([1.5])["lo"] == ce.mean_ci([1.5])["hi"] == 1.5
    with pytest.raises(ValueError, match="at least two"):
        ce.diff_ci([1.0], [1.0, 2.0])


# -- the evidence the page lands on ------------------------------------------------------------------------------------
def test_tiles_round_trip_and_refuse_other_shapes():
    img = np.random.default_rng(3).integers(0, 256, size=(28, 28), dtype=np.uint8)
    s = ce.encode_tile(img)
    assert isinstance(s, str) and len(s) < 1100
    np.testing.assert_array_equal(ce.decode_tile(s), img)
    with pytest.raises(ValueError, match="28, 28"):
        ce.encode_tile(np.zeros((14, 14), np.uint8))


def test_batches_of_different_seeds_share_no_digit():
    assert ce.batch_seeds(0, 100) == list(range(100))                    # seed 0: the shipped precomputed batch
    assert ce.batch_seeds(1, 100) == list(range(100, 200))
    assert not set(ce.batch_seeds(7, 100)) & set(ce.batch_seeds(8, 100))


def test_early_snapshots_double_from_the_first():
    snaps = [(250 * i, np.full((20, 28, 28), i, np.uint8)) for i in range(1, 13)]
    assert [s for s, _ in ce.early_snapshots(snaps)] == [250, 500, 1000]
    assert ce.early_snapshots(snaps)[2][1][0, 0, 0] == 4
    assert ce.early_snapshots([]) == [] and [s for s, _ in ce.early_snapshots(snaps[:3])] == [250, 500]


def test_score_table_reads_the_judge_including_not_a_digit(scorer, held):
    from engine.judge import NOT_A_DIGIT, noise_images

    judge = load_judge()
    x = torch.cat([held.images[:8], noise_images(4).clamp(-1, 1)])
    labels = torch.cat([held.labels[:8], torch.tensor([3, 3, 3, 3])])
    t = ce.score_table(scorer, judge, x, labels)
    probs, _ = predict(judge, x)
    assert t["judge_class"] == [int(c) for c in probs.argmax(1)]
    assert t["judge_class"][8:] == [NOT_A_DIGIT] * 4 and t["judge_confidence"][8:] == [0.0] * 4
    assert t["judge_confidence"][:8] == pytest.approx([float(probs[i, labels[i]]) for i in range(8)], abs=1e-4)
    assert t["clip_score"] == pytest.approx(scorer.class_scores(x, labels).tolist(), abs=1e-4)
    assert len(t["thickness"]) == len(t["slant"]) == 12 and t["class"] == labels.tolist()


def test_score_sources_keeps_each_sources_best_and_worst_tiles(scorer, held):
    judge = load_judge()
    sources = [{"name": "real A", "kind": "real", "images": held.images[:30], "labels": held.labels[:30]},
               {"name": "noise", "kind": "ablation", "images": torch.rand(8, 1, 28, 28) * 2 - 1,
                "labels": torch.arange(8) % 10}]
    out = ce.score_sources(scorer, judge, sources, examples=3)
    assert [s["name"] for s in out] == ["real A", "noise"] and [s["n"] for s in out] == [30, 8]
    for s, src in zip(out, sources):
        scores = np.array(s["clip_score"])
        ex = s["examples"]
        assert [e["rank"] for e in ex] == ["best"] * 3 + ["worst"] * 3
        best = [scores[e["index"]] for e in ex[:3]]
        worst = [scores[e["index"]] for e in ex[3:]]
        assert best == sorted(scores, reverse=True)[:3] and sorted(worst) == sorted(scores)[:3]
        for e in ex:                                                       # the tile is the image it names
            pixels = ((src["images"][e["index"], 0].clamp(-1, 1) + 1) * 127.5).round().byte().numpy()
            np.testing.assert_array_equal(ce.decode_tile(e["tile"]), pixels)


def test_guidance_sweep_uses_the_same_seeds_at_every_weight(scorer, tiny_model):
    from types import SimpleNamespace

    from engine.sampling import class_labels, sample

    judge = load_judge()
    ckpt = SimpleNamespace(model=tiny_model, schedule_config=TINY_SCHEDULE, sha256="")
    cfg = SampleConfig(steps=3, guidance=1.0, seed=5)
    rows = ce.guidance_sweep(ckpt, scorer, judge, cfg, [0.0, 2.0], per_class=1)
    assert [r["guidance"] for r in rows] == [0.0, 2.0] and all(len(r["clip_score"]) == 10 for r in rows)
    labels = class_labels(1)
    x = sample(tiny_model, NoiseSchedule(TINY_SCHEDULE), labels, cfg.replace(guidance=2.0), seeds=list(range(50, 60)))
    assert rows[1]["clip_score"] == pytest.approx(scorer.class_scores(x, labels).tolist(), abs=1e-4)
    assert rows[0]["clip_score"] != rows[1]["clip_score"]                # the weight changed the digits


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


def test_precompute_stores_every_panel_under_the_keys_the_page_looks_up(tmp_path, monkeypatch, scorer):
    """A tiny model end to end (no ablations, to stay quick): the five panels land in evidence/, and each is found
    with the parameters the page and the notes build from the checkpoint."""
    from engine import evidence
    from engine.checkpoints import load_checkpoint
    from engine.training.run import TrainingRun

    from .conftest import TINY_MODEL, TINY_SAMPLE, TINY_TRAIN

    run = TrainingRun.create(TINY_MODEL, TINY_SCHEDULE, TINY_TRAIN.replace(steps=2, sample_every=1), TINY_SAMPLE,
                             tmp_path / "tiny")
    while not run.done:
        run.train_one()
    monkeypatch.setattr(ce, "ABLATIONS", ())
    monkeypatch.setattr(ce, "load_digit_clip", lambda path=CLIP_PATH: scorer)
    done = ce.precompute_evidence(run.out, "pytest", progress=lambda s: None)
    assert [p for p, _ in done] == ["clip_ranking", "clip_real", "clip_spread", "clip_sweep", "clip_techniques"]
    assert sorted(f.name for f in (run.out / "evidence").iterdir()) == sorted(f"{p}.json" for p, _ in done)
    ckpt = load_checkpoint(run.out)
    cfg, cid = ckpt.recommended.replace(seed=0), ce.digit_clip_id()
    ranking = evidence.lookup(run.out, "clip_ranking", **ce.ranking_params(ckpt.sha256, cfg, cid))
    assert ranking["measured"]["command"] == "pytest" and len(ranking["result"]["records"]) == 100
    assert [r["seed"] for r in ranking["result"]["records"]] == list(range(100))
    spread = evidence.lookup(run.out, "clip_spread", **ce.spread_params(ckpt.sha256, cfg, cid))["result"]
    kinds = [s["kind"] for s in spread]
    assert kinds == ["model", "unguided", "snapshot", "snapshot", "real"]   # snapshots at steps 1 and 2
    sweep = evidence.lookup(run.out, "clip_sweep", **ce.sweep_params(ckpt.sha256, cfg, cid))["result"]
    assert [r["guidance"] for r in sweep] == sorted({0.0, 1.0, 2.0, 4.0, cfg.guidance})
    at_rec = next(r for r in sweep if r["guidance"] == cfg.guidance)
    assert at_rec["clip_score"] == [r["clip_score"] for r in ranking["result"]["records"]]   # the same 100 digits
    tech = evidence.lookup(run.out, "clip_techniques", **ce.technique_params(ckpt.sha256, cfg, cid))["result"]
    assert len(tech) == 4 and "clip_scores" in tech[0]
    assert evidence.lookup(run.out, "clip_real", **ce.real_params(cid))["result"]["class"][:3] == \
        load("mnist-5k")[1].labels[:3].tolist()


# -- the shipped evidence is of the digits the page shows --------------------------------------------------------------
SHIPPED = CLIP_PATH.parent / "default"


@pytest.mark.skipif(not (SHIPPED / "evidence" / "clip_ranking.json").exists(), reason="no shipped CLIP evidence")
def test_shipped_ranking_scores_are_those_of_the_cached_landing_digits(scorer, tmp_path):
    """The page draws the landing tiles from the sample cache and their numbers from evidence: they must match."""
    from engine import evidence
    from engine.cache import SampleCache
    from engine.checkpoints import load_checkpoint
    from engine.sampling import class_labels, sample_cached

    ckpt = load_checkpoint(SHIPPED)
    cfg = ckpt.recommended.replace(seed=0)
    e = evidence.lookup(SHIPPED, "clip_ranking", **ce.ranking_params(ckpt.sha256, cfg, ce.digit_clip_id()))
    assert e is not None, "run: python -m engine precompute --checkpoint checkpoints/default --panels --clip"
    labels = class_labels(10)
    cache = SampleCache(tmp_path, read_only=[SHIPPED / "precomputed"])
    x = sample_cached(ckpt, labels, cfg, seeds=list(range(100)), cache=cache)
    assert cache.hits == 1                                                   # shipped: no sampling on arrival
    stored = [r["clip_score"] for r in e["result"]["records"]]
    assert stored == pytest.approx(scorer.class_scores(x, labels).tolist(), abs=2e-3)


def test_spearman_ci_rho_is_scipys_even_with_ties():
    rng = np.random.default_rng(4)
    a = rng.integers(0, 5, size=60).astype(float)                        # many ties
    b = a + rng.integers(0, 3, size=60)
    assert ce.spearman_ci(a, b)["rho"] == pytest.approx(spearman(a, b), abs=1e-12)
    np.testing.assert_allclose(ce.ranks([3.0, 1.0, 3.0, 2.0]), [3.5, 1.0, 3.5, 2.0])
