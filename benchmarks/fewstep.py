"""Few-step sampling: the fastest way the shipped models draw 100 guided digits at the quality bar.

The bar (issue 21): judge accuracy >= 99 % and Fréchet distance <= 2x the real-vs-real baseline. Quality is read on
1,000 digits (100 per class, seeds 0..: `engine evaluate`'s protocol, whose Fréchet needs that many), speed on 100
(10 per class), the figure every sampling row of the bench reports. Candidates: the `fast` model with the multistep
solvers of the sampler registry at few steps, the distilled student at its recorded steps (one network call
per step, guidance baked in), and the `flow` model (the same network trained by flow matching) with Euler, UniPC
and Heun. Every candidate is reported; the winner is the fastest that meets the bar.
"""
from __future__ import annotations

from pathlib import Path

import torch

from engine.checkpoints import load_checkpoint
from engine.data import load as load_data
from engine.metrics import quality_report
from engine.sampling import class_labels, sample
from engine.schedule import NoiseSchedule

from .sampling import judge_or_none
from .timing import median_time

ROOT = Path(__file__).resolve().parent.parent
MIN_ACCURACY, MAX_FRECHET_RATIO = 0.99, 2.0
SOLVER_STEPS = (5, 6, 8, 10)
HEUN_STEPS = (3, 4, 5)             # 5, 7 and 9 network calls per digit (two per step, one on the last)


def candidates(root: Path = ROOT) -> list[tuple[Path, str, int]]:
    """(checkpoint folder, sampler, steps) to try, cheapest first within each model."""
    out = []
    distilled = root / "checkpoints" / "distilled"
    if (distilled / "weights.safetensors").exists():
        rec = load_checkpoint(distilled).recommended
        out.append((distilled, rec.sampler, rec.steps))
    fast = root / "checkpoints" / "fast"
    if (fast / "weights.safetensors").exists():
        out += [(fast, sampler, steps) for sampler in ("unipc", "dpmpp-2m") for steps in SOLVER_STEPS]
    flow = root / "checkpoints" / "flow"             # the same network trained by flow matching
    if (flow / "weights.safetensors").exists():
        out += [(flow, sampler, steps) for sampler in ("euler", "unipc") for steps in SOLVER_STEPS]
        out += [(flow, "heun", steps) for steps in HEUN_STEPS]
    return out


def measure(path: Path, sampler: str, steps: int, judge, data, repeats: int,
            device: str | torch.device = "cpu") -> dict:
    """Seconds for 100 digits (median of `repeats` after a warm-up) and the quality of 1,000, at the checkpoint's
    recommended guidance with `sampler` and `steps`."""
    ck = load_checkpoint(path, device)
    cfg = ck.recommended.replace(sampler=sampler, steps=min(steps, ck.schedule_config.T))
    schedule = NoiseSchedule(ck.schedule_config)
    labels = class_labels(10).to(device)
    seconds = median_time(lambda: sample(ck.model, schedule, labels, cfg), repeats, device=device)
    many = class_labels(100)
    x = sample(ck.model, schedule, many.to(device), cfg).cpu()
    (train, held) = data
    q = quality_report(judge, x, many, train.images, train.labels, held.images, held.labels)
    return {"model": path.name, "sampler": sampler, "steps": cfg.steps, "guidance": cfg.guidance,
            "seconds_100": round(seconds, 4), "judge_accuracy": q["accuracy"],
            "frechet_ratio": q["frechet_ratio_to_baseline"],
            "meets_bar": q["accuracy"] >= MIN_ACCURACY and q["frechet_ratio_to_baseline"] <= MAX_FRECHET_RATIO}


def fewstep_sampling(quick: bool, log=print, device: str | torch.device = "cpu", root: Path = ROOT) -> dict:
    """The `sample_100_fewstep_*` figures: the fastest candidate that meets the bar (None-valued if none does),
    with its model, sampler and steps, and every candidate's row under `fewstep_candidates`."""
    judge = judge_or_none()
    todo = candidates(root)
    if judge is None or not todo:
        log("few-step figures skipped (no judge or no shipped fast/distilled model)")
        return {}
    data = load_data("mnist-5k")
    rows = []
    for path, sampler, steps in todo:
        row = measure(path, sampler, steps, judge, data, 3 if quick else 7, device)
        rows.append(row)
        log(f"few-step: {row['model']} {row['sampler']}-{row['steps']}: {row['seconds_100']:.3f} s per 100 digits, "
            f"judge {row['judge_accuracy']:.1%}, Fréchet {row['frechet_ratio']:.2f}x"
            + (" (meets the bar)" if row["meets_bar"] else ""))
    good = [r for r in rows if r["meets_bar"]]
    best = min(good, key=lambda r: r["seconds_100"]) if good else None
    res = {"fewstep_bar": f"judge accuracy >= {MIN_ACCURACY:.0%}, Fréchet <= {MAX_FRECHET_RATIO:g}x real (1,000 "
                          "digits); seconds for 100", "fewstep_candidates": rows,
           "sample_100_fewstep_s": best and best["seconds_100"],
           "sample_100_fewstep_judge_accuracy": best and best["judge_accuracy"],
           "sample_100_fewstep_frechet_ratio": best and best["frechet_ratio"],
           "sample_fewstep_model": best and best["model"], "sample_fewstep_sampler": best and best["sampler"],
           "sample_fewstep_steps": best and best["steps"]}
    log("few-step winner: " + (f"{best['model']} {best['sampler']}-{best['steps']}, {best['seconds_100']:.3f} s"
                               if best else "none meets the bar"))
    return res
