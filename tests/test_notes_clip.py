"""ui/notes_clip.py: every figure and direction the CLIP notes state is what the shipped evidence shows.

The facts are recomputed here from the raw evidence files with numpy / scipy (not with engine.clip_eval's helpers),
and a copy of the evidence with the data turned the other way must turn the notes the other way too.
"""
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from ui.notes_clip import NOTES

SHIPPED = Path(__file__).resolve().parent.parent / "checkpoints" / "default"
PANELS = ("clip_ranking", "clip_real", "clip_spread", "clip_sweep", "clip_techniques")
pytestmark = pytest.mark.skipif(not (SHIPPED / "evidence" / "clip_ranking.json").exists(),
                                reason="no shipped CLIP evidence (python -m engine precompute --clip)")


def _landing(model_dir: Path, panel: str):
    """The panel's result measured for this model's weights at its recommended settings, seed 0 (read raw)."""
    sha = json.loads((model_dir / "meta.json").read_text())["sha256"]["weights.safetensors"]
    rec = json.loads((model_dir / "config.json").read_text())["recommended"]
    entries = json.loads((model_dir / "evidence" / f"{panel}.json").read_text())["entries"]
    found = []
    for e in entries.values():
        p = e["params"]
        if p.get("weights") != sha or not str(p.get("clip", "")).startswith("digit-CLIP"):
            continue
        if "sample" in p and (p["sample"]["seed"] != 0 or p["sample"]["guidance"] != rec["guidance"]):
            continue
        if panel == "clip_techniques" and p["scale"] != 20.0:
            continue
        found.append(e["result"])
    if panel == "clip_real":
        found = [e["result"] for e in entries.values()]
    assert len(found) == 1, f"{panel}: {len(found)} landing entries"
    return found[0]


def _spearman_ci(a, b):
    rho = stats.spearmanr(a, b).statistic
    z, half = np.arctanh(rho), 1.959964 * np.sqrt(1.06 / (len(a) - 3))
    return rho, np.tanh(z - half), np.tanh(z + half)


