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

from . import compute, figures, resources, widgets


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
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers+text", text=[
        f"{n}<br>{r['out_shape']}<br>{r['params']:,} p" for n, r in zip(names, [r for r in rows if r["name"] in pos])],
        textposition="middle right", marker=dict(size=14), line=dict(color="#888"), hoverinfo="text", name="blocks"))
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
    fig.update_xaxes(visible=False, range=[-0.5, len(mid) + 4.5])
    fig.update_yaxes(visible=False)
    fig.update_layout(height=520, margin=dict(l=10, r=10, t=10, b=10), showlegend=False)
    return fig


def summary_panel(ck, path: str) -> None:
    rows = cached_summary(path, ck.sha256)
    c1, c2 = st.columns([3, 2])
    c1.plotly_chart(diagram(rows, ck.model_config.skip_connections and ck.model_config.arch == "unet"),
                    key="arch.diagram")
    df = pd.DataFrame(rows)[["name", "kind", "in_shape", "out_shape", "params", "flops"]]
    df["MFLOP"] = (df.pop("flops") / 1e6).round(1)
    c2.dataframe(df, hide_index=True, height=520)
    patch = ck.model_config.patch_size
    folded = (f" This model folds each {patch}×{patch} patch of pixels into {patch * patch} channels before its stem "
              f"and unfolds its head's output back into pixels, so none of its layers runs at 28×28."
              if patch > 1 else "")
    st.caption(f"{count_parameters(ck.model):,} parameters, {df['MFLOP'].sum():.0f} MFLOP per image forward "
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
        col.image(widgets.mosaic(imgs, cols=2, scale=max(1, 56 // h), pad=1), caption=name, output_format="PNG")


def embeddings_panel(ck) -> None:
    ts, table = time_embedding_table(ck.schedule_config.T, ck.model_config.base_channels)
    c1, c2 = st.columns(2)
    c1.plotly_chart(figures.heatmap(table.numpy().T, "t", "feature", "sinusoidal time features (input of the time MLP)",
                                    x=ts), key="arch.temb")
    ce = class_embedding_table(ck.model)
    if ce is not None:
        c2.plotly_chart(figures.heatmap(ce.numpy(), "embedding dimension", "class (10 = null)",
                                        "learned class embeddings", y=[str(i) for i in range(11)]), key="arch.cemb")
    else:
        c2.info("This model has no class embedding (an ablation).")


def context_mask_panel(ck, seed: int) -> None:
    train, _ = resources.get_data()
    p = ck.train_config.p_uncond if ck.train_config else 0.1
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(train), generator=g)[:20]
    drop, seen = context_mask(train.labels[idx], p, g)
    imgs = widgets.to_display(train.images[idx])
    imgs[drop.numpy()] = (imgs[drop.numpy()] * 0.35).astype(np.uint8)
    st.image(widgets.mosaic(imgs, cols=20, scale=2), output_format="PNG",
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
    rows, fig = [], go.Figure()
    for e in entries:
        path = Path(e["path"])
        ck = resources.load_model(str(path))
        rep = resources.model_report(path)
        wall = ck.meta.get("wall_time_s")
        rows.append({"model": e["name"], "judge accuracy": rep.get("accuracy"),      # what to compare first
                     "Fréchet ratio": rep.get("frechet_ratio_to_baseline"), "params": count_parameters(ck.model),
                     "MFLOP / image": resources.model_mflop(str(path), ck.sha256), "steps": ck.step,
                     "train s": round(wall) if wall else None})
        losses = [(r["step"], r["loss"]) for r in read_metrics(path / "metrics.jsonl") if "loss" in r]
        if losses:
            xs, ys = zip(*losses)
            k = min(25, len(ys))
            fig.add_trace(go.Scatter(x=xs[k - 1:], y=np.convolve(ys, np.ones(k) / k, mode="valid"), name=e["name"]))
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=30, b=10), title="training loss (mean of 25)",
                      yaxis_type="log")
    c1, c2 = st.columns([3, 2])
    c1.plotly_chart(fig, key="arch.ablation_loss")
    c2.dataframe(pd.DataFrame(rows), hide_index=True)
    cols = st.columns(len(entries))
    for col, e in zip(cols, entries):
        ck = resources.load_model(e["path"])
        col.image(widgets.mosaic(_ablation_samples(e["path"], ck.sha256), cols=5, scale=2), output_format="PNG",
                  caption=f"{e['name']}: digits 0…9")
    st.caption("Each ablation, and the `deep` variant (two residual blocks per level), was trained with the default "
               "model's budget and recipe (3,000 steps × 128 digits, same seed and data; scripts/train_ablations.sh) "
               "and evaluated like it (1,000 samples, DDIM-25, the default's guidance): judge accuracy and Fréchet "
               "ratio come from each model's evaluate report. `fast` is a design, not an ablation: the default U-Net "
               "with a 2×2 pixel-unshuffle stem, so none of its layers runs at 28×28, trained with the same recipe "
               "for 4× the steps (checkpoints/fast/PROVENANCE.md says why) and evaluated at the same guidance. "
               "Train seconds are not comparable between rows: "
               "the models were trained with different thread counts, some side by side.")
