"""Evidence, computations (cached) and panels of the CLIP evaluation page.

The page lands on evidence measured once with the engine's own functions and stored beside the model
(evidence/clip_*.json, `python -m engine precompute --checkpoint DIR --clip`): the ranked batch at the model's
recommended settings, the real-digit baseline, the spread of sources on one scale, the guidance sweep and the
technique comparison. Other settings are computed here, behind a spinner that quotes the recorded time and machine.
Every pattern the page states comes with its 95 % confidence interval, computed from the data on screen.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
import torch

from engine import clip_eval as ce, clip_evidence as cev, evidence, stats
from engine.checkpoints import CheckpointError
from engine.config import SampleConfig
from engine.judge import NOT_A_DIGIT
from engine.sampling import class_labels, sample_cached, to_uint8
from engine.schedule import NoiseSchedule

from . import compute, figures, pins, resources, widgets
from .notes_clip import fmt_diff, fmt_rho, judge_reading, paired_diff, relation

PER_CLASS = cev.RANK_PER_CLASS
SHIPPED_DEFAULT = resources.SHIPPED_ROOT / "default"
KEPT, REJECTED = (40, 170, 60), (200, 60, 60)
GRID_KEY = "clip.grid"
SOURCE_COLOURS = {"model": "#2ca02c", "unguided": "#98df8a", "snapshot": "#1f77b4", "ablation": "#d62728",
                  "real": "#555555"}


# -- which CLIP ----------------------------------------------------------------------------------------------------
@st.cache_resource
def get_scorer(kind: str):
    """(scorer, note): the requested CLIP; a pretrained one that is unavailable falls back to digit-CLIP with
    the reason in `note`; (None, reason) when not even digit-CLIP can be loaded."""
    if kind != "digit-CLIP":
        try:
            return ce.load_pretrained(), None
        except ce.ClipUnavailable as e:
            note = str(e)
            try:
                return ce.load_digit_clip(), note
            except CheckpointError as e2:
                return None, f"{note}; digit-CLIP is missing too: {e2}"
    try:
        return ce.load_digit_clip(), None
    except CheckpointError as e:
        return None, str(e)


def choose_clip(kind: str) -> tuple[str | None, str | None, str | None]:
    """(kind used, its evidence id, note). digit-CLIP is not loaded here (its id comes from its meta.json), so a
    landing view read from evidence never pays for open_clip; a pretrained request loads it (or falls back)."""
    if kind == cev.DIGIT_CLIP:
        try:
            return cev.DIGIT_CLIP, cev.digit_clip_id(), None
        except CheckpointError as e:
            return None, None, str(e)
    scorer, note = get_scorer(kind)
    if scorer is None:
        return None, None, note
    if note:
        return cev.DIGIT_CLIP, cev.digit_clip_id(), note
    return kind, scorer.name, None


def scorer_name(kind_used: str) -> str:
    return "digit-CLIP (trained here)" if kind_used == cev.DIGIT_CLIP else get_scorer(kind_used)[0].name


# -- evidence first, computation second ----------------------------------------------------------------------------
def _recorded(model_dir: Path, panel: str) -> dict | None:
    """Any stored measurement of `panel` for this model, else for the shipped default: how long it took, where."""
    for d in (model_dir, SHIPPED_DEFAULT):
        entries = evidence.read_panel(d, panel)
        for e in entries.values():
            if isinstance(e, dict) and "seconds" in e:
                return {"seconds": e["seconds"], "machine": e.get("measured", {}).get("machine", "?"),
                        "model": Path(d).name}
    return None


def estimate(model_dir: Path, panel: str, what: str) -> str:
    """Spinner text with an honest time estimate: the recorded seconds of the same measurement, and where."""
    r = _recorded(Path(model_dir), panel)
    if r is None:
        return f"{what} (never measured here before: no time estimate)…"
    return (f"{what}: about {r['seconds']:.0f} s (measured for `{r['model']}` on a {r['machine']}; longer while "
            f"others compute)…")


def _cfg(config_json: str) -> SampleConfig:
    return SampleConfig.from_dict(json.loads(config_json))


@compute.heavy(16, "Drawing the 100 digits")
def _images(path: str, sha: str, config_json: str) -> np.ndarray:
    """The ranked batch's pixels (N, 28, 28) uint8, through the sample cache (the shipped batch is a cache hit)."""
    ck = resources.load_model(path)
    labels = class_labels(PER_CLASS)
    cfg = _cfg(config_json)
    x = sample_cached(ck, labels, cfg, seeds=cev.batch_seeds(cfg.seed, len(labels)), cache=resources.get_sample_cache())
    return to_uint8(x).numpy()


