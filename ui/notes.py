"""The instructor's notes, computed from the shipped models' reports and evidence.

A note that states a number or a direction reads it from the files it describes (report.json, metrics.jsonl,
evidence/*.json of the shipped models), so the projector and the note cannot disagree; tests/test_notes.py
recomputes each claim independently. Each note names the misconception it corrects (../shared/WORKSHEET.md)
next to the evidence that refutes it. Where a measurement is missing the note says so instead of a number.

`note(number)` returns the Markdown for a prompt, or None when the prompt has only its static text.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Callable

from engine import evidence, export
from engine.checkpoints import CheckpointError, read_configs
from engine.config import ModelConfig, SampleConfig, ScheduleConfig
from engine.schedule import NoiseSchedule
from engine.training import runs

ROOT = Path(__file__).resolve().parent.parent / "checkpoints"
MISSING = "_(not measured yet: run `python -m engine precompute` for the shipped models)_"


# -- reading the shipped files ---------------------------------------------------------------------------------
def report(model: str) -> dict:
    """A shipped model's report.json ({} if missing or unreadable)."""
    return runs.read_report(ROOT / model)


def final_loss(model: str) -> float | None:
    """Mean of the last 10 logged training losses, as the runs table computes it (unrounded here)."""
    return runs.final_loss(runs.read_metrics(ROOT / model / runs.METRICS), ndigits=None)


def mflop(model: str) -> float | None:
    try:
        config, _ = read_configs(ROOT / model)
        return runs.model_size(ModelConfig.from_dict(config["model"]))[1]
    except (CheckpointError, KeyError, ValueError, TypeError):
        return None


def landing(model: str, panel: str) -> dict | None:
    """The stored measurement of `panel` at the Denoising page's landing settings for a shipped model."""
    try:
        config, meta = read_configs(ROOT / model)
    except CheckpointError:
        return None

    class _Ck:                                    # what evidence_params reads of a checkpoint
        recommended = SampleConfig.from_dict(config["recommended"])
        schedule_config = ScheduleConfig.from_dict(config["schedule"])
        sha256 = meta.get("sha256", {}).get("weights.safetensors", "")

    entry = evidence.lookup(ROOT / model, panel, **export.evidence_params(panel, _Ck))
    return entry["result"] if entry else None


def forward_curve(kind: str = "cosine") -> dict | None:
    entry = evidence.lookup(ROOT / "judge", "forward_recognisability",
                            **export.evidence_params("forward_recognisability", schedule=kind, judge_path=ROOT / "judge"))
    return entry["result"] if entry else None


def pct(x: float | None) -> str:
    return "?" if x is None else f"{100 * x:.1f} %"


def abstained(r: dict) -> str:
    """', N % of which the judge calls "not a digit"' when the report counts any."""
    v = r.get("not_a_digit")
    return f" (the judge calls {pct(v)} of them \"not a digit\")" if v else ""


def ratio(r: dict) -> str:
    v = r.get("frechet_ratio_to_baseline")
    return "?" if v is None else f"{v:.3g}×"


# -- the notes -------------------------------------------------------------------------------------------------
def bucket_sentence(model: str = "default") -> str:
    """Which noise levels the eps-prediction error is largest at, from the shipped measurement."""
    b = landing(model, "bucket_loss")
    if b is None:
        return MISSING
    mse = b["mse"]
    hi = max(range(len(mse)), key=mse.__getitem__)
    lo = min(range(len(mse)), key=mse.__getitem__)
    where = lambda i: f"{100 * b['buckets'][i][0]:.0f}–{100 * b['buckets'][i][1]:.0f} % noise"   # noqa: E731
    side = "low" if hi < len(mse) / 2 else "high"
    return (f"On {b['n_images']} held-out digits the shipped model's unweighted ε-error is largest at "
            f"**{where(hi)}** (MSE {mse[hi]:.4f}) and smallest at **{where(lo)}** ({mse[lo]:.4f}): with "
            f"ε-prediction the **{side}-noise** steps are the hard ones"
            + (" — at low noise the little noise in x_t is hard to tell from the strokes, at high noise x_t is "
               "almost ε itself." if side == "low" else "."))