def _welch(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    return a.mean() - b.mean(), ci.low, ci.high


def _sign(lo, hi):
    return 1 if lo > 0 else -1 if hi < 0 else 0


def _rho_text(rho, lo, hi, n):
    return f"ρ = {rho:.2f} [{lo:.2f}, {hi:.2f}], n = {n}"


def _kept(records, k=3):
    kept = np.zeros(len(records), bool)
    scores = np.array([r["clip_score"] for r in records])
    classes = np.array([r["class"] for r in records])
    for c in np.unique(classes):
        idx = np.flatnonzero(classes == c)
        kept[idx[np.argsort(-scores[idx], kind="stable")[:k]]] = True
    return kept


@pytest.fixture
def flipped(tmp_path):
    """A copy of the shipped model's configs and CLIP evidence (no weights needed by the notes)."""
    d = tmp_path / "default"
    (d / "evidence").mkdir(parents=True)
    for f in ("config.json", "meta.json"):
        shutil.copy(SHIPPED / f, d / f)
    for p in PANELS:
        shutil.copy(SHIPPED / "evidence" / f"{p}.json", d / "evidence" / f"{p}.json")
    return d


def _edit(model_dir: Path, panel: str, change) -> None:
    path = model_dir / "evidence" / f"{panel}.json"
    data = json.loads(path.read_text())
    for e in data["entries"].values():
        change(e["result"])
    path.write_text(json.dumps(data))


def test_41_states_generated_vs_real_and_the_within_batch_rho_as_measured():
    note = NOTES["4.1"]()
    recs = _landing(SHIPPED, "clip_ranking")["records"]
    gen = [r["clip_score"] for r in recs]
    real = _landing(SHIPPED, "clip_real")["clip_score"]
    d, lo, hi = _welch(gen, real)
    word = {1: "**higher** than", -1: "**lower** than", 0: "about the **same** as"}[_sign(lo, hi)]
    assert f"score {word} the {len(real):,} real" in note
    assert f"**{np.mean(gen):.3f} vs {np.mean(real):.3f}**" in note
    assert f"{d:+.4f} [{lo:+.4f}, {hi:+.4f}]" in note
    rho, rlo, rhi = _spearman_ci(gen, [r["judge_confidence"] for r in recs])
    assert _rho_text(rho, rlo, rhi, len(gen)) in note
    assert ("no clear relation" in note) == (_sign(rlo, rhi) == 0)
    assert "realistic" in note and "alignment" in note                  # names 4.1's misconception
    best = max(recs, key=lambda r: r["clip_score"])
    worst = min(recs, key=lambda r: r["clip_score"])
    assert f"(seed {best['seed']}) at {best['clip_score']:.3f}" in note
    assert f"(seed {worst['seed']}) at {worst['clip_score']:.3f}" in note


def test_41_spread_claim_is_the_pooled_rho_of_every_generated_source():
    note = NOTES["4.1"]()
    gen = [s for s in _landing(SHIPPED, "clip_spread") if s["kind"] != "real"]
    scores = np.concatenate([s["clip_score"] for s in gen])
    conf = np.concatenate([s["judge_confidence"] for s in gen])
    rho, lo, hi = _spearman_ci(scores, conf)
    assert _rho_text(rho, lo, hi, len(scores)) in note
    expected = {1: "CLIP does separate broken digits from good ones", -1: "CLIP ranks broken digits *above*",
                0: "no clear relation even across models"}[_sign(lo, hi)]
    assert expected in note


def test_41_turns_round_when_the_data_do(flipped):
    """Real digits scored 0.1 higher and a judge that agrees with CLIP's order: the note must say so."""
    def raise_real(res):
        res["clip_score"] = [s + 0.1 for s in res["clip_score"]]

    def judge_follows_clip(res):
        for r in res["records"]:
            r["judge_confidence"] = r["clip_score"]

    _edit(flipped, "clip_real", raise_real)
    _edit(flipped, "clip_ranking", judge_follows_clip)
    note = NOTES["4.1"](flipped)
    assert "score **lower** than" in note and "**higher** than" not in note
    assert "higher scores go with a more confident judge" in note and "no clear relation** —" not in note
    assert "not a realism score" not in note            # that argument needs generated > real


def test_42_per_class_and_pattern_claims_are_computed():
    note = NOTES["4.2"]()
    recs = _landing(SHIPPED, "clip_ranking")["records"]
    real = _landing(SHIPPED, "clip_real")
    gen = np.array([r["clip_score"] for r in recs])
    cls = np.array([r["class"] for r in recs])
    overall = gen.mean()
    above, below = [], []
    for c in range(10):
        x = gen[cls == c]
        lo, hi = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
        above += [c] if lo > overall else []
        below += [c] if hi < overall else []
    if above or below:
        listed = f"{', '.join(map(str, above)) or 'none'}; below it: {', '.join(map(str, below)) or 'none'}"
        assert f"({overall:.3f}): {listed}" in note
    else:
        assert "within noise" in note
    for name in ("thickness", "slant", "judge_confidence"):
        rho, lo, hi = _spearman_ci(gen, [r[name] for r in recs])
        text = _rho_text(rho, lo, hi, len(gen))
        assert text in note
        after = note.split(text, 1)[1][:60]
        assert after.startswith(": no clear relation") == (_sign(lo, hi) == 0), (name, after)
        rr = _spearman_ci(real["clip_score"], real[name])
        assert _rho_text(*rr, len(real["clip_score"])) in note
    sweep = _landing(SHIPPED, "clip_sweep")
    w = np.concatenate([[r["guidance"]] * len(r["clip_score"]) for r in sweep])
    s = np.concatenate([r["clip_score"] for r in sweep])
    rho, lo, hi = _spearman_ci(w, s)
    expected = {1: "the score rises with w", -1: "the score falls with w",
                0: "no clear monotone relation"}[_sign(lo, hi)]
    assert f"{_rho_text(rho, lo, hi, len(s))}: {expected}" in note
    rec = json.loads((SHIPPED / "config.json").read_text())["recommended"]["guidance"]
    by_w = {r["guidance"]: r["clip_score"] for r in sweep}
    d, dlo, dhi = _welch(by_w[rec], by_w[0.0])
    word = {1: "guided digits score higher", -1: "guided digits score lower", 0: "no clear difference"}[_sign(dlo, dhi)]
    assert f"{d:+.3f} [{dlo:+.3f}, {dhi:+.3f}]: {word}" in note


def test_43_quotes_the_comparison_and_names_the_misconception():
    note = NOTES["4.3"]()
    rows = _landing(SHIPPED, "clip_techniques")
    assert "would eventually train" in note and "not the model" in note
    plain = rows[0]
    assert f"mean CLIPScore **{plain['mean_clip_score']:.3f}**" in note
    for r in rows[1:]:
        assert f"**{r['technique']}**: mean CLIPScore **{r['mean_clip_score']:.3f}**" in note
        diffs = np.subtract(r["clip_scores"], plain["clip_scores"])
        lo, hi = stats.t.interval(0.95, len(diffs) - 1, loc=diffs.mean(), scale=stats.sem(diffs))
        chooses = r["samples_generated"] > plain["samples_generated"]
        word = {1: "it keeps higher-scoring digits" if chooses else "its digits score higher",
                -1: "it keeps lower-scoring digits" if chooses else "its digits score lower",
                0: "no clear change in score"}[_sign(lo, hi)]
        assert f"**{r['technique']}**" in note and f"{diffs.mean():+.3f} [{lo:+.3f}, {hi:+.3f}]: {word}" in note
        right = np.subtract(np.array(r["judge_right"], float), np.array(plain["judge_right"], float))
        if right.std() == 0:
            jlo = jhi = right.mean()
        else:
            jlo, jhi = stats.t.interval(0.95, len(right) - 1, loc=right.mean(), scale=stats.sem(right))
        jword = {1: "more digits recognised", -1: "fewer digits recognised", 0: "no clear change"}[_sign(jlo, jhi)]
        assert f"judge accuracy vs plain: {right.mean():+.2f} [{jlo:+.2f}, {jhi:+.2f}]: {jword}" in note
    sha = json.loads((SHIPPED / "meta.json").read_text())["sha256"]["weights.safetensors"]
    assert sha[:12] in note


def test_b3_kept_vs_rejected_differences_are_computed():
    note = NOTES["B3"]()
    recs = _landing(SHIPPED, "clip_ranking")["records"]
    kept = _kept(recs)
    assert f"({kept.sum()} kept, {(~kept).sum()} rejected" in note
    for name, nd in (("judge_confidence", 3), ("thickness", 2), ("slant", 1)):
        x = np.array([r[name] for r in recs], float)
        d, lo, hi = _welch(x[kept], x[~kept])
        word = {1: "kept **higher**", -1: "kept **lower**", 0: "**no clear difference**"}[_sign(lo, hi)]
        assert f"{d:+.{nd}f} [{lo:+.{nd}f}, {hi:+.{nd}f}]: {word}" in note, name
    assert "more confident for the judge" not in note
    assert "realistic" in note and "would eventually train" in note


def test_b3_follows_the_data_when_kept_digits_become_more_confident(flipped):
    def judge_follows_clip(res):
        for r in res["records"]:
            r["judge_confidence"] = round(r["clip_score"] / 2, 4)

    _edit(flipped, "clip_ranking", judge_follows_clip)
    note = NOTES["B3"](flipped)
    line = next(x for x in note.splitlines() if x.startswith("- judge confidence"))
    assert line.endswith("kept **higher**.")


def test_no_note_states_a_correlation_whose_interval_includes_zero():
    for number, fn in NOTES.items():
        note = fn()
        for m in re.finditer(r"ρ = (-?\d\.\d\d) \[(-?\d\.\d\d), (-?\d\.\d\d)\], n = \d+:? ?—? ?([^.;]*)", note):
            lo, hi, claim = float(m.group(2)), float(m.group(3)), m.group(4)
            if lo <= 0 <= hi:
                assert "no clear" in claim, (number, m.group(0))
            else:
                assert "no clear" not in claim, (number, m.group(0))


def test_missing_evidence_gives_no_claims(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    for f in ("config.json", "meta.json"):
        shutil.copy(SHIPPED / f, d / f)
    for number, fn in NOTES.items():
        note = fn(d)
        assert "not been measured" in note and "precompute" in note and "--clip" in note, number
        assert "higher" not in note and "ρ" not in note, number