@compute.heavy(16, "Sampling 100 digits and scoring them with CLIP")
def _compute_ranking(path: str, sha: str, config_json: str, kind: str) -> tuple[dict, np.ndarray]:
    scorer, _ = get_scorer(kind)
    result, x = cev.ranked_batch(resources.load_model(path), scorer, resources.get_judge(), _cfg(config_json),
                                cache=resources.get_sample_cache())
    return result, to_uint8(x).numpy()


def ranking(ck, config: SampleConfig, kind: str, cid: str) -> dict:
    """The ranked batch: {"df" (one row per digit, batch order), "images" (N, 28, 28) uint8, "zero_shot" (N, 10),
    "measured" (the evidence's record, or None when computed now)}."""
    cj = json.dumps(config.to_dict(), sort_keys=True)
    e = evidence.lookup(ck.path, "clip_ranking", **cev.ranking_params(ck.sha256, config, cid)) if ck.sha256 else None
    if e is not None:
        result = e["result"]
        with st.spinner("Drawing the 100 digits (a sample-cache hit for the shipped settings)…"):
            images = _images(str(ck.path), ck.sha256, cj)
    else:
        with st.spinner(estimate(ck.path, "clip_ranking", "Generating 10 digits per class and scoring them")):
            result, images = _compute_ranking(str(ck.path), ck.sha256, cj, kind)
    df = pd.DataFrame(result["records"])
    df["index"] = range(len(df))
    return {"df": df, "images": images, "zero_shot": np.asarray(result["zero_shot"]),
            "measured": None if e is None else e}


@compute.heavy(4, "Scoring the 1,000 held-out digits with CLIP")
def _compute_real(kind: str) -> dict:
    scorer, _ = get_scorer(kind)
    _, held = resources.get_data()
    return cev.real_baseline(scorer, resources.get_judge(), held)


def real_table(model_dir: Path, kind: str, cid: str) -> pd.DataFrame:
    """The held-out real digits scored by this CLIP (the same for every diffusion model: read from this model's
    evidence, else the shipped default's, else computed)."""
    for d in (model_dir, SHIPPED_DEFAULT):
        e = evidence.lookup(d, "clip_real", **cev.real_params(cid))
        if e is not None:
            return pd.DataFrame(e["result"])
    with st.spinner(estimate(model_dir, "clip_real", "Scoring the 1,000 held-out real digits")):
        return pd.DataFrame(_compute_real(kind))


@compute.heavy(2, "Sampling every source and scoring it")
def _compute_spread(path: str, sha: str, config_json: str, kind: str) -> list[dict]:
    scorer, _ = get_scorer(kind)
    _, held = resources.get_data()
    sources = cev.spread_sources(resources.load_model(path), _cfg(config_json), heldout=held,
                                cache=resources.get_sample_cache())
    return cev.score_sources(scorer, resources.get_judge(), sources)


@compute.heavy(4, "Sampling the guidance sweep")
def _compute_sweep(path: str, sha: str, config_json: str, kind: str, weights: tuple) -> list[dict]:
    scorer, _ = get_scorer(kind)
    return cev.guidance_sweep(resources.load_model(path), scorer, resources.get_judge(), _cfg(config_json), weights,
                             cache=resources.get_sample_cache())


@compute.heavy(4, "Comparing the four techniques")
def _compute_techniques(path: str, sha: str, config_json: str, kind: str, scale: float) -> list[dict]:
    ck = resources.load_model(path)
    scorer, _ = get_scorer(kind)
    cfg = cev.technique_config(_cfg(config_json))
    return ce.compare_techniques(ck.model, NoiseSchedule(ck.schedule_config), scorer, resources.get_judge(), cfg,
                                 per_class=cev.TECHNIQUES["per_class"], n=cev.TECHNIQUES["n"], guidance_scale=scale,
                                 seed=cfg.seed, per_sample=True)


