"""`python -m engine bench`: the measured figures. The benchmark itself lives outside the library, in the
top-level `benchmarks/` package (it drives the dashboard as well as the engine); this command only calls it."""
from __future__ import annotations

import argparse
import sys

FULL_TIME_TO_QUALITY = ("tiny", "fast", "default", "peer")


def add_bench(sub) -> None:
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


def cmd_bench(a: argparse.Namespace) -> int:
    try:
        from benchmarks import run_bench
    except ModuleNotFoundError as e:
        if e.name != "benchmarks":
            raise
        print("error: the benchmark is the top-level `benchmarks` package of the Diffusion Lab repository, which "
              "is not importable here; run `python -m engine bench` from the repository root", file=sys.stderr)
        return 2
    from ..checkpoints import write_json_atomic
    from ..devices import pick_device
    from .common import output_file

    out = output_file(a.out) if a.out else None            # checked before minutes of measuring
    recipes = tuple(r for r in (a.time_to_quality or "").split(",") if r)
    if not a.quick and a.time_to_quality is None:
        recipes = FULL_TIME_TO_QUALITY
    res = run_bench(quick=a.quick, checkpoint=a.checkpoint, threads=a.threads, peer=not a.no_peer,
                    time_to_quality_recipes=recipes, ttq_cap_s=a.ttq_cap, device=pick_device(a.device))
    print("\n" + "\n".join(f"{k:32s} {v}" for k, v in res.items() if not isinstance(v, list)))
    if out:
        write_json_atomic(out, res)
        print(f"written to {a.out}")
    return 0
