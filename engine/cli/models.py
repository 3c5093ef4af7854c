"""Commands that make or describe models: `export` (slim shippable copy), `precompute` (samples stored beside a
model), `style-eval` (style compliance into its report), `train-judge`, `train-clip` and `summary`."""
from __future__ import annotations

import argparse
from pathlib import Path

from .common import (DATASETS, add_guidance_interval_flag, add_sampler_flag, command_line, loss_bar,
                     output_file, sampling_overrides, set_threads)


# -- export, precompute, style-eval: a model and the evidence beside it ----------------------------------------------

def add_export(sub) -> None:
    x = sub.add_parser("export", help="slim copy of a checkpoint for shipping (EMA weights only)")
    x.add_argument("--checkpoint", required=True)
    x.add_argument("--out", required=True)
    x.add_argument("--force", action="store_true", help="replace an existing --out")
    x.add_argument("--guidance", type=float, help="recommended guidance to record (default: the run's)")
    add_guidance_interval_flag(x)
    add_sampler_flag(x, help="recommended sampler to record")
    x.add_argument("--steps", type=int, help="recommended sampling steps to record")
    x.set_defaults(func=cmd_export)


def cmd_export(a: argparse.Namespace) -> int:
    from ..export import export_checkpoint

    done = export_checkpoint(a.checkpoint, a.out, sampling_overrides(a), command_line(), overwrite=a.force)
    print(f"exported {Path(a.checkpoint)} (step {done.step}) -> {done.path}: {done.bytes / 2**20:.1f} MB")
    return 0


def add_precompute(sub) -> None:
    pc = sub.add_parser("precompute", help="store the samples and the measurements the pages open with next to a "
                                           "shipped model (its evidence/ folder)")
    pc.add_argument("--checkpoint", default="checkpoints/default")
    pc.add_argument("--panels", nargs="*", metavar="PANEL",
                    help="evidence panels to measure (default: all of bucket_loss, reverse_recognisability, "
                         "guidance_grid, sampler_speed; forward_recognisability goes to the judge's folder); "
                         "give none to store only the samples")
    pc.add_argument("--threads", type=int)
    pc.add_argument("--clip", action="store_true", help="also measure the CLIP evaluation page's panels (ranked batch, "
                                                        "real baseline, spread, guidance sweep, techniques)")
    pc.set_defaults(func=cmd_precompute)


def cmd_precompute(a: argparse.Namespace) -> int:
    from ..export import MODEL_PANELS, precompute_evidence, precompute_samples

    set_threads(a.threads)
    n, seconds, folder = precompute_samples(a.checkpoint)
    print(f"precomputed {n} samples in {seconds:.1f} s -> {folder}")
    panels = MODEL_PANELS if a.panels is None else a.panels
    if panels:
        print(f"measuring evidence for {a.checkpoint}:")
        precompute_evidence(a.checkpoint, command_line(), panels)
    if a.clip:
        from ..clip_evidence import precompute_evidence as precompute_clip_evidence

        print(f"measuring the CLIP page's evidence for {a.checkpoint}:")
        precompute_clip_evidence(a.checkpoint, command_line())
    return 0


def add_style_eval(sub) -> None:
    se = sub.add_parser("style-eval", help="requested vs measured thickness and slant of a style model")
    se.add_argument("--checkpoint", default="checkpoints/style")
    se.add_argument("--seeds", type=int, default=2, help="samples per (digit, style) cell")
    se.add_argument("--steps", type=int)
    se.add_argument("--guidance", type=float)
    se.add_argument("--threads", type=int)
    se.set_defaults(func=cmd_style_eval)


def cmd_style_eval(a: argparse.Namespace) -> int:
    from ..export import evaluate_style

    set_threads(a.threads)
    rep = evaluate_style(a.checkpoint, sampling_overrides(a), seeds=a.seeds, command=command_line())
    print(f"style compliance of {a.checkpoint}: rank correlation thickness {rep['thickness_spearman']}, slant "
          f"{rep['slant_spearman']}; per-bin accuracy {rep['thickness_bin_accuracy']} / {rep['slant_bin_accuracy']}; "
          f"judge accuracy {rep['judge_accuracy']} ({rep['n']} samples, {rep['seconds']} s)")
    return 0


# -- the judge and the digit-CLIP ----------------------------------------------------------------------------------

def add_train_judge(sub) -> None:
    j = sub.add_parser("train-judge", help="train the digit classifier that judges generated samples")
    j.add_argument("--dataset", default="mnist-5k", choices=DATASETS)
    j.add_argument("--epochs", type=int, default=30)
    j.add_argument("--seed", type=int, default=0)
    j.add_argument("--out", default="checkpoints/judge")
    j.add_argument("--threads", type=int)
    j.set_defaults(func=cmd_train_judge)


