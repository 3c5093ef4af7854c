"""Panels of the Architecture page."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
import torch

from engine.introspect import class_embedding_table, context_mask, feature_maps, time_embedding_table, told_t_prediction
from engine.schedule import NoiseSchedule
from engine.summary import model_summary
from engine.unet import count_parameters

from pathlib import Path

from . import compute, figures, pins, resources, widgets


@st.cache_data(max_entries=16)
def cached_summary(path: str, sha: str) -> list[dict]:
    return [vars(r) | {"in_shape": str(r.in_shape), "out_shape": str(r.out_shape)}
            for r in model_summary(resources.load_model(path).model)]


def diagram(rows: list[dict], skips: bool) -> go.Figure:
    """The U: encoder blocks down the left, decoder blocks up the right, skip connections as arcs."""
    fig = go.Figure()
    enc = [r for r in rows if r["name"].startswith(("stem", "down"))]
    mid = [r for r in rows if r["name"].startswith("mid")]
    dec = [r for r in rows if r["name"].startswith(("up", "head"))]
    pos = {}
    for i, r in enumerate(enc):
        pos[r["name"]] = (0, -i)
    for i, r in enumerate(mid):
        pos[r["name"]] = (1 + i, -len(enc))
    for i, r in enumerate(dec):
        pos[r["name"]] = (len(mid) + 2, -len(enc) + 1 + i)
    names = [r["name"] for r in rows if r["name"] in pos]
    xs, ys = [pos[n][0] for n in names], [pos[n][1] for n in names]
    # labels where nothing else is drawn: the encoder's to its left, the decoder's to its right, the middle
    # blocks' alternately below and above their row (side by side they would print over each other)
    mid_names = [r["name"] for r in mid]
    where = []
    for n in names:
        if n in mid_names:
            where.append("bottom center" if mid_names.index(n) % 2 == 0 else "top center")
        elif pos[n][0] == 0:
            where.append("middle left")
        else:
            where.append("middle right")
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers+text", text=[
        f"{n}<br>{r['out_shape']}<br>{r['params']:,} p" for n, r in zip(names, [r for r in rows if r["name"] in pos])],
        textposition=where, textfont=dict(size=10), marker=dict(size=12), line=dict(color="#888"),
        hoverinfo="text", name="blocks"))
    if skips:
        down_ends = [n for n in names if n.startswith("down") and n.count(".") == 2]
        ups = [n for n in names if n.startswith("up.") and n.endswith(".0")]
        levels = {n.split(".")[1]: n for n in down_ends}
        for u in ups:
            k = str(len(levels) - 1 - int(u.split(".")[1]))
            if k in levels:
                (x0, y0), (x1, y1) = pos[levels[k]], pos[u]
                fig.add_trace(go.Scatter(x=[x0, (x0 + x1) / 2, x1], y=[y0, y0 + 0.4, y1], mode="lines",
                                         line=dict(dash="dot", color="#d62728"), name=f"skip {k}", hoverinfo="name"))
    # a diagram, not a chart: no axes to title; the ranges leave room for the labels beside and below the U
    fig.update_xaxes(visible=False, range=[-2.8, len(mid) + 4.8])
    fig.update_yaxes(visible=False, range=[min(ys, default=0) - 1.2, max(ys, default=0) + 0.6])
    fig.update_layout(height=520, margin=dict(l=10, r=10, t=10, b=10), showlegend=False)
    return fig


def _shape(text: str) -> str:
    """'(1, 32, 28, 28)' -> '32×28×28': channels × height × width, without the batch of one."""
    dims = [d.strip() for d in text.strip("()").split(",") if d.strip()]
    return "×".join(dims[1:] if len(dims) > 1 and dims[0] == "1" else dims)


def summary_panel(ck, path: str) -> None:
    rows = cached_summary(path, ck.sha256)
    row = st.container(horizontal=True)
    pins.chart(row.container(width=figures.PAIR_WIDTH),
        diagram(rows, ck.model_config.skip_connections and ck.model_config.arch == "unet"), key="arch.diagram")
    df = pd.DataFrame(rows)[["name", "kind", "in_shape", "out_shape", "params", "flops"]]
    df["MFLOP"] = (df.pop("flops") / 1e6).round(1)
    table = df.assign(in_shape=df["in_shape"].map(_shape), out_shape=df["out_shape"].map(_shape))
    row.container(width=figures.PAIR_WIDTH).dataframe(          # six narrow columns: all visible at 1024 px
        table.rename(columns={"in_shape": "in", "out_shape": "out"}), hide_index=True,
        height=35 * (len(table) + 1) + 3,                    # every layer's row shown, no scrolling inside the table
        column_config={"name": st.column_config.TextColumn(width=102), "kind": st.column_config.TextColumn(width=88),
                       "in": st.column_config.TextColumn(width=76, help="input shape: channels × height × width"),
                       "out": st.column_config.TextColumn(width=70, help="output shape: channels × height × width"),
                       "params": st.column_config.NumberColumn(format="%d", width=58),
                       "MFLOP": st.column_config.NumberColumn(format="%.1f", width=56)})
    patch = ck.model_config.patch_size
    folded = (f" This model folds each {patch}×{patch} patch of pixels into {patch * patch} channels before its stem "
              f"and unfolds its head's output back into pixels, so none of its layers runs at 28×28."
              if patch > 1 else "")
    st.caption(f"Shapes in the table: channels × height × width. "
               f"{count_parameters(ck.model):,} parameters, {df['MFLOP'].sum():.0f} MFLOP per image forward "
               f"(a 3×3 conv costs H·W·9·C_in·C_out: 28×28 levels are the expensive ones). Red dotted arcs: "
               f"skip connections — the encoder's feature map is concatenated to the decoder's input.{folded}")


def feature_panel(ck, digit: int, t: int) -> None:
    x0, _ = widgets.pick_real_digit(digit, 0)
    schedule = NoiseSchedule(ck.schedule_config)
    t = min(t, schedule.T - 1)
    x_t = schedule.q_sample(x0, torch.tensor([t]), torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)))
    maps = feature_maps(ck.model, x_t, t, digit)
    cols = st.columns(len(maps) + 1)
    with cols[0]:
        widgets.show(widgets.to_display(x_t[0]), caption=f"x_t, t = {t}", scale=4)
    for col, (name, fm) in zip(cols[1:], maps.items()):
        imgs = (fm.numpy() * 255).astype(np.uint8)
        h = imgs.shape[-1]
        pins.image(col, widgets.mosaic(imgs, cols=2, scale=max(1, 56 // h), pad=1), caption=name, output_format="PNG")


def embeddings_panel(ck) -> None:
    ts, table = time_embedding_table(ck.schedule_config.T, ck.model_config.base_channels)
    row = st.container(horizontal=True)
    pins.chart(row.container(width=figures.PAIR_WIDTH), figures.heatmap(
        table.numpy().T, "timestep t", "feature", "sinusoidal time features (MLP input)", x=ts,
        z_title="value"), key="arch.temb")
    ce = class_embedding_table(ck.model)
    right = row.container(width=figures.PAIR_WIDTH)
    if ce is not None:
        labels = [str(i) for i in range(ce.shape[0] - 1)] + ["∅ (null)"]        # the last row: the dropped label
        pins.chart(right, figures.heatmap(ce.numpy(), "embedding dimension", "class", "learned class embeddings",
                                           y=labels, z_title="value"), key="arch.cemb")
    else:
        right.info("This model has no class embedding (an ablation).")


def context_mask_panel(ck, seed: int) -> None:
    train, _ = resources.get_data()
    p = ck.train_config.p_uncond if ck.train_config else 0.1
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(train), generator=g)[:20]
    drop, seen = context_mask(train.labels[idx], p, g)
    imgs = widgets.to_display(train.images[idx])
    imgs[drop.numpy()] = (imgs[drop.numpy()] * 0.35).astype(np.uint8)
    pins.image(st, widgets.mosaic(imgs, cols=20, scale=2), output_format="PNG",
             caption="labels the model sees: " + " ".join("∅" if d else str(int(l)) for d, l in zip(drop, seen)))
    st.markdown(f"With p_uncond = **{p}**, about {100 * p:.0f} % of training images (dimmed) get the null label ∅ "
                "instead of their digit, so the same network also learns the *unconditional* noise prediction "
                "ε(x_t, ∅) that classifier-free guidance contrasts with ε(x_t, y).")


def told_t_panel(ck, digit: int, t_true: int, t_told: int) -> None:
    x0, _ = widgets.pick_real_digit(digit, 1)
    s = NoiseSchedule(ck.schedule_config)
    if max(t_true, t_told) > s.T - 1:
        st.info(f"This model has T = {s.T} noise levels: t and the told t are capped at {s.T - 1} here.")
        t_true, t_told = min(t_true, s.T - 1), min(t_told, s.T - 1)
    out = told_t_prediction(ck.model, s, x0, digit, t_true, t_told,
                            torch.randn(x0.shape, generator=torch.Generator().manual_seed(1)))
    c1, c2, c3, c4 = st.columns(4)
    with c1:
        widgets.show(widgets.to_display(x0[0]), caption="x₀", scale=5)
    with c2:
        widgets.show(widgets.to_display(out["x_t"][0]), caption=f"x_t at t = {t_true}", scale=5)
    with c3:
        widgets.show(widgets.to_display(out["right"][0]), caption=f"x̂₀ told t = {t_true} (MSE {out['right_mse']:.3f})", scale=5)
    with c4:
        widgets.show(widgets.to_display(out["wrong"][0]), caption=f"x̂₀ told t = {t_told} (MSE {out['wrong_mse']:.3f})", scale=5)
    st.caption(told_t_sentence(out, t_true, t_told))


def told_t_sentence(out: dict, t_true: int, t_told: int) -> str:
    """What telling the wrong t did here, measured on the two x-hat-0 shown: error ratio and roughness."""
    if t_true == t_told:
        return "Told the true t: move 't told to the model' away from it to see what a wrong t does."
    rough = lambda x: float((x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., 1:] - x[..., :-1]).abs().mean())  # noqa: E731
    r_right, r_wrong = rough(out["right"]), rough(out["wrong"])
    ratio = out["wrong_mse"] / max(out["right_mse"], 1e-9)
    texture = "rougher (more speckle)" if r_wrong > 1.1 * r_right else "smoother" if r_wrong < r_right / 1.1 \
        else "about as rough"
    direction = "more" if t_told > t_true else "less"
    return (f"The same x_t, the same network: only the timestep input differs. Told t = {t_told}, the network "
            f"assumes {direction} noise than there is; its x̂₀ has {ratio:.1f}× the squared error of the x̂₀ told "
            f"the true t = {t_true}, and is {texture} than it (mean neighbouring-pixel difference {r_wrong:.3f} vs "
            f"{r_right:.3f}).")


ABLATIONS = resources.SHIPPED_ROOT / "ablations"


@compute.heavy(8, "Sampling one digit per class from each ablation")
def _ablation_samples(path: str, sha: str) -> np.ndarray:
    """One digit per class: stored by `engine precompute` for shipped models, else sampled now."""
    from engine import evidence, export

    ck = resources.load_model(path)
    params = export.evidence_params("class_samples", ck)
    entry = evidence.lookup(path, "class_samples", **params)
    result = entry["result"] if entry else export.compute_panel("class_samples", ck, None, params)
    return np.asarray(result["images"], dtype=np.uint8)


def ablations_panel() -> None:
    """Shipped ablations (equal budget): their measured numbers, loss curves and samples side by side."""
    from engine.checkpoints import list_checkpoints
    from engine.training.runs import read_metrics

    entries = [e for e in list_checkpoints(ABLATIONS) if "error" not in e]
    reference = resources.SHIPPED_ROOT / "default"
    if entries and (reference / "weights.safetensors").exists():     # the model the ablations take apart
        entries.insert(0, {"name": "default (U-Net)", "path": str(reference)})
    fast = resources.SHIPPED_ROOT / "fast"
    if entries and (fast / "weights.safetensors").exists():          # the same U-Net without its 28x28 level
        entries.insert(1, {"name": "fast (2×2 patch stem)", "path": str(fast)})
    if not entries:
        st.info("No ablation models are shipped: run scripts/train_ablations.sh, or train the `no-skip`, `no-time`, "
                "`plain-cnn` and `deep` presets on the Training page.")
        return
    rows, curves = [], {}
    for e in entries:
        path = Path(e["path"])
        ck = resources.load_model(str(path))
        rep = resources.model_report(path)
        wall = ck.meta.get("wall_time_s")
        acc = rep.get("accuracy")
        rows.append({"model": e["name"], "judge %": 100 * acc if acc is not None else None,  # what to compare first
                     "Fréchet ×": rep.get("frechet_ratio_to_baseline"),
                     "params (M)": count_parameters(ck.model) / 1e6,
                     "MFLOP": resources.model_mflop(str(path), ck.sha256), "steps": ck.step,
                     "train s": round(wall) if wall else None})
        losses = [(r["step"], r["loss"]) for r in read_metrics(path / "metrics.jsonl") if "loss" in r]
        if losses:
            xs, ys = zip(*losses)
            curves[e["name"]] = (list(xs), list(ys))
    pins.chart(st, figures.ablation_loss_figure(curves, 25), key="arch.ablation_loss")
    num = lambda fmt, w: st.column_config.NumberColumn(format=fmt, width=w)        # noqa: E731
    st.dataframe(pd.DataFrame(rows), hide_index=True, column_config={
        "model": st.column_config.TextColumn(width=150), "judge %": num("%.1f", 65), "Fréchet ×": num("%.2f", 70),
        "params (M)": num("%.2f", 80), "MFLOP": num("%.0f", 60), "steps": num("%d", 60), "train s": num("%d", 60)})
    samples = st.container(horizontal=True)                  # wraps: digits stay big enough to read at 1024 px
    for e in entries:
        ck = resources.load_model(e["path"])
        pins.image(samples.container(width=160), widgets.mosaic(_ablation_samples(e["path"], ck.sha256), cols=5,
                                                                scale=2),
                   output_format="PNG", caption=f"{e['name']}: digits 0…9")
    st.caption("judge %: share of generated digits the judge reads as the asked one; Fréchet ×: Fréchet distance ÷ "
               "the real-vs-real baseline (1 = as close as real digits); MFLOP: one forward pass per image. "
               "Each ablation, and the `deep` variant (two residual blocks per level), was trained with the default "
               "model's budget and recipe (3,000 steps × 128 digits, same seed and data; scripts/train_ablations.sh) "
               "and evaluated like it (1,000 samples, DDIM-25, the default's guidance): judge accuracy and Fréchet "
               "ratio come from each model's evaluate report. `fast` is a design, not an ablation: the default U-Net "
               "with a 2×2 pixel-unshuffle stem, so none of its layers runs at 28×28, trained with the same recipe "
               "for 4× the steps (checkpoints/fast/PROVENANCE.md says why) and evaluated at the same guidance. "
               "Train seconds are not comparable between rows: "
               "the models were trained with different thread counts, some side by side.")


def runs_table(runs: list[dict]) -> None:
    """The learner's runs (list_runs rows) in eight narrow columns, so all of them fit a 1024-px screen."""
    table = [{"run": r["name"], "arch": r.get("arch"), "width × depth": f"{r.get('width')} × {r.get('depth')}",
              "params (M)": r["params"] / 1e6 if r.get("params") else None, "MFLOP": r.get("mflop_per_image"),
              "steps": r.get("step"), "final loss": r.get("final_loss"),
              "judge %": 100 * r["judge_accuracy"] if r.get("judge_accuracy") is not None else None} for r in runs]
    num = lambda fmt, w: st.column_config.NumberColumn(format=fmt, width=w)        # noqa: E731
    st.dataframe(pd.DataFrame(table), hide_index=True, key="arch.runs", column_config={
        "run": st.column_config.TextColumn(width=100), "arch": st.column_config.TextColumn(width=65),
        "width × depth": st.column_config.TextColumn(width=85), "params (M)": num("%.2f", 70),
        "MFLOP": num("%.0f", 55), "steps": num("%d", 55), "final loss": num("%.4f", 65), "judge %": num("%.1f", 55)})