def loss_gap(model: str, ref: str = "default") -> str:
    """'within 5 % of' / '40 % above' / '78x below' the reference's final loss, computed."""
    a, b = final_loss(model), final_loss(ref)
    if a is None or b is None:
        return "?"
    if a < b / 2:
        return f"{b / a:.0f}× below"
    rel = (a - b) / b
    return f"within {abs(rel):.0%} of" if abs(rel) < 0.1 else f"{abs(rel):.0%} {'above' if rel > 0 else 'below'}"


def budget(model: str) -> str:
    """'0.20 M parameters, 96,000 images' of a shipped model, from its files."""
    try:
        config, meta = read_configs(ROOT / model)
        params, _ = runs.model_size(ModelConfig.from_dict(config["model"]))
        return f"{params / 1e6:.2f} M parameters, {int(meta.get('images_seen', 0)):,} training images"
    except (CheckpointError, KeyError, ValueError, TypeError):
        return "?"


def one_step_sentence() -> str:
    r, loss, ref = report("one-step"), final_loss("one-step"), final_loss("default")
    if not r or loss is None:
        return "A T = 1 model (`one-step` preset) is not shipped yet; train one on the Training page to see it."
    return (f"The shipped T = 1 model (`checkpoints/one-step`: {budget('one-step')}, against the default's "
            f"{budget('default')}) ends training at loss **{loss:.2g}**, {loss_gap('one-step')} the default's "
            f"({ref:.2g}), yet the judge reads only **{pct(r.get('accuracy'))}** of its samples as the "
            "digit asked for: with one step, x_1 is almost pure noise, predicting that noise is trivial (a low "
            "loss), and turning noise into a digit in one jump is not learned. A low loss is not good samples.")


def note_1_1() -> str:
    s = NoiseSchedule(ScheduleConfig())
    a, b = s.signal_noise_coefficients(s.T - 1)
    return ("x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε is a closed form: any noise level is reached in one draw. The strip shows "
            f"the signal coefficient √ᾱ_t falling from 1 to **{a:.1e}** at t = {s.T - 1} (noise coefficient "
            f"{b:.4f}), while the histogram of x_t approaches N(0, 1): at 100 % the image keeps no usable "
            "information about x₀.")


def note_1_2() -> str:
    curve = forward_curve()
    end = ""
    if curve is not None:
        end = (f" Misconception: \"under noise the model still knows the image\". Noise destroys information: on "
               f"noised real digits the judge's accuracy falls from **{pct(curve['overall'][0])}** to "
               f"**{pct(curve['overall'][-1])}** at 100 % noise, where it answers \"not a digit\" for "
               f"**{pct(curve['not_a_digit'][-1])}** of them (Forward page, recognisability). The model does not "
               "recover *that* digit; it has learned the distribution and draws *a* plausible one.")
    return ("Each reverse step then only has to undo a little noise, which a network can learn (the posterior of "
            "one small step is nearly Gaussian). " + one_step_sentence() + " " + bucket_sentence() + end)


def note_1_3() -> str:
    curve = landing("default", "reverse_recognisability")
    if curve is None:
        return MISSING
    from engine.metrics import first_recognised

    x0 = {c: d for c, d in first_recognised(curve["done"], curve["x0_pred"]["accuracy"]).items() if d is not None}
    xt = {c: d for c, d in first_recognised(curve["done"], curve["x_t"]["accuracy"]).items() if d is not None}
    if not x0 or not xt:
        return MISSING
    e, l_ = min(x0, key=x0.get), max(x0, key=x0.get)
    return (f"Measured on {export.CURVE_PER_CLASS} seeds per class (the curves on the page): the judge reads ≥ 90 % of x̂₀ right from "
            f"**{100 * x0[e]:.0f} %** of denoising (digit {e}) to **{100 * x0[l_]:.0f} %** (digit {l_}), and x_t only "
            f"from {100 * min(xt.values()):.0f}–{100 * max(xt.values()):.0f} %. Misconception: \"I recognise it "
            "around 60 %\" — measure it rather than eyeball one seed: x̂₀ becomes readable much earlier than x_t, "
            "and the moment differs by digit.")