def cmd_train_judge(a: argparse.Namespace) -> int:
    from ..judge import save_judge, train_judge

    set_threads(a.threads)
    bar, progress = loss_bar(a.epochs, "epoch", every=1)
    judge, report = train_judge(a.dataset, epochs=a.epochs, seed=a.seed, progress=progress)
    bar.close()
    save_judge(judge, a.out, report, command_line())
    print(f"judge: {report['heldout_accuracy']:.2%} on the {report['heldout_n']} held-out digits "
          f"({report['train_seconds']:.0f} s) -> {a.out}")
    print_abstention(report["abstention"])
    return 0


def print_abstention(r: dict) -> None:
    print(f"  not a digit: {r['noise_abstained']:.1%} of {r['noise_n']} pure-noise images (largest share any digit "
          f"class got: {r['noise_max_class_share']:.1%}); held-out real digits {r['heldout_accuracy']:.2%} correct, "
          f"{r['heldout_abstained']:.1%} abstained")


def add_calibrate_judge(sub) -> None:
    c = sub.add_parser("calibrate-judge", help="fit the judge's 'not a digit' test on the training digits and save "
                                               "it beside its weights (the weights stay as they are)")
    c.add_argument("--judge", default="checkpoints/judge")
    c.add_argument("--dataset", default="mnist-5k", choices=DATASETS)
    c.add_argument("--threads", type=int)
    c.set_defaults(func=cmd_calibrate_judge)


def cmd_calibrate_judge(a: argparse.Namespace) -> int:
    from ..judge import calibrate_abstention

    set_threads(a.threads)
    report = calibrate_abstention(a.judge, a.dataset, command=command_line())
    print(f"judge {a.judge}: distance threshold {report['threshold']:.1f}")
    print_abstention(report)
    return 0


def add_judge(sub) -> None:
    j = sub.add_parser("judge", help="read images with the judge: one record per image, pred 0-9 or null for "
                                     "'not a digit', and confidence")
    j.add_argument("images", help=".npz with images (N, 28, 28) uint8, 0 = background, 255 = ink (as `sample` "
                                  "writes them)")
    j.add_argument("--judge", default="checkpoints/judge")
    j.add_argument("--out", required=True, help="JSON file to write")
    j.set_defaults(func=cmd_judge)


def cmd_judge(a: argparse.Namespace) -> int:
    from ..checkpoints import write_json_atomic
    from ..judge import load_judge, read_images_npz, judge_records

    out = output_file(a.out)
    images = read_images_npz(a.images)
    records = judge_records(load_judge(a.judge), images)
    write_json_atomic(out, records)
    abstained = sum(r["pred"] is None for r in records)
    print(f"judged {len(records)} images from {a.images}: {abstained} not a digit -> {a.out}")
    return 0


def add_train_clip(sub) -> None:
    c = sub.add_parser("train-clip", help="train the digit-reading CLIP (open_clip) used for CLIP scores")
    c.add_argument("--steps", type=int, default=3000)
    c.add_argument("--batch-size", type=int, default=256)
    c.add_argument("--lr", type=float, default=1e-3)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--out", default="checkpoints/digit_clip")
    c.add_argument("--threads", type=int)
    c.set_defaults(func=cmd_train_clip)


def cmd_train_clip(a: argparse.Namespace) -> int:
    from ..clip_train import save_digit_clip, train_digit_clip

    set_threads(a.threads)
    bar, progress = loss_bar(a.steps, "step", every=50)
    scorer, report = train_digit_clip(steps=a.steps, batch_size=a.batch_size, lr=a.lr, seed=a.seed, progress=progress)
    bar.close()
    save_digit_clip(scorer, a.out, report, command_line())
    print(f"digit-CLIP: {report.zero_shot_accuracy:.2%} zero-shot on the 1,000 held-out digits, "
          f"{report.style_retrieval_accuracy:.1%} thick/thin retrieval ({report.seconds:.0f} s) -> {a.out}")
    return 0


# -- summary -------------------------------------------------------------------------------------------------------

def add_summary(sub) -> None:
    m = sub.add_parser("summary", help="per-block shapes, parameters and FLOPs of a model")
    m.add_argument("--preset")
    m.add_argument("--checkpoint")
    m.set_defaults(func=cmd_summary)


def cmd_summary(a: argparse.Namespace) -> int:
    from ..config import ModelConfig
    from ..presets import get_preset
    from ..summary import format_summary, model_summary
    from ..unet import build_model

    if a.checkpoint:
        from ..checkpoints import load_checkpoint
        model = load_checkpoint(a.checkpoint).model
    else:
        model = build_model(get_preset(a.preset).model if a.preset else ModelConfig())
    print(format_summary(model_summary(model)))
    return 0
