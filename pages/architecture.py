"""Architecture: worksheet 2.1, 2.2, 2.3, 3.3 — the loaded U-Net, its features, embeddings and ablations."""
import streamlit as st

from engine.training import list_runs
from ui import architecture_view as view, denoising_view, resources, state, widgets

import ui  # noqa: E402

ui.ensure_frame()

PAGE = "arch"
PARAMS = [
    state.Param("digit", 4, state.int_in(0, 9)),
    state.Param("t", 300, state.int_in(0, 999)),
    state.Param("told", 900, state.int_in(0, 999)),
]
state.init(PAGE, PARAMS)
k = lambda name: state.key(PAGE, name)  # noqa: E731

st.title("Architecture: inside the U-Net")
path, ck = resources.require_model()

st.subheader("The model you loaded, level by level (2.1, 2.2)")
view.summary_panel(ck, path)

c1, c2, c3 = st.columns(3)
widgets.number_input(c1, "digit", 0, 9, key=k("digit"))
c2.slider("t (true noise level)", 0, 999, key=k("t"))
c3.slider("t told to the model", 0, 999, key=k("told"))
state.sync(PAGE, PARAMS)
digit, t, told = (state.get(PAGE, n) for n in ("digit", "t", "told"))

st.subheader("Feature maps at each level for this x_t (2.2)")
view.feature_panel(ck, digit, t)

st.subheader("Time and class embeddings (2.3, 3.3)")
view.embeddings_panel(ck)

st.subheader("The context mask: dropped labels during training (2.3)")
view.context_mask_panel(ck, seed=digit)

st.subheader("What the class label does when sampling: classifier-free guidance (2.3)")
st.caption("Because labels were dropped, the one network predicts noise with the class and without it; sampling "
           "pushes away from the unconditional prediction by a weight w. Each row below is one w, each column one "
           "digit asked for (the same grid as on the Denoising page).")
denoising_view.guidance_grid_panel(ck, path, ck.recommended, ns="arch")

st.subheader("Told the right t vs a wrong t (3.3)")
view.told_t_panel(ck, digit, t, told)

st.subheader("Ablations (no skips, no time embedding, plain CNN) and a deeper U-Net (2.1, 2.2, 3.3)")
view.ablations_panel()
runs = [r for r in list_runs(resources.RUNS_ROOT) if "error" not in r]
if runs:
    st.markdown("Your own runs (train the `no-skip`, `no-time`, `plain-cnn`, `wide` or `deep` presets to compare):")
    view.runs_table(runs)
