"""The Geometry lab's panels (the page only lays them out): the data and training, the forward process and the
learned field at a noise level, trajectories, deterministic vs stochastic paths, few steps vs many, guidance.

Trained models are kept per server (`_models`, shared by every session, bounded), keyed by what they were trained
on; training runs on the script thread through the shared queue and the learner's budget (ui.compute.run_limited)
with a progress bar, and a Stop button that ends it by rerunning the page. Everything drawn from a model goes
through `compute.heavy` (a result per server, queued, budgeted). Every sentence that states a number or a
direction is built from the numbers of the figure beside it.
"""
from __future__ import annotations

import hashlib
import time

import numpy as np
import streamlit as st
import torch

from engine import geometry as geo

from . import compute, figures, pins, state, widgets

PAGE = "geometry"
DATA_LABELS = {"moons": "Two moons", "spiral": "Spiral", "mixture": "Gaussian mixture (4 classes)",
               "points": "Your drawing"}
OBJECTIVE_LABELS = {"ddpm": "DDPM (noise ε, as the digit model)", "flow": "Flow matching (velocity v)"}
SAMPLER_LABELS = {"ddim": "DDIM (η = 0)", "ddpm": "DDPM ancestral", "euler": "Euler", "heun": "Heun",
                  "ancestral": "ancestral (stochastic)"}
SAMPLER_COLOURS = {"ddim": "#1f77b4", "euler": "#1f77b4", "heun": "#2ca02c", "ddpm": "#ff7f0e",
                   "ancestral": "#ff7f0e"}          # deterministic blue, stochastic orange, on every chart
SAMPLING_STEPS = (1, 2, 5, 10, 20, 50, 100)
SWEEP_STEPS = (1, 2, 5, 10, 20, 50)
GUIDANCE_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)
N_TRAIN, N_EVAL, N_TRAJ, N_PATHS = 4000, 1000, 300, 12
DATA_SEEDS = (0, 1, 2)                 # training set, held-out set, the fresh draw that sets the floor
NOISE_SEED = 0                         # the starting noise of every sampling panel (same starts everywhere)
EXTENT = 3.0
TRAJ_WIDTH, TRAJ_PATHS = 560, 40       # the animated chart: as wide as a 1024-px screen's main column allows
CURVED = 1.15                          # path length / straight distance from which the notes call paths curved
TRAINING = "geometry._training"        # (key, step reached) while a training run is on screen


def k(name: str) -> str:
    return state.key(PAGE, name)


# -- data ------------------------------------------------------------------------------------------------------------
def drawing_points(png: bytes) -> np.ndarray | None:
    """The inked pixels of a canvas drawing as (M, 2) points (x right, y up) on a 70 x 70 grid, or None when fewer
    than 10 pixels are inked. The bytes come from the browser: they pass the canvas's pixel budget first."""
    from PIL import Image

    im = widgets.open_budgeted(png, widgets.CANVAS_MAX_PIXELS).convert("L").resize((70, 70), Image.BILINEAR)
    rows, cols = np.nonzero(np.asarray(im) > 127)
    if len(rows) < 10:
        return None
    return np.stack([cols, -rows], axis=1).astype(np.float32)


def model_key(data: str, objective: str, steps: int, seed: int, points: np.ndarray | None) -> tuple:
    digest = "" if points is None else hashlib.sha256(np.ascontiguousarray(points).tobytes()).hexdigest()[:16]
    return (data, objective, int(steps), int(seed), digest)


@st.cache_resource
def _models() -> compute.ResultStore:
    """Trained models per server, shared by all sessions: {model_key: {"result", "train", "held", "fresh"}}."""
    return compute.ResultStore(16)


def data_sets(name: str, points: np.ndarray | None) -> dict:
    """The training set, the held-out set and a fresh draw (the floor), with the same seeds for everyone."""
    return {part: geo.make_dataset(name, n, seed, points)
            for part, n, seed in zip(("train", "held", "fresh"), (N_TRAIN, N_EVAL, N_EVAL), DATA_SEEDS)}


