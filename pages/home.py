"""Home: what Diffusion Lab is, which model is loaded, and where each worksheet question is answered."""

import streamlit as st

from ui import resources, roles
from ui.errors import without_paths
from ui.worksheet_content import PROMPTS

import ui  # noqa: E402

ui.ensure_frame()

WORKSHEET = "pages/worksheet.py"
ALSO = {"pages/geometry.py": ("1.1", "1.2", "1.3", "5.3")}     # pages no "Show me" opens, and what they add to
PATH = [   # the order to work through the pages: (page, link label, icon, what to look at there)
    ("pages/forward_process.py", "Forward process", ":material/blur_on:",
     "Move t: a digit fades into Gaussian noise. Compare the two schedules; see when the judge stops recognising it."),
    ("pages/denoising.py", "Denoising", ":material/auto_fix_high:",
     "Scrub from noise to a digit (x_t beside the model's guess x̂₀); guidance, samplers, memorisation."),
    ("pages/architecture.py", "Architecture", ":material/account_tree:",
     "The loaded U-Net level by level: feature maps, time and class embeddings, the context mask, ablations."),
    ("pages/training.py", "Training", ":material/model_training:",
     "How the shipped model learned (loss per noise level, samples over training); every model side by side."),
    ("pages/clip_evaluation.py", "CLIP evaluation", ":material/image_search:",
     "Ten samples per digit ranked by CLIP, against real digits and the judge; CLIP to improve generation."),
    ("pages/applications.py", "Applications", ":material/build:",
     "Inpaint, edit, upscale, interpolate; Style varies thickness and slant; Limits tries a letter, an inverted "
     "digit, noise."),
    ("pages/geometry.py", "Geometry lab", ":material/scatter_plot:",
     "Diffusion on points in the plane: train a small model in seconds, then watch the noising, the learned field "
     "and every particle's path; few steps vs many, guidance, DDPM vs flow matching."),
    (WORKSHEET, "Worksheet", ":material/assignment:",
     "Every prompt with its Show me and a box for your answer; download them all."),
]

st.title("Diffusion Lab")
st.markdown(
    "A class-conditioned **diffusion model** for handwritten digits that you can see, train, dissect and use. "
    "It learns to undo noise: the forward process turns a digit into Gaussian noise in T small steps, and a "
    "U-Net learns to predict that noise so the process can be run backwards, from noise to a digit of the class "
    "you ask for.")
st.subheader("Start here")
with st.container(border=True):
    for n, (page, title, icon, look) in enumerate(PATH, 1):
        numbers = [p.number for p in PROMPTS if p.page == page]      # each prompt's "Show me" opens its page
        answers = (f"all {len(PROMPTS)} prompts" if page == WORKSHEET else ", ".join(numbers) if numbers
                   else "more evidence for " + ", ".join(ALSO[page]) if page in ALSO else "")
        c1, c2 = st.columns([2, 3], vertical_alignment="center")
        c1.page_link(page, label=f"{n} · {title}", icon=icon)
        c2.markdown(look + (f" *Worksheet: {answers}.*" if answers else ""))
st.markdown("**How the worksheet works:** each prompt has a **Show me** that opens its page with the settings that "
            "answer it. Your answers are saved on this server for this browser as soon as you leave a box (changing "
            "pages or reloading loses nothing), and you can download them as Markdown.")
if roles.is_instructor():
    st.caption("Instructor: turn on **Present the worksheet** in the sidebar to step through the prompts, each with "
               "its note beside the view that answers it.")

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
