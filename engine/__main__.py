"""Command line: python -m engine {train,sample,summary,...} --help"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
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


def _sample_config(recommended, a: argparse.Namespace):
    """The checkpoint's recommended SampleConfig with whichever of the CLI's sampling flags were given."""
    names = ("guidance", "sampler", "steps", "seed", "eta", "guidance_interval")
    return recommended.replace(**{k: getattr(a, k) for k in names if getattr(a, k, None) is not None})


_INTERVAL_HELP = ("apply guidance only where LO <= t/T <= HI (fractions of T); other steps run the conditional "
                  "model alone, half the work (default: the checkpoint's recommendation)")
_COMPILE_HELP = ("run the denoiser through torch.compile (one-off compile of tens of seconds, then faster "
                 "sampling; falls back to eager with a message if compiling fails)")


def _maybe_compile(ck, a: argparse.Namespace) -> None:
    """With --compile, swap the checkpoint's model for its torch.compile'd wrapper and compile it now."""
    if not getattr(a, "compile", False):
        return
    from .accel import compile_denoiser, warm_up

    ck.model = compile_denoiser(ck.model)
    b = min(getattr(a, "batch", 250), 10 * getattr(a, "per_class", 25))
    dt = warm_up(ck.model, (b, 2 * b))
    if ck.model.active:
        print(f"compiled the denoiser in {dt:.0f} s (torch.compile)")
    else:
        print(f"torch.compile unavailable, sampling eagerly ({ck.model.error})")


def _parse_sets(items: list[str]) -> dict:
    """["skip_connections=false", "base_channels=24"] -> {"skip_connections": False, "base_channels": 24}."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"--model-set expects KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(raw.lower() if raw.lower() in ("true", "false") else raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


class _StopRequests:
    """Ctrl-C (SIGINT) or SIGTERM while training: finish the current step, save a checkpoint there, exit.

    Without it, a stop loses every step since the last periodic checkpoint. A second signal leaves at once
    (KeyboardInterrupt), for someone who will not wait for the save. In a distributed run every rank must stop
    after the same step, or the others would wait forever inside the next all-reduce: `agreed` takes the max
    of the ranks' flags each step (one tiny all-reduce).
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict = {}

    def __enter__(self) -> "_StopRequests":
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:                # not the main thread (called from a test harness): no handlers
                pass
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def agreed(self, world_size: int, device="cpu") -> bool:
        """Whether to stop now; in a distributed run, whether any rank was asked to (the same on all ranks)."""
        if world_size <= 1:
            return self.signum is not None
        import torch
        import torch.distributed as dist

        flag = torch.tensor([-1 if self.signum is None else self.signum], device=device)  # nccl: on the GPU
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        agreed = int(flag.item())
        if agreed >= 0 and self.signum is None:
            self.signum = agreed
        return agreed >= 0


def cmd_train(a: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from .checkpoints import CheckpointError
    from .config import ModelConfig, SampleConfig, ScheduleConfig, TrainConfig
    from .presets import get_preset
    from .training import TrainingRun, pick_device

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
        if a.model_set:
            mc = ModelConfig.from_dict({**mc.to_dict(), **_parse_sets(a.model_set)})
        if out.exists() and a.force:
            import shutil
            shutil.rmtree(out)
        run = TrainingRun(mc, sc, tc, rec, out, device, _command_line(), init_from=a.init_from)
    tc = run.train_config
    from .unet import count_parameters
    print(f"training {count_parameters(run.model) / 1e6:.3f} M params on {device} "
          f"({torch.get_num_threads()} threads), {tc.steps} steps of {tc.batch_size} images -> {out}")
    if a.snapshots:
        try:
            from .judge import load_judge
            run.judge = load_judge()
        except CheckpointError as e:  # the judge is optional for training: say so and go on
            print(f"note: no judge accuracy in the log ({e})")
    if a.compile:
        print("compiling the training step with torch.compile (a one-off wait of tens of seconds)...", flush=True)
        print(run.compile_model(), flush=True)
    bar = tqdm(total=tc.steps, initial=run.step_count, unit="step", dynamic_ncols=True, mininterval=2,
               disable=not run.is_main)
    with _StopRequests() as stop:
        try:
            while not run.done and not stop.agreed(run.world_size, run.device):
                ev = run.train_one(snapshots=a.snapshots)
                bar.update(1)
                if ev.logged:
                    bar.set_postfix(loss=f"{ev.result.loss:.4f}", img_s=f"{ev.logged['images_per_s']:.0f}")
                if ev.judged:
                    bar.write(f"step {run.step_count}: judge accuracy {ev.judged['judge_accuracy']:.0%}")
        except KeyboardInterrupt:             # a second Ctrl-C: leave now, as asked
            bar.close()
            print(f"\nstopped at step {run.step_count} without saving; the last checkpoint is kept. "
                  "Continue with --resume.")
            return 130
    bar.close()
    if stop.signum is not None and not run.done:
        run.save()                            # every rank calls it (it reseeds each rank's generator)
        if run.is_main:
            print(f"\n{stop.name}: saved a checkpoint at step {run.step_count}/{tc.steps} in {out}. "
                  "Continue with --resume.")
        if run.world_size > 1:
            import torch.distributed as dist

            dist.barrier()
            sys.stdout.flush()
            os._exit(128 + stop.signum)       # as below: no interpreter teardown beside gloo's threads
        return 128 + stop.signum
    if run.world_size > 1:
        import torch.distributed as dist

        from .training import replicas_identical

        same = replicas_identical(run.model)
        if run.is_main:
            print(f"distributed: {run.world_size} processes, replicas identical: {same}")
            print(f"done: {run.step_count} steps in {run.wall_time:.0f} s "
                  f"({run.images_seen / max(run.wall_time, 1e-9):.0f} images/s); checkpoint in {out}")
        dist.barrier()                 # no rank leaves while another is still inside a collective
        dist.destroy_process_group()
        sys.stdout.flush()
        sys.stderr.flush()
        # The checkpoint is saved. Leave without the interpreter's teardown: gloo's worker threads, still
        # referenced by DDP, now and then abort a process there ("terminate called without an active exception").
        os._exit(0 if same else 1)
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
    cfg = _sample_config(ck.recommended, a)
    _maybe_compile(ck, a)
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


def cmd_evaluate(a: argparse.Namespace) -> int:
    import torch

    from .cache import SampleCache
    from .checkpoints import load_checkpoint
    from .data import load as load_data
    from .judge import load_judge
    from .metrics import quality_report
    from .sampling import class_labels, sample_cached
    from .training import pick_device

    _set_threads(a.threads)
    ck = load_checkpoint(a.checkpoint, pick_device(a.device))
    cfg = _sample_config(ck.recommended, a)
    judge = load_judge(a.judge)
    cache = None if a.no_cache else SampleCache()
    _maybe_compile(ck, a)
    train, held = load_data(ck.train_config.dataset if ck.train_config else "mnist-5k")
    labels = class_labels(a.per_class)
    t0 = time.perf_counter()
    misses = cache.misses if cache else 0
    samples = sample_cached(ck, labels, cfg, cache=cache)
    dt = time.perf_counter() - t0
    computed = cache is None or cache.misses > misses
    report = quality_report(judge, samples, labels, train.images, train.labels, held.images, held.labels)
    report.update(checkpoint=str(a.checkpoint), checkpoint_sha256=ck.sha256, step=ck.step, n_samples=len(labels),
                  sample_config=cfg.to_dict(), samples_per_s=round(len(labels) / dt, 2) if computed else None,
                  from_cache=not computed, sampling_seconds=round(dt, 2) if computed else None,
                  device=str(next(ck.model.parameters()).device), threads=torch.get_num_threads(),
                  command=_command_line())
    pc = report["per_class_accuracy"]
    m = report["memorisation"]
    print(f"checkpoint {a.checkpoint} (step {ck.step}), {len(labels)} samples: {cfg.sampler}-{cfg.steps}, "
          f"guidance {cfg.guidance}, seed {cfg.seed}" + (" [from cache]" if not computed else
                                                          f", {report['samples_per_s']} samples/s"))
    print(f"  judge accuracy      {report['accuracy']:.2%}   mean true-class confidence {report['confidence']:.3f}")
    print("  per class           " + "  ".join(f"{c}:{v:.0%}" for c, v in pc.items()))
    print(f"  Frechet distance    {report['frechet_distance']:.2f}   real-vs-real baseline "
          f"{report['frechet_baseline_train_vs_heldout']:.2f} ({len(labels)} train digits vs the held-out set)   "
          f"ratio {report['frechet_ratio_to_baseline']:.2f}x")
    print(f"  diversity           {report['diversity_mean']:.2f} of real digits' within-class spread")
    print(f"  memorisation        {m['fraction_closer_than_threshold']:.1%} of samples closer to a training digit "
          f"than {1 - m['quantile']:.0%} of held-out digits are (expected ~{m['quantile']:.0%})")
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(report, indent=2))
        print(f"  report written to {a.out}")
    return 0


def cmd_apply(a: argparse.Namespace) -> int:
    import torch
    from PIL import Image

    from . import applications as apps
    from .checkpoints import load_checkpoint
    from .data import load as load_data
    from .sampling import to_uint8
    from .schedule import NoiseSchedule

    ck = load_checkpoint(a.checkpoint)
    s = NoiseSchedule(ck.schedule_config)
    cfg = _sample_config(ck.recommended, a)
    _, held = load_data("mnist-5k")
    x = held.of_class(a.digit)[a.index:a.index + 1]
    label = a.label if a.label is not None else a.digit
    t0 = time.perf_counter()
    if a.task == "inpaint":
        out = apps.inpaint(ck.model, s, x, apps.make_mask(a.mask, a.seed), label, cfg, a.seed, a.resample)
    elif a.task == "edit":
        out = apps.sdedit(ck.model, s, x, label, a.strength, cfg, a.seed)
    elif a.task == "upscale":
        out = apps.upscale(ck.model, s, apps.downsample(x, a.factor), label, cfg, a.seed)
    else:
        out = apps.interpolate_classes(ck.model, s, a.digit, label, 8, cfg, a.seed)
    dt = time.perf_counter() - t0
    strip = torch.cat([x, out]) if a.task != "interpolate" else out
    img = to_uint8(strip).permute(1, 0, 2).reshape(28, -1).numpy()
    Image.fromarray(img).resize((img.shape[1] * 4, 112), Image.NEAREST).save(a.out)
    print(f"{a.task}: {dt:.1f} s -> {a.out} (" + ("input, then output" if a.task != "interpolate" else
                                                  f"{a.digit} to {label}") + ")")
    return 0


EXPORT_SIDECARS = ("metrics.jsonl", "snapshots", "report.json", "reports", "PROVENANCE.md")


def cmd_export(a: argparse.Namespace) -> int:
    """A slim, shippable copy: EMA weights only (what sampling uses), no optimizer state; sidecars kept.

    Cached samples (precomputed/) are not kept: they belong to the old recommended settings; rerun `precompute`.
    """
    import shutil
    import tempfile

    from .checkpoints import load_checkpoint, save_checkpoint

    src = Path(a.checkpoint)
    ck = load_checkpoint(src)
    meta = {k: v for k, v in ck.meta.items() if k not in ("sha256", "saved_at", "optimizer_param_groups")}
    if "export_command" in meta:                              # re-exporting a shipped copy keeps its history
        meta.setdefault("earlier_exports", []).append(meta["export_command"])
    meta["exported_from"] = str(src)
    meta["export_command"] = _command_line()
    recommended = _sample_config(ck.recommended, a)          # e.g. the guidance the evaluation supports best
    with tempfile.TemporaryDirectory() as staging:           # sidecars first: --out may be --checkpoint itself
        kept = [item.name for item in src.iterdir() if item.name in EXPORT_SIDECARS]
        for name in kept:
            (shutil.copytree if (src / name).is_dir() else shutil.copy2)(src / name, Path(staging) / name)
        out = save_checkpoint(a.out, model=ck.model, ema_model=ck.model, model_config=ck.model_config,
                              schedule_config=ck.schedule_config, train_config=ck.train_config,
                              recommended=recommended, step=ck.step, meta=meta, include_raw=False,
                              overwrite=a.force)
        for name in kept:
            (shutil.copytree if (Path(staging) / name).is_dir() else shutil.copy2)(Path(staging) / name, out / name)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"exported {src} (step {ck.step}) -> {out}: {size / 2**20:.1f} MB")
    return 0


def cmd_precompute(a: argparse.Namespace) -> int:
    """Samples the pages open with, stored beside the model so a first visit needs no sampling."""
    from .cache import SampleCache
    from .checkpoints import load_checkpoint
    from .sampling import class_labels, sample_cached

    ck = load_checkpoint(a.checkpoint)
    cache = SampleCache(Path(a.checkpoint) / "precomputed", max_bytes=50 * 2**20)
    labels = class_labels(10)                    # the CLIP page: 10 per class, seeds 0..99, recommended settings
    t0 = time.perf_counter()
    sample_cached(ck, labels, ck.recommended.replace(seed=0), seeds=list(range(len(labels))), cache=cache)
    print(f"precomputed {len(labels)} samples in {time.perf_counter() - t0:.1f} s -> {cache.root}")
    return 0


def cmd_style_eval(a: argparse.Namespace) -> int:
    from .checkpoints import load_checkpoint
    from .judge import load_judge
    from .style import compliance

    _set_threads(a.threads)
    ck = load_checkpoint(a.checkpoint)
    t0 = time.perf_counter()
    rep = compliance(ck, load_judge(), _sample_config(ck.recommended, a), seeds=a.seeds)
    rep.update(seconds=round(time.perf_counter() - t0, 1), command=_command_line())
    print(f"style compliance of {a.checkpoint}: rank correlation thickness {rep['thickness_spearman']}, slant "
          f"{rep['slant_spearman']}; per-bin accuracy {rep['thickness_bin_accuracy']} / {rep['slant_bin_accuracy']}; "
          f"judge accuracy {rep['judge_accuracy']} ({rep['n']} samples, {rep['seconds']} s)")
    out = Path(a.checkpoint) / "report.json"
    report = json.loads(out.read_text()) if out.exists() else {}
    report["style"] = rep
    out.write_text(json.dumps(report, indent=2))
    return 0


def cmd_bench(a: argparse.Namespace) -> int:
    from .bench import run_bench

    recipes = tuple(r for r in (a.time_to_quality or "").split(",") if r)
    if not a.quick and a.time_to_quality is None:
        recipes = ("tiny", "fast", "default", "peer")
    from .training import pick_device

    res = run_bench(quick=a.quick, checkpoint=a.checkpoint, threads=a.threads, peer=not a.no_peer,
                    time_to_quality_recipes=recipes, ttq_cap_s=a.ttq_cap, device=pick_device(a.device))
    print("\n" + "\n".join(f"{k:32s} {v}" for k, v in res.items() if not isinstance(v, list)))
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=2))
        print(f"written to {a.out}")
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


def _loss_bar(total: int, unit: str, every: int):
    """A tqdm bar and the progress(i, total, loss) callback the trainers call; loss shown every `every` calls."""
    from tqdm import tqdm

    bar = tqdm(total=total, unit=unit, mininterval=2)

    def progress(i: int, n: int, loss: float) -> None:
        bar.update(1)
        if i % every == 0:
            bar.set_postfix(loss=f"{loss:.3f}")

    return bar, progress


def cmd_train_judge(a: argparse.Namespace) -> int:
    from .judge import save_judge, train_judge

    _set_threads(a.threads)
    bar, progress = _loss_bar(a.epochs, "epoch", every=1)
    judge, report = train_judge(a.dataset, epochs=a.epochs, seed=a.seed, progress=progress)
    bar.close()
    save_judge(judge, a.out, report, _command_line())
    print(f"judge: {report['heldout_accuracy']:.2%} on the {report['heldout_n']} held-out digits "
          f"({report['train_seconds']:.0f} s) -> {a.out}")
    return 0


def cmd_train_clip(a: argparse.Namespace) -> int:
    from .clip_eval import save_digit_clip, train_digit_clip

    _set_threads(a.threads)
    bar, progress = _loss_bar(a.steps, "step", every=50)
    scorer, report = train_digit_clip(steps=a.steps, batch_size=a.batch_size, lr=a.lr, seed=a.seed, progress=progress)
    bar.close()
    save_digit_clip(scorer, a.out, report, _command_line())
    print(f"digit-CLIP: {report.zero_shot_accuracy:.2%} zero-shot on the 1,000 held-out digits, "
          f"{report.style_retrieval_accuracy:.1%} thick/thin retrieval ({report.seconds:.0f} s) -> {a.out}")
    return 0


def cmd_clip_rank(a: argparse.Namespace) -> int:
    from .checkpoints import load_checkpoint
    from .clip_eval import load_digit_clip, rank_report
    from .judge import load_judge
    from .sampling import class_labels, sample_cached
    from .cache import SampleCache

    _set_threads(a.threads)
    ck = load_checkpoint(a.checkpoint)
    cfg = _sample_config(ck.recommended, a)
    labels = class_labels(a.per_class)
    seeds = [cfg.seed + i for i in range(len(labels))]
    t0 = time.perf_counter()
    images = sample_cached(ck, labels, cfg, seeds=seeds, cache=SampleCache())
    scorer = load_digit_clip(a.clip) if a.clip else load_digit_clip()
    records = rank_report(scorer, load_judge(), images, labels, seeds, a.keep)
    Path(a.out).write_text(json.dumps(records, indent=2))
    kept = [r for r in records if r["kept"]]
    print(f"scored {len(records)} digits with {scorer.name} in {time.perf_counter() - t0:.1f} s; kept {len(kept)} "
          f"(top {a.keep} per class): mean CLIPScore kept {np.mean([r['clip_score'] for r in kept]):.3f} vs all "
          f"{np.mean([r['clip_score'] for r in records]):.3f}; judge confidence kept "
          f"{np.mean([r['judge_confidence'] for r in kept]):.3f} vs all {np.mean([r['judge_confidence'] for r in records]):.3f}"
          f" -> {a.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine", description="Diffusion Lab engine")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a diffusion model (atomic checkpoints, resumable)")
    src = t.add_mutually_exclusive_group()
    from .presets import PRESETS

    src.add_argument("--preset", default="default", help=", ".join(PRESETS))
    src.add_argument("--config", help="JSON file with model/schedule/train/recommended sections")
    t.add_argument("--steps", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--seed", type=int)
    t.add_argument("--dataset", choices=["mnist-5k", "mnist", "fashion-mnist"])
    t.add_argument("--out", required=True, help="run folder (checkpoint + metrics.jsonl + snapshots/)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    t.add_argument("--force", action="store_true", help="delete an existing --out and start over")
    t.add_argument("--model-set", action="append", metavar="KEY=VALUE",
                   help="override a model setting, e.g. skip_connections=false or arch=cnn (repeatable)")
    t.add_argument("--init-from", help="start from the weights of this checkpoint (same architecture)")
    t.add_argument("--no-snapshots", dest="snapshots", action="store_false", help="skip the fixed-seed sample film")
    t.add_argument("--device", default="auto")
    t.add_argument("--threads", type=int)
    t.add_argument("--compile", action="store_true",
                   help="train through torch.compile: a one-off compile of tens of seconds, then ~1.1x faster "
                        "steps on a CPU; falls back to eager training with a message if compiling fails")
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="write samples as .npz: images (N,28,28) uint8, labels (N,) int64")
    s.add_argument("--checkpoint", default="checkpoints/default")
    s.add_argument("--per-class", type=int, default=10)
    s.add_argument("--guidance", type=float, help="default: the checkpoint's recommended value")
    s.add_argument("--guidance-interval", type=float, nargs=2, metavar=("LO", "HI"), help=_INTERVAL_HELP)
    s.add_argument("--sampler", choices=["ddim", "ddpm"])
    s.add_argument("--steps", type=int)
    s.add_argument("--eta", type=float)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--batch", type=int, default=250, help="images per forward batch")
    s.add_argument("--out", default="samples.npz")
    s.add_argument("--device", default="auto")
    s.add_argument("--compile", action="store_true", help=_COMPILE_HELP)
    s.add_argument("--threads", type=int)
    s.set_defaults(func=cmd_sample)

    j = sub.add_parser("train-judge", help="train the digit classifier that judges generated samples")
    j.add_argument("--dataset", default="mnist-5k", choices=["mnist-5k", "mnist", "fashion-mnist"])
    j.add_argument("--epochs", type=int, default=30)
    j.add_argument("--seed", type=int, default=0)
    j.add_argument("--out", default="checkpoints/judge")
    j.add_argument("--threads", type=int)
    j.set_defaults(func=cmd_train_judge)

    e = sub.add_parser("evaluate", help="judge accuracy, Frechet distance, diversity, memorisation of samples")
    e.add_argument("--checkpoint", default="checkpoints/default")
    e.add_argument("--per-class", type=int, default=100)
    e.add_argument("--guidance", type=float)
    e.add_argument("--guidance-interval", type=float, nargs=2, metavar=("LO", "HI"), help=_INTERVAL_HELP)
    e.add_argument("--sampler", choices=["ddim", "ddpm"])
    e.add_argument("--steps", type=int)
    e.add_argument("--eta", type=float)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--judge", default=str(Path(__file__).resolve().parent.parent / "checkpoints" / "judge"))
    e.add_argument("--no-cache", action="store_true")
    e.add_argument("--out", help="write the full report as JSON")
    e.add_argument("--device", default="auto")
    e.add_argument("--compile", action="store_true", help=_COMPILE_HELP)
    e.add_argument("--threads", type=int)
    e.set_defaults(func=cmd_evaluate)

    ap = sub.add_parser("apply", help="inpaint / edit / upscale / interpolate a held-out digit; writes a PNG strip")
    ap.add_argument("task", choices=["inpaint", "edit", "upscale", "interpolate"])
    ap.add_argument("--checkpoint", default="checkpoints/default")
    ap.add_argument("--digit", type=int, default=3, help="class of the held-out input digit")
    ap.add_argument("--index", type=int, default=0, help="which held-out digit of that class")
    ap.add_argument("--label", type=int, help="target class (default: the input's class)")
    ap.add_argument("--mask", default="right", help="inpainting mask: left right top bottom centre random")
    ap.add_argument("--resample", type=int, default=1)
    ap.add_argument("--strength", type=float, default=0.5, help="SDEdit strength in [0, 1]")
    ap.add_argument("--factor", type=int, default=4, choices=[2, 4], help="upscaling from 28/factor")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--guidance", type=float)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="apply.png")
    ap.set_defaults(func=cmd_apply)

    x = sub.add_parser("export", help="slim copy of a checkpoint for shipping (EMA weights only)")
    x.add_argument("--checkpoint", required=True)
    x.add_argument("--out", required=True)
    x.add_argument("--force", action="store_true", help="replace an existing --out")
    x.add_argument("--guidance", type=float, help="recommended guidance to record (default: the run's)")
    x.add_argument("--guidance-interval", type=float, nargs=2, metavar=("LO", "HI"), help=_INTERVAL_HELP)
    x.add_argument("--sampler", choices=["ddim", "ddpm"], help="recommended sampler to record")
    x.add_argument("--steps", type=int, help="recommended sampling steps to record")
    x.set_defaults(func=cmd_export)

    se = sub.add_parser("style-eval", help="requested vs measured thickness and slant of a style model")
    se.add_argument("--checkpoint", default="checkpoints/style")
    se.add_argument("--seeds", type=int, default=2, help="samples per (digit, style) cell")
    se.add_argument("--steps", type=int)
    se.add_argument("--guidance", type=float)
    se.add_argument("--threads", type=int)
    se.set_defaults(func=cmd_style_eval)

    pc = sub.add_parser("precompute", help="store the samples the pages open with next to a shipped model")
    pc.add_argument("--checkpoint", default="checkpoints/default")
    pc.set_defaults(func=cmd_precompute)

    b = sub.add_parser("bench", help="throughput, sampling speed, slider latency, cold start; prints and writes JSON")
    b.add_argument("--quick", action="store_true", help="fewer repeats, no DDPM-1000: about a minute")
    b.add_argument("--checkpoint", help="model for the sampling figures (default: checkpoints/default)")
    b.add_argument("--threads", type=int)
    b.add_argument("--no-peer", action="store_true", help="skip the diffusers peer")
    b.add_argument("--device", default="auto",
                   help="where models train and sample: auto (a GPU when there is one), cpu, cuda or mps")
    b.add_argument("--time-to-quality", metavar="RECIPES",
                   help="comma-separated recipes (presets or 'peer') to time to 95 %% judge accuracy; the full bench "
                        "runs tiny,fast,default,peer, --quick none; '' for none")
    b.add_argument("--ttq-cap", type=float, default=480.0, help="training seconds before giving up (default 480)")
    b.add_argument("--out", help="write the figures as JSON (flat keys)")
    b.set_defaults(func=cmd_bench)

    c = sub.add_parser("train-clip", help="train the digit-reading CLIP (open_clip) used for CLIP scores")
    c.add_argument("--steps", type=int, default=3000)
    c.add_argument("--batch-size", type=int, default=256)
    c.add_argument("--lr", type=float, default=1e-3)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--out", default="checkpoints/digit_clip")
    c.add_argument("--threads", type=int)
    c.set_defaults(func=cmd_train_clip)

    r = sub.add_parser("clip-rank", help="generate K per class, score with digit-CLIP, keep the top N; ranks.json")
    r.add_argument("--checkpoint", default="checkpoints/default")
    r.add_argument("--per-class", type=int, default=10)
    r.add_argument("--keep", type=int, default=3)
    r.add_argument("--guidance", type=float)
    r.add_argument("--guidance-interval", type=float, nargs=2, metavar=("LO", "HI"), help=_INTERVAL_HELP)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--clip", help="digit-CLIP folder (default: checkpoints/digit_clip)")
    r.add_argument("--out", default="ranks.json")
    r.add_argument("--threads", type=int)
    r.set_defaults(func=cmd_clip_rank)

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
    except (CheckpointError, ConfigError, DataUnavailable, NonFiniteLoss, FileNotFoundError, RuntimeError,
            ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