def trained(key: tuple) -> dict | None:
    hit = _models().get(key)
    return None if hit is compute.ResultStore._MISSING else hit


def train_now(key: tuple, sets: dict, cfg: geo.GeometryConfig) -> dict | None:
    """Train with a progress bar and a Stop button, through the shared queue; the entry stored for everyone, or
    None (stopped, refused: the reason is shown)."""
    label = f"Training {OBJECTIVE_LABELS[cfg.objective]} for {cfg.steps} steps"
    bar = st.progress(0.0, text=label)
    stop = st.empty()
    stop.button("Stop", key=k("stop"), help="Ends the training run (the page reruns)")
    t0 = time.perf_counter()

    def progress(step: int, total: int, loss: float) -> None:
        st.session_state[TRAINING] = (key, step)
        bar.progress(step / total, text=f"{label}: step {step} of {total}, loss {loss:.3f}, "
                                        f"{time.perf_counter() - t0:.1f} s")

    def on_wait(ahead: int, running: int) -> None:
        bar.progress(0.0, text=f"{label}: queued, {ahead} request{'s' if ahead != 1 else ''} ahead of yours "
                               f"({running} of {compute.QUEUE.workers} workers busy)")

    def work() -> dict:
        result = geo.train(cfg, sets["train"], geo.conditional_data(key[0]), progress)
        entry = {"result": result, **sets}
        _models().put(key, entry)
        return entry

    st.session_state[TRAINING] = (key, 0)
    try:
        return compute.run_limited(work, compute.limits(), on_wait)
    except compute.Refused as e:
        st.warning(str(e))
        return None
    finally:
        st.session_state.pop(TRAINING, None)
        bar.empty()
        stop.empty()


def stopped_note(key: tuple) -> None:
    """After Stop (the rerun ended the run): say where it stopped."""
    was = st.session_state.pop(TRAINING, None)
    if was is not None and was[0] == key:
        st.info(f"Training stopped at step {was[1]} of {key[2]}. Press Train to start again.")


def _model(key: tuple) -> tuple[geo.GeometryModel, dict]:
    entry = trained(key)
    if entry is None:
        raise RuntimeError("this model is no longer kept on the server (others trained 16 since); train it again")
    return entry["result"].model, entry


def _labels(model: geo.GeometryModel, n: int) -> torch.Tensor | None:
    return geo.balanced_labels(n, model.num_classes) if model.num_classes else None


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- heavy computations (per server, queued) -------------------------------------------------------------------------
@compute.heavy(32, "Sampling 1,000 points and measuring the fit")
def fit_data(key: tuple, sampler: str, n_steps: int) -> dict:
    model, entry = _model(key)
    noise = geo.start_noise(N_EVAL, NOISE_SEED)
    labels = _labels(model, N_EVAL)
    samples = geo.sample(model, noise, n_steps, sampler, labels, generator=_gen(1))[-1]
    fresh_model = geo.GeometryModel(model.config, model.num_classes, model.clip)           # the same, untrained
    untrained = geo.sample(fresh_model, noise, n_steps, sampler, labels, generator=_gen(1))[-1]
    held, fresh = entry["held"].x, entry["fresh"].x
    return {"samples": samples.numpy(), "labels": None if labels is None else labels.numpy(),
            "fit": geo.fit_report(samples, held, fresh), "untrained": geo.fit_report(untrained, held, fresh)}


@compute.heavy(256, "Computing the field")
def field_data(key: tuple, s: float) -> dict:
    model, entry = _model(key)
    held = entry["held"].x
    noised = model.path.q_sample(held, s, geo.start_noise(len(held), 7))
    f = geo.learned_field(model, s, geo.grid(EXTENT - 0.2, 17))
    return {"noised": noised.numpy(), "points": f["points"].numpy(), "vectors": f["vectors"].numpy(), "name": f["name"]}


