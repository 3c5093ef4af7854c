"""Instructor notes for worksheet prompts 4.1, 4.2, 4.3 and B3, computed from the CLIP evidence shipped with a model.

Every number and every direction in a note is read or computed from the model's evidence/clip_*.json (measured by
`python -m engine precompute --checkpoint checkpoints/default --clip`, the same files the CLIP page lands on), so
a note cannot contradict the screen: if the data said the other thing, the note would too. A pattern is stated only
when its 95 % confidence interval excludes 0; otherwise the note says there is no clear relation. Each note names
the misconception it corrects (../shared/WORKSHEET.md) next to the evidence that refutes it.

NOTES = {"4.1": fn, "4.2": fn, "4.3": fn, "B3": fn}; fn(model_dir=checkpoints/default) -> Markdown. No Streamlit
calls here: the worksheet page renders the text, tests read it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from engine import clip_eval as ce, clip_evidence as cev, evidence, stats
from engine.checkpoints import WEIGHTS, CheckpointError, read_configs
from engine.config import SampleConfig

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "checkpoints" / "default"
PRECOMPUTE = "python -m engine precompute --checkpoint checkpoints/default --clip"
MISCONCEPTION_41 = ("**Misconception (4.1):** *\"CLIP scores tell how realistic an image is.\"* CLIPScore is "
                    "image–caption alignment, 2.5 · cos(image, caption): how much the digit looks like its caption "
                    "to CLIP, not how real it looks.")
MISCONCEPTION_43 = ("**Misconception (4.3):** *\"Regenerating images until CLIP accepts them would eventually train "
                    "the AI.\"* Reranking and rejection change which samples you keep, not the model.")


# -- wording shared with the page (ui/clip_view.py) ------------------------------------------------------------------
def fmt_rho(ci: dict) -> str:
    """"ρ = 0.49 [0.42, 0.55], n = 560": Spearman's rho with its 95 % interval."""
    return f"ρ = {ci['rho']:.2f} [{ci['lo']:.2f}, {ci['hi']:.2f}], n = {ci['n']}"


def fmt_diff(ci: dict, nd: int = 3) -> str:
    """"+0.008 [+0.000, +0.016]": a difference of means with its 95 % interval."""
    return f"{ci['diff']:+.{nd}f} [{ci['lo']:+.{nd}f}, {ci['hi']:+.{nd}f}]"


def paired_diff(a, b) -> dict:
    """Mean of a - b, slot by slot, with its t interval, as a difference {"diff", "lo", "hi"}."""
    m = stats.mean_ci(np.subtract(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)))
    return {"diff": m["mean"], "lo": m["lo"], "hi": m["hi"]}


def relation(ci: dict, positive: str, negative: str, none: str = "no clear relation") -> str:
    """The phrase a confidence interval supports: `positive` above 0, `negative` below, `none` when it includes 0."""
    return {1: positive, -1: negative, 0: none}[stats.direction(ci)]


def judge_reading(judge_class: int, asked: int, p_asked: float) -> str:
    """What the judge says of a digit asked to be `asked` (judge_class 10 = "not a digit")."""
    from engine.judge import NOT_A_DIGIT

    if judge_class == NOT_A_DIGIT:
        return "the judge says **not a digit**"
    if judge_class == asked:
        return f"the judge agrees (p = {p_asked:.2f})"
    return f"the judge reads it as **{judge_class}** (p({asked}) = {p_asked:.2f})"


# -- the shipped evidence --------------------------------------------------------------------------------------------
def landing_evidence(model_dir: str | Path = DEFAULT_DIR) -> dict:
    """The CLIP page's landing panels for the model at model_dir (recommended sampler settings, seed 0, digit-CLIP):
    {"ranking", "real", "spread", "sweep", "techniques", "sha", "config"}; a panel that was not measured is None."""
    model_dir = Path(model_dir)
    config, meta = read_configs(model_dir)
    rec = SampleConfig.from_dict(config.get("recommended") or {}).replace(seed=0)
    sha = meta.get("sha256", {}).get(WEIGHTS, "")
    try:
        cid = cev.digit_clip_id()
    except CheckpointError:
        cid = ""

    def get(panel: str, params: dict):
        e = evidence.lookup(model_dir, panel, **params)
        return None if e is None else e["result"]

    return {"ranking": get("clip_ranking", cev.ranking_params(sha, rec, cid)),
            "real": get("clip_real", cev.real_params(cid)),
            "spread": get("clip_spread", cev.spread_params(sha, rec, cid)),
            "sweep": get("clip_sweep", cev.sweep_params(sha, rec, cid)),
            "techniques": get("clip_techniques", cev.technique_params(sha, rec, cid)),
            "sha": sha, "config": rec}


