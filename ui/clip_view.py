"""Computations (cached) and panels of the CLIP evaluation page."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from engine.clip_eval import ClipUnavailable, compare_techniques, load_digit_clip, load_pretrained, rank_report, spearman
from engine.checkpoints import CheckpointError
from engine.judge import NOT_A_DIGIT
from engine.sampling import class_labels, sample_cached
from engine.schedule import NoiseSchedule

from . import figures, resources, roles, widgets

PER_CLASS = 10


@st.cache_resource
def get_scorer(kind: str):
    """(scorer, note): the requested CLIP; a pretrained one that is unavailable falls back to digit-CLIP with
    the reason in `note`; (None, reason) when not even digit-CLIP can be loaded."""
    if kind != "digit-CLIP":
        try:
            return load_pretrained(), None
        except ClipUnavailable as e:
            note = str(e)
            try:
                return load_digit_clip(), note
            except CheckpointError as e2:
                return None, f"{note}; digit-CLIP is missing too: {e2}"
    try:
        return load_digit_clip(), None
    except CheckpointError as e:
        return None, str(e)


@st.cache_data(max_entries=16, show_spinner="Generating 10 digits per class and scoring them with CLIP…")
@roles.heavy
def scored_batch(path: str, sha: str, guidance: float, seed: int, kind: str, keep: int) -> dict:
    ck = resources.load_model(path)
    scorer, _ = get_scorer(kind)
    labels = class_labels(PER_CLASS)
    seeds = [seed + i for i in range(len(labels))]
    x = sample_cached(ck, labels, ck.recommended.replace(guidance=guidance, seed=seed), seeds=seeds,
                      cache=resources.get_sample_cache())
    records = rank_report(scorer, resources.get_judge(), x, labels, seeds, keep)
    zs = scorer.zero_shot(x).numpy()
    return {"images": widgets.to_display(x), "records": records, "zero_shot": zs}


@st.cache_data(max_entries=4, show_spinner="Scoring the 1,000 held-out real digits (the baseline)…")
@roles.heavy
def real_baseline(kind: str) -> pd.DataFrame:
    scorer, _ = get_scorer(kind)
    _, held = resources.get_data()
    s = scorer.class_scores(held.images, held.labels).numpy()
    acc = (scorer.zero_shot(held.images).argmax(1) == held.labels).float().numpy()
    return pd.DataFrame({"class": held.labels.numpy(), "clip_score": s, "zero_shot_right": acc})


def ranked_grid(batch: dict) -> pd.DataFrame:
    df = pd.DataFrame(batch["records"])
    df["index"] = range(len(df))
    order = df.sort_values(["class", "clip_score"], ascending=[True, False])
    imgs = batch["images"][order["index"].to_numpy()]
    st.image(widgets.framed_mosaic(imgs, order["kept"].to_numpy(), cols=PER_CLASS, scale=2), output_format="PNG",
             caption="rows: digits 0…9; each row ranked by CLIPScore, best on the left. Green: kept (top k), "
                     "red: rejected.")
    return df


def inspect_one(batch: dict, df: pd.DataFrame) -> None:
    c1, c2, c3 = st.columns([1, 1, 3])
    digit = c1.number_input("class", 0, 9, 0, key="clip.pick_class")
    rank = c2.number_input("rank (1 = best)", 1, PER_CLASS, 1, key="clip.pick_rank")
    row = df[df["class"] == digit].sort_values("clip_score", ascending=False).iloc[int(rank) - 1]
    i = int(row["index"])
    with c3:
        a, b = st.columns([1, 2])
        with a:
            widgets.show(batch["images"][i], caption=f"seed {row['seed']}", scale=5)
        with b:
            verdict = ("agrees" if row["judge_class"] == digit else "says it is not a digit"
                       if row["judge_class"] == NOT_A_DIGIT else f"reads it as {row['judge_class']}")
            st.markdown(f"CLIPScore **{row['clip_score']:.3f}** · judge confidence **{row['judge_confidence']:.2f}** "
                        f"({verdict}) · thickness {row['thickness']:.2f} px · slant {row['slant']:.0f}° · "
                        f"{'kept' if row['kept'] else 'rejected'}")
            fig = go.Figure(go.Bar(x=list(range(10)), y=batch["zero_shot"][i]))
            fig.update_layout(height=180, margin=dict(l=10, r=10, t=25, b=10), title="CLIP zero-shot probabilities")
            st.plotly_chart(fig, key="clip.zs")


def baseline_and_agreement(df: pd.DataFrame, real: pd.DataFrame) -> None:
    gen = df.groupby("class")["clip_score"].mean()
    rl = real.groupby("class")["clip_score"].mean()
    fig = go.Figure([go.Bar(x=gen.index, y=gen.values, name="generated"), go.Bar(x=rl.index, y=rl.values, name="real")])
    fig.update_layout(barmode="group", height=300, margin=dict(l=10, r=10, t=30, b=10), title="mean CLIPScore per class")
    c1, c2 = st.columns(2)
    c1.plotly_chart(fig, key="clip.baseline")
    conf = np.zeros((11, 10), dtype=int)                  # judge rows 0-9 and "not a digit"
    for r in df.itertuples():
        conf[r.judge_class, r.clip_zero_shot_class] += 1
    rows = [str(c) for c in range(10)] + ["not a digit"]
    keep = [i for i in range(11) if i < 10 or conf[i].any()]
    c2.plotly_chart(figures.heatmap(conf[keep], "CLIP zero-shot class", "judge class", "CLIP vs judge on generated digits",
                                    x=list(range(10)), y=[rows[i] for i in keep]), key="clip.conf")
    rho = spearman(df["clip_score"], df["judge_confidence"])
    agree = float((df["judge_class"] == df["clip_zero_shot_class"]).mean())
    st.markdown(f"Rank correlation of CLIPScore with judge confidence: **ρ = {rho:.2f}**; CLIP and the judge name the "
                f"same digit for **{agree:.0%}** of samples. Real held-out digits: CLIP zero-shot accuracy "
                f"**{real['zero_shot_right'].mean():.1%}**, mean CLIPScore **{real['clip_score'].mean():.3f}** "
                f"(generated: {df['clip_score'].mean():.3f}).")


def patterns(df: pd.DataFrame) -> None:
    cols = st.columns(3)
    for col, x in zip(cols, ("thickness", "slant", "judge_confidence")):
        fig = go.Figure()
        for kept, name, colour in ((True, "kept", "#2ca02c"), (False, "rejected", "#d62728")):
            d = df[df["kept"] == kept]
            fig.add_trace(go.Scatter(x=d[x], y=d["clip_score"], mode="markers", name=name,
                                     marker=dict(color=colour, size=6), text=d["class"]))
        rho = spearman(df[x], df["clip_score"])
        fig.update_layout(height=280, margin=dict(l=10, r=10, t=30, b=10), title=f"CLIPScore vs {x} (ρ = {rho:.2f})")
        col.plotly_chart(fig, key=f"clip.pattern.{x}")
    summary = df.groupby("kept")[["clip_score", "judge_confidence", "thickness", "slant"]].mean().round(3)
    summary.index = ["rejected" if not k else "kept" for k in summary.index]
    st.dataframe(summary)


@st.cache_data(max_entries=4, show_spinner="Comparing plain, best-of-4, rejection and CLIP-guided sampling "
                                           "(3 per class; about a minute on a CPU)…")
@roles.heavy
def techniques(path: str, sha: str, guidance: float, kind: str, scale: float) -> pd.DataFrame:
    ck = resources.load_model(path)
    scorer, _ = get_scorer(kind)
    cfg = ck.recommended.replace(guidance=guidance, steps=min(ck.recommended.steps, 20))
    return pd.DataFrame(compare_techniques(ck.model, NoiseSchedule(ck.schedule_config), scorer,
                                           resources.get_judge(), cfg, per_class=3, n=4, guidance_scale=scale))


@st.cache_data(max_entries=4, show_spinner="Sampling 3 per class at 4 guidance weights and scoring them…")
@roles.heavy
def guidance_sweep(path: str, sha: str, kind: str) -> pd.DataFrame:
    ck = resources.load_model(path)
    scorer, _ = get_scorer(kind)
    labels = class_labels(3)
    rows = []
    for w in (0.0, 1.0, 2.0, 4.0):
        x = sample_cached(ck, labels, ck.recommended.replace(guidance=w, seed=500), cache=resources.get_sample_cache())
        s = scorer.class_scores(x, labels)
        rows += [{"guidance": w, "class": int(c), "clip_score": float(v)} for c, v in zip(labels, s)]
    return pd.DataFrame(rows)


def guidance_panel(path: str, sha: str, kind: str) -> None:
    df = guidance_sweep(path, sha, kind)
    m = df.groupby("guidance")["clip_score"].agg(["mean", "std"]).reset_index()
    fig = go.Figure(go.Scatter(x=m["guidance"], y=m["mean"], error_y=dict(array=m["std"]), mode="lines+markers"))
    fig.update_layout(height=280, margin=dict(l=10, r=10, t=30, b=10), title="CLIPScore vs guidance weight",
                      xaxis_title="w", yaxis_title="mean CLIPScore (± sd)")
    st.plotly_chart(fig, key="clip.sweep")