@compute.heavy(32, "Sampling trajectories")
def trajectory_data(key: tuple, sampler: str, n_steps: int) -> dict:
    model, _ = _model(key)
    labels = _labels(model, N_TRAJ)
    traj = geo.sample(model, geo.start_noise(N_TRAJ, NOISE_SEED), n_steps, sampler, labels, generator=_gen(1))
    return {"trajectory": traj.numpy(), "levels": model.path.levels(n_steps), "stretch": geo.path_stretch(traj),
            "labels": None if labels is None else labels.numpy()}


@compute.heavy(32, "Sampling the same starts with and without noise")
def paired_paths(key: tuple, n_steps: int) -> dict:
    model, _ = _model(key)
    det, stoch = geo.DETERMINISTIC[model.objective], geo.STOCHASTIC[model.objective]
    starts = geo.start_noise(N_PATHS, NOISE_SEED)
    labels = _labels(model, N_PATHS)
    d1, d2 = (geo.sample(model, starts, n_steps, det, labels) for _ in range(2))
    s1, s2 = (geo.sample(model, starts, n_steps, stoch, labels, generator=_gen(seed)) for seed in (1, 2))
    return {"det": det, "stoch": stoch, "starts": starts.numpy(), "det_paths": d1.numpy(), "stoch_paths": s1.numpy(),
            "det_repeat": float((d1[-1] - d2[-1]).norm(dim=1).mean()),
            "stoch_repeat": float((s1[-1] - s2[-1]).norm(dim=1).mean())}


@compute.heavy(32, "Sampling at 1 to 50 steps with every sampler")
def steps_sweep(key: tuple) -> dict:
    model, entry = _model(key)
    noise = geo.start_noise(N_EVAL, NOISE_SEED)
    labels = _labels(model, N_EVAL)
    out = {"steps": list(SWEEP_STEPS), "ratios": {}, "samples": {}, "stretch": {}}
    for sampler in geo.SAMPLERS[model.objective]:
        ratios = []
        for n in SWEEP_STEPS:
            traj = geo.sample(model, noise, n, sampler, labels, generator=_gen(1))
            ratios.append(geo.fit_report(traj[-1], entry["held"].x, entry["fresh"].x)["ratio"])
            if n in (SWEEP_STEPS[1], SWEEP_STEPS[-1]):
                out["samples"][(sampler, n)] = traj[-1, :500].numpy()
            if n == SWEEP_STEPS[-1]:
                out["stretch"][sampler] = geo.path_stretch(traj)
        out["ratios"][sampler] = ratios
    return out


@compute.heavy(32, "Sampling each class at six guidance weights")
def guidance_data(key: tuple, sampler: str, n_steps: int, w: float) -> dict:
    model, entry = _model(key)
    n = 100 * model.num_classes
    noise, labels = geo.start_noise(n, NOISE_SEED), geo.balanced_labels(n, model.num_classes)
    weights = sorted(set(GUIDANCE_WEIGHTS) | {w})
    reports, shown = [], None
    for wi in weights:
        x = geo.sample(model, noise, n_steps, sampler, labels, wi, generator=_gen(1))[-1]
        reports.append(geo.guidance_report(x, labels, entry["held"]))
        if wi == w:
            shown = x.numpy()
    return {"weights": weights, "reports": reports, "samples": shown, "labels": labels.numpy()}


# -- panels ----------------------------------------------------------------------------------------------------------
def _class_layers(points: np.ndarray, labels: np.ndarray | None, name: str, size: int = 4,
                  opacity: float = 0.8) -> list[dict]:
    if labels is None:
        return [{"name": name, "points": points, "colour": "#1f77b4", "size": size, "opacity": opacity}]
    return [{"name": f"{name}, class {c}", "points": points[labels == c], "colour": figures.DIGIT_COLOURS[c],
             "size": size, "opacity": opacity} for c in np.unique(labels)]