def _missing(what: str) -> str:
    return (f"_The {what} for this note has not been measured for this model; run `{PRECOMPUTE}` and the note "
            f"will state what it shows._")


def _a(digit: int) -> str:
    """"an 8", "a 3": the article a digit's spoken name takes."""
    return f"an {digit}" if int(digit) == 8 else f"a {digit}"


def _columns(records: list[dict], *names: str) -> list[np.ndarray]:
    return [np.array([r[n] for r in records], dtype=np.float64) for n in names]


def _kept(records: list[dict], keep: int = 3) -> np.ndarray:
    import torch

    scores = torch.tensor([r["clip_score"] for r in records])
    labels = torch.tensor([r["class"] for r in records])
    return ce.top_k_per_class(scores, labels, keep).numpy()


# -- the notes -------------------------------------------------------------------------------------------------------
def note_41(model_dir: str | Path = DEFAULT_DIR) -> str:
    ev = landing_evidence(model_dir)
    if ev["ranking"] is None or ev["real"] is None:
        return _missing("ranked batch or the real-digit baseline")
    recs = ev["ranking"]["records"]
    gen, conf = _columns(recs, "clip_score", "judge_confidence")
    real = np.asarray(ev["real"]["clip_score"], dtype=np.float64)
    d = stats.diff_ci(gen, real)
    compare = relation(d, "**higher** than", "**lower** than", "about the **same** as")
    lines = [MISCONCEPTION_41, "",
             f"- **Generated vs real:** the shipped model's {len(gen)} digits score {compare} the {len(real):,} real "
             f"held-out digits: **{d['mean_a']:.3f} vs {d['mean_b']:.3f}** (difference {fmt_diff(d, 4)}, 95 % CI"
             + ("; it includes 0" if stats.direction(d) == 0 else "") + ")."
             + (" A real digit is by definition realistic, so a score that generated digits can beat is not a "
                "realism score." if stats.direction(d) > 0 else "")]
    rho = stats.spearman_ci(gen, conf)
    lines.append(f"- **Within this batch**, CLIPScore vs the judge's confidence: {fmt_rho(rho)}: "
                 + relation(rho, "higher scores go with a more confident judge.",
                            "higher scores go with a *less* confident judge.",
                            "**no clear relation** — the lowest scores are not the digits the judge doubts.")
                 )
    if ev["spread"] is not None:
        generated = [s for s in ev["spread"] if s["kind"] != "real"]
        pooled = stats.spearman_ci(np.concatenate([s["clip_score"] for s in generated]),
                                np.concatenate([s["judge_confidence"] for s in generated]))
        ablations = [s for s in generated if s["kind"] == "ablation"]
        model = next(s for s in generated if s["kind"] == "model")
        text = (f"- **On one scale** (the spread chart: the model guided and unguided, early training snapshots, the "
                f"ablation models), CLIPScore vs judge confidence over all {pooled['n']} generated digits: "
                f"{fmt_rho(pooled)}: " + relation(pooled, "CLIP does separate broken digits from good ones",
                                                  "CLIP ranks broken digits *above* good ones",
                                                  "no clear relation even across models"))
        if ablations:
            means = [float(np.mean(s["clip_score"])) for s in ablations]
            acc = [float(np.mean(np.array(s["judge_class"]) == np.array(s["class"]))) for s in ablations]
            text += (f" (ablation means {min(means):.3f}–{max(means):.3f}, judge accuracy {min(acc):.0%}–"
                     f"{max(acc):.0%}; shipped model {np.mean(model['clip_score']):.3f}).")
            best = max(ablations, key=lambda s: max(s["clip_score"]))
            i = int(np.argmax(best["clip_score"]))
            top = max(model["clip_score"])
            if best["clip_score"][i] > top:
                text += (f" Yet the best-scoring {best['name']} digit ({best['clip_score'][i]:.3f}, asked for "
                         f"{_a(best['class'][i])}: "
                         f"{judge_reading(best['judge_class'][i], best['class'][i], best['judge_confidence'][i])}) "
                         f"outscores every one of the shipped model's {model['n']} (best {top:.3f}): see the gallery.")
        else:
            text += "."
        lines.append(text)
    hi = max(range(len(recs)), key=lambda i: recs[i]["clip_score"])
    lo = min(range(len(recs)), key=lambda i: recs[i]["clip_score"])
    for word, i in (("Highest", hi), ("Lowest", lo)):
        r = recs[i]
        lines.append(f"- **{word}:** {_a(r['class'])} (seed {r['seed']}) at {r['clip_score']:.3f}; "
                     f"{judge_reading(r['judge_class'], r['class'], r['judge_confidence'])}.")
    return "\n".join(lines)


