"""Tabs of the Applications page: each runs one engine.applications function on the chosen model."""
from __future__ import annotations

import json
import time

import numpy as np
import streamlit as st
import torch

from engine import applications as apps
from engine.config import SampleConfig
from engine.judge import NOT_A_DIGIT, predict
from engine.schedule import NoiseSchedule

from . import compute, pins, resources, state, widgets

MAX_STEPS = 100            # server-side cap on what one learner's click may cost
MASKS = ["right", "left", "top", "bottom", "centre", "random", "draw it"]
SIZES = ["7x7", "14x14"]
# Each application's settings, in the URL while that application is shown (pages/applications.py): a shared link
# reopens the same application with the same settings. A drawn mask stays in the browser that drew it.
TAB_PARAMS = {
    "Inpainting": [state.Param("mask", "right", state.one_of(*MASKS)),
                   state.Param("inpaint_label", 3, state.int_in(0, 9)),
                   state.Param("resample", 1, state.int_in(1, 4)),
                   state.Param("inpaint_seed", 0, state.int_in(0, 9999))],
    "Editing (SDEdit)": [state.Param("edit_label", 8, state.int_in(0, 9)),
                         state.Param("strength", 0.5, state.float_in(0.0, 1.0)),
                         state.Param("edit_seed", 0, state.int_in(0, 9999)),
                         state.Param("strip", False, state.flag)],
    "Upscaling": [state.Param("size", "7x7", state.one_of(*SIZES)),
                  state.Param("up_label", 3, state.int_in(0, 9)),
                  state.Param("up_seed", 0, state.int_in(0, 9999))],
    "Interpolation": [state.Param("from", 1, state.int_in(0, 9)), state.Param("to", 7, state.int_in(0, 9)),
                      state.Param("interp_seed", 0, state.int_in(0, 9999))],
    "Style (B4)": [state.Param("style_digit", 4, state.int_in(0, 9)),
                   state.Param("style_seed", 0, state.int_in(0, 9999))],
    "Limits": [state.Param("ood_strength", 0.5, state.float_in(0.1, 1.0)),
               state.Param("ood_target", 8, state.int_in(0, 9))],
}


def _judge_line(x: torch.Tensor) -> str:
    judge = resources.get_judge()
    if judge is None:
        return ""
    probs, _ = predict(judge, x.clamp(-1, 1))
    p, c = probs[0].max(0)
    if int(c) == NOT_A_DIGIT:
        return "judge: **not a digit**"
    return f"judge reads **{int(c)}** ({float(p):.0%})"


def _result_row(items: list[tuple[torch.Tensor, str]], note: str = "", judged: tuple[int, ...] | None = None) -> None:
    """Images side by side with captions; the judge's reading under those in `judged` (default: all)."""
    cols = st.columns(len(items) + (1 if note else 0))
    for i, (col, (img, cap)) in enumerate(zip(cols, items)):
        with col:
            widgets.show(widgets.to_display(img[0]), caption=cap, scale=5)
            if judged is None or i in judged:
                st.markdown(_judge_line(img))
    if note:
        cols[-1].markdown(note)


def _ctx(path: str):
    ck = resources.load_model(path)
    return ck, NoiseSchedule(ck.schedule_config)


@compute.heavy(64, "Running the model")
def _apply(path: str, sha: str, name: str, x: np.ndarray | None, cfg: dict, **params) -> tuple[np.ndarray, float]:
    """One application run, cached per (model, input, settings): reruns of the page cost nothing.
    Returns ((B, 1, 28, 28) float32 in [-1, 1], seconds)."""
    ck, s = _ctx(path)
    c = SampleConfig(**cfg)
    xt = None if x is None else torch.from_numpy(x)
    t0 = time.perf_counter()
    if name == "inpaint":
        mask = (torch.from_numpy(params["mask"]) if params.get("mask") is not None
                else apps.make_mask(params["kind"], params["seed"]))
        out = apps.inpaint(ck.model, s, xt, mask, params["label"], c, params["seed"], params["resample"])
    elif name == "sdedit":
        out = apps.sdedit(ck.model, s, xt, params["label"], params["strength"], c, params["seed"])
    elif name == "upscale":
        out = apps.upscale(ck.model, s, apps.downsample(xt, params["factor"]), params["label"], c, params["seed"])
    elif name == "classes":
        out = apps.interpolate_classes(ck.model, s, params["a"], params["b"], 8, c, params["seed"])
    elif name == "seeds":
        out = apps.interpolate_seeds(ck.model, s, params["a"], params["seed"], params["seed"] + 1, 8, c)
    else:
        raise ValueError(name)
    return out.numpy(), time.perf_counter() - t0


def run(path: str, name: str, x: torch.Tensor | None, cfg: SampleConfig, **params) -> tuple[torch.Tensor, float]:
    ck = resources.load_model(path)
    out, dt = _apply(path, ck.sha256, name, None if x is None else x.numpy(), cfg.to_dict(), **params)
    return torch.from_numpy(out), dt