def data_figure(sets: dict, fit: dict | None, sampler_title: str) -> None:
    held = sets["held"]
    if fit is None:
        labels = held.y.numpy() if held.labelled else None
        layers = _class_layers(held.x.numpy(), labels, "data", 4, 0.6)
        title = f"{DATA_LABELS[held.name]}: {len(held.x):,} points"
    else:
        layers = ([{"name": "data", "points": held.x.numpy(), "colour": figures.GEOMETRY_DATA, "size": 4}]
                  + _class_layers(fit["samples"], fit["labels"], "samples", 4, 0.75))
        title = f"data (grey) and 1,000 samples, {sampler_title}"
    pins.chart(st, figures.points_figure(layers, title, EXTENT), key=k("data_fig"))


def fit_note(fit: dict, sampler_title: str) -> str:
    f, u = fit["fit"], fit["untrained"]
    verdict = ("a good fit" if f["good"] else "not a good fit yet: train longer, or try another sampler or more "
               "steps")
    return (f"**Fit** ({sampler_title}): the samples are at distance **{f['distance']:.3f}** from 1,000 held-out "
            f"points (MMD, Gaussian kernels of width {', '.join(f'{h:g}' for h in geo.MMD_BANDWIDTHS)}). A fresh "
            f"draw of the data itself is at **{f['floor']:.3f}**, the floor at this sample size; the same network "
            f"untrained is at {u['distance']:.3f} ({u['ratio']:.1f}× the floor). Trained: **{f['ratio']:.2f}× the "
            f"floor**, {verdict} (≤ {geo.GOOD_FIT:g}×).")


def _scale_arrows(vectors: np.ndarray, spacing: float) -> tuple[np.ndarray, float]:
    """Vectors scaled so the 90th-percentile length draws as 0.9 grid spacing, the longest capped at 1.5 spacings."""
    length = np.linalg.norm(vectors, axis=1)
    ref = float(np.percentile(length, 90)) or 1.0
    scaled = vectors * (0.9 * spacing / ref)
    drawn = np.linalg.norm(scaled, axis=1, keepdims=True)
    return scaled * np.minimum(1.0, 1.5 * spacing / np.maximum(drawn, 1e-9)), ref


def level_text(path: geo.GaussianPath, s: float) -> str:
    a, b = path.coefficients(s)
    if path.schedule is None:
        return f"t = {s:.2f}: x_t = {a:.2f}·x₀ + {b:.2f}·ε"
    return f"t = {s:.2f} (timestep {path.timestep(s)} of {path.schedule.T}): x_t = {a:.2f}·x₀ + {b:.2f}·ε"


@st.fragment
def level_panel(key: tuple, params: list) -> None:
    """The forward process and the learned field at one noise level: the t slider reruns only this panel."""
    s = st.slider("noise level t (0 = data, 1 = pure noise)", 0.01, 1.0, step=0.01, key=k("t"))
    state.sync(PAGE, params)
    model, entry = _model(key)
    f = field_data(key, float(s))
    spacing = 2 * (EXTENT - 0.2) / 16
    arrows, ref = _scale_arrows(f["vectors"], spacing)
    row = st.container(horizontal=True)
    pins.chart(row.container(width=figures.PAIR_WIDTH), figures.points_figure(
        [{"name": "data", "points": entry["held"].x.numpy(), "colour": figures.GEOMETRY_DATA, "size": 3},
         {"name": f"noised at t = {s:.2f}", "points": f["noised"], "colour": "#ff7f0e", "size": 4}],
        f"forward process at t = {s:.2f}", EXTENT), key=k("forward_fig"))
    pins.chart(row.container(width=figures.PAIR_WIDTH), figures.quiver_figure(
        f["points"], arrows, f"learned {f['name'].split(' ')[0]} at t = {s:.2f}", f["noised"], EXTENT,
        name=f["name"]), key=k("field_fig"))
    a, b = model.path.coefficients(float(s))
    spread = float(np.sqrt((f["noised"] ** 2).sum(1).mean() / 2))
    st.markdown(f"{level_text(model.path, float(s))}. The noised points keep {a:.0%} of their position and carry "
                f"noise of standard deviation {b:.2f}; their spread (RMS per coordinate) is **{spread:.2f}** "
                f"(the data: {float(np.sqrt((entry['held'].x.numpy() ** 2).sum(1).mean() / 2)):.2f}, pure noise: 1). "
                f"Arrows: the {f['name']} on a grid, lengths scaled so the 90th-percentile arrow ({ref:.2f} in data "
                "units) spans 0.9 of a grid cell.")


