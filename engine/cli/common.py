"""What several commands share: the command line as typed, threads, sampling flags, --compile, progress bars."""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

INTERVAL_HELP = ("apply guidance only where LO <= t/T <= HI (fractions of T); other steps run the conditional "
                 "model alone, half the work (default: the checkpoint's recommendation)")
COMPILE_HELP = ("run the denoiser through torch.compile (one-off compile of tens of seconds, then faster "
                "sampling; falls back to eager with a message if compiling fails)")
SAMPLING_FLAGS = ("guidance", "sampler", "steps", "seed", "eta", "guidance_interval")
DATASETS = ["mnist-5k", "mnist", "fashion-mnist"]


def command_line() -> str:
    """The command as the user typed it, for the provenance stored in checkpoints and reports."""
    return "python -m engine " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def set_threads(n: int | None) -> None:
    """torch's intra-op threads, when --threads was given."""
    import torch

    if n:
        torch.set_num_threads(n)


def add_sampler_flag(p: argparse.ArgumentParser, help: str | None = None) -> None:
    """--sampler, with the registered samplers as its choices."""
    from ..samplers import names as sampler_names

    p.add_argument("--sampler", choices=sampler_names(), help=help)


def add_guidance_interval_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--guidance-interval", type=float, nargs=2, metavar=("LO", "HI"), help=INTERVAL_HELP)


def sampling_overrides(a: argparse.Namespace) -> dict:
    """The sampling flags (SAMPLING_FLAGS) that were given on the command line, by SampleConfig field name."""
    return {k: getattr(a, k) for k in SAMPLING_FLAGS if getattr(a, k, None) is not None}


def sample_config(checkpoint, a: argparse.Namespace):
    """The checkpoint's recommended SampleConfig with whichever of the CLI's sampling flags were given; a
    ConfigError, before any work, for more sampling steps than the model's T (no silent clamp)."""
    from ..config import ConfigError

    cfg = checkpoint.recommended.replace(**sampling_overrides(a))
    T = checkpoint.schedule_config.T
    if cfg.steps > T:
        raise ConfigError(f"--steps {cfg.steps} is more than this model's T = {T} diffusion steps; a sampler takes "
                          f"at most T steps, so use --steps {T} or fewer")
    return cfg


def output_file(raw: str, flag: str = "--out") -> Path:
    """The output path exactly as given (no suffix added), checked before any work: a regular file or a new name,
    in a folder that exists (or is made) and can be written. Folders, devices (/dev/full) are refused."""
    from ..checkpoints import write_problem

    path = Path(raw)
    if path.exists() and not path.is_file():
        raise ValueError(f"{flag} {path} is not a regular file (a folder or a device); give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"{flag} {path}: {write_problem(e.filename or path.parent, e)}") from None
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path}: cannot write in {path.parent} (no permission); choose another folder")
    return path


def maybe_compile(ck, a: argparse.Namespace) -> None:
    """With --compile, swap the checkpoint's model for its torch.compile'd wrapper and compile it now."""
    if not getattr(a, "compile", False):
        return
    from ..accel import compile_denoiser, warm_up

    ck.model = compile_denoiser(ck.model)
    b = min(getattr(a, "batch", 250), 10 * getattr(a, "per_class", 25))
    dt = warm_up(ck.model, (b, 2 * b))
    if ck.model.active:
        print(f"compiled the denoiser in {dt:.0f} s (torch.compile)")
    else:
        print(f"torch.compile unavailable, sampling eagerly ({ck.model.error})")


def loss_bar(total: int, unit: str, every: int):
    """A tqdm bar and the progress(i, total, loss) callback the trainers call; loss shown every `every` calls."""
    from tqdm import tqdm

    bar = tqdm(total=total, unit=unit, mininterval=2)

    def progress(i: int, n: int, loss: float) -> None:
        bar.update(1)
        if i % every == 0:
            bar.set_postfix(loss=f"{loss:.3f}")

    return bar, progress