def note_42(model_dir: str | Path = DEFAULT_DIR) -> str:
    ev = landing_evidence(model_dir)
    if ev["ranking"] is None:
        return _missing("ranked batch")
    recs = ev["ranking"]["records"]
    gen, cls = _columns(recs, "clip_score", "class")
    lines = [MISCONCEPTION_41 + " So ask which digits *look most like their caption to CLIP*, and test each "
             "hypothesis against the charts:", ""]
    overall = float(gen.mean())
    cis = {c: stats.mean_ci(gen[cls == c]) for c in range(10)}
    above = [c for c, m in cis.items() if m["lo"] > overall]
    below = [c for c, m in cis.items() if m["hi"] < overall]
    top = max(cis, key=lambda c: cis[c]["mean"])
    bottom = min(cis, key=lambda c: cis[c]["mean"])
    text = (f"- **Per class** (10 generated digits each, 95 % CI): means from {cis[bottom]['mean']:.3f} (digit "
            f"{bottom}) to {cis[top]['mean']:.3f} (digit {top}). ")
    if above or below:
        text += ("Classes whose whole interval lies above the batch mean "
                 f"({overall:.3f}): {', '.join(map(str, above)) or 'none'}; below it: "
                 f"{', '.join(map(str, below)) or 'none'}. With 10 digits a class, treat these as hypotheses to test "
                 f"with a new seed.")
    else:
        text += (f"No class's interval excludes the batch mean ({overall:.3f}): with 10 digits a class, the "
                 f"per-class differences are within noise.")
    lines.append(text)
    if ev["real"] is not None:
        rs, rc = np.asarray(ev["real"]["clip_score"], float), np.asarray(ev["real"]["class"])
        r_overall = float(rs.mean())
        rcis = {c: stats.mean_ci(rs[rc == c]) for c in range(10)}
        r_above = [c for c, m in rcis.items() if m["lo"] > r_overall]
        r_below = [c for c, m in rcis.items() if m["hi"] < r_overall]
        lines.append(f"- **Real digits** (100 a class): classes above the real mean ({r_overall:.3f}): "
                     f"{', '.join(map(str, r_above)) or 'none'}; below: {', '.join(map(str, r_below)) or 'none'}.")
    for name, label in (("thickness", "stroke thickness"), ("slant", "slant"),
                        ("judge_confidence", "judge confidence")):
        x = np.array([r[name] for r in recs], dtype=np.float64)
        rho = stats.spearman_ci(gen, x)
        text = f"- **CLIPScore vs {label}**, generated: {fmt_rho(rho)}: " + relation(
            rho, f"higher scores go with more {label}", f"higher scores go with less {label}")
        if ev["real"] is not None and name in ev["real"]:
            rr = stats.spearman_ci(ev["real"]["clip_score"], ev["real"][name])
            text += f"; real: {fmt_rho(rr)}: " + relation(rr, f"higher scores go with more {label}",
                                                          f"higher scores go with less {label}")
        lines.append(text + ".")
    if ev["sweep"] is not None:
        w = np.concatenate([[row["guidance"]] * len(row["clip_score"]) for row in ev["sweep"]])
        s = np.concatenate([row["clip_score"] for row in ev["sweep"]])
        rho = stats.spearman_ci(w, s)
        weights = [row["guidance"] for row in ev["sweep"]]
        text = (f"- **Guidance weight** (the same 100 seeds at w = {', '.join(f'{v:g}' for v in weights)}): "
                f"{fmt_rho(rho)}: " + relation(rho, "the score rises with w", "the score falls with w",
                                               "no clear monotone relation over the whole range"))
        rows = {row["guidance"]: row for row in ev["sweep"]}
        rec_w = float(ev["config"].guidance)
        if 0.0 in rows and rec_w in rows and rec_w != 0.0:
            d = stats.diff_ci(rows[rec_w]["clip_score"], rows[0.0]["clip_score"])
            text += (f"; w = {rec_w:g} vs unguided: {fmt_diff(d)}: " +
                     relation(d, "guided digits score higher", "guided digits score lower",
                              "no clear difference"))
        lines.append(text + ".")
    return "\n".join(lines)