def trajectory_panel(key: tuple, sampler: str, n_steps: int) -> None:
    tr = trajectory_data(key, sampler, n_steps)
    model, entry = _model(key)
    labels = [f"t = {s:.2f}" + (" (noise)" if i == 0 else " (samples)" if i == len(tr["levels"]) - 1 else "")
              for i, s in enumerate(tr["levels"])]
    colours = ("#1f77b4" if tr["labels"] is None else [figures.DIGIT_COLOURS[c] for c in tr["labels"]])
    pins.chart(st.container(width=TRAJ_WIDTH), figures.trajectory_figure(
        tr["trajectory"], labels, f"{N_TRAJ} particles, {SAMPLER_LABELS[sampler]}, {n_steps} steps",
        entry["held"].x.numpy(), colours, n_paths=TRAJ_PATHS, extent=EXTENT), key=k("traj_fig"))
    st.caption(f"Press ▶ play or drag the slider under the chart: the particles start as Gaussian noise (t = 1) "
               f"and end as samples (t = 0); grey = the data; the faint lines are the first {TRAJ_PATHS} particles' "
               "paths"
               + ("; colours = the class each particle was asked for" if tr["labels"] is not None else "")
               + f". Their paths are on average **{tr['stretch']:.2f}×** as long as the straight line from start "
               "to end (1 = straight).")


def paired_panel(key: tuple, n_steps: int) -> None:
    p = paired_paths(key, n_steps)
    det, stoch = SAMPLER_LABELS[p["det"]], SAMPLER_LABELS[p["stoch"]]
    _, entry = _model(key)
    pins.chart(st.container(width=TRAJ_WIDTH), figures.paths_figure(
        [{"name": stoch, "paths": p["stoch_paths"], "colour": "rgba(255, 127, 14, 0.55)", "width": 1},
         {"name": det, "paths": p["det_paths"], "colour": SAMPLER_COLOURS[p["det"]], "width": 2}], p["starts"],
        f"{N_PATHS} shared starts, {n_steps} steps each", entry["held"].x.numpy(), EXTENT), key=k("paired_fig"))
    same = "ends at exactly the same points" if p["det_repeat"] == 0 else \
        f"ends {p['det_repeat']:.3f} apart on average"
    st.markdown(f"Run twice from the same {N_PATHS} starts, **{det}** {same} (a deterministic map from noise to "
                f"data); **{stoch}**, run twice with different noise, ends on average **{p['stoch_repeat']:.2f}** "
                "apart (data units): the same start can land on different parts of the data.")


def steps_panel(key: tuple) -> None:
    sw = steps_sweep(key)
    names = {SAMPLER_LABELS[s]: r for s, r in sw["ratios"].items()}
    colours = {SAMPLER_LABELS[s]: SAMPLER_COLOURS[s] for s in sw["ratios"]}
    row = st.container(horizontal=True)
    pins.chart(row.container(width=figures.PAIR_WIDTH), figures.steps_fit_figure(
        sw["steps"], names, geo.GOOD_FIT, "distance to the data vs sampling steps", colours), key=k("steps_fig"))
    model, entry = _model(key)
    det = geo.DETERMINISTIC[model.objective]
    few, many = sw["steps"][1], sw["steps"][-1]
    pins.chart(row.container(width=figures.PAIR_WIDTH), figures.points_figure(
        [{"name": "data", "points": entry["held"].x.numpy(), "colour": figures.GEOMETRY_DATA, "size": 3},
         {"name": f"{many} steps", "points": sw["samples"][(det, many)], "colour": "#1f77b4"},
         {"name": f"{few} steps", "points": sw["samples"][(det, few)], "colour": "#d62728"}],
        f"{SAMPLER_LABELS[det]}: {few} vs {many} steps", EXTENT), key=k("few_fig"))
    st.markdown(steps_note(sw, det))