def inpainting_tab(path: str, x: torch.Tensor, cfg: SampleConfig) -> None:
    c1, c2, c3, c4 = st.columns(4)
    kind = c1.selectbox("mask", MASKS, key="apps.mask")
    label = widgets.number_input(c2, "fill as digit", 0, 9, key="apps.inpaint_label")
    resample = widgets.number_input(c3, "RePaint resampling", 1, 4, key="apps.resample",
                               help="repeat each step, re-noising in between: better harmony, proportionally slower")
    seed = widgets.number_input(c4, "seed", 0, 9999, key="apps.inpaint_seed")
    drawn = None
    if kind == "draw it":
        from .canvas import draw_digit

        st.caption("Paint the region to erase (white = missing); the model fills it in.")
        png = draw_digit("apps.mask_canvas")
        if png is None:
            st.info("Paint over part of the digit to choose what the model should fill in.")
            return
        drawn = widgets.png_to_mask(png)
    mask = torch.from_numpy(drawn) if drawn is not None else apps.make_mask(kind, seed)
    masked = x * mask + (1 - mask) * 0.0
    out, dt = run(path, "inpaint", x, cfg, kind=kind, label=int(label), seed=int(seed), resample=int(resample),
                  mask=drawn)
    _result_row([(x, "input"), (masked, "known pixels (grey = missing)"), (out, f"inpainted ({dt:.1f} s)")],
                judged=(0, 2), note="After every step the known pixels are put back, noised to that step's level "
                "(RePaint): the model only invents the missing part, in harmony with what it can see.")


def editing_tab(path: str, x: torch.Tensor, cfg: SampleConfig) -> None:
    c1, c2, c3 = st.columns(3)
    label = widgets.number_input(c1, "turn it into digit", 0, 9, key="apps.edit_label")
    strength = c2.slider("strength", 0.0, 1.0, step=0.05, key="apps.strength",
                         help="0 = unchanged; 1 = a new digit that ignores the input")
    seed = widgets.number_input(c3, "seed", 0, 9999, key="apps.edit_seed")
    out, dt = run(path, "sdedit", x, cfg, label=int(label), strength=float(strength), seed=int(seed))
    strip = [run(path, "sdedit", x, cfg, label=int(label), strength=f, seed=int(seed))[0]
             for f in (0.2, 0.4, 0.6, 0.8)] if st.toggle("show the strength strip", key="apps.strip") else []
    _result_row([(x, "input"), (out, f"edited at strength {strength:.2f} ({dt:.1f} s)")],
                f"SDEdit: noise the input to {strength:.0%} of the chain, then denoise towards **{label}**. Low "
                "strength keeps the shape; high strength keeps only the rough layout.")
    if strip:
        pins.image(st, widgets.mosaic(widgets.to_display(torch.cat(strip)), cols=4, scale=3), output_format="PNG",
                 caption="strength 0.2, 0.4, 0.6, 0.8")


def upscaling_tab(path: str, x: torch.Tensor, cfg: SampleConfig) -> None:
    c1, c2, c3 = st.columns(3)
    size = c1.selectbox("low-resolution input", SIZES, key="apps.size")
    label = widgets.number_input(c2, "digit", 0, 9, key="apps.up_label")
    seed = widgets.number_input(c3, "seed", 0, 9999, key="apps.up_seed")
    factor = 4 if size == "7x7" else 2
    low = apps.downsample(x, factor)
    out, dt = run(path, "upscale", x, cfg, factor=factor, label=int(label), seed=int(seed))
    nearest = torch.nn.functional.interpolate(low, scale_factor=factor, mode="nearest")
    err = float((apps.downsample(out, factor) - low).abs().max())
    _result_row([(nearest, f"input {size} (blocky)"), (apps.bicubic(low), "bicubic"), (out, f"diffusion ({dt:.1f} s)"),
                 (x, "original")],
                f"ILVR: after each step the coarse content of x_t is replaced by the input's, noised to that level; "
                f"the model adds plausible strokes. The result downsamples back to the input (max error {err:.3f}).")


def interpolation_tab(path: str, cfg: SampleConfig) -> None:
    c1, c2, c3 = st.columns(3)
    a = widgets.number_input(c1, "from digit", 0, 9, key="apps.from")
    b = widgets.number_input(c2, "to digit", 0, 9, key="apps.to")
    seed = widgets.number_input(c3, "seed", 0, 9999, key="apps.interp_seed")
    c = cfg.replace(sampler="ddim", eta=0.0)
    classes, _ = run(path, "classes", None, c, a=int(a), b=int(b), seed=int(seed))
    seeds, _ = run(path, "seeds", None, c, a=int(a), seed=int(seed))
    pins.image(st, widgets.mosaic(widgets.to_display(classes), cols=8, scale=3), output_format="PNG",
             caption=f"class embedding mixed from {a} to {b}, same noise")
    pins.image(st, widgets.mosaic(widgets.to_display(seeds), cols=8, scale=3), output_format="PNG",
             caption=f"digit {a}, starting noise moved from seed {seed} to {seed + 1} (spherical interpolation)")