def _stored_or_on_request(ck, panel: str, params: dict, toggle_label: str, toggle_key: str, what: str, fn, *args):
    """The stored result for exactly these settings (from `engine precompute`, or computed by anyone in this
    server since), or, after the learner asks via a toggle, `fn(*args)` computed now through the shared queue,
    with a spinner quoting the recorded time; None until asked. A learner is not offered a computation whose
    recorded time is beyond their budget (ui.compute): the instructor's run of it is shown to everyone."""
    e = evidence.lookup(ck.path, panel, **params) if ck.sha256 else None
    if e is not None:
        return e["result"]
    done = fn.peek(*args)
    if done is not None:
        if toggle_key in st.session_state:          # the toggle is not drawn: keep its state for other settings
            st.session_state[toggle_key] = st.session_state[toggle_key]
        return done
    r = _recorded(Path(ck.path), panel)
    cost = f" (about {r['seconds']:.0f} s, measured for `{r['model']}` on a {r['machine']})" if r else ""
    allowed = compute.limits().seconds
    if allowed is not None and r is not None and r["seconds"] > allowed:
        st.caption(f"Not measured for these settings yet: the shipped evidence covers the model's recommended "
                   f"guidance, seed 0 and digit-CLIP. Measuring them takes about {r['seconds']:.0f} s (for "
                   f"`{r['model']}` on a {r['machine']}), more than the {allowed:.0f} s one learner request may use "
                   "on the shared laptop: the instructor can run it, and the result is then shown to everyone.")
        return None
    if not st.toggle(toggle_label + cost, key=toggle_key):
        st.caption("Not measured for these settings yet: the shipped evidence covers the model's recommended "
                   "guidance, seed 0 and digit-CLIP.")
        return None
    with st.spinner(estimate(ck.path, panel, what)):
        try:
            return fn(*args)
        except CheckpointError as e:
            st.error(f"Cannot measure this: {e}")
        except compute.Refused as e:
            st.warning(str(e))
        return None


def spread(ck, config, kind, cid):
    cj = json.dumps(config.to_dict(), sort_keys=True)
    return _stored_or_on_request(ck, "clip_spread", cev.spread_params(ck.sha256, config, cid),
                                 "Measure the spread for these settings", "clip.spread_on",
                                 "Sampling every source and scoring it",
                                 _compute_spread, str(ck.path), ck.sha256, cj, kind)


def sweep(ck, config, kind, cid):
    cj = json.dumps(config.to_dict(), sort_keys=True)
    params = cev.sweep_params(ck.sha256, config, cid)
    return _stored_or_on_request(ck, "clip_sweep", params, "Measure CLIPScore vs guidance weight",
                                 "clip.sweep_on", f"Sampling the same 100 seeds at w = "
                                 f"{', '.join(f'{w:g}' for w in params['guidance'])}",
                                 _compute_sweep, str(ck.path), ck.sha256, cj, kind, tuple(params["guidance"]))


def techniques(ck, config, kind, cid, scale: float):
    cj = json.dumps(config.to_dict(), sort_keys=True)
    return _stored_or_on_request(ck, "clip_techniques", cev.technique_params(ck.sha256, config, cid, scale),
                                 "Run the comparison (plain vs best-of-4 vs rejection vs CLIP guidance)",
                                 "clip.compare", "Comparing plain, best-of-4, rejection and CLIP-guided sampling",
                                 _compute_techniques, str(ck.path), ck.sha256, cj, kind, float(scale))


# -- the ranked batch: every score on its tile, a click inspects -----------------------------------------------------
def with_kept(df: pd.DataFrame, keep: int) -> pd.DataFrame:
    """kept (top `keep` of each class by CLIPScore, ties by order) and rank within the class (1 = best)."""
    df = df.copy()
    df["kept"] = ce.top_k_per_class(torch.tensor(df["clip_score"].to_numpy()), torch.tensor(df["class"].to_numpy()),
                                    keep).numpy()
    df["rank"] = df.groupby("class")["clip_score"].rank(ascending=False, method="first").astype(int)
    return df


def _reading(judge_class: int, asked: int) -> str:
    if judge_class == NOT_A_DIGIT:
        return "not a digit"
    return "✓" if judge_class == asked else f"reads {judge_class}"


