"""Shipping a trained model, and the evidence stored beside it ("evidence ships with the model"):

- `export_checkpoint`: a slim copy of a run for shipping (EMA weights only), its sidecars kept;
- `precompute_samples`: the samples the pages open with, stored in the model's folder;
- `evaluate_style`: a style model's requested-vs-measured compliance, recorded in the model's report.json;
- `precompute_evidence`: the measurements the pages' landing views show (engine/evidence.py), with the very
  parameters the pages ask for, so a "Show me" lands with its evidence drawn (`landing_*` below are those).

The CLI's `export`, `precompute` and `style-eval` commands are thin wrappers around these.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .checkpoints import load_checkpoint, save_checkpoint, write_json_atomic

EXPORT_SIDECARS = ("metrics.jsonl", "snapshots", "report.json", "reports", "PROVENANCE.md")
PRECOMPUTED = "precomputed"
REPORT = "report.json"


@dataclass(frozen=True)
class Exported:
    path: Path          # the exported folder
    step: int           # the training step of the weights
    bytes: int          # total size of the folder


def _copy(src: Path, dst: Path) -> None:
    (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)


def export_checkpoint(src: str | Path, out: str | Path, recommend: dict | None = None, command: str = "",
                      overwrite: bool = False) -> Exported:
    """A slim, shippable copy of checkpoint `src` in `out`: EMA weights only (what sampling uses), no optimiser
    state; the sidecars (EXPORT_SIDECARS) are kept. `out` may be `src` itself (with overwrite=True).

    recommend: SampleConfig fields to record as the recommended settings (e.g. the guidance the evaluation
    supports best); the rest stay the checkpoint's. Cached samples (precomputed/) are not kept: they belong to
    the old recommended settings; rerun `precompute_samples`. Earlier export commands are remembered in meta.
    """
    src = Path(src)
    ck = load_checkpoint(src)
    meta = {k: v for k, v in ck.meta.items() if k not in ("sha256", "saved_at", "optimizer_param_groups")}
    if "export_command" in meta:                              # re-exporting a shipped copy keeps its history
        meta.setdefault("earlier_exports", []).append(meta["export_command"])
    meta["exported_from"] = str(src)
    meta["export_command"] = command
    recommended = ck.recommended.replace(**(recommend or {}))
    with tempfile.TemporaryDirectory() as staging:           # sidecars first: `out` may be `src` itself
        kept = [item.name for item in src.iterdir() if item.name in EXPORT_SIDECARS]
        for name in kept:
            _copy(src / name, Path(staging) / name)
        path = save_checkpoint(out, model=ck.model, ema_model=ck.model, model_config=ck.model_config,
                               schedule_config=ck.schedule_config, train_config=ck.train_config,
                               recommended=recommended, step=ck.step, meta=meta, include_raw=False,
                               overwrite=overwrite)
        for name in kept:
            _copy(Path(staging) / name, path / name)
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return Exported(path, ck.step, size)


def precompute_samples(checkpoint: str | Path) -> tuple[int, float, Path]:
    """The samples the pages open with, cached in `checkpoint`/precomputed so a first visit needs no sampling:
    the CLIP page's 10 per class, seeds 0..99, at the recommended settings. Returns (count, seconds, folder)."""
    from .cache import SampleCache
    from .sampling import class_labels, sample_cached

    ck = load_checkpoint(checkpoint)
    cache = SampleCache(Path(checkpoint) / PRECOMPUTED, max_bytes=50 * 2**20)
    labels = class_labels(10)
    t0 = time.perf_counter()
    sample_cached(ck, labels, ck.recommended.replace(seed=0), seeds=list(range(len(labels))), cache=cache)
    return len(labels), time.perf_counter() - t0, cache.root


def evaluate_style(checkpoint: str | Path, sampling: dict | None = None, seeds: int = 2, command: str = "") -> dict:
    """Requested vs measured thickness and slant of a style model (style.compliance, judged), recorded under
    "style" in the model's report.json (written atomically; the report's other sections are kept).

    sampling: SampleConfig fields over the checkpoint's recommended ones. Returns the style report.
    """
    from .judge import load_judge
    from .style import compliance

    ck = load_checkpoint(checkpoint)
    t0 = time.perf_counter()
    rep = compliance(ck, load_judge(), ck.recommended.replace(**(sampling or {})), seeds=seeds)
    rep.update(seconds=round(time.perf_counter() - t0, 1), command=command)
    path = Path(checkpoint) / REPORT
    from .training.runs import read_report       # bounded: see engine.checkpoints.read_json

    report = read_report(checkpoint)
    report["style"] = rep
    write_json_atomic(path, report)
    return rep



