"""CLIP evaluation: worksheet 4.1, 4.2, 4.3 and bonus B3 — what CLIP scores say and how they can help."""
import streamlit as st

from ui import clip_view as view, resources

import ui  # noqa: E402

ui.ensure_frame()

st.title("CLIP evaluation")
path, ck = resources.require_model()

c1, c2, c3, c4 = st.columns(4)
kind = c1.selectbox("CLIP model", ["digit-CLIP", "pretrained ViT-B-32 (if cached)"], key="clip.kind")
w = c2.slider("guidance w", 0.0, 6.0, float(ck.recommended.guidance), 0.1, key="clip.w")
seed = c3.number_input("seed", 0, 99999, 0, key="clip.seed")
keep = c4.number_input("keep top k of 10", 1, 10, 3, key="clip.keep")
scorer, why = view.get_scorer(kind)
if scorer is None:
    st.error(f"{why}")
    st.stop()
if why:
    st.warning(f"{why} Showing digit-CLIP instead.")
    kind = "digit-CLIP"
if resources.get_judge() is None:
    st.error("The judge checkpoint is missing (checkpoints/judge): CLIP scores are compared with it on this page.")
    st.stop()
st.caption(f"Scoring with **{scorer.name}**. CLIPScore = 2.5 · max(cos(image, caption), 0) (Hessel et al. 2021), "
           "caption = the digit's class prompts. Scores compare only within one CLIP model.")

st.subheader("10 per class, ranked by CLIP; the top k kept (4.1, B3)")
batch = view.scored_batch(path, ck.sha256, float(w), int(seed), kind, int(keep))
df = view.ranked_grid(batch)
view.inspect_one(batch, df)

st.subheader("Against real digits and against the judge (4.1)")
view.baseline_and_agreement(df, view.real_baseline(kind))

st.subheader("Which digits score high or low, and why? (4.2)")
view.patterns(df)

if st.toggle("Score vs guidance weight (3 per class at w = 0, 1, 2, 4)", key="clip.sweep_on"):
    view.guidance_panel(path, ck.sha256, kind)

st.subheader("Using CLIP to improve generation (4.3)")
scale = st.slider("CLIP guidance scale", 0.0, 100.0, 20.0, 5.0, key="clip.scale")
if st.toggle("Run the comparison (plain vs best-of-4 vs rejection vs CLIP guidance)", key="clip.compare"):
    st.dataframe(view.techniques(path, ck.sha256, float(w), kind, float(scale)), hide_index=True)
    st.caption("Reranking and rejection spend extra samples to raise the floor; guidance spends gradient "
               "computations at every step instead. Diversity = mean pairwise judge-feature distance within a class.")
