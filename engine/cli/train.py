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


REPO_ROOT = Path(__file__).resolve().parents[2]
# What a training run (and evaluate / precompute on it) writes into its folder: `--force` deletes a folder
# holding these and nothing else
RUN_FILES = frozenset({"weights.safetensors", "optimizer.safetensors", "config.json", "meta.json", "metrics.jsonl",
                       "snapshots", "report.json", "evidence", "precomputed"})
FIXED_ON_RESUME = ("config", "preset", "objective", "seed", "dataset", "model_set", "init_from")


def add_train(sub) -> None:
    from ..presets import MAX_PARAMS, PRESETS

    t = sub.add_parser("train", help="train a diffusion model (atomic checkpoints, resumable)")
    src = t.add_mutually_exclusive_group()
    src.add_argument("--preset", help="default (the default), " + ", ".join(p for p in PRESETS if p != "default"))
    src.add_argument("--config", help="JSON file with model/schedule/train/recommended sections")
    t.add_argument("--objective", choices=("eps", "flow"),
                   help="eps: DDPM's noise prediction (on the preset's schedule; cosine for a flow preset); flow: "
                        "flow matching, the velocity noise - x0 on the linear path x = (1 - s) x0 + s noise (schedule "
                        "kind 'flow'; sampled with euler or heun). Default: the preset's own (flow for live)")
    t.add_argument("--steps", type=int)
    t.add_argument("--batch-size", type=int, help="with --resume: the batch size from here on")
    t.add_argument("--lr", type=float, help="with --resume: the learning rate from here on (say after a NaN stop)")
    t.add_argument("--seed", type=int)
    t.add_argument("--dataset", choices=DATASETS)
    t.add_argument("--out", required=True, help="run folder (checkpoint + metrics.jsonl + snapshots/)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    t.add_argument("--force", action="store_true",
                   help="delete an existing --out and start over; only a training run's folder (a diffusion "
                        "checkpoint or a metrics.jsonl, and nothing but what a run writes) outside the shipped "
                        "models is ever deleted")
    t.add_argument("--model-set", action="append", metavar="KEY=VALUE",
                   help="override a model setting, e.g. skip_connections=false or arch=cnn (repeatable)")
    t.add_argument("--allow-large", action="store_true",
                   help=f"train a model over {MAX_PARAMS / 1e6:.0f} M parameters (training holds ~20 bytes a parameter "
                        "before activations, and each step costs in proportion)")
    t.add_argument("--init-from", help="start from the weights of this checkpoint (same architecture)")
    t.add_argument("--no-snapshots", dest="snapshots", action="store_false", help="skip the fixed-seed sample film")
    t.add_argument("--device", default="auto")
    t.add_argument("--threads", type=int)
    t.add_argument("--compile", action="store_true",
                   help="train through torch.compile: a one-off compile of tens of seconds, then ~1.1x faster "
                        "steps on a CPU; falls back to eager training with a message if compiling fails")
    t.set_defaults(func=cmd_train)


def cmd_train(a: argparse.Namespace) -> int:
    """Lock the run folder, recover a crashed save, open the run (resumed or new), check the disk, train."""
    import contextlib

    from .. import checkpoints as ck
    from ..devices import pick_device

    set_threads(a.threads)
    out = Path(a.out)
    _refuse_protected(out)
    if a.resume:
        _refuse_fixed_flags(a)
    main = int(os.environ.get("RANK", "0")) == 0       # under torchrun only rank 0 writes, locks and deletes
    with ck.RunLock(out) if main else contextlib.nullcontext():
        if main:
            ck.recover_checkpoint(out)
        device = pick_device(a.device)
        run = _resume_run(a, device, out) if a.resume else _new_run(a, device, out, main)
        _prepare(run, a, device, out)
        with _StopRequests() as stop:
            try:
                _train(run, stop, a.snapshots)
            except KeyboardInterrupt:             # a second Ctrl-C: leave now, as asked
                print(f"\nstopped at step {run.step_count} without saving; the last checkpoint is kept. "
                      "Continue with --resume.")
                return 130
            except OSError as e:                  # disk full, folder made read-only, file-size limit, ...
                print(f"error: {ck.write_problem(e.filename or out, e)}; the last complete checkpoint is kept: "
                      "continue with --resume once that is fixed", file=sys.stderr)
                return 1
        if stop.signum is not None and not run.done:
            return _save_on_signal(run, stop, out)
        if run.world_size > 1:
            _finish_distributed(run, out)         # leaves the process
        print(_done_line(run, out))
        return 0


