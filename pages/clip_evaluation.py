"""CLIP evaluation: worksheet 4.1, 4.2, 4.3 and bonus B3 — what CLIP scores say and how they can help.

Lands on evidence measured beside the model (`python -m engine precompute --checkpoint DIR --clip`); other settings
are computed on request. See ui/clip_view.py.
"""
import streamlit as st

import ui  # noqa: E402
from ui import clip_view as view, resources, state, widgets

ui.ensure_frame()

st.title("CLIP evaluation")
path, ck = resources.require_model()
PAGE = "clip"
CLIP_MODELS = ["digit-CLIP", "pretrained ViT-B-32 (if cached)"]
PARAMS = [
    state.Param("kind", CLIP_MODELS[0], state.one_of(*CLIP_MODELS)),
    state.Param("w", float(ck.recommended.guidance), state.float_in(0.0, 6.0)),
    state.Param("seed", 0, state.int_in(0, 99999)),
    state.Param("keep", 3, state.int_in(1, 10)),
    state.Param("scale", 20.0, state.float_in(0.0, 100.0)),
    state.Param("compare", False, state.flag),           # the technique comparison, for settings not stored
]
state.init(PAGE, PARAMS)

c1, c2, c3, c4 = st.columns(4)
kind = c1.selectbox("CLIP model", CLIP_MODELS, key="clip.kind")
w = c2.slider("guidance w", 0.0, 6.0, step=0.1, key="clip.w",
              help=f"applied while t/T ≥ {ck.recommended.guidance_interval[0]:g} (the model's recommended interval)")
seed = widgets.number_input(c3, "seed", 0, 99999, key="clip.seed")
keep = widgets.number_input(c4, "keep top k of 10", 1, 10, key="clip.keep")
state.sync(PAGE, PARAMS)

kind_used, cid, why = view.choose_clip(kind)
if kind_used is None:
    st.error(f"{why}")
    st.stop()
if why:
    st.warning(f"{why} Showing digit-CLIP instead.")
if resources.get_judge() is None:
    st.error("The judge checkpoint is missing (checkpoints/judge): CLIP scores are compared with it on this page.")
    st.stop()
config = ck.recommended.replace(guidance=round(float(w), 2), seed=int(seed))
st.caption(f"Scoring with **{view.scorer_name(kind_used)}**. CLIPScore = 2.5 · max(cos(image, caption), 0) (Hessel et "
           "al. 2021), caption = the digit's class prompts: it measures how well a digit matches its caption, and "
           "compares only within one CLIP model. Every ρ and difference comes with its 95 % confidence interval; "
           "an interval that includes 0 means no clear relation.")

st.subheader("10 per class, ranked by CLIP; the top k kept (4.1, B3)")
batch = view.ranking(ck, config, kind_used, cid)
if batch["measured"]:
    m = batch["measured"]["measured"]
    st.caption(f"Shipped evidence: measured by `{m['command']}` on a {m['machine']} ({m['date']}).")
df = view.ranked_grid(batch, int(keep))

st.subheader("What does CLIP reward? Every source on one scale (4.1)")
st.caption("The same CLIP scores digits from the shipped model (guided and unguided), its early training snapshots, "
           "the ablation models (no skips, no time embedding, plain CNN: same budget, broken samples) and real "
           "held-out digits.")
sources = view.spread(ck, config, kind_used, cid)
if sources:
    view.spread_panel(sources, df)

st.subheader("Against real digits and against the judge (4.1)")
real = view.real_table(ck.path, kind_used, cid)
view.baseline_and_agreement(df, real)

st.subheader("Which digits score high or low, and why? (4.2)")
view.patterns(df, real)
st.markdown("**Score vs guidance weight**")
sweep = view.sweep(ck, config, kind_used, cid)
if sweep:
    view.guidance_panel(sweep, float(config.guidance))

st.subheader(f"Kept (top {int(keep)}) vs rejected (B3)")
view.kept_vs_rejected(df)

st.subheader("Using CLIP to improve generation (4.3)")
scale = st.slider("CLIP guidance scale", 0.0, 100.0, step=5.0, key="clip.scale")
rows = view.techniques(ck, config, kind_used, cid, float(scale))
if rows:
    view.techniques_panel(rows)