# -- evidence for the pages' landing views ---------------------------------------------------------------------------
GRID_WEIGHTS = (0.0, 1.0, 2.0, 4.0)
GRID_SEEDS = 20                 # per class and weight: enough for accuracy to move (the grid shows the first)
CURVE_PER_CLASS = 10
SPEED_PER_CLASS = 10
FORWARD_FRACTIONS = 21
FORWARD_PER_CLASS = 50


def landing_denoising_config(recommended, T: int):
    """The SampleConfig the Denoising page opens with for a model: its recommendation, guided from its interval's
    lower end to t/T = 1 (the page's "guide while t/T >=" control), steps at most T."""
    return recommended.replace(steps=min(recommended.steps, T), add_noise=True, eta=0.0,
                               guidance_interval=(recommended.guidance_interval[0], 1.0))


def grid_config(config):
    """The guidance grid samples DDIM with at most 10 steps; its rows set the weight, so the page's own weight
    is not part of what it measured (stored as 0)."""
    return config.replace(sampler="ddim", steps=min(10, config.steps), eta=0.0, guidance=0.0)


def speed_configs(guidance: float, interval: tuple[float, float], T: int, velocity: bool = False) -> list:
    """DDIM at 5-50 steps, the multistep solvers (DPM-Solver++(2M), UniPC) at 5-25 and DDPM at 50, 250 and T
    steps, at one guidance setting: the speed/quality chart. For a flow (velocity) model, DDIM's update goes by
    its flow-matching name, Euler, and Heun joins at 3-13 steps (5-25 network calls)."""
    from .config import SampleConfig

    base = SampleConfig(guidance=guidance, guidance_interval=interval)
    first = ([base.replace(sampler="euler", steps=s) for s in (5, 10, 25, 50) if s <= T]
             + [base.replace(sampler="heun", steps=s) for s in (3, 5, 8, 13) if s <= T]) if velocity else []
    return ((first or [base.replace(sampler="ddim", steps=s) for s in (5, 10, 25, 50) if s <= T])
            + [base.replace(sampler=name, steps=s) for name in ("dpmpp-2m", "unipc") for s in (5, 8, 10, 15, 25)
               if s <= T]
            + [base.replace(sampler="ddpm", steps=s) for s in sorted({50, 250, T}) if s <= T])


def judge_fingerprint(judge_path: str | Path | None = None) -> str:
    """What a judge's readings depend on: its weights and its "not a digit" calibration (sha256 prefixes)."""
    from .checkpoints import read_configs
    from .judge import JUDGE_PATH

    _, meta = read_configs(Path(judge_path or JUDGE_PATH))
    return "+".join(f"{name}:{digest[:16]}" for name, digest in sorted(meta.get("sha256", {}).items()))


def evidence_params(panel: str, ck=None, **extra) -> dict:
    """The exact parameters a panel's measurement is stored under (the pages build the same), including what
    was measured: the model's weights (sha256 prefix) or, for the schedule-only forward curves, the judge, so a
    retrained model or recalibrated judge never reads another's numbers."""
    params = _panel_params(panel, ck, **extra)
    if panel == "forward_recognisability":
        params["judge"] = judge_fingerprint(extra.get("judge_path"))
    else:
        params["model_sha256"] = ck.sha256[:16]
    return params


def _panel_params(panel: str, ck=None, **extra) -> dict:
    if panel == "bucket_loss":
        return {"held_every": 2, "seed": 0}
    if panel == "forward_recognisability":
        return {"schedule": extra["schedule"], "per_class": FORWARD_PER_CLASS, "levels": FORWARD_FRACTIONS}
    cfg = extra.get("config") or landing_denoising_config(ck.recommended, ck.schedule_config.T)
    if panel == "reverse_recognisability":
        return {"config": cfg.to_dict(), "per_class": CURVE_PER_CLASS}
    if panel == "guidance_grid":
        return {"config": grid_config(cfg).to_dict(), "weights": list(GRID_WEIGHTS), "seeds": GRID_SEEDS}
    if panel == "sampler_speed":                # the configs measured are part of the key: a stored result
        configs = speed_configs(cfg.guidance, tuple(cfg.guidance_interval), ck.schedule_config.T,    # lacking one
                                ck.schedule_config.kind == "flow")
        return {"guidance": cfg.guidance, "interval": list(cfg.guidance_interval), "per_class": SPEED_PER_CLASS,
                "configs": [f"{c.sampler}-{c.steps}" for c in configs]}                          # is not shown
    if panel == "class_samples":              # one digit per class at the recommended settings, <= 20 steps
        rec = ck.recommended
        return {"config": rec.replace(steps=min(20, rec.steps, ck.schedule_config.T)).to_dict(), "seeds": 10}
    raise ValueError(f"unknown evidence panel {panel!r}")