def _refuse_protected(out: Path) -> None:
    """A run's folder is replaced at every checkpoint and deleted by --force: refuse `/`, the home folder, the
    repository, the working directory and their ancestors."""
    from ..checkpoints import RunFolderError

    target, cwd = out.resolve(), Path.cwd().resolve()
    named = {Path("/"): "the root folder", Path.home().resolve(): "your home folder", REPO_ROOT: "the repository",
             cwd: "the working directory"}
    what = named.get(target) or ("a folder above the working directory" if target in cwd.parents else None) \
        or ("a folder above the repository" if target in REPO_ROOT.parents else None)
    if what:
        raise RunFolderError(f"--out {out} is {what}; a run needs a folder of its own (it is replaced at every "
                             "checkpoint), e.g. --out checkpoints/runs/NAME")


def _refuse_fixed_flags(a: argparse.Namespace) -> None:
    given = [f"--{k.replace('_', '-')}" for k in FIXED_ON_RESUME if getattr(a, k, None) is not None]
    if a.force:
        given.append("--force")
    if given:
        raise ValueError(f"--resume continues {a.out} with its own settings; {', '.join(given)} cannot change them "
                         "(--steps, --lr and --batch-size can). Start a new run (another --out) to change them")


def why_not_deletable(out: Path) -> str | None:
    """Why `--force` must not delete `out`, or None when it is one of this project's run folders: it holds a
    diffusion checkpoint (config.json + meta.json, or weights) or, a run stopped before its first checkpoint, a
    metrics.jsonl; and nothing but what a run writes (RUN_FILES, and the engine's hidden `.*.tmp` files)."""
    from ..checkpoints import CheckpointError, read_json

    if not out.is_dir():
        return "it is not a folder"
    shipped = REPO_ROOT / "checkpoints"
    target = out.resolve()
    if shipped in target.parents and (shipped / "runs") not in [target, *target.parents]:
        return "it is a model shipped with Diffusion Lab (under checkpoints/, outside checkpoints/runs/)"
    names = {p.name for p in out.iterdir()}
    foreign = sorted(n for n in names if n not in RUN_FILES and not (n.startswith(".") and n.endswith(".tmp")))
    if foreign:
        return (f"it holds files a training run does not write ({', '.join(foreign[:5])}"
                + (", ..." if len(foreign) > 5 else "") + "); move them away or delete the folder yourself")
    stray = _stray_in_subfolders(out)
    if stray:
        return f"its subfolders hold files a training run does not write ({', '.join(stray[:5])})"
    if not ({"config.json", "meta.json"} <= names or {"weights.safetensors", "metrics.jsonl"} & names):
        return "it is not a training run's folder (no checkpoint, no metrics.jsonl)"
    try:
        config = read_json(out / "config.json") if "config.json" in names else {}
    except (CheckpointError, OSError):
        config = {}                                           # a run with a broken config.json: still a run
    kind = config.get("kind", "diffusion") if isinstance(config, dict) else "diffusion"
    if kind != "diffusion":
        return f"it holds a {kind!r} model, not a diffusion training run"
    return None


SUBFOLDER_FILES = {"snapshots": ("step-*.npy",), "evidence": ("*.json",), "precomputed": ("*.safetensors", "*.json")}


def _stray_in_subfolders(out: Path) -> list[str]:
    """Files inside snapshots/, evidence/ and precomputed/ that are not what a run or `precompute` writes there."""
    stray = []
    for sub, patterns in SUBFOLDER_FILES.items():
        folder = out / sub
        if folder.is_dir():
            stray += [str(p.relative_to(out)) for p in folder.rglob("*")
                      if not (p.is_file() and p.parent == folder and any(p.match(pat) for pat in patterns))]
    return sorted(stray)


