"""Home: what Diffusion Lab is, which model is loaded, and where each worksheet question is answered."""

import streamlit as st

from ui import resources
from ui.errors import without_paths

import ui  # noqa: E402

ui.ensure_frame()

st.title("Diffusion Lab")
st.markdown(
    "A class-conditioned **diffusion model** for handwritten digits that you can see, train, dissect and use. "
    "It learns to undo noise: the forward process turns a digit into Gaussian noise in T small steps, and a "
    "U-Net learns to predict that noise so the process can be run backwards, from noise to a digit of the class "
    "you ask for.")
c1, c2, c3 = st.columns(3)
with c1.container(border=True):
    st.markdown("**1 · Understand**")
    st.page_link("pages/forward_process.py", label="Forward process: adding noise", icon=":material/blur_on:")
    st.page_link("pages/denoising.py", label="Denoising: from noise to a digit", icon=":material/auto_fix_high:")
    st.page_link("pages/architecture.py", label="Architecture: inside the U-Net", icon=":material/account_tree:")
with c2.container(border=True):
    st.markdown("**2 · Experiment**")
    st.page_link("pages/training.py", label="Training: the recorded run, and live runs", icon=":material/model_training:")
    st.page_link("pages/clip_evaluation.py", label="CLIP evaluation: what CLIP scores reward", icon=":material/image_search:")
    st.page_link("pages/applications.py", label="Applications: inpaint, edit, upscale", icon=":material/build:")
with c3.container(border=True):
    st.markdown("**3 · Answer**")
    st.page_link("pages/worksheet.py", label="Worksheet with 'Show me' links", icon=":material/assignment:")

path = st.session_state.get("app.model_path")
if path:
    try:
        ck = resources.load_model(path)
        m = resources.model_report(path)
        st.caption(f"Loaded model: `{without_paths(path)}` — step {ck.step}, recommended sampler {ck.recommended.sampler.upper()}-"
                   f"{ck.recommended.steps} with guidance w = {ck.recommended.guidance}"
                   + ("" if ck.recommended.guidance_interval == (0.0, 1.0) else
                      " for t/T in [{:g}, {:g}]".format(*ck.recommended.guidance_interval))
                   + (f"; measured judge accuracy {m['accuracy']:.1%} on {m.get('n_samples')} samples, Fréchet "
                      f"distance {m['frechet_ratio_to_baseline']}× the real-vs-real baseline" if "accuracy" in m else ""))
    except Exception as e:  # a corrupt model must not break the landing page
        st.error(f"The selected model cannot be loaded: {without_paths(str(e))}")
