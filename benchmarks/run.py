"""run_bench: every figure of the benchmark, measured in this process, in one dict (the bench.json keys)."""
from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

from engine.accel import to_device
from engine.checkpoints import load_checkpoint
from engine.config import ScheduleConfig
from engine.presets import get_preset
from engine.schedule import NoiseSchedule
from engine.summary import total_flops
from engine.unet import build_model

from .dashboard import cold_start_s, first_page_s, forward_page_ms, forward_slider_ms, landing_views_s
from .machine import matmul_gflops
from .peer import PeerUNet
from .sampling import clip_scoring, default_model_sampling, fast_model_sampling, judge_or_none
from .training import compiled_training, time_to_quality, train_throughput

ROOT = Path(__file__).resolve().parent.parent
PEER_MISSING = "peer skipped: diffusers is not installed (pip install -r requirements-test.txt)"


def _training_figures(res: dict, reps: int, quick: bool, peer: bool, log, device: torch.device) -> None:
    """Images/s and GFLOP/s of a training step for each preset, compiled (full bench) and the peer, into res."""
    schedule = NoiseSchedule(ScheduleConfig())
    for name in ("tiny", "fast", "default"):
        p = get_preset(name)
        torch.manual_seed(0)
        model = to_device(build_model(p.model), device)         # the form and layout training uses there
        ips = train_throughput(model, 128, reps, schedule, device)
        flops = total_flops(model)
        res[f"train_img_per_s_{name}"] = round(ips, 1)
        res[f"forward_mflop_{name}"] = round(flops / 1e6, 1)
        res[f"train_gflops_{name}"] = round(3 * flops * ips / 1e9, 1)   # backward ~ 2x forward
        log(f"train {name}: {ips:.0f} images/s, {3 * flops * ips / 1e9:.0f} GFLOP/s")
    res["train_flops_utilisation"] = round(res["train_gflops_default"] / res["matmul_gflops"], 3)
    res["train_flops_utilisation_fast"] = round(res["train_gflops_fast"] / res["matmul_gflops"], 3)
    if not quick:                                               # `python -m engine train --compile`
        res.update(compiled_training(schedule, reps, res["forward_mflop_default"] * 1e6, res["matmul_gflops"], log,
                                     device))
    if peer:
        try:
            torch.manual_seed(0)
            peer_model = PeerUNet().to(device)
            ips = train_throughput(peer_model, 128, reps, schedule, device, p_uncond=0.0)
            res["train_img_per_s_peer"] = round(ips, 1)
            res["train_ratio_default_vs_peer"] = round(res["train_img_per_s_default"] / ips, 2)
            log(f"train peer (diffusers UNet2DModel, HF course config): {ips:.0f} images/s")
            # The course trains NCHW; the peer in our CPU layout too, so the ratio is not a layout artefact.
            torch.manual_seed(0)
            peer_cl = PeerUNet().to(device, memory_format=torch.channels_last)
            ips_cl = train_throughput(peer_cl, 128, reps, schedule, device, p_uncond=0.0)
            res["train_img_per_s_peer_channels_last"] = round(ips_cl, 1)
            log(f"train peer, channels-last: {ips_cl:.0f} images/s")
        except ImportError:
            log(PEER_MISSING)


def _time_to_quality_figures(res: dict, recipes: tuple[str, ...], cap_s: float, peer: bool, log,
                             device: torch.device) -> None:
    """Training seconds to 95 % judge accuracy for each recipe, and the peer-vs-ours ratios, into res."""
    eval_every = 30.0 if device.type == "cpu" else 5.0     # a GPU's target is <= 30 s: judge more often there
    for recipe in recipes:
        if recipe == "peer" and not peer:
            continue
        log(f"time to 95 % judge accuracy: {recipe} (cap {cap_s:.0f} s of training)")
        try:
            r = time_to_quality(recipe, cap_s=cap_s, eval_every_s=eval_every, log=log, device=device)
        except ImportError:
            log(PEER_MISSING)
            continue
        res[f"time_to_95_s_{recipe}"] = r["time_to_target_s"]
        res[f"time_to_95_curve_{recipe}"] = r["curve"]
        res[f"time_to_95_guidance_{recipe}"] = r["guidance"]
        res["time_to_95_protocol"] = (f"train from scratch; every {eval_every:g} s of training, 100 digits DDIM-25 at "
                                      "the recipe's guidance, judged; evaluation time not counted; cap "
                                      f"{cap_s:.0f} s (null = not reached within the cap)")
    if res.get("time_to_95_s_peer") is None and "time_to_95_curve_peer" in res:
        best = res.get("time_to_95_s_tiny") or res.get("time_to_95_s_default")
        if best:
            res["time_to_95_ratio_peer_vs_ours"] = f"> {cap_s / best:.1f} (peer did not reach 95 % within the cap)"
    elif res.get("time_to_95_s_peer"):
        for recipe in ("default", "tiny"):
            if res.get(f"time_to_95_s_{recipe}"):
                res[f"time_to_95_ratio_peer_vs_{recipe}"] = round(res["time_to_95_s_peer"] / res[f"time_to_95_s_{recipe}"], 2)