def _resume_run(a: argparse.Namespace, device, out: Path):
    """The run in `out` at its newest complete checkpoint, with --steps / --lr / --batch-size applied."""
    from .. import checkpoints as ck
    from ..training.run import TrainingRun, saved_parameters

    if not (out / ck.WEIGHTS).is_file():
        if not out.exists():
            raise ck.CheckpointError(f"nothing to resume: {out} does not exist. Leave out --resume to start a run")
        raise ck.CheckpointError(f"{out} has no checkpoint yet: the run stopped before its first checkpoint. "
                                 "Start it over with --force (instead of --resume)")
    ck.check_writable(out, saved_parameters(out))
    run = TrainingRun.resume(out, device, steps=a.steps, command=command_line(), lr=a.lr, batch_size=a.batch_size)
    print(f"resuming {out} at step {run.step_count}/{run.train_config.steps}")
    for field, (before, now) in run.resume_changes.items():
        print(f"note: {field} {now:g} from step {run.step_count} on (it was {before:g}): the run now differs from "
              "an uninterrupted one; meta.json's resume_commands records the change")
    return run


def _configs(a: argparse.Namespace):
    """(model, schedule, train, recommended) configs from --config or --preset, with the flags' overrides."""
    from ..config import ModelConfig, SampleConfig, ScheduleConfig, TrainConfig
    from ..presets import get_preset

    if a.config:
        raw = _read_config_file(Path(a.config))
        mc, sc = ModelConfig.from_dict(raw.get("model", {})), ScheduleConfig.from_dict(raw.get("schedule", {}))
        tc, rec = TrainConfig.from_dict(raw.get("train", {})), SampleConfig.from_dict(raw.get("recommended", {}))
    else:
        p = get_preset(a.preset or "default")
        mc, sc, tc, rec = p.model, p.schedule, p.train, p.recommended
    overrides = {k: v for k, v in dict(steps=a.steps, batch_size=a.batch_size, lr=a.lr, seed=a.seed,
                                        dataset=a.dataset).items() if v is not None}
    tc = tc.replace(**overrides)
    if a.model_set:
        mc = ModelConfig.from_dict({**mc.to_dict(), **_parse_sets(a.model_set)})
    if a.objective == "flow" and sc.kind != "flow":
        sc, rec = sc.replace(kind="flow"), rec.replace(sampler="euler")
    elif a.objective == "eps" and sc.kind == "flow":          # e.g. the live preset with DDPM's objective
        sc, rec = sc.replace(kind="cosine"), rec.replace(sampler="ddim")
    return mc, sc, tc, rec


CONFIG_SECTIONS = ("model", "schedule", "train", "recommended")
JSON_TYPES = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "true / false",
              type(None): "null"}


def _read_config_file(path: Path) -> dict:
    """--config's JSON object (bounded, see checkpoints.read_json); ConfigError naming the file otherwise."""
    from ..checkpoints import read_json
    from ..config import ConfigError

    if not path.is_file():
        raise ConfigError(f"--config {path} " + ("is a folder" if path.is_dir() else "does not exist")
                          + "; give a JSON file with model / schedule / train / recommended sections")
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"--config {path} holds {JSON_TYPES.get(type(raw), 'a value')}; it must hold a JSON "
                          "object with model / schedule / train / recommended sections")
    unknown = sorted(set(raw) - set(CONFIG_SECTIONS))
    if unknown:
        raise ConfigError(f"--config {path}: unknown section(s) {', '.join(unknown)}; the sections are "
                          + ", ".join(CONFIG_SECTIONS))
    return raw


def _new_run(a: argparse.Namespace, device, out: Path, main: bool):
    """A new run in `out`: configs checked (size too, unless --allow-large), the folder checked for writing and
    space, and with --force an old run folder (never anything else: see why_not_deletable) deleted."""
    import shutil

    from .. import checkpoints as ck
    from ..config import ConfigError
    from ..presets import check_model_size, parameter_count
    from ..training.run import TrainingRun

    mc, sc, tc, rec = _configs(a)
    try:
        n_params = parameter_count(mc) if a.allow_large else check_model_size(mc)
    except ConfigError as e:
        raise ConfigError(f"{e}; or pass --allow-large to train it anyway") from None
    occupied = out.exists() and (not out.is_dir() or any(out.iterdir()))
    if occupied and not a.force:
        raise ValueError(f"{out} already exists; pass --resume to continue it or --force to start over")
    if occupied and (why := why_not_deletable(out)):
        raise ck.RunFolderError(f"--force will not delete {out}: {why}")
    ck.check_writable(out, n_params)                         # before deleting anything
    if occupied and main:
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