def compute_panel(panel: str, ck, judge, params: dict, cache=None, progress=None):
    """Measure one panel with the engine's own functions, for exactly `params` (see evidence_params);
    progress(done, total), if given, is called as the measurement goes (for a progress bar)."""
    import torch

    from .config import SampleConfig
    from .data import load as load_data
    from .metrics import (forward_recognisability, guidance_grid, loss_by_noise_level, reverse_recognisability,
                          sampling_figures)
    from .schedule import NoiseSchedule

    _, held = load_data("mnist-5k")
    if panel == "forward_recognisability":
        from .config import ScheduleConfig

        idx = torch.arange(0, len(held), 100 // params["per_class"])
        fractions = [i / (params["levels"] - 1) for i in range(params["levels"])]
        schedule = NoiseSchedule(ScheduleConfig(kind=params["schedule"], T=1000))
        return forward_recognisability(judge, schedule, held.images[idx], held.labels[idx], fractions,
                                       progress=progress)
    schedule = NoiseSchedule(ck.schedule_config)
    if panel == "bucket_loss":
        idx = torch.arange(0, len(held), params["held_every"])
        return loss_by_noise_level(ck.model, schedule, held.images[idx], held.labels[idx], seed=params["seed"],
                                   progress=progress)
    if panel == "reverse_recognisability":
        return reverse_recognisability(ck.model, schedule, judge, SampleConfig(**params["config"]),
                                       per_class=params["per_class"], progress=progress)
    if panel == "guidance_grid":
        return guidance_grid(ck, judge, SampleConfig(**params["config"]), params["weights"], params["seeds"], cache,
                             progress=progress)
    if panel == "sampler_speed":
        configs = speed_configs(params["guidance"], tuple(params["interval"]), ck.schedule_config.T,
                                ck.schedule_config.kind == "flow")
        return sampling_figures(ck, judge, configs, per_class=params["per_class"], progress=progress)
    if panel == "class_samples":
        from .sampling import class_labels, sample, to_uint8

        x = sample(ck.model, schedule, class_labels(1), SampleConfig(**params["config"]),
                   seeds=list(range(params["seeds"])))
        return {"images": to_uint8(x.cpu()).tolist()}
    raise ValueError(f"unknown evidence panel {panel!r}")


MODEL_PANELS = ("bucket_loss", "reverse_recognisability", "guidance_grid", "sampler_speed", "class_samples")


def precompute_evidence(checkpoint: str | Path, command: str, panels=MODEL_PANELS, judge_path=None,
                        progress=print) -> list[tuple[str, float]]:
    """Measure each panel at the pages' landing settings for the model at `checkpoint` and store it in
    `checkpoint`/evidence (the schedule-only forward curves go to the judge's folder). Returns (panel, seconds)."""
    from . import evidence
    from .judge import JUDGE_PATH, load_judge

    ck = load_checkpoint(checkpoint)
    judge_path = Path(judge_path or JUDGE_PATH)
    judge = load_judge(judge_path)
    done = []
    for panel in panels:
        if panel == "forward_recognisability":
            for kind in ("cosine", "linear"):
                params = evidence_params(panel, schedule=kind, judge_path=judge_path)
                e = evidence.measure(judge_path, panel, params, lambda: compute_panel(panel, None, judge, params),
                                     command)
                done.append((f"{panel} ({kind})", e["seconds"]))
                progress(f"  {panel} ({kind}): {e['seconds']:.1f} s")
            continue
        params = evidence_params(panel, ck)
        e = evidence.measure(checkpoint, panel, params, lambda: compute_panel(panel, ck, judge, params), command)
        done.append((panel, e["seconds"]))
        progress(f"  {panel}: {e['seconds']:.1f} s")
    return done