def _geometry_figures(log=print) -> dict:
    """The Geometry lab: seconds to train the page's two-moons model from scratch (one thread, as the page runs it)
    and the fit it reaches, for both objectives."""
    from .geometry import time_to_fit_two_moons

    out = {}
    for objective in ("ddpm", "flow"):
        r = time_to_fit_two_moons(objective, log=lambda *a: None)
        out[f"geometry_fit_s_{objective}"] = round(r["seconds"], 2)
        out[f"geometry_fit_ratio_{objective}"] = round(r["ratio"], 2)
        log(f"geometry lab, two moons, {objective}: trained in {r['seconds']:.1f} s (1 thread), fit {r['ratio']:.2f}x "
            f"the data's own floor ({'good' if r['good'] else 'not good'}; {r['sampler']}-{r['n_steps']})")
    return out


def run_bench(quick: bool = False, checkpoint: str | None = None, threads: int | None = None,
              peer: bool = True, time_to_quality_recipes: tuple[str, ...] = (), ttq_cap_s: float = 480.0,
              log=print, device: str | torch.device = "cpu") -> dict:
    """Every figure of `python -m engine bench`, measured in this process. `device`: where models train and
    sample ("cuda" on a GPU machine); the page figures (forward slider, cold start, memory) are the dashboard's
    own and stay on the CPU."""
    if threads:
        torch.set_num_threads(threads)
    device = torch.device(device)
    res: dict = {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
                 "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
                 "device": str(device), "quick": quick}
    if device.type == "cuda":
        res["gpu"] = torch.cuda.get_device_name(device)
    reps = 3 if quick else 7
    res["matmul_gflops"] = round(matmul_gflops(device=device), 1)
    log(f"matmul fp32: {res['matmul_gflops']} GFLOP/s on {res.get('gpu', 'the CPU')} ({res['threads']} threads)")
    _training_figures(res, reps, quick, peer, log, device)
    res.update(forward_slider_ms(20 if quick else 100))
    log(f"forward slider: {res['forward_slider_ms']} ms per q_sample, {res['forward_strip_ms']} ms per 11-image strip")
    res.update(forward_page_ms(5 if quick else 15))
    log(f"forward page: {res['forward_panel_ms']} ms server time per slider move (the fragment), "
        f"{res['forward_page_ms']} ms for a whole rerun of the page")
    ck_path = Path(checkpoint) if checkpoint else ROOT / "checkpoints" / "default"
    if (ck_path / "weights.safetensors").exists():
        res.update(default_model_sampling(load_checkpoint(ck_path, device), judge_or_none(), quick, log))
    fast_path = ROOT / "checkpoints" / "fast"
    if checkpoint is None and (fast_path / "weights.safetensors").exists():
        res.update(fast_model_sampling(fast_path, quick, log, device))
    if checkpoint is None:
        from .fewstep import fewstep_sampling

        res.update(fewstep_sampling(quick, log, device))
        if res.get("sample_100_fewstep_s") and res.get("sample_100_ddim25_fast_s"):
            res["sample_fewstep_speedup_vs_ddim25_fast"] = round(res["sample_100_ddim25_fast_s"]
                                                                 / res["sample_100_fewstep_s"], 2)
            log(f"few-step vs the fast model's DDIM-25: {res['sample_fewstep_speedup_vs_ddim25_fast']}x faster")
    res.update(clip_scoring(reps, log))
    res.update(_geometry_figures(log))
    _time_to_quality_figures(res, time_to_quality_recipes, ttq_cap_s, peer, log, device)
    res.update(landing_views_s())
    slow = {k: v for k, v in res["landing_s"].items() if v > 2}
    log("worksheet landing views (server s): " + ", ".join(f"{k} {v}" for k, v in res["landing_s"].items())
        + (f"; over 2 s: {', '.join(slow)}" if slow else "; all <= 2 s"))
    res["cold_start_s"] = cold_start_s()
    res["first_page_s"], res["peak_rss_mb"] = first_page_s()
    log(f"cold start (health check): {res['cold_start_s']} s; dashboard + first page: {res['first_page_s']} s; "
        f"peak RSS {res['peak_rss_mb']} MB")
    return res
