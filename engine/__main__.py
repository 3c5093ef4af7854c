"""Command line: python -m engine {train,sample,summary,...} --help"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np


def _command_line() -> str:
    return "python -m engine " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _set_threads(n: int | None) -> None:
    import torch

    if n:
        torch.set_num_threads(n)


def cmd_train(a: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from tqdm import tqdm

    from .config import ModelConfig, SampleConfig, ScheduleConfig, TrainConfig
    from .presets import get_preset
    from .training import SNAPSHOTS, TrainingRun, pick_device

    _set_threads(a.threads)
    device = pick_device(a.device)
    out = Path(a.out)
    if a.resume and (out / "weights.safetensors").exists():
        run = TrainingRun.resume(out, device, steps=a.steps, command=_command_line())
        print(f"resuming {out} at step {run.step_count}/{run.train_config.steps}")
    else:
        if out.exists() and any(out.iterdir()) and not a.force:
            print(f"error: {out} already exists; pass --resume to continue it or --force to start over",
                  file=sys.stderr)
            return 2
        if a.config:
            raw = json.loads(Path(a.config).read_text())
            mc, sc = ModelConfig.from_dict(raw.get("model", {})), ScheduleConfig.from_dict(raw.get("schedule", {}))
            tc, rec = TrainConfig.from_dict(raw.get("train", {})), SampleConfig.from_dict(raw.get("recommended", {}))
        else:
            p = get_preset(a.preset)
            mc, sc, tc, rec = p.model, p.schedule, p.train, p.recommended
        overrides = {k: v for k, v in dict(steps=a.steps, batch_size=a.batch_size, lr=a.lr, seed=a.seed,
                                            dataset=a.dataset).items() if v is not None}
        tc = tc.replace(**overrides)
        if out.exists() and a.force:
            import shutil
            shutil.rmtree(out)
        run = TrainingRun(mc, sc, tc, rec, out, device, _command_line(), init_from=a.init_from)
    tc = run.train_config
    from .unet import count_parameters
    print(f"training {count_parameters(run.model) / 1e6:.3f} M params on {device} "
          f"({torch.get_num_threads()} threads), {tc.steps} steps of {tc.batch_size} images -> {out}")
    bar = tqdm(total=tc.steps, initial=run.step_count, unit="step", dynamic_ncols=True)
    t_last, n_last = time.perf_counter(), run.images_seen
    try:
        while not run.done:
            r = run.step()
            bar.update(1)
            if run.step_count % tc.log_every == 0 or run.done:
                now = time.perf_counter()
                ips = (run.images_seen - n_last) / max(now - t_last, 1e-9)
                t_last, n_last = now, run.images_seen
                run.log({"step": run.step_count, "loss": r.loss, "lr": r.lr, "images_per_s": round(ips, 1),
                         "wall_time_s": round(run.wall_time, 2)})
                bar.set_postfix(loss=f"{r.loss:.4f}", img_s=f"{ips:.0f}")
            if a.snapshots and (run.step_count % tc.sample_every == 0 or run.done):
                snap = run.snapshot()
                (out / SNAPSHOTS).mkdir(parents=True, exist_ok=True)
                np.save(out / SNAPSHOTS / f"step-{run.step_count:07d}.npy", snap.numpy())
            if run.step_count % tc.checkpoint_every == 0 or run.done:
                run.save()
    except KeyboardInterrupt:
        bar.close()
        print(f"\ninterrupted at step {run.step_count}; last checkpoint kept. Continue with --resume.")
        return 130
    bar.close()
    print(f"done: {run.step_count} steps in {run.wall_time:.0f} s "
          f"({run.images_seen / max(run.wall_time, 1e-9):.0f} images/s); checkpoint in {out}")
    return 0


def cmd_sample(a: argparse.Namespace) -> int:
    import torch

    from .checkpoints import load_checkpoint
    from .sampling import class_labels, sample, to_uint8
    from .schedule import NoiseSchedule
    from .training import pick_device

    _set_threads(a.threads)
    ck = load_checkpoint(a.checkpoint, pick_device(a.device))
    rec = ck.recommended
    cfg = rec.replace(**{k: v for k, v in dict(guidance=a.guidance, sampler=a.sampler, steps=a.steps,
                                               seed=a.seed, eta=a.eta).items() if v is not None})
    labels = class_labels(a.per_class)
    schedule = NoiseSchedule(ck.schedule_config)
    t0 = time.perf_counter()
    images = []
    for i in range(0, len(labels), a.batch):
        seeds = [cfg.seed + j for j in range(i, min(i + a.batch, len(labels)))]
        images.append(to_uint8(sample(ck.model, schedule, labels[i:i + a.batch], cfg, seeds=seeds).cpu()))
    dt = time.perf_counter() - t0
    imgs = torch.cat(images).numpy()
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, images=imgs.astype(np.uint8), labels=labels.numpy().astype(np.int64))
    print(f"wrote {len(imgs)} samples ({cfg.sampler}, {cfg.steps} steps, guidance {cfg.guidance}) to {out} "
          f"in {dt:.1f} s ({len(imgs) / dt:.1f} samples/s)")
    return 0


def cmd_summary(a: argparse.Namespace) -> int:
    from .config import ModelConfig
    from .presets import get_preset
    from .summary import format_summary, model_summary
    from .unet import build_model

    if a.checkpoint:
        from .checkpoints import load_checkpoint
        model = load_checkpoint(a.checkpoint).model
    else:
        model = build_model(get_preset(a.preset).model if a.preset else ModelConfig())
    print(format_summary(model_summary(model)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine", description="Diffusion Lab engine")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a diffusion model (atomic checkpoints, resumable)")
    src = t.add_mutually_exclusive_group()
    src.add_argument("--preset", default="default", help="tiny, default, wide, deep, no-skip, no-time, plain-cnn, one-step")
    src.add_argument("--config", help="JSON file with model/schedule/train/recommended sections")
    t.add_argument("--steps", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--seed", type=int)
    t.add_argument("--dataset", choices=["mnist-5k", "mnist", "fashion-mnist"])
    t.add_argument("--out", required=True, help="run folder (checkpoint + metrics.jsonl + snapshots/)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    t.add_argument("--force", action="store_true", help="delete an existing --out and start over")
    t.add_argument("--init-from", help="start from the weights of this checkpoint (same architecture)")
    t.add_argument("--no-snapshots", dest="snapshots", action="store_false", help="skip the fixed-seed sample film")
    t.add_argument("--device", default="auto")
    t.add_argument("--threads", type=int)
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="write samples as .npz: images (N,28,28) uint8, labels (N,) int64")
    s.add_argument("--checkpoint", default="checkpoints/default")
    s.add_argument("--per-class", type=int, default=10)
    s.add_argument("--guidance", type=float, help="default: the checkpoint's recommended value")
    s.add_argument("--sampler", choices=["ddim", "ddpm"])
    s.add_argument("--steps", type=int)
    s.add_argument("--eta", type=float)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--batch", type=int, default=250, help="images per forward batch")
    s.add_argument("--out", default="samples.npz")
    s.add_argument("--device", default="auto")
    s.add_argument("--threads", type=int)
    s.set_defaults(func=cmd_sample)

    m = sub.add_parser("summary", help="per-block shapes, parameters and FLOPs of a model")
    m.add_argument("--preset")
    m.add_argument("--checkpoint")
    m.set_defaults(func=cmd_summary)
    return p


def main(argv: list[str] | None = None) -> int:
    from .checkpoints import CheckpointError
    from .config import ConfigError
    from .data import DataUnavailable
    from .training import NonFiniteLoss

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CheckpointError, ConfigError, DataUnavailable, NonFiniteLoss, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
