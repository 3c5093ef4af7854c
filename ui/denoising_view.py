"""Cached computations and panels of the Denoising page (the page itself only lays them out)."""
from __future__ import annotations

import time

import numpy as np
import streamlit as st
import torch

from engine.config import SampleConfig
from engine.metrics import first_recognised, memorisation, reverse_recognisability
from engine.judge import predict
from engine.sampling import class_labels, sample_cached, trajectory
from engine.schedule import NoiseSchedule

from . import figures, resources, roles, widgets

MAX_GRID_SEEDS = 4


@st.cache_data(max_entries=32, show_spinner="Denoising…")
@roles.heavy
def cached_trajectory(path: str, sha: str, digit: int, seed: int, cfg: dict) -> dict:
    ck = resources.load_model(path)
    t0 = time.perf_counter()
    tr = trajectory(ck.model, NoiseSchedule(ck.schedule_config), torch.tensor([digit]), SampleConfig(**cfg), [seed])
    return {"t": tr["t"], "x_t": widgets.to_display(tr["x_t"][:, 0]), "x0": widgets.to_display(tr["x0_pred"][:, 0]),
            "final": tr["final"], "seconds": time.perf_counter() - t0}


@st.cache_data(max_entries=8, show_spinner="Sampling 10 digits per class and judging every step (≈ 10–30 s on a CPU)…")
@roles.heavy
def cached_reverse_curve(path: str, sha: str, cfg: dict, per_class: int) -> dict:
    ck = resources.load_model(path)
    return reverse_recognisability(ck.model, NoiseSchedule(ck.schedule_config), resources.get_judge(),
                                   SampleConfig(**cfg), per_class=per_class)


@st.cache_data(max_entries=8, show_spinner="Sampling the class × guidance grid…")
@roles.heavy
def cached_guidance_grid(path: str, sha: str, cfg: dict, weights: tuple[float, ...], seeds: int) -> dict:
    ck = resources.load_model(path)
    judge = resources.get_judge()
    labels = class_labels(seeds)
    images, acc = [], []
    for w in weights:
        c = SampleConfig(**cfg).replace(guidance=w)
        x = sample_cached(ck, labels, c, cache=resources.get_sample_cache())
        images.append(widgets.to_display(x[::seeds]))                   # first seed of each class, for the grid
        if judge is not None:
            probs, _ = predict(judge, x)
            right = (probs.argmax(1) == labels).float().view(10, seeds).mean(1)
            acc.append(right.numpy())
    return {"images": np.stack(images), "accuracy": np.stack(acc) if acc else None}


def trajectory_panel(ck, path: str, digit: int, seed: int, cfg: SampleConfig) -> torch.Tensor:
    tr = cached_trajectory(path, ck.sha256, digit, seed, cfg.to_dict())
    _scrubber(tr, cfg, seed, ck.schedule_config.T)
    judge = resources.get_judge()
    if judge is not None:                     # say so when this seed is one of the misses, rather than hide it
        probs, _ = predict(judge, tr["final"])
        read = int(probs[0].argmax())
        if read == digit:
            st.caption(f"The judge reads the final sample as a {read} ({float(probs[0, read]):.0%} confident).")
        else:
            report = resources.model_report(path)
            st.warning(f"The judge reads this final sample as a **{read}** ({float(probs[0, read]):.0%}), not a "
                       f"{digit}: a miss. "
                       + (f"This model's evaluation reads {report['accuracy']:.1%} of {report['n_samples']:,} "
                          "samples right at its recommended guidance, so misses happen. "
                          if "accuracy" in report and "n_samples" in report else "")
                       + "Raise w or try another seed, and watch the step where the digit's identity settles.")
    return tr["final"]