def _apply_click(order: pd.DataFrame) -> None:
    """A click on a tile (the chart's selection, from the previous interaction) moves the class / rank pickers,
    once per click, so the pickers still work after it."""
    ev = st.session_state.get(GRID_KEY)
    try:
        points = ev["selection"]["points"] if ev else []
    except (KeyError, TypeError):
        points = []
    points = [p for p in points if p.get("curve_number", 1) == 1 and "point_index" in p]
    if not points:
        return
    i = int(points[0]["point_index"])
    if st.session_state.get("clip._clicked") == i or not 0 <= i < len(order):
        return
    st.session_state["clip._clicked"] = i
    row = order.iloc[i]
    st.session_state["clip.pick_class"] = int(row["class"])
    st.session_state["clip.pick_rank"] = int(row["rank"])


def ranked_grid(batch: dict, keep: int) -> pd.DataFrame:
    """The 100 tiles ranked per class with their CLIPScores printed, clickable; the inspector beside them."""
    df = with_kept(batch["df"], keep)
    order = df.sort_values(["class", "rank"]).reset_index(drop=True)
    _apply_click(order)
    st.session_state.setdefault("clip.pick_class", 0)
    st.session_state.setdefault("clip.pick_rank", 1)
    pick = order.index[(order["class"] == st.session_state["clip.pick_class"])
                       & (order["rank"] == st.session_state["clip.pick_rank"])]
    hovers = [f"digit {r['class']} · rank {r['rank']} · CLIPScore {r['clip_score']:.3f}<br>judge: "
              f"{_reading(r['judge_class'], r['class'])} (p({r['class']}) = {r['judge_confidence']:.2f}) · "
              f"thickness {r['thickness']:.1f} px · slant {r['slant']:.0f}°<br>seed {r['seed']} · "
              f"{'kept' if r['kept'] else 'rejected'} · click to inspect" for _, r in order.iterrows()]
    fig = figures.tile_grid(batch["images"][order["index"].to_numpy()], [f"{s:.3f}" for s in order["clip_score"]],
                            hovers, cols=PER_CLASS, frames=[KEPT if k else REJECTED for k in order["kept"]],
                            row_labels=[str(c) for c in range(10)],
                            col_labels=[str(r) for r in range(1, PER_CLASS + 1)],
                            customdata=order[["class", "rank"]].to_numpy().tolist(),
                            highlight=int(pick[0]) if len(pick) else None, height=620, font_size=9,
                            x_title="rank by CLIPScore (1 = best)", y_title="digit")
    left, right = st.columns([2, 1], gap="medium")
    with left:
        pins.chart(st, fig, key=GRID_KEY, on_select="rerun", selection_mode="points",
                        config={"displayModeBar": False})
        st.caption(f"Rows: digits 0–9; columns: rank within the row by CLIPScore (1 = best). Green frame: kept (top "
                   f"{keep}), red: rejected. The number under each tile is its CLIPScore. **Click a tile** to inspect "
                   f"it.")
    with right:
        inspect_one(batch, df)
    return df


def inspect_one(batch: dict, df: pd.DataFrame) -> None:
    c1, c2 = st.columns(2)
    digit = widgets.number_input(c1, "class", 0, 9, key="clip.pick_class")
    rank = widgets.number_input(c2, "rank (1 = best)", 1, PER_CLASS, key="clip.pick_rank")
    rows = df[(df["class"] == digit) & (df["rank"] == rank)]
    if rows.empty:
        st.info(f"This batch has no digit {digit} at rank {rank}.")
        return
    row = rows.iloc[0]
    i = int(row["index"])
    widgets.show(batch["images"][i], caption=f"digit {digit}, seed {row['seed']}", scale=4)
    st.markdown(f"CLIPScore **{row['clip_score']:.3f}** · rank {rank} of {int((df['class'] == digit).sum())} · "
                f"**{'kept' if row['kept'] else 'rejected'}**")
    st.markdown(f"Judge: {judge_reading(int(row['judge_class']), int(digit), float(row['judge_confidence']))}")
    st.markdown(f"Thickness **{row['thickness']:.2f} px** · slant **{row['slant']:.0f}°** · CLIP itself reads "
                f"it as **{int(batch['zero_shot'][i].argmax())}**")
    fig = figures.class_probability_bars(batch["zero_shot"][i], int(digit), "CLIP's own reading",
                                         x_title="digit", y_title="CLIP probability", height=210)
    pins.chart(st, fig, key="clip.zs", config={"displayModeBar": False})