def note_2_1() -> str:
    d, c = report("default"), report("ablations/plain-cnn")
    return ("Downsampling gives every output pixel a view of the whole 28×28 digit at low cost (a 7×7 level is 16× "
            "cheaper per channel than 28×28), while the decoder restores full resolution and the output has the "
            "input's shape, as ε̂ must. Misconception: the encoder–decoder's features are \"unavailable in other "
            f"architectures\" — the gift is multi-scale context per FLOP: the plain-CNN ablation spends about the "
            f"same compute ({mflop('ablations/plain-cnn') or 0:.0f} MFLOP per image vs the U-Net's "
            f"{mflop('default') or 0:.0f}) at full resolution and reaches **{pct(c.get('accuracy'))}** judge accuracy "
            f"and **{ratio(c)}** the real Fréchet distance (default: {pct(d.get('accuracy'))}, {ratio(d)}).")


def note_2_2() -> str:
    d, n = report("default"), report("ablations/no-skip")
    ln, ld = final_loss("ablations/no-skip"), final_loss("default")
    loss = f"a final loss of {ln:.4f} vs {ld:.4f}" if ln and ld else "its loss"
    return ("Skips concatenate each encoder level's features to the decoder at the same resolution, so fine detail "
            "lost by downsampling is available when predicting noise pixel by pixel. The no-skip ablation (same "
            f"budget) ends with {loss}, and its samples reach **{pct(n.get('accuracy'))}** judge accuracy and "
            f"**{ratio(n)}** the real Fréchet distance (default {pct(d.get('accuracy'))}, {ratio(d)}).")


def note_2_3() -> str:
    try:
        config, _ = read_configs(ROOT / "default")
        rec = SampleConfig.from_dict(config["recommended"])
        p = config["train"]["p_uncond"]
    except (CheckpointError, KeyError, ValueError):
        return MISSING
    on, off = report("default"), json.loads((ROOT / "default/reports/guidance_0.json").read_text()) \
        if (ROOT / "default/reports/guidance_0.json").exists() else {}
    return ("The class embedding is added to the time embedding and modulates every residual block (scale and "
            f"shift). During training {p:.0%} of labels are replaced by the null class ∅ (the context mask), so the "
            "same network also learns ε(x_t, ∅). Misconception: the mask decides \"how much the model follows the "
            "class\" — it only makes the unconditional model exist; *how much* to follow the class is the guidance "
            f"weight w, chosen at sampling time: (1 + w)·ε(x_t, y) − w·ε(x_t, ∅). The shipped model uses w = "
            f"{rec.guidance:g} while t/T ≥ {rec.guidance_interval[0]:g}: judge accuracy **{pct(on.get('accuracy'))}**"
            f", against **{pct(off.get('accuracy'))}** with w = 0 (the class × w grid on the Denoising page).")


def note_3_1() -> str:
    t = report("ablations/no-time")
    lt, ld = final_loss("ablations/no-time"), final_loss("default")
    nt = (f" The no-time ablation trains to a loss {loss_gap('ablations/no-time')} the default's ({lt:.4f} vs "
          f"{ld:.4f}), and its samples reach "
          f"**{pct(t.get('accuracy'))}** judge accuracy and **{ratio(t)}** the real Fréchet distance."
          if lt and ld else "")
    return ("The loss is the noise-prediction error averaged over timesteps (Min-SNR weighted). Misconception: "
            "\"a lower loss means sharper images\" — loss and quality are related but not the same. "
            + one_step_sentence() + nt + " " + bucket_sentence())


@lru_cache(maxsize=4)
def snapshot_accuracy(model: str = "default") -> list[tuple[int, float]]:
    """(step, judge accuracy) of the fixed-seed snapshots a run saved, read as the Training page reads them."""
    from engine.judge import load_judge

    return [(j["step"], j["accuracy"]) for j in runs.judge_snapshots(load_judge(), runs.load_snapshots(ROOT / model))]