def note_43(model_dir: str | Path = DEFAULT_DIR) -> str:
    ev = landing_evidence(model_dir)
    rows = ev["techniques"]
    if rows is None:
        return _missing("technique comparison")
    plain = rows[0]
    lines = [MISCONCEPTION_43 + " Only training on a signal (fine-tuning on kept samples, reward fine-tuning) "
             "changes what the model generates; CLIP guidance changes one sampling run, not the weights.", ""]
    lines.append(f"- **Plain sampling** (what the model generates on its own): mean CLIPScore "
                 f"**{plain['mean_clip_score']:.3f}**, judge accuracy {plain['judge_accuracy']:.0%}, "
                 f"{plain['samples_generated']} samples.")
    for row in rows[1:]:
        text = (f"- **{row['technique']}**: mean CLIPScore **{row['mean_clip_score']:.3f}**, judge accuracy "
                f"{row['judge_accuracy']:.0%}, {row['samples_generated']} samples generated "
                f"({row['samples_generated'] / plain['samples_generated']:.1f}× plain)")
        if "clip_scores" in row and "clip_scores" in plain:
            d = paired_diff(row["clip_scores"], plain["clip_scores"])
            chooses = row["samples_generated"] > plain["samples_generated"]
            text += (f"; CLIPScore vs plain, slot by slot: {fmt_diff(d)}: " +
                     relation(d, "it keeps higher-scoring digits" if chooses else "its digits score higher",
                              "it keeps lower-scoring digits" if chooses else "its digits score lower",
                              "no clear change in score"))
            j = paired_diff(row["judge_right"], plain["judge_right"])
            text += (f"; judge accuracy vs plain: {fmt_diff(j, 2)}: " +
                     relation(j, "more digits recognised", "fewer digits recognised", "no clear change"))
        lines.append(text + ".")
    chose = [r for r in rows[1:] if r["samples_generated"] > plain["samples_generated"]]
    lines.append(f"- The weights are the same file throughout (sha256 `{ev['sha'][:12]}…`): the plain row is what "
                 f"the model still generates after every reranking and rejection above. "
                 + (f"{' and '.join(r['technique'] for r in chose)} generated "
                    f"{' and '.join(str(r['samples_generated']) for r in chose)} samples to *choose* "
                    f"{plain['samples_generated']}; nothing was learnt." if chose else "Nothing was learnt."))
    return "\n".join(lines)


def note_b3(model_dir: str | Path = DEFAULT_DIR) -> str:
    ev = landing_evidence(model_dir)
    if ev["ranking"] is None:
        return _missing("ranked batch")
    recs = ev["ranking"]["records"]
    kept = _kept(recs)
    lines = [MISCONCEPTION_41, MISCONCEPTION_43 + " Keeping the top 3 of 10 is such a selection.", "",
             f"Top 3 of 10 per class kept ({int(kept.sum())} kept, {int((~kept).sum())} rejected; 95 % CIs of "
             f"kept − rejected):"]
    for name, label, nd in (("clip_score", "CLIPScore", 3), ("judge_confidence", "judge confidence", 3),
                            ("thickness", "thickness (px)", 2), ("slant", "slant (°)", 1)):
        x = np.array([r[name] for r in recs], dtype=np.float64)
        d = stats.diff_ci(x[kept], x[~kept])
        verdict = ("higher by construction" if name == "clip_score" else
                   relation(d, "kept **higher**", "kept **lower**", "**no clear difference**"))
        lines.append(f"- {label}: kept {d['mean_a']:.{nd}f} vs rejected {d['mean_b']:.{nd}f}, "
                     f"{fmt_diff(d, nd)}: {verdict}.")
    right = np.array([r["judge_class"] == r["class"] for r in recs])
    lines.append(f"- judge accuracy: kept {right[kept].mean():.0%}, rejected {right[~kept].mean():.0%}.")
    return "\n".join(lines)


NOTES = {"4.1": note_41, "4.2": note_42, "4.3": note_43, "B3": note_b3}
