"""Diffusion Lab — streamlit run dashboard.py

The frame around every page: page config, navigation, and the sidebar (model picker, device, role). A page's
uncaught error is logged in full on the server and shown to the learner as one line without paths (ui/errors).
"""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # offline first: never wait on a hub unless the user asks

import streamlit as st  # noqa: E402

st.set_page_config(page_title="Diffusion Lab", page_icon=":material/blur_on:", layout="wide")

from ui import errors, pins, present, resources, roles, widgets  # noqa: E402

PAGES = {
    "Diffusion Lab": [
        st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    ],
    "Understand": [
        st.Page("pages/forward_process.py", title="Forward process", icon=":material/blur_on:", url_path="forward_process"),
        st.Page("pages/denoising.py", title="Denoising", icon=":material/auto_fix_high:", url_path="denoising"),
        st.Page("pages/architecture.py", title="Architecture", icon=":material/account_tree:", url_path="architecture"),
    ],
    "Experiment": [
        st.Page("pages/training.py", title="Training", icon=":material/model_training:", url_path="training"),
        st.Page("pages/clip_evaluation.py", title="CLIP evaluation", icon=":material/image_search:", url_path="clip_evaluation"),
        st.Page("pages/applications.py", title="Applications", icon=":material/build:", url_path="applications"),
        st.Page("pages/geometry.py", title="Geometry lab", icon=":material/scatter_plot:", url_path="geometry"),
    ],
    "Answer": [
        st.Page("pages/worksheet.py", title="Worksheet", icon=":material/assignment:", url_path="worksheet"),
    ],
}
page = st.navigation(PAGES)

with st.sidebar:
    widgets.model_sidebar()
    st.caption(f"Device: **{resources.device_label()}**")
    status = resources.get_trainer().status()
    if status.active:
        st.caption(f"Training **{status.run_name}**: step {status.step}/{status.total} ({status.state})")
    roles.sidebar()
    present.sidebar(page.url_path)          # the instructor's "Present the worksheet" (ui/present.py)

st.session_state["app.framed"] = True
pins.begin_run()
errors.run_page(page.run)
pins.sidebar(page.url_path)                 # lists the figures the page drew (ui/pins.py)
