"""engine/clip_evidence.py: the CLIP page's panels, measured by `engine precompute --clip` and looked up by the page."""

import numpy as np
import pytest
import torch

from engine import clip_evidence as cev
from engine.clip_eval import CLIP_PATH
from engine.config import SampleConfig
from engine.data import load
from engine.judge import load_judge, predict
from engine.schedule import NoiseSchedule

from .conftest import TINY_SCHEDULE

SHIPPED = CLIP_PATH.parent / "default"


def test_tiles_round_trip_and_refuse_other_shapes():
    img = np.random.default_rng(3).integers(0, 256, size=(28, 28), dtype=np.uint8)
    s = cev.encode_tile(img)
    assert isinstance(s, str) and len(s) < 1100
    np.testing.assert_array_equal(cev.decode_tile(s), img)
    with pytest.raises(ValueError, match="28, 28"):
        cev.encode_tile(np.zeros((14, 14), np.uint8))


def test_batches_of_different_seeds_share_no_digit():
    assert cev.batch_seeds(0, 100) == list(range(100))                    # seed 0: the shipped precomputed batch
    assert cev.batch_seeds(1, 100) == list(range(100, 200))
    assert not set(cev.batch_seeds(7, 100)) & set(cev.batch_seeds(8, 100))


def test_early_snapshots_double_from_the_first():
    snaps = [(250 * i, np.full((20, 28, 28), i, np.uint8)) for i in range(1, 13)]
    assert [s for s, _ in cev.early_snapshots(snaps)] == [250, 500, 1000]
    assert cev.early_snapshots(snaps)[2][1][0, 0, 0] == 4
    assert cev.early_snapshots([]) == [] and [s for s, _ in cev.early_snapshots(snaps[:3])] == [250, 500]


def test_score_table_reads_the_judge_including_not_a_digit(scorer, held):
    from engine.judge import NOT_A_DIGIT, noise_images

    judge = load_judge()
    x = torch.cat([held.images[:8], noise_images(4).clamp(-1, 1)])
    labels = torch.cat([held.labels[:8], torch.tensor([3, 3, 3, 3])])
    t = cev.score_table(scorer, judge, x, labels)
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
    out = cev.score_sources(scorer, judge, sources, examples=3)
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
            np.testing.assert_array_equal(cev.decode_tile(e["tile"]), pixels)


def test_guidance_sweep_uses_the_same_seeds_at_every_weight(scorer, tiny_model):
    from types import SimpleNamespace

    from engine.sampling import class_labels, sample

    judge = load_judge()
    ckpt = SimpleNamespace(model=tiny_model, schedule_config=TINY_SCHEDULE, sha256="")
    cfg = SampleConfig(steps=3, guidance=1.0, seed=5)
    rows = cev.guidance_sweep(ckpt, scorer, judge, cfg, [0.0, 2.0], per_class=1)
    assert [r["guidance"] for r in rows] == [0.0, 2.0] and all(len(r["clip_score"]) == 10 for r in rows)
    labels = class_labels(1)
    x = sample(tiny_model, NoiseSchedule(TINY_SCHEDULE), labels, cfg.replace(guidance=2.0), seeds=list(range(50, 60)))
    assert rows[1]["clip_score"] == pytest.approx(scorer.class_scores(x, labels).tolist(), abs=1e-4)
    assert rows[0]["clip_score"] != rows[1]["clip_score"]                # the weight changed the digits


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
    monkeypatch.setattr(cev, "ABLATIONS", ())
    monkeypatch.setattr(cev, "load_digit_clip", lambda path=CLIP_PATH: scorer)
    done = cev.precompute_evidence(run.out, "pytest", progress=lambda s: None)
    assert [p for p, _ in done] == ["clip_ranking", "clip_real", "clip_spread", "clip_sweep", "clip_techniques"]
    assert sorted(f.name for f in (run.out / "evidence").iterdir()) == sorted(f"{p}.json" for p, _ in done)
    ckpt = load_checkpoint(run.out)
    cfg, cid = ckpt.recommended.replace(seed=0), cev.digit_clip_id()
    ranking = evidence.lookup(run.out, "clip_ranking", **cev.ranking_params(ckpt.sha256, cfg, cid))
    assert ranking["measured"]["command"] == "pytest" and len(ranking["result"]["records"]) == 100
    assert [r["seed"] for r in ranking["result"]["records"]] == list(range(100))
    spread = evidence.lookup(run.out, "clip_spread", **cev.spread_params(ckpt.sha256, cfg, cid))["result"]
    kinds = [s["kind"] for s in spread]
    assert kinds == ["model", "unguided", "snapshot", "snapshot", "real"]   # snapshots at steps 1 and 2
    sweep = evidence.lookup(run.out, "clip_sweep", **cev.sweep_params(ckpt.sha256, cfg, cid))["result"]
    assert [r["guidance"] for r in sweep] == sorted({0.0, 1.0, 2.0, 4.0, cfg.guidance})
    at_rec = next(r for r in sweep if r["guidance"] == cfg.guidance)
    assert at_rec["clip_score"] == [r["clip_score"] for r in ranking["result"]["records"]]   # the same 100 digits
    tech = evidence.lookup(run.out, "clip_techniques", **cev.technique_params(ckpt.sha256, cfg, cid))["result"]
    assert len(tech) == 4 and "clip_scores" in tech[0]
    assert evidence.lookup(run.out, "clip_real", **cev.real_params(cid))["result"]["class"][:3] == \
        load("mnist-5k")[1].labels[:3].tolist()


@pytest.mark.skipif(not (SHIPPED / "evidence" / "clip_ranking.json").exists(), reason="no shipped CLIP evidence")
def test_shipped_ranking_scores_are_those_of_the_cached_landing_digits(scorer, tmp_path):
    """The page draws the landing tiles from the sample cache and their numbers from evidence: they must match."""
    from engine import evidence
    from engine.cache import SampleCache
    from engine.checkpoints import load_checkpoint
    from engine.sampling import class_labels, sample_cached

    ckpt = load_checkpoint(SHIPPED)
    cfg = ckpt.recommended.replace(seed=0)
    e = evidence.lookup(SHIPPED, "clip_ranking", **cev.ranking_params(ckpt.sha256, cfg, cev.digit_clip_id()))
    assert e is not None, "run: python -m engine precompute --checkpoint checkpoints/default --panels --clip"
    labels = class_labels(10)
    cache = SampleCache(tmp_path, read_only=[SHIPPED / "precomputed"])
    x = sample_cached(ckpt, labels, cfg, seeds=list(range(100)), cache=cache)
    assert cache.hits == 1                                                   # shipped: no sampling on arrival
    stored = [r["clip_score"] for r in e["result"]["records"]]
    assert stored == pytest.approx(scorer.class_scores(x, labels).tolist(), abs=2e-3)