def note_3_2() -> str:
    acc = snapshot_accuracy()
    if len(acc) < 2:
        return MISSING
    (s0, a0), (s1, a1) = acc[0], acc[-1]
    best = max(acc, key=lambda r: r[1])
    return ("Scrub the fixed-seed film (same noise, same classes at every snapshot): shapes become strokes, then "
            f"digits of the right class. The judge reads **{pct(a0)}** of the 20 film digits right at step {s0} and "
            f"**{pct(a1)}** at step {s1} (best {pct(best[1])} at step {best[0]}); 20 digits are a coarse measure, "
            "the evaluation's 1,000 samples are on the runs table.")


def note_3_3() -> str:
    t, d = report("ablations/no-time"), report("default")
    lt, ld = final_loss("ablations/no-time"), final_loss("default")
    return ("The same x_t can be a slightly noisy digit or a very noisy one; t tells the network how much noise to "
            "remove (compare right and wrong t on the page: the MSE under each image). The no-time ablation (same "
            f"budget) trains to a loss {loss_gap('ablations/no-time')} the default's ({lt:.4f} vs {ld:.4f}), and "
            f"samples at **{pct(t.get('accuracy'))}** judge "
            f"accuracy{abstained(t)} and **{ratio(t)}** the real Fréchet distance (default {pct(d.get('accuracy'))}): a low loss "
            "is not good sampling." if lt and ld else MISSING)


def note_5_2() -> str:
    rows = landing("default", "sampler_speed")
    m = report("default").get("memorisation", {})
    mem = (f" Memorisation: {pct(m.get('fraction_closer_than_threshold'))} of 1,000 samples are closer to a "
           f"training digit than {1 - m['quantile']:.0%} of held-out digits are (~{m['quantile']:.0%} expected)."
           if "quantile" in m else "")
    if not rows:
        return MISSING + mem
    from .figures import sampler_label

    slow = max(rows, key=lambda r: r["seconds"])
    quick = min(rows, key=lambda r: r["seconds"])
    return (f"Sampling cost grows with the number of network calls: {sampler_label(slow['sampler'])}-{slow['steps']} "
            f"took **{slow['seconds']:.1f} s** for {slow['n']} digits and "
            f"{sampler_label(quick['sampler'])}-{quick['steps']} "
            f"**{quick['seconds']:.2f} s** (speed chart on the Denoising page, measured on this project's CPU), at "
            f"judge accuracy {pct(slow.get('judge_accuracy'))} vs {pct(quick.get('judge_accuracy'))}." + mem
            + " Only 28×28 grey digits, 4,000 training images. Misconception: without labelled data the model "
            "\"could not do class conditioning\" — the null class lets the same model sample without a label; "
            "labels buy control (see 2.3's accuracy with and without guidance).")


def note_b2() -> str:
    d, p = report("default"), report("ablations/deep")
    return ("The runs table lists the shipped variants side by side. The `deep` variant (two residual blocks per "
            f"level, {mflop('ablations/deep') or 0:.0f} vs {mflop('default') or 0:.0f} MFLOP per image), trained with "
            f"the default's budget, reaches **{pct(p.get('accuracy'))}** judge accuracy and {ratio(p)} Fréchet "
            f"(default {pct(d.get('accuracy'))}, {ratio(d)})" + deep_verdict(p, d))


def deep_verdict(p: dict, d: dict) -> str:
    """Whether the extra compute bought better samples, as far as 1,000 samples each can say."""
    try:
        da = p["accuracy"] - d["accuracy"]
        n = min(p["n_samples"], d["n_samples"])
    except (KeyError, TypeError):
        return "."
    se = ((p["accuracy"] * (1 - p["accuracy"]) + d["accuracy"] * (1 - d["accuracy"])) / n) ** 0.5
    if abs(da) <= 2 * se:
        return (f": a difference of {100 * da:+.1f} points, within what {n:,} samples each can resolve "
                f"(±{200 * se:.1f}); the extra compute per step bought no measurable gain at this budget.")
    return f": {100 * da:+.1f} points, {'better' if da > 0 else 'worse'} beyond sampling noise (±{200 * se:.1f})."