# -- the spread: what does CLIP reward? -------------------------------------------------------------------------------
def short_name(source: dict) -> str:
    """A gallery row label: "w = 0.4", "w = 0 (unguided)", "step 250", "no-skip", "real"."""
    name, kind = source["name"], source["kind"]
    if kind in ("model", "unguided") and "(" in name:
        label = name[name.index("(") + 1:name.rindex(")")]
        return f"{label} (unguided)" if kind == "unguided" else label
    if kind == "snapshot" and "step" in name:
        return name[name.index("step"):]
    return name.replace("ablation ", "") if kind == "ablation" else "real" if kind == "real" else name


def spread_panel(sources: list[dict], batch_df: pd.DataFrame) -> None:
    names = [s["name"] for s in sources]
    colours = [SOURCE_COLOURS.get(s["kind"], "#7f7f7f") for s in sources]
    hovers = [[f"{s['name']} · digit {c} · {_reading(j, c)}" for c, j in zip(s["class"], s["judge_class"])]
              for s in sources]
    real = next((s for s in sources if s["kind"] == "real"), None)
    marks = [dict(x=float(np.mean(real["clip_score"])), text="real mean", colour="#555")] if real else []
    generated = [s for s in sources if s["kind"] != "real"]
    pooled = stats.spearman_ci(np.concatenate([s["clip_score"] for s in generated]),
                            np.concatenate([s["judge_confidence"] for s in generated]))
    within = stats.spearman_ci(batch_df["clip_score"], batch_df["judge_confidence"])
    model = next((s for s in sources if s["kind"] == "model"), None)
    text = (f"Across all {pooled['n']} generated digits of every source, CLIPScore vs judge confidence: "
            f"**{fmt_rho(pooled)}** — " + relation(pooled, "CLIP separates broken digits from good ones",
                                                   "CLIP prefers the broken ones", "no clear relation") +
            f".\n\nWithin the ranked batch above: **{fmt_rho(within)}** — " +
            relation(within, "CLIP also ranks within a good batch as the judge does",
                     "within a good batch CLIP ranks *against* the judge",
                     "no clear relation inside a good batch") + ".")
    if model and real:
        d = stats.diff_ci(model["clip_score"], real["clip_score"])
        text += (f"\n\n{model['name']} vs real digits: {d['mean_a']:.3f} vs {d['mean_b']:.3f}, difference "
                 f"{fmt_diff(d, 4)} (95 % CI): generated digits score " +
                 relation(d, "**higher** than real ones", "**lower** than real ones", "about the **same** as real ones")
                 + (" — so CLIPScore is not a measure of realism: it scores image–caption alignment."
                    if stats.direction(d) >= 0 else
                    " — here real digits do score higher; CLIPScore still measures image–caption alignment, which "
                    "tracks realism only as far as the caption describes it."))
    left, right = st.columns([3, 2], gap="medium")
    pins.chart(left, figures.strip_by_group(names, [s["clip_score"] for s in sources], colours, hovers,
                                             "CLIPScore of every digit, by source", "CLIPScore", height=430,
                                             marks=marks), key="clip.spread.strip")
    right.markdown(text)
    table = []
    for s in sources:
        c = stats.mean_ci(s["clip_score"])
        judged = np.array(s["judge_class"])
        table.append({"source": s["name"],
                      "mean CLIPScore [95 % CI]": f"{c['mean']:.3f} [{c['lo']:.3f}, {c['hi']:.3f}]",
                      "judge accuracy": f"{np.mean(judged == np.array(s['class'])):.0%}",
                      "not a digit": f"{np.mean(judged == NOT_A_DIGIT):.0%}", "n": s["n"], "how": s.get("detail", "")})
    st.dataframe(pd.DataFrame(table), hide_index=True, column_order=["source", "mean CLIPScore [95 % CI]",
                                                                      "judge accuracy", "not a digit", "n"],
                 column_config={"source": st.column_config.TextColumn(width=160),
                                "mean CLIPScore [95 % CI]": st.column_config.TextColumn(width=160),
                                "judge accuracy": st.column_config.TextColumn("judge acc.", width=75),
                                "not a digit": st.column_config.TextColumn(width=80),
                                "n": st.column_config.NumberColumn(width=55)})
    st.caption(" ".join(f"{t['source']}: {t['how']}." for t in table if t["how"]))
    st.caption("Judge accuracy counts a \"not a digit\" answer as a miss. Snapshots: the fixed-seed film saved "
               "during training (2 per class).")
    tiles, texts, frames, hov = [], [], [], []
    for s in sources:
        for ex in s["examples"]:
            i = ex["index"]
            c, j = s["class"][i], s["judge_class"][i]
            tiles.append(cev.decode_tile(ex["tile"]))
            texts.append(f"{s['clip_score'][i]:.3f}")
            frames.append((40, 170, 60) if j == c else (150, 150, 150) if j == NOT_A_DIGIT else (240, 150, 30))
            hov.append(f"{s['name']} · {ex['rank']} · digit {c}<br>CLIPScore {s['clip_score'][i]:.3f} · judge: "
                       f"{_reading(j, c)} (p({c}) = {s['judge_confidence'][i]:.2f})<br>thickness "
                       f"{s['thickness'][i]:.1f} px · slant {s['slant'][i]:.0f}°")
    per_row = 2 * cev.EXAMPLES
    if len(tiles) == per_row * len(sources):
        left, right = st.columns([3, 2], gap="medium")
        fig = figures.tile_grid(np.stack(tiles), texts, hov, cols=per_row, frames=frames,
                                row_labels=[short_name(s) for s in sources],
                                col_labels=["best", "2nd", "3rd", "3rd<br>last", "2nd<br>last", "last"],
                                height=60 + 56 * len(sources), scale=2,
                                x_title="3 highest … 3 lowest CLIPScores", y_title="source")
        pins.chart(left, fig, key="clip.spread.gallery", config={"displayModeBar": False})
        right.markdown("**The best and the worst of each source** (left, rows in the order of the chart above): its "
                       "3 highest and 3 lowest CLIPScores, the score under each tile. Frame: green = the judge reads "
                       "the digit asked for, orange = another digit, grey = not a digit. Hover a tile for its judge "
                       "reading, thickness and slant.\n\nLook for misshapen digits with high scores, and clean ones "
                       "with low scores: CLIPScore asks whether a digit matches its caption, not whether it looks "
                       "real.")


