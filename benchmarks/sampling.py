"""Sampling figures: seconds and judge accuracy of 100 guided digits from the shipped models, eager and
torch.compile'd, and the seconds digit-CLIP takes to score 100 digits."""
from __future__ import annotations

from pathlib import Path

import torch

from engine.accel import compile_denoiser, warm_up
from engine.checkpoints import Checkpoint, load_checkpoint
from engine.config import SampleConfig
from engine.data import load as load_data
from engine.judge import load_judge, predict
from engine.metrics import sampling_figures
from engine.sampling import class_labels, sample
from engine.schedule import NoiseSchedule

from .timing import median_time


def judge_or_none():
    """The shipped judge, or None where there is none (then the bench times sampling and skips accuracy)."""
    try:
        return load_judge()
    except Exception:
        return None


def default_model_sampling(ck: Checkpoint, judge, quick: bool, log=print) -> dict:
    """100 guided digits at the checkpoint's recommended guidance: DDIM-10, -25, -50 (and DDPM-T in the full
    bench) through sampling_figures; DDIM-25 guided at every step when the recommendation limits the interval;
    and, in the full bench, DDIM-25 compiled."""
    rec = ck.recommended                     # its guidance weight and interval, as the pages use them
    res: dict = {"sample_guidance": rec.guidance, "sample_guidance_interval": list(rec.guidance_interval)}
    cfgs = [rec.replace(sampler="ddim", steps=s) for s in (10, 25, 50)]
    if not quick:
        cfgs.append(rec.replace(sampler="ddpm", steps=ck.schedule_config.T))
    rows = sampling_figures(ck, judge, cfgs, 10)
    res["sampling"] = rows
    for r in rows:
        res[f"sample_100_{r['sampler']}{r['steps']}_s"] = r["seconds"]
        log(f"sample 100 guided digits {r['sampler'].upper()}-{r['steps']}: {r['seconds']:.2f} s, "
            f"judge accuracy {r.get('judge_accuracy', float('nan')):.1%} (w = {rec.guidance}, guided where "
            f"t/T in [{rec.guidance_interval[0]:g}, {rec.guidance_interval[1]:g}])")
    ddim25 = rec.replace(sampler="ddim", steps=25)
    if rec.guidance_interval != (0.0, 1.0):   # what every-step guidance would cost, for comparison
        (r,) = sampling_figures(ck, judge, [ddim25.replace(guidance_interval=(0.0, 1.0))], 10)
        res["sample_100_ddim25_every_step_s"] = r["seconds"]
        res["sample_100_ddim25_every_step_judge_accuracy"] = r.get("judge_accuracy")
        log(f"sample 100 digits DDIM-25 guided at every step: {r['seconds']:.2f} s, "
            f"judge accuracy {r.get('judge_accuracy', float('nan')):.1%}")
    if not quick:
        res.update(compiled_sampling(ck, judge, ddim25, log))
    return res


def compiled_sampling(checkpoint: Checkpoint, judge, config: SampleConfig, log=print, name: str = "") -> dict:
    """The same 100 guided digits through torch.compile: one-off compile seconds, then the median of 3 runs.

    name: "" for the default model's keys (sample_100_ddim25_compiled_s, ...), "fast" for ..._ddim25_fast_...
    """
    tag = f"_{name}" if name else ""
    labels = class_labels(10)
    schedule = NoiseSchedule(checkpoint.schedule_config)
    model = compile_denoiser(checkpoint.model)
    compile_s = warm_up(model, (100, 200))
    if not model.active:
        log(f"compiled sampling skipped: torch.compile failed ({model.error})")
        return {f"compile{tag}_error": model.error}
    out: dict = {}
    dt = median_time(lambda: out.__setitem__("x", sample(model, schedule, labels, config)), 3, warmup=0,
                     device=next(checkpoint.model.parameters()).device)
    res = {f"compile{tag}_s": round(compile_s, 1), f"sample_100_ddim25{tag}_compiled_s": round(dt, 3)}
    if judge is not None:
        probs, _ = predict(judge, out["x"])
        res[f"sample_100_ddim25{tag}_compiled_judge_accuracy"] = round(
            float((probs.argmax(1) == labels).float().mean()), 4)
    log(f"sample 100 guided digits DDIM-25{' (' + name + ' model)' if name else ''}, torch.compile'd: {dt:.2f} s "
        f"after a {compile_s:.0f} s one-off compile")
    return res


def fast_model_sampling(path: Path, quick: bool, log=print, device: str | torch.device = "cpu") -> dict:
    """The shipped `fast` model (2x2 patch stem, no 28x28 level): 100 guided DDIM-25 digits at its own
    recommendation, timed and judged by sampling_figures like the default's row (after one untimed warm-up run,
    as the default's DDIM-25 row follows its DDIM-10 one), and, in the full bench, compiled."""
    ck = load_checkpoint(path, device)
    judge = judge_or_none()
    rec = ck.recommended.replace(sampler="ddim", steps=25)
    sample(ck.model, NoiseSchedule(ck.schedule_config), class_labels(10), rec)     # warm-up, untimed
    (row,) = sampling_figures(ck, judge, [rec], 10)
    res = {"sample_100_ddim25_fast_s": row["seconds"], "sample_fast_guidance": rec.guidance,
           "sample_fast_guidance_interval": list(rec.guidance_interval)}
    if "judge_accuracy" in row:
        res["sample_100_ddim25_fast_judge_accuracy"] = row["judge_accuracy"]
    log(f"sample 100 guided digits DDIM-25 with the fast model: {row['seconds']:.2f} s, judge accuracy "
        f"{row.get('judge_accuracy', float('nan')):.1%} (w = {rec.guidance}, guided where t/T in "
        f"[{rec.guidance_interval[0]:g}, {rec.guidance_interval[1]:g}])")
    if not quick:
        res.update(compiled_sampling(ck, judge, rec, log, name="fast"))
    return res


def clip_scoring(reps: int, log=print) -> dict:
    """Seconds for the shipped digit-CLIP to score 100 held-out digits against their class prompts ({} if absent)."""
    try:
        from engine.clip_eval import load_digit_clip

        scorer = load_digit_clip()
        _, held = load_data("mnist-5k")
        x, y = held.images[:100], held.labels[:100]
        res = {"clip_score_100_s": round(median_time(lambda: scorer.class_scores(x, y), reps), 3)}
        log(f"digit-CLIP: scoring 100 digits takes {res['clip_score_100_s']} s")
        return res
    except Exception as e:  # no shipped CLIP: say so, measure the rest
        log(f"digit-CLIP figure skipped ({e})")
        return {}