@st.fragment
def _scrubber(tr: dict, cfg: SampleConfig, seed: int, T: int) -> None:
    """A fragment: moving through the frames reruns only this panel, not the page (30 learners, 2 cores)."""
    n = len(tr["t"])
    i = st.slider("denoising step", 0, n - 1, n - 1, key="denoising.frame",
                  help="Scrub through the reverse process: x_t is the state, x̂₀ the model's current guess.")
    done = 100 * i / (n - 1)
    t = tr["t"][i]
    c1, c2, c3 = st.columns([1, 1, 2])
    with c1:
        widgets.show(tr["x_t"][i], caption=f"x_t at t = {t}" if t >= 0 else "final sample x₀", scale=7)
    with c2:
        widgets.show(tr["x0"][i], caption=f"x̂₀ predicted at t = {t}" if t >= 0 else "final sample x₀", scale=7)
    with c3:
        st.markdown(f"Frame **{i + 1} / {n}** ({done:.0f} % of denoising done). "
                    f"x̂₀ = (x_t − √(1−ᾱ_t)·ε̂) / √ᾱ_t — the model's guess of the clean digit from where it is now.")
        if t >= 0 and cfg.guidance > 0:
            st.markdown("This step is **guided**: two forwards, with and without the label."
                        if cfg.guidance_at(t, T) > 0 else
                        f"This step is **not guided** (t/T = {t / T:.2f} is below the guidance interval): "
                        "the conditional model alone, one forward.")
        lo = cfg.guidance_interval[0]
        st.caption(f"{cfg.sampler.upper()}-{cfg.steps}, guidance w = {cfg.guidance}"
                   + (f" while t/T ≥ {lo:g}" if lo > 0 and cfg.guidance > 0 else "") + f", seed {seed}: "
                   f"{tr['seconds']:.2f} s for this digit on {resources.device_label()}.")
        st.image(widgets.mosaic(tr["x0"][:: max(1, n // 10)], cols=10, scale=2), output_format="PNG",
                 caption="x̂₀ along the way")


def recognisability_panel(ck, path: str, cfg: SampleConfig) -> None:
    if resources.get_judge() is None:
        st.warning("No judge checkpoint: recognisability cannot be measured.")
        return
    if not st.toggle("Measure it (10 seeds per class, every step judged)", key="denoising.curve"):
        return
    curve = cached_reverse_curve(path, ck.sha256, cfg.to_dict(), 10)
    pct = [100 * d for d in curve["done"]]
    c1, c2 = st.columns(2)
    c1.plotly_chart(figures.per_class_lines(pct, curve["x0_pred"]["accuracy"], "judge accuracy on x̂₀",
                                            "% of denoising done", "accuracy", curve["x0_pred"]["overall"]),
                    key="denoising.x0curve")
    c2.plotly_chart(figures.per_class_lines(pct, curve["x_t"]["accuracy"], "judge accuracy on x_t",
                                            "% of denoising done", "accuracy", curve["x_t"]["overall"]),
                    key="denoising.xtcurve")
    first = first_recognised(curve["done"], curve["x0_pred"]["accuracy"])
    st.markdown("First step at which the judge reads ≥ 90 % of x̂₀ correctly: " + ", ".join(
        f"**{c}**: {100 * d:.0f} %" if d is not None else f"**{c}**: never" for c, d in first.items()))


def guidance_grid_panel(ck, path: str, cfg: SampleConfig) -> None:
    weights = (0.0, 1.0, 2.0, 4.0)
    if not st.toggle("Sample the class × guidance grid (4 seeds per cell, DDIM-10)", key="denoising.grid"):
        return
    g = cached_guidance_grid(path, ck.sha256, cfg.replace(sampler="ddim", steps=min(10, cfg.steps)).to_dict(),
                             weights, MAX_GRID_SEEDS)
    st.image(widgets.mosaic(g["images"].reshape(-1, 28, 28), cols=10, scale=3), output_format="PNG",
             caption="rows: guidance w = " + ", ".join(map(str, weights)) + "; columns: digits 0…9")
    if g["accuracy"] is not None:
        st.plotly_chart(figures.heatmap(g["accuracy"], "digit", "guidance w", "judge accuracy per cell",
                                        x=list(range(10)), y=[str(w) for w in weights]), key="denoising.gridacc")


def memorisation_panel(final: torch.Tensor) -> None:
    train, _ = resources.get_data()
    m = memorisation(final, train.images, None, heldout_nearest=resources.get_heldout_nearest())
    idx = m["nearest_train_index"][0]
    c1, c2, c3 = st.columns([1, 1, 2])
    with c1:
        widgets.show(widgets.to_display(final[0]), caption="generated", scale=5)
    with c2:
        widgets.show(widgets.to_display(train.images[idx]), caption=f"nearest training digit #{idx}", scale=5)
    with c3:
        st.markdown(f"Pixel distance **{m['nearest_train_l2'][0]:.2f}**; held-out real digits are typically "
                    f"{m['heldout_nearest_l2_median']:.2f} from their nearest training digit and only 1 % are closer "
                    f"than {m['threshold_l2']:.2f}. A much smaller distance would mean the model copied.")


@st.cache_data(max_entries=4, show_spinner="Timing each sampler on 20 guided digits (DDPM-1000 alone takes a while on a CPU)…")
@roles.heavy
def cached_sampler_figures(path: str, sha: str, guidance: float, interval: tuple[float, float]) -> list[dict]:
    from engine.metrics import sampling_figures

    ck = resources.load_model(path)
    T = ck.schedule_config.T
    base = SampleConfig(guidance=guidance, guidance_interval=interval)   # only these shape the chart: its key
    cfgs = [base.replace(sampler="ddim", steps=s) for s in (5, 10, 25, 50) if s <= T]
    cfgs += [base.replace(sampler="ddpm", steps=s) for s in (50, 250, T) if s <= T]
    return sampling_figures(ck, resources.get_judge(), cfgs, per_class=2)


def sampler_panel(ck, path: str, cfg: SampleConfig, digit: int, seed: int) -> None:
    """Right vs wrong ancestral sampler side by side, and steps vs time vs judge accuracy per sampler."""
    # two more samplings per seed: on request, so a new seed costs one trajectory, not three (30 learners, 2 cores)
    if st.toggle("Compare the right and the wrong DDPM step for this digit and seed", key="denoising.wrong"):
        right = cached_trajectory(path, ck.sha256, digit, seed, cfg.replace(sampler="ddpm", add_noise=True).to_dict())
        wrong = cached_trajectory(path, ck.sha256, digit, seed, cfg.replace(sampler="ddpm", add_noise=False).to_dict())
        c1, c2, c3 = st.columns([1, 1, 2])
        with c1:
            widgets.show(right["x0"][-1], caption="DDPM with σ·z (right)", scale=5)
        with c2:
            widgets.show(wrong["x0"][-1], caption="DDPM without σ·z (wrong)", scale=5)
        with c3:
            st.markdown("The ancestral step is x_{t−1} = μ_θ(x_t, t) + σ_t·z. Dropping σ_t·z keeps only the posterior "
                        "*mean*, which averages over all digits that could still come out: strokes wash out into a "
                        "blurry, low-contrast blob. (DDIM with η = 0 is deterministic by design and does not have "
                        "this problem: its update is a different, consistent ODE-like step.)")
    if st.toggle("Measure speed vs quality for DDIM and DDPM step counts (20 digits each)", key="denoising.speed"):
        rows = cached_sampler_figures(path, ck.sha256, cfg.guidance, cfg.guidance_interval)
        import pandas as pd
        import plotly.graph_objects as go

        df = pd.DataFrame(rows)
        fig = go.Figure()
        for name, g in df.groupby("sampler"):
            fig.add_trace(go.Scatter(x=g["seconds"], y=g.get("judge_accuracy"), mode="lines+markers+text",
                                     text=[f"{s} steps" for s in g["steps"]], textposition="top center",
                                     name=name.upper()))
        fig.update_xaxes(title="seconds for 20 digits", type="log")
        fig.update_yaxes(title="judge accuracy", range=[0, 1.05])
        fig.update_layout(height=330, margin=dict(l=10, r=10, t=30, b=10), title="speed vs quality")
        c1, c2 = st.columns([2, 1])
        c1.plotly_chart(fig, key="denoising.speedchart")
        c2.dataframe(df, hide_index=True)
        fast = resources.SHIPPED_ROOT / "fast"
        if (ck.model_config.patch_size == 1 and (fast / "weights.safetensors").exists()
                and not torch.cuda.is_available()):
            fast_ck = resources.load_model(str(fast))
            c2.caption("Sampling on a CPU: the shipped `fast` model (pick it in the sidebar) folds 2×2 pixel patches "
                       "into channels and has no 28×28 level: "
                       f"{resources.model_mflop(str(fast), fast_ck.sha256):.0f} MFLOP per image and step against this "
                       f"model's {resources.model_mflop(path, ck.sha256):.0f}, at the default's quality bars. The "
                       "Architecture page compares the two.")