def note_b4() -> str:
    s = report("style").get("style", {})
    if not s:
        return MISSING
    return ("Open the Style tab: the model was trained with each digit's measured thickness and slant as extra "
            f"conditions; on a grid of requests the measured style follows the requested one with rank correlation "
            f"**{s['thickness_spearman']}** (thickness) and **{s['slant_spearman']}** (slant), and the judge reads "
            f"{pct(s.get('judge_accuracy'))} of those digits as the class asked for.")


GEOMETRY = {          # what the Geometry lab (train two moons: a few seconds) adds to a prompt, said of its panels
    "1.1": "On the [Geometry lab](/geometry?data=moons&t=0.5) the same closed form acts on 2-D points: the "
           "\"Noising the data\" panel's t slider takes two moons to a round Gaussian cloud at t = 1.",
    "1.2": "The [Geometry lab](/geometry?data=moons&t=0.2) draws, beside the noised points, the field the model "
           "learned at that noise level as arrows: move t and compare what a small and a large step would have "
           "to undo.",
    "1.3": "The [Geometry lab](/geometry?data=moons&sampler=ddim&n=50) draws every particle's path from noise to "
           "data; its \"Few steps vs many\" panel measures the fit at each number of steps.",
}


def note_5_3() -> str:
    """Flow matching, measured beside DDPM on models that differ only in their objective (Denoising page)."""
    flow, twin = report("flow"), report("fast")
    if not flow or not twin:
        return ("Argue from the runs table: width/depth vs time and judge accuracy (B2), the sampler speed/quality "
                "chart (fewer steps), and the memorisation check (more data or augmentation).")
    teacher = ROOT / "distilled" / "reports"
    few = {}
    for n in (4, 8):
        try:
            few[n] = (json.loads((ROOT / "flow" / "reports" / f"euler-{n}.json").read_text()),
                      json.loads((teacher / f"teacher_ddim-{n}.json").read_text()))
        except (OSError, ValueError):
            pass
    steps = "".join(f" At {n} steps: flow {ratio(f)}, DDPM {ratio(d)} ({pct(f.get('accuracy'))} vs "
                    f"{pct(d.get('accuracy'))} judge accuracy)." for n, (f, d) in few.items())
    return ("Argue from measurements: the runs table (width/depth vs time and judge accuracy, B2), the sampler "
            "speed/quality chart and the distilled student (fewer steps), the memorisation check (more data). "
            "One change measured here: the training objective. The shipped `flow` model is the `fast` U-Net "
            "trained with flow matching on the same data for the same 12,000 steps (Denoising page, \"Flow "
            f"matching beside DDPM\"): at 25 Euler steps it reads **{pct(flow.get('accuracy'))}** and "
            f"{ratio(flow)} Fréchet, against {pct(twin.get('accuracy'))} and {ratio(twin)} for the DDPM model at "
            f"DDIM-25.{steps} The Geometry lab trains both objectives on 2-D points in seconds.")


def _with_geometry(number: str, fn: Callable[[], str]) -> Callable[[], str]:
    return lambda: fn() + " " + GEOMETRY[number]


NOTES: dict[str, Callable[[], str]] = {
    "1.1": _with_geometry("1.1", note_1_1), "1.2": _with_geometry("1.2", note_1_2),
    "1.3": _with_geometry("1.3", note_1_3), "2.1": note_2_1, "2.2": note_2_2, "2.3": note_2_3,
    "3.1": note_3_1, "3.2": note_3_2, "3.3": note_3_3, "5.2": note_5_2, "5.3": note_5_3, "B2": note_b2,
    "B4": note_b4,
}
try:                                              # the CLIP page's notes live beside its evidence
    from .notes_clip import NOTES as _CLIP_NOTES
    NOTES.update(_CLIP_NOTES)
except ImportError:
    pass


def note(number: str) -> str | None:
    fn = NOTES.get(number)
    if fn is None:
        return None
    try:
        return fn()
    except (OSError, ValueError, KeyError, TypeError, ArithmeticError) as e:
        return f"{MISSING} ({type(e).__name__})"
