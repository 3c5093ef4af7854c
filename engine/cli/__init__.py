"""Command line: `python -m engine {train,sample,evaluate,...} --help`.

One module per command group, each adding its own subcommands:
- `train`: train (resumable, Ctrl-C saves, torchrun);
- `sample`: sample, evaluate, clip-rank, apply (drawing from a trained model);
- `models`: export, precompute, style-eval, train-judge, calibrate-judge, judge, train-clip, summary (making,
  describing and using models);
- `bench`: bench (calls the benchmark in the top-level benchmarks/ package);
- `distill`: distill (a few-step student of a model's guided sampler, engine/distill.py).
Commands parse, call the engine and print; the logic lives in engine modules. Errors a user can fix print
`error: ...` and exit 2, without a traceback; a failed write (disk full, read-only folder, file-size limit)
prints `error: cannot write PATH: reason` and exits 1.
"""
from __future__ import annotations

import argparse
import signal
import sys

from . import bench, distill, models, sample, train

# In the order `python -m engine --help` lists them
COMMANDS = (train.add_train, sample.add_sample, models.add_train_judge, models.add_calibrate_judge,
            models.add_judge, sample.add_evaluate, sample.add_apply,
            models.add_export, models.add_style_eval, models.add_precompute, bench.add_bench, models.add_train_clip,
            sample.add_clip_rank, models.add_summary, distill.add_distill)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine", description="Diffusion Lab engine")
    sub = p.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit code (2 with `error: ...` on stderr for a problem the user can fix, 1 with
    `error: cannot write PATH: reason` for a failed write)."""
    from ..checkpoints import CheckpointError, write_problem
    from ..config import ConfigError
    from ..data import DataUnavailable
    from ..training.step import NonFiniteLoss

    args = build_parser().parse_args(argv)
    _file_size_limit_as_error()
    try:
        return args.func(args)
    except (CheckpointError, ConfigError, DataUnavailable, NonFiniteLoss, FileNotFoundError, RuntimeError,
            ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:                      # a write failed (disk full, read-only, ...): one line, no traceback
        print(f"error: {write_problem(e.filename or '?', e)}", file=sys.stderr)
        return 1


def _file_size_limit_as_error() -> None:
    """Over a file-size limit (ulimit -f) the kernel sends SIGXFSZ, which kills a process without a word; ignored,
    the write fails with EFBIG instead, which the commands report with the path."""
    try:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    except (ValueError, AttributeError):      # not the main thread, or no such signal on this system
        pass