# -- against real digits and the judge (4.1) --------------------------------------------------------------------------
def per_class_chart(df: pd.DataFrame, real: pd.DataFrame) -> go.Figure:
    groups = []
    for name, data, colour in (("generated (this batch)", df, "#2ca02c"), ("real held-out", real, "#555555")):
        cis = [stats.mean_ci(data.loc[data["class"] == c, "clip_score"]) for c in range(10)]
        groups.append({"name": name, "mean": [c["mean"] for c in cis], "lo": [c["lo"] for c in cis],
                       "hi": [c["hi"] for c in cis], "colour": colour,
                       "text": [f"digit {k}: {c['mean']:.3f} [{c['lo']:.3f}, {c['hi']:.3f}], n = {c['n']}"
                                for k, c in enumerate(cis)]})
    return figures.means_with_ci(list(range(10)), groups, "mean CLIPScore per class (95 % CI)",
                                 "digit", "mean CLIPScore", height=330)


def baseline_and_agreement(df: pd.DataFrame, real: pd.DataFrame) -> None:
    row = st.container(horizontal=True)                     # side by side at 1400 px, stacked at 1024 px
    c1, c2 = row.container(width=figures.PAIR_WIDTH), row.container(width=figures.PAIR_WIDTH)
    pins.chart(c1, per_class_chart(df, real), key="clip.baseline")
    conf = np.zeros((11, 10), dtype=int)                  # judge rows 0-9 and "not a digit"
    for r in df.itertuples():
        conf[r.judge_class, r.clip_zero_shot_class] += 1
    rows = [str(c) for c in range(10)] + ["not a digit"]
    keep = [i for i in range(11) if i < 10 or conf[i].any()]
    pins.chart(c2, figures.heatmap(conf[keep], "CLIP zero-shot class", "judge class", "CLIP vs judge (counts)",
                                    x=[str(c) for c in range(10)], y=[rows[i] for i in keep],
                                    quantity="count", z_title="samples", text_format="d", top_down=True),
                    key="clip.conf")
    rho = stats.spearman_ci(df["clip_score"], df["judge_confidence"])
    agree = float((df["judge_class"] == df["clip_zero_shot_class"]).mean())
    zs_right = float((real["zero_shot_class"] == real["class"]).mean()) if "zero_shot_class" in real else float("nan")
    st.markdown(f"Rank correlation of CLIPScore with judge confidence: **{fmt_rho(rho)}** (95 % CI) — "
                + relation(rho, "higher scores go with a more confident judge",
                           "higher scores go with a *less* confident judge", "**no clear relation**")
                + f". CLIP and the judge name the same digit for **{agree:.0%}** of samples. Real held-out digits: "
                f"CLIP zero-shot accuracy **{zs_right:.1%}**, mean CLIPScore **{real['clip_score'].mean():.3f}** "
                f"(this batch: {df['clip_score'].mean():.3f}).")


