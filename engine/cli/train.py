"""`python -m engine train`: a resumable training run with a progress bar, under torchrun too.

Ctrl-C or SIGTERM saves a checkpoint at the step reached and exits 128 + the signal; a second signal leaves at
once (130). Under torchrun every rank stops after the same step, and the run ends by checking that the
replicas hold identical weights (exit 1 if not).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from .common import DATASETS, command_line, set_threads


def add_train(sub) -> None:
    from ..presets import PRESETS

    t = sub.add_parser("train", help="train a diffusion model (atomic checkpoints, resumable)")
    src = t.add_mutually_exclusive_group()
    src.add_argument("--preset", default="default", help=", ".join(PRESETS))
    src.add_argument("--config", help="JSON file with model/schedule/train/recommended sections")
    t.add_argument("--steps", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--seed", type=int)
    t.add_argument("--dataset", choices=DATASETS)
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


def cmd_train(a: argparse.Namespace) -> int:
    from ..devices import pick_device
    from ..training.run import TrainingRun

    set_threads(a.threads)
    device = pick_device(a.device)
    out = Path(a.out)
    if a.resume and (out / "weights.safetensors").exists():
        run = TrainingRun.resume(out, device, steps=a.steps, command=command_line())
        print(f"resuming {out} at step {run.step_count}/{run.train_config.steps}")
    elif out.exists() and any(out.iterdir()) and not a.force:
        print(f"error: {out} already exists; pass --resume to continue it or --force to start over",
              file=sys.stderr)
        return 2
    else:
        run = _new_run(a, device, out)
    _prepare(run, a, device, out)
    with _StopRequests() as stop:
        try:
            _train(run, stop, a.snapshots)
        except KeyboardInterrupt:             # a second Ctrl-C: leave now, as asked
            print(f"\nstopped at step {run.step_count} without saving; the last checkpoint is kept. "
                  "Continue with --resume.")
            return 130
    if stop.signum is not None and not run.done:
        return _save_on_signal(run, stop, out)
    if run.world_size > 1:
        _finish_distributed(run, out)         # leaves the process
    print(_done_line(run, out))
    return 0


def _configs(a: argparse.Namespace):
    """(model, schedule, train, recommended) configs from --config or --preset, with the flags' overrides."""
    from ..config import ModelConfig, SampleConfig, ScheduleConfig, TrainConfig
    from ..presets import get_preset

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
    return mc, sc, tc, rec


def _new_run(a: argparse.Namespace, device, out: Path):
    from ..training.run import TrainingRun

    mc, sc, tc, rec = _configs(a)
    if out.exists() and a.force:
        import shutil
        shutil.rmtree(out)
    return TrainingRun.create(mc, sc, tc, rec, out, device, command_line(), init_from=a.init_from)


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


def _prepare(run, a: argparse.Namespace, device, out: Path) -> None:
    """Say what will be trained; attach the judge for the snapshots; compile the step with --compile."""
    import torch

    from ..checkpoints import CheckpointError
    from ..unet import count_parameters

    tc = run.train_config
    print(f"training {count_parameters(run.model) / 1e6:.3f} M params on {device} "
          f"({torch.get_num_threads()} threads), {tc.steps} steps of {tc.batch_size} images -> {out}")
    if a.snapshots:
        try:
            from ..judge import load_judge
            run.judge = load_judge()
        except CheckpointError as e:  # the judge is optional for training: say so and go on
            print(f"note: no judge accuracy in the log ({e})")
    if a.compile:
        print("compiling the training step with torch.compile (a one-off wait of tens of seconds)...", flush=True)
        print(run.compile_model(), flush=True)


def _train(run, stop: "_StopRequests", snapshots: bool) -> None:
    """Train until the run is done or a stop was asked for (agreed by every rank), with a progress bar."""
    from tqdm import tqdm

    bar = tqdm(total=run.train_config.steps, initial=run.step_count, unit="step", dynamic_ncols=True,
               mininterval=2, disable=not run.is_main)
    try:
        while not run.done and not stop.agreed(run.world_size, run.device):
            ev = run.train_one(snapshots=snapshots)
            bar.update(1)
            if ev.logged:
                bar.set_postfix(loss=f"{ev.result.loss:.4f}", img_s=f"{ev.logged['images_per_s']:.0f}")
            if ev.judged:
                bar.write(f"step {run.step_count}: judge accuracy {ev.judged['judge_accuracy']:.0%}")
    finally:
        bar.close()


def _done_line(run, out: Path) -> str:
    return (f"done: {run.step_count} steps in {run.wall_time:.0f} s "
            f"({run.images_seen / max(run.wall_time, 1e-9):.0f} images/s); checkpoint in {out}")


def _save_on_signal(run, stop: "_StopRequests", out: Path) -> int:
    """A stop signal: checkpoint at the step reached, then exit 128 + the signal number."""
    run.save()                                # every rank calls it; only the main process writes
    if run.is_main:
        print(f"\n{stop.name}: saved a checkpoint at step {run.step_count}/{run.train_config.steps} in {out}. "
              "Continue with --resume.")
    if run.world_size > 1:
        import torch.distributed as dist

        dist.barrier()
        sys.stdout.flush()
        os._exit(128 + stop.signum)           # as in _finish_distributed: no teardown beside gloo's threads
    return 128 + stop.signum


def _finish_distributed(run, out: Path) -> None:
    """Under torchrun: check the replicas agree, report, and leave (exit 0, or 1 if they differ)."""
    import torch.distributed as dist

    from ..devices import replicas_identical

    same = replicas_identical(run.model)
    if run.is_main:
        print(f"distributed: {run.world_size} processes, replicas identical: {same}")
        print(_done_line(run, out))
    dist.barrier()                 # no rank leaves while another is still inside a collective
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    # The checkpoint is saved. Leave without the interpreter's teardown: gloo's worker threads, still
    # referenced by DDP, now and then abort a process there ("terminate called without an active exception").
    os._exit(0 if same else 1)


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
