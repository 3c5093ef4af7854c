"""`python -m engine distill`: progressive distillation of a model's guided DDIM sampler into a few-step student
(engine/distill.py), written as a checkpoint folder that `sample`, `evaluate`, `export` and the dashboard accept.

Ctrl-C or SIGTERM ends the running round after its current iteration and saves its student (meta.json then says
the distillation is incomplete); a second signal leaves at once. There is no --resume: a round is minutes.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from .common import command_line, set_threads


def add_distill(sub) -> None:
    d = sub.add_parser("distill", help="distil a model's guided DDIM sampler into a few-step student (progressive "
                                       "distillation, guidance baked in)")
    d.add_argument("--teacher", default="checkpoints/fast", help="checkpoint folder of the teacher")
    d.add_argument("--out", required=True, help="folder of the final student; each intermediate round's student is "
                                                "kept beside it as OUT-<steps>steps")
    d.add_argument("--start-steps", type=int, default=32, help="the teacher's DDIM steps in the first round")
    d.add_argument("--end-steps", type=int, default=4, help="the final student's steps (start / 2^rounds)")
    d.add_argument("--iterations", type=int, default=500, help="optimiser steps per round")
    d.add_argument("--batch-size", type=int, default=128)
    d.add_argument("--lr", type=float, default=2e-4, help="peak learning rate of each round (warm-up, cosine decay)")
    d.add_argument("--warmup", type=int, default=20, help="warm-up steps of each round")
    d.add_argument("--ema-decay", type=float, default=0.995, help="EMA of the student's weights (0: none)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--force", action="store_true", help="replace an existing --out (and its round folders); only "
                                                        "folders a run or a distillation writes are deleted")
    d.add_argument("--no-judge", dest="judge", action="store_false",
                   help="skip the judge's reading of 100 samples after each round")
    d.add_argument("--device", default="auto")
    d.add_argument("--threads", type=int)
    d.set_defaults(func=cmd_distill)


def _check_teacher(path: Path) -> None:
    from ..checkpoints import CheckpointError

    if not path.is_dir():
        raise CheckpointError(f"--teacher {path}: no such checkpoint folder (give a trained model's folder, e.g. "
                              "checkpoints/fast)")
    if not (path / "config.json").is_file() or not (path / "weights.safetensors").is_file():
        raise CheckpointError(f"--teacher {path} is not a checkpoint folder (no config.json / weights.safetensors)")


def _clear(paths: list[Path], force: bool) -> None:
    """Refuse occupied output folders unless --force; with it delete only what a run or distillation writes."""
    from ..checkpoints import RunFolderError
    from .train import why_not_deletable

    occupied = [p for p in paths if p.exists() and (not p.is_dir() or any(p.iterdir()))]
    if occupied and not force:
        raise ValueError(f"{occupied[0]} already exists; pass --force to replace it, or choose another --out")
    for p in occupied:
        why = why_not_deletable(p)
        if why:
            raise RunFolderError(f"--force will not delete {p}: {why}")
    for p in occupied:
        shutil.rmtree(p)


def cmd_distill(a: argparse.Namespace) -> int:
    import torch

    from .. import checkpoints as ck
    from ..devices import pick_device
    from ..distill import DistillSettings, distill, round_folder
    from ..training.run import saved_parameters
    from ..unet import count_parameters
    from .train import _StopRequests, _refuse_protected

    if a.threads is not None and not 1 <= a.threads <= 256:
        raise ValueError(f"--threads must be between 1 and 256, got {a.threads}")
    settings = DistillSettings(start_steps=a.start_steps, end_steps=a.end_steps, iterations=a.iterations,
                               batch_size=a.batch_size, lr=a.lr, warmup=a.warmup, ema_decay=a.ema_decay, seed=a.seed)
    teacher, out = Path(a.teacher), Path(a.out)
    _check_teacher(teacher)
    _refuse_protected(out)
    if out.resolve() == teacher.resolve():
        raise ValueError(f"--out {out} is the teacher's folder; give the student a folder of its own")
    set_threads(a.threads)
    device = pick_device(a.device)
    with ck.RunLock(out):
        rounds = [round_folder(out, s) for _, s in settings.round_steps()[:-1]]
        _clear([out, *rounds], a.force)
        ck.check_writable(out, saved_parameters(teacher))
        judge = None
        if a.judge:
            try:
                from ..judge import load_judge
                judge = load_judge()
            except ck.CheckpointError as e:
                print(f"note: no judge accuracy after each round ({e})")
        print(f"distilling {teacher} -> {out}: {settings.start_steps} -> {settings.end_steps} steps in "
              f"{settings.rounds} rounds of {settings.iterations} iterations x {settings.batch_size} digits, lr "
              f"{settings.lr:g}, on {device} ({torch.get_num_threads()} threads)", flush=True)
        from tqdm import tqdm

        bars: dict[int, tqdm] = {}

        def progress(p: dict) -> None:
            bar = bars.get(p["round"])
            if bar is None:
                for old in bars.values():
                    old.close()
                bar = bars[p["round"]] = tqdm(total=p["iterations"], unit="it", mininterval=2, dynamic_ncols=True,
                                              desc=f"round {p['round']} ({2 * p['steps']}->{p['steps']})")
            bar.update(1)
            if p["iteration"] % 10 == 0:
                bar.set_postfix(loss=f"{p['loss']:.4f}")

        def say(line: str) -> None:
            for bar in bars.values():              # a message on a line of its own, below the finished bar
                bar.close()
            print(line, flush=True)

        with _StopRequests() as stop:
            try:
                done = distill(teacher, out, settings, command=command_line(), device=device, judge=judge,
                               progress=progress, stop=lambda: stop.signum is not None,
                               say=say)
            except KeyboardInterrupt:
                print(f"\nstopped without saving the running round; finished rounds are kept beside {out}")
                return 130
            finally:
                for bar in bars.values():
                    bar.close()
    seconds = sum(r["seconds"] for r in done.record["rounds"])
    kept = "".join(f"\n  round student kept: {p}" for p in done.round_paths)
    if not done.completed:
        print(f"{stop.name}: stopped in round {len(done.record['rounds'])}; its student so far is in {out} "
              f"(meta.json: incomplete){kept}")
        return 128 + (stop.signum or 0)
    print(f"done: {settings.rounds} rounds in {seconds:.0f} s of training; the {settings.end_steps}-step student "
          f"({count_parameters(done_model(out)) / 1e6:.2f} M params) is in {out}; sample it with "
          f"`python -m engine sample --checkpoint {out}` (DDIM-{settings.end_steps}, guidance 0){kept}")
    sys.stdout.flush()
    return 0


def done_model(out: Path):
    from ..checkpoints import load_checkpoint

    return load_checkpoint(out).model