# -- patterns (4.2) and kept vs rejected (B3) ------------------------------------------------------------------------
def patterns(df: pd.DataFrame, real: pd.DataFrame) -> None:
    row = st.container(horizontal=True)                     # three a row at 1400 px, one at 1024 px
    for x, unit in zip(("thickness", "slant", "judge_confidence"), ("px", "°", "")):
        col = row.container(width=300)
        fig = go.Figure()
        fig.add_trace(go.Scattergl(x=real[x], y=real["clip_score"], mode="markers", name="real",
                                   marker=dict(color="#bbbbbb", size=4, opacity=0.5)))
        for kept, name, colour in ((True, "kept", "#2ca02c"), (False, "rejected", "#d62728")):
            d = df[df["kept"] == kept]
            fig.add_trace(go.Scatter(x=d[x], y=d["clip_score"], mode="markers", name=name,
                                     marker=dict(color=colour, size=6), text=d["class"]))
        gen_rho, real_rho = stats.spearman_ci(df[x], df["clip_score"]), stats.spearman_ci(real[x], real["clip_score"])
        lo = min(df["clip_score"].min(), np.percentile(real["clip_score"], 5))      # the lowest 5 % of real: off-axis
        fig.update_layout(height=300, margin=dict(l=10, r=10, t=30, b=10), title=f"score vs {x.replace('_', ' ')}",
                          xaxis=dict(title=f"{x.replace('_', ' ')} {unit}".strip()),
                          yaxis=dict(title="CLIPScore",
                                     range=[lo - 0.02, max(df["clip_score"].max(), real["clip_score"].max()) + 0.02]),
                          legend=figures.LEGEND)
        pins.chart(col, fig, key=f"clip.pattern.{x}")
        up, down = "the score rises with it", "the score falls with it"
        col.caption(f"generated: {fmt_rho(gen_rho)} — {relation(gen_rho, up, down)}; "
                    f"real: {fmt_rho(real_rho)} — {relation(real_rho, up, down)}")


def kept_vs_rejected(df: pd.DataFrame) -> None:
    rows = []
    kept = df["kept"].to_numpy()
    for name, label, nd in (("clip_score", "CLIPScore", 3), ("judge_confidence", "judge confidence", 3),
                            ("thickness", "thickness (px)", 2), ("slant", "slant (°)", 1)):
        x = df[name].to_numpy(dtype=float)
        if kept.sum() < 2 or (~kept).sum() < 2:
            break
        d = stats.diff_ci(x[kept], x[~kept])
        rows.append({"measure": label, "kept": f"{d['mean_a']:.{nd}f}", "rejected": f"{d['mean_b']:.{nd}f}",
                     "kept − rejected [95 % CI]": fmt_diff(d, nd),
                     "reading": "higher by construction" if name == "clip_score" else
                     relation(d, "kept higher", "kept lower", "no clear difference")})
    right = (df["judge_class"] == df["class"]).to_numpy()
    if rows:
        rows.append({"measure": "judge accuracy", "kept": f"{right[kept].mean():.0%}",
                     "rejected": f"{right[~kept].mean():.0%}", "kept − rejected [95 % CI]": "", "reading": ""})
        st.dataframe(pd.DataFrame(rows), hide_index=True)
    else:
        st.caption("Keep fewer than all 10 to compare kept with rejected.")