def limits_tab(path: str, x: torch.Tensor, cfg: SampleConfig) -> None:
    c1, c2 = st.columns(2)
    strength = c1.slider("editing strength for the odd inputs", 0.1, 1.0, step=0.05, key="apps.ood_strength")
    target = int(widgets.number_input(c2, "edit them towards digit", 0, 9, key="apps.ood_target"))
    rows = []
    judge = resources.get_judge()
    for name, img in apps.out_of_distribution_inputs(x).items():
        out, _ = run(path, "sdedit", img, cfg, label=target, strength=float(strength), seed=0)
        read = int(predict(judge, out.clamp(-1, 1))[0].argmax()) if judge is not None else None
        rows.append((name, img, out, read))
    cols = st.columns(len(rows))
    for col, (name, img, out, _) in zip(cols, rows):
        with col:
            widgets.show(np.concatenate([widgets.to_display(img[0]), widgets.to_display(out[0])], axis=1),
                         caption=f"{name} → edited towards {target}", scale=3)
            st.markdown(_judge_line(img) + " → " + _judge_line(out))
    if judge is not None:
        became = [name for name, _, _, read in rows if read == target]
        kept = [name for name, _, _, read in rows if read != target]
        st.caption(f"At strength {strength:.2f}, the edit turned {len(became)} of {len(rows)} odd inputs into a "
                   f"{target} the judge reads as one ({', '.join(became) or 'none'}); "
                   f"{', '.join(kept) or 'none'} did not become one. Move the strength: low strengths keep the "
                   "input (the model only nudges it), high strengths replace it with a digit of the class.")
    if judge is not None:
        refused = [name for name, img, _, _ in rows if int(predict(judge, img)[0].argmax()) == NOT_A_DIGIT]
        st.caption("The model has only seen white-on-black digits. The judge answers 'not a digit' when an input's "
                   "features are far from every digit it was trained on (a calibrated distance threshold). Here it "
                   f"says so for {len(refused)} of the {len(rows)} odd inputs ({', '.join(refused) or 'none'}); "
                   "the others are close enough to some digit in its features that it names a class, however "
                   "wrong: a distance test catches what is far from every digit, not everything that is not one.")


STYLE_PATH = resources.SHIPPED_ROOT / "style"
THICKNESS = (1.8, 2.6, 3.4)
SLANT = (-15.0, 5.0, 25.0)


@compute.heavy(16, "Sampling the thickness × slant grid")
def _style_grid(path: str, sha: str, digit: int, seed: int, cfg: dict) -> tuple[np.ndarray, np.ndarray]:
    from engine.style import measure, sample_styles

    ck = resources.load_model(path)
    requests = [(t, s) for t in THICKNESS for s in SLANT]
    x = sample_styles(ck, digit, requests, SampleConfig(**cfg), seed=seed)
    return widgets.to_display(x), measure(x)


def style_tab(cfg: SampleConfig) -> None:
    if not (STYLE_PATH / "weights.safetensors").exists():
        st.info("No style-conditioned model is shipped yet. Train one with "
                "`python -m engine train --preset style --out checkpoints/runs/style` (or the `style` preset on the "
                "Training page) and export it to checkpoints/style.")
        return
    c1, c2 = st.columns(2)
    digit = widgets.number_input(c1, "digit", 0, 9, key="apps.style_digit")
    seed = widgets.number_input(c2, "seed", 0, 9999, key="apps.style_seed")
    ck = resources.load_model(str(STYLE_PATH))
    imgs, measured = _style_grid(str(STYLE_PATH), ck.sha256, int(digit), int(seed), cfg.to_dict())
    cols = st.columns(len(SLANT))
    for j, s in enumerate(SLANT):
        with cols[j]:
            st.markdown(f"**slant {s:+.0f}°** requested")
            for i, t in enumerate(THICKNESS):
                k = i * len(SLANT) + j
                widgets.show(imgs[k], caption=f"thickness {t:.1f} px → measured {measured[k, 0]:.1f} px, "
                                              f"{measured[k, 1]:+.0f}°", scale=3)
    report = STYLE_PATH / "report.json"
    rep = json.loads(report.read_text()).get("style", {}) if report.exists() else {}
    if rep:
        st.caption(f"Measured compliance of this model (grid of requests, all digits): rank correlation "
                   f"thickness {rep.get('thickness_spearman')}, slant {rep.get('slant_spearman')}; judge accuracy "
                   f"{rep.get('judge_accuracy')}.")
    st.caption("The U-Net gets the measured thickness and slant of each training digit (Morpho-MNIST measures) as "
               "two extra conditioning numbers, dropped to a learned 'no style' vector 10 % of the time; here we "
               "ask for styles on a grid, with the same noise seed, and measure what came out.")