def steps_note(sw: dict, det: str) -> str:
    """What the sweep shows, read from it: the few-vs-many ratio of the deterministic sampler, where each sampler
    first fits well, and how curved its many-step paths are."""
    steps, r = sw["steps"], sw["ratios"][det]
    few, many = steps[1], steps[-1]
    factor = r[1] / r[-1]
    compare = (f"**{factor:.1f}×** as far from the data as with {many} steps" if factor >= 1.05 else
               f"about as far from the data as with {many} steps ({factor:.2f}×)" if factor > 0.95 else
               f"closer to the data than with {many} steps ({factor:.2f}×)")
    first = []
    for s, ratios in sw["ratios"].items():
        good = next((n for n, x in zip(steps, ratios) if x <= geo.GOOD_FIT), None)
        first.append(f"{SAMPLER_LABELS[s]} " + (f"from {good} step{'s' if good > 1 else ''}" if good else
                                                 f"at none of {steps[0]}–{many} steps"))
    stretch = sw["stretch"][det]
    if stretch >= CURVED:
        paths = (f"Each step moves in a straight line, while the {many}-step paths are on average **{stretch:.2f}×** "
                 "as long as the straight line from start to end: a few long straight steps cut across their curves.")
    else:
        paths = (f"The {many}-step paths are nearly straight here (on average {stretch:.2f}× the straight line from "
                 "start to end).")
    return (f"With {few} steps, {SAMPLER_LABELS[det]}'s samples are {compare} ({r[1]:.2f}× vs {r[-1]:.2f}× a fresh "
            f"draw's distance). A good fit (≤ {geo.GOOD_FIT:g}×): {'; '.join(first)}. {paths}")


@st.fragment
def guidance_panel(key: tuple, params: list, sampler: str, n_steps: int) -> None:
    w = st.slider("guidance weight w  (ε or v = (1 + w)·cond − w·uncond)", 0.0, 8.0, step=0.5, key=k("w"))
    state.sync(PAGE, params)
    g = guidance_data(key, sampler, n_steps, float(w))
    model, entry = _model(key)
    reps = g["reports"]
    at = g["weights"].index(float(w))
    row = st.container(horizontal=True)
    pins.chart(row.container(width=figures.PAIR_WIDTH), figures.points_figure(
        [{"name": "data", "points": entry["held"].x.numpy(), "colour": figures.GEOMETRY_DATA, "size": 3}]
        + _class_layers(g["samples"], g["labels"], "samples"),
        f"100 samples per class at w = {w:g}", EXTENT), key=k("guided_fig"))
    pins.chart(row.container(width=figures.PAIR_WIDTH), figures.guidance_figure(
        g["weights"], [r["mean_spread"] for r in reps], [r["agreement"] / r["data_agreement"] for r in reps],
        float(w), "diversity and class clarity vs w"), key=k("guidance_fig"))
    st.markdown(guidance_note(g, at))


def guidance_note(g: dict, at: int) -> str:
    reps, w = g["reports"], g["weights"][at]
    r, r0 = reps[at], reps[0]
    width = ("narrower than" if r["mean_spread"] < 0.95 else "wider than" if r["mean_spread"] > 1.05 else
             "about as wide as")
    text = (f"At w = {w:g} the samples of a class spread **{r['mean_spread']:.2f}×** as widely as the data's points "
            f"of that class ({width} the data), and on average **{r['agreement']:.0%}** of a sample's 10 nearest "
            f"data points belong to the class it was asked for (for the data's own points: "
            f"{r['data_agreement']:.0%}).")
    if at > 0:
        change = "less" if r["mean_spread"] < r0["mean_spread"] else "more"
        text += (f" Without guidance (w = 0): spread {r0['mean_spread']:.2f}×, {r0['agreement']:.0%} of nearest "
                 f"points in class; guidance made each class {change} diverse.")
    return text