def guidance_panel(rows: list[dict], recommended: float) -> None:
    ws = [r["guidance"] for r in rows]
    cis = [stats.mean_ci(r["clip_score"]) for r in rows]
    acc = [float(np.mean(np.array(r["judge_class"]) == np.array(r["class"]))) for r in rows]
    fig = figures.means_with_ci([f"{w:g}" for w in ws], [{
        "name": "mean CLIPScore", "mean": [c["mean"] for c in cis], "lo": [c["lo"] for c in cis],
        "hi": [c["hi"] for c in cis], "colour": "#1f77b4",
        "text": [f"w = {w:g}: {c['mean']:.3f} [{c['lo']:.3f}, {c['hi']:.3f}], judge {a:.0%}"
                 for w, c, a in zip(ws, cis, acc)]}], "CLIPScore vs guidance w (same seeds, 95 % CI)",
        "guidance weight w", "mean CLIPScore", height=300)
    row = st.container(horizontal=True)
    c1, c2 = row.container(width=figures.PAIR_WIDTH), row.container(width=figures.PAIR_WIDTH)
    pins.chart(c1, fig, key="clip.sweep")
    w_all = np.concatenate([[r["guidance"]] * len(r["clip_score"]) for r in rows])
    rho = stats.spearman_ci(w_all, np.concatenate([r["clip_score"] for r in rows]))
    text = (f"Over w = {', '.join(f'{w:g}' for w in ws)}: **{fmt_rho(rho)}** — "
            + relation(rho, "the score rises with w", "the score falls with w", "no clear monotone relation") + ".")
    by_w = {r["guidance"]: r for r in rows}
    if 0.0 in by_w and recommended in by_w and recommended != 0:
        d = stats.diff_ci(by_w[recommended]["clip_score"], by_w[0.0]["clip_score"])
        text += (f" w = {recommended:g} vs unguided: {fmt_diff(d)} — "
                 + relation(d, "guided digits score higher", "guided digits score lower", "no clear difference") + ".")
    c2.markdown(text)
    c2.dataframe(pd.DataFrame({"w": [f"{w:g}" for w in ws], "mean CLIPScore": [f"{c['mean']:.3f}" for c in cis],
                               "judge accuracy": [f"{a:.0%}" for a in acc]}), hide_index=True)


def techniques_panel(rows: list[dict]) -> None:
    plain = rows[0]
    table = []
    for r in rows:
        entry = {"technique": r["technique"], "samples": r["samples_generated"], "seconds": r["seconds"],
                 "judge accuracy": f"{r['judge_accuracy']:.0%}", "mean CLIPScore": f"{r['mean_clip_score']:.3f}"}
        if "clip_scores" in r and "clip_scores" in plain and r is not plain:
            d = paired_diff(r["clip_scores"], plain["clip_scores"])
            entry["CLIPScore vs plain [95 % CI]"] = f"{fmt_diff(d)} {relation(d, 'higher', 'lower', 'no clear change')}"
            j = paired_diff(r["judge_right"], plain["judge_right"])
            entry["accuracy vs plain [95 % CI]"] = (f"{fmt_diff(j, 2)} "
                                                    f"{relation(j, 'higher', 'lower', 'no clear change')}")
        else:
            entry["CLIPScore vs plain [95 % CI]"] = entry["accuracy vs plain [95 % CI]"] = "—"
        entry["diversity"] = f"{r['diversity']:.2f}"
        table.append(entry)
    # two narrow tables (cost and quality, then the paired differences) instead of one of eight columns
    df = pd.DataFrame(table)
    text = lambda label, w: st.column_config.TextColumn(label, width=w)        # noqa: E731
    st.dataframe(df[["technique", "samples", "seconds", "judge accuracy", "mean CLIPScore", "diversity"]],
                 hide_index=True, column_config={
                     "technique": text(None, 170), "samples": st.column_config.NumberColumn(width=70),
                     "seconds": st.column_config.NumberColumn(format="%.1f", width=70),
                     "judge accuracy": text("judge acc.", 80), "mean CLIPScore": text("CLIPScore", 80),
                     "diversity": text(None, 75)})
    st.dataframe(df[["technique", "CLIPScore vs plain [95 % CI]", "accuracy vs plain [95 % CI]"]], hide_index=True,
                 column_config={"technique": text(None, 145), "CLIPScore vs plain [95 % CI]": text(None, 180),
                                "accuracy vs plain [95 % CI]": text(None, 225)})
    st.caption("Each technique fills the same 30 slots (3 per class, the same first seeds). Reranking and rejection "
               "spend extra samples to *choose* among what the same weights generate; CLIP guidance spends a gradient "
               "through CLIP at every step. None of them changes the model: the plain row is what it still generates. "
               "Diversity = mean pairwise judge-feature distance within a class (one measurement, no CI). Seconds: "
               "as measured when the row was computed (the shipped rows on the machine named at the top of the page).")
