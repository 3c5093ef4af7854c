"""Commands that draw from a trained model: `sample` (.npz), `evaluate` (quality report), `clip-rank`
(CLIP-ranked selection) and `apply` (inpaint / edit / upscale / interpolate a held-out digit)."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from .common import (COMPILE_HELP, add_guidance_interval_flag, add_sampler_flag, command_line, maybe_compile,
                     output_file, sample_config, set_threads)

MASKS = ("left", "right", "top", "bottom", "centre", "random")
DEFAULT_JUDGE = str(Path(__file__).resolve().parents[2] / "checkpoints" / "judge")


# -- sample ----------------------------------------------------------------------------------------------------------

def add_sample(sub) -> None:
    s = sub.add_parser("sample", help="write samples as .npz: images (N,28,28) uint8, labels (N,) int64")
    s.add_argument("--checkpoint", default="checkpoints/default")
    s.add_argument("--per-class", type=int, default=10)
    s.add_argument("--guidance", type=float, help="default: the checkpoint's recommended value")
    add_guidance_interval_flag(s)
    add_sampler_flag(s)
    s.add_argument("--steps", type=int)
    s.add_argument("--eta", type=float)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--batch", type=int, default=250, help="images per forward batch")
    s.add_argument("--out", default="samples.npz")
    s.add_argument("--device", default="auto")
    s.add_argument("--compile", action="store_true", help=COMPILE_HELP)
    s.add_argument("--threads", type=int)
    s.set_defaults(func=cmd_sample)


def cmd_sample(a: argparse.Namespace) -> int:
    import torch

    from ..checkpoints import load_checkpoint, write_file_atomic
    from ..devices import pick_device
    from ..sampling import class_labels, sample, to_uint8
    from ..schedule import NoiseSchedule

    set_threads(a.threads)
    out = output_file(a.out)
    ck = load_checkpoint(a.checkpoint, pick_device(a.device))
    cfg = sample_config(ck, a)
    maybe_compile(ck, a)
    labels = class_labels(a.per_class)
    schedule = NoiseSchedule(ck.schedule_config)
    t0 = time.perf_counter()
    images = []
    for i in range(0, len(labels), a.batch):
        seeds = [cfg.seed + j for j in range(i, min(i + a.batch, len(labels)))]    # image j has seed seed + j
        images.append(to_uint8(sample(ck.model, schedule, labels[i:i + a.batch], cfg, seeds=seeds).cpu()))
    dt = time.perf_counter() - t0
    imgs = torch.cat(images).numpy()
    write_file_atomic(out, lambda f: np.savez(f, images=imgs.astype(np.uint8),
                                              labels=labels.numpy().astype(np.int64)))
    print(f"wrote {len(imgs)} samples ({cfg.sampler}, {cfg.steps} steps, guidance {cfg.guidance}) to {out} "
          f"in {dt:.1f} s ({len(imgs) / dt:.1f} samples/s)")
    return 0


# -- evaluate --------------------------------------------------------------------------------------------------------

def add_evaluate(sub) -> None:
    e = sub.add_parser("evaluate", help="judge accuracy, Frechet distance, diversity, memorisation of samples")
    e.add_argument("--checkpoint", default="checkpoints/default")
    e.add_argument("--per-class", type=int, default=100)
    e.add_argument("--guidance", type=float)
    add_guidance_interval_flag(e)
    add_sampler_flag(e)
    e.add_argument("--steps", type=int)
    e.add_argument("--eta", type=float)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--judge", default=DEFAULT_JUDGE)
    e.add_argument("--no-cache", action="store_true")
    e.add_argument("--out", help="write the full report as JSON")
    e.add_argument("--device", default="auto")
    e.add_argument("--compile", action="store_true", help=COMPILE_HELP)
    e.add_argument("--threads", type=int)
    e.set_defaults(func=cmd_evaluate)


def cmd_evaluate(a: argparse.Namespace) -> int:
    import torch

    from ..cache import SampleCache
    from ..checkpoints import load_checkpoint, write_json_atomic
    from ..data import load as load_data
    from ..devices import pick_device
    from ..judge import abstention_report, load_judge
    from ..metrics import quality_report
    from ..sampling import class_labels, sample_cached

    set_threads(a.threads)
    out = output_file(a.out) if a.out else None
    ck = load_checkpoint(a.checkpoint, pick_device(a.device))
    cfg = sample_config(ck, a)
    judge = load_judge(a.judge)
    cache = None if a.no_cache else SampleCache()
    maybe_compile(ck, a)
    train, held = load_data(ck.train_config.dataset if ck.train_config else "mnist-5k")
    labels = class_labels(a.per_class)
    t0 = time.perf_counter()
    misses = cache.misses if cache else 0
    samples = sample_cached(ck, labels, cfg, cache=cache)
    dt = time.perf_counter() - t0
    computed = cache is None or cache.misses > misses
    report = quality_report(judge, samples, labels, train.images, train.labels, held.images, held.labels)
    report["judge_abstention"] = abstention_report(judge, held.images, held.labels)
    report.update(checkpoint=str(a.checkpoint), checkpoint_sha256=ck.sha256, step=ck.step, n_samples=len(labels),
                  sample_config=cfg.to_dict(), samples_per_s=round(len(labels) / dt, 2) if computed else None,
                  from_cache=not computed, sampling_seconds=round(dt, 2) if computed else None,
                  device=str(next(ck.model.parameters()).device), threads=torch.get_num_threads(),
                  command=command_line())
    _print_quality(a.checkpoint, ck.step, cfg, report, computed)
    if out:
        write_json_atomic(out, report)
        print(f"  report written to {a.out}")
    return 0


def _print_quality(checkpoint: str, step: int, cfg, report: dict, computed: bool) -> None:
    pc = report["per_class_accuracy"]
    m = report["memorisation"]
    n = report["n_samples"]
    print(f"checkpoint {checkpoint} (step {step}), {n} samples: {cfg.sampler}-{cfg.steps}, "
          f"guidance {cfg.guidance}, seed {cfg.seed}" + (" [from cache]" if not computed else
                                                          f", {report['samples_per_s']} samples/s"))
    print(f"  judge accuracy      {report['accuracy']:.2%}   mean true-class confidence {report['confidence']:.3f}   "
          f"'not a digit' {report.get('not_a_digit', 0):.1%}")
    print("  per class           " + "  ".join(f"{c}:{v:.0%}" for c, v in pc.items()))
    print(f"  Frechet distance    {report['frechet_distance']:.2f}   real-vs-real baseline "
          f"{report['frechet_baseline_train_vs_heldout']:.2f} ({n} train digits vs the held-out set)   "
          f"ratio {report['frechet_ratio_to_baseline']:.2f}x")
    print(f"  diversity           {report['diversity_mean']:.2f} of real digits' within-class spread")
    print(f"  memorisation        {m['fraction_closer_than_threshold']:.1%} of samples closer to a training digit "
          f"than {1 - m['quantile']:.0%} of held-out digits are (expected ~{m['quantile']:.0%})")
    j = report.get("judge_abstention")
    if j:
        note = "" if j["threshold"] is not None else " (this judge has no 'not a digit' calibration)"
        print(f"  the judge itself    says 'not a digit' for {j['noise_abstained']:.1%} of {j['noise_n']} pure-noise "
              f"images (largest digit class {j['noise_max_class_share']:.1%}); held-out real digits "
              f"{j['heldout_accuracy']:.2%} correct{note}")


# -- clip-rank -------------------------------------------------------------------------------------------------------

def add_clip_rank(sub) -> None:
    r = sub.add_parser("clip-rank", help="generate K per class, score with digit-CLIP, keep the top N; ranks.json")
    r.add_argument("--checkpoint", default="checkpoints/default")
    r.add_argument("--per-class", type=int, default=10)
    r.add_argument("--keep", type=int, default=3)
    r.add_argument("--guidance", type=float)
    add_guidance_interval_flag(r)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--clip", help="digit-CLIP folder (default: checkpoints/digit_clip)")
    r.add_argument("--out", default="ranks.json")
    r.add_argument("--threads", type=int)
    r.set_defaults(func=cmd_clip_rank)


def cmd_clip_rank(a: argparse.Namespace) -> int:
    from ..cache import SampleCache
    from ..checkpoints import load_checkpoint, write_json_atomic
    from ..clip_eval import load_digit_clip, rank_report
    from ..judge import load_judge
    from ..sampling import class_labels, sample_cached

    set_threads(a.threads)
    out = output_file(a.out)
    ck = load_checkpoint(a.checkpoint)
    cfg = sample_config(ck, a)
    labels = class_labels(a.per_class)
    seeds = [cfg.seed + i for i in range(len(labels))]
    t0 = time.perf_counter()
    images = sample_cached(ck, labels, cfg, seeds=seeds, cache=SampleCache())
    scorer = load_digit_clip(a.clip) if a.clip else load_digit_clip()
    records = rank_report(scorer, load_judge(), images, labels, seeds, a.keep)
    write_json_atomic(out, records)
    kept = [r for r in records if r["kept"]]

    def mean(rows: list[dict], key: str) -> float:
        return float(np.mean([r[key] for r in rows]))

    print(f"scored {len(records)} digits with {scorer.name} in {time.perf_counter() - t0:.1f} s; kept {len(kept)} "
          f"(top {a.keep} per class): mean CLIPScore kept {mean(kept, 'clip_score'):.3f} vs all "
          f"{mean(records, 'clip_score'):.3f}; judge confidence kept {mean(kept, 'judge_confidence'):.3f} vs all "
          f"{mean(records, 'judge_confidence'):.3f} -> {a.out}")
    return 0


# -- apply -----------------------------------------------------------------------------------------------------------

def add_apply(sub) -> None:
    ap = sub.add_parser("apply", help="inpaint / edit / upscale / interpolate a held-out digit; writes a PNG strip")
    ap.add_argument("task", choices=["inpaint", "edit", "upscale", "interpolate"])
    ap.add_argument("--checkpoint", default="checkpoints/default")
    ap.add_argument("--digit", type=int, default=3, help="class of the held-out input digit")
    ap.add_argument("--index", type=int, default=0, help="which held-out digit of that class")
    ap.add_argument("--label", type=int, help="target class (default: the input's class)")
    ap.add_argument("--mask", default="right", choices=MASKS, help="inpainting mask")
    ap.add_argument("--resample", type=int, default=1)
    ap.add_argument("--strength", type=float, default=0.5, help="SDEdit strength in [0, 1]")
    ap.add_argument("--factor", type=int, default=4, choices=[2, 4], help="upscaling from 28/factor")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--guidance", type=float)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="apply.png")
    ap.set_defaults(func=cmd_apply)


def cmd_apply(a: argparse.Namespace) -> int:
    import torch
    from PIL import Image

    from .. import applications as apps
    from ..checkpoints import load_checkpoint, write_file_atomic
    from ..data import load as load_data
    from ..sampling import to_uint8
    from ..schedule import NoiseSchedule

    out, image_format = _image_output(a.out)
    ck = load_checkpoint(a.checkpoint)
    s = NoiseSchedule(ck.schedule_config)
    cfg = sample_config(ck, a)
    _, held = load_data("mnist-5k")
    _check_apply(a, ck.model_config.num_classes, len(held.of_class(a.digit)) if 0 <= a.digit <= 9 else 0)
    x = held.of_class(a.digit)[a.index:a.index + 1]                     # (1, 1, 28, 28)
    label = a.label if a.label is not None else a.digit
    t0 = time.perf_counter()
    if a.task == "inpaint":
        result = apps.inpaint(ck.model, s, x, apps.make_mask(a.mask, a.seed), label, cfg, a.seed, a.resample)
    elif a.task == "edit":
        result = apps.sdedit(ck.model, s, x, label, a.strength, cfg, a.seed)
    elif a.task == "upscale":
        result = apps.upscale(ck.model, s, apps.downsample(x, a.factor), label, cfg, a.seed)
    else:
        result = apps.interpolate_classes(ck.model, s, a.digit, label, 8, cfg, a.seed)
    dt = time.perf_counter() - t0
    strip = torch.cat([x, result]) if a.task != "interpolate" else result
    img = to_uint8(strip).permute(1, 0, 2).reshape(28, -1).numpy()     # (28, 28 * n): the images side by side
    picture = Image.fromarray(img).resize((img.shape[1] * 4, 112), Image.NEAREST)
    write_file_atomic(out, lambda f: picture.save(f, format=image_format))
    print(f"{a.task}: {dt:.1f} s -> {out} (" + ("input, then output" if a.task != "interpolate" else
                                                f"{a.digit} to {label}") + ")")
    return 0


def _image_output(raw: str) -> tuple[Path, str]:
    """--out checked (see output_file) and the image format its extension names (.png, .jpg, ...)."""
    from PIL import Image

    out = output_file(raw)
    Image.init()
    image_format = Image.EXTENSION.get(out.suffix.lower())
    if image_format is None:
        raise ValueError(f"--out {out} has no image extension; end it with .png (the strip is written as an image)")
    return out, image_format


def _check_apply(a: argparse.Namespace, num_classes: int, held_of_digit: int) -> None:
    """apply's numbers checked before any sampling: classes the model knows, an existing held-out digit, a
    strength in [0, 1]."""
    from ..config import ConfigError

    if not 0 <= a.digit <= 9:
        raise ConfigError(f"--digit must be a digit class between 0 and 9, got {a.digit}")
    if a.label is not None and not 0 <= a.label < num_classes:
        raise ConfigError(f"--label must be a class this model knows, 0 to {num_classes - 1}; got {a.label}")
    if not 0 <= a.index < held_of_digit:
        raise ConfigError(f"--index must be between 0 and {held_of_digit - 1} (the held-out {a.digit}s), got {a.index}")
    if not 0.0 <= a.strength <= 1.0:
        raise ConfigError(f"--strength must be between 0 and 1, got {a.strength}")
    if a.resample < 1:
        raise ConfigError(f"--resample must be at least 1, got {a.resample}")
