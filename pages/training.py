"""Training: worksheet 1.2, 3.1, 3.2 and bonus B2 — train live, watch loss and quality, compare runs."""
import streamlit as st

from ui import roles, training_view as view

import ui  # noqa: E402

ui.ensure_frame()

st.title("Training")
st.caption("Start a run (the `tiny` preset learns visible digits within minutes on a CPU), then watch the loss, "
           "the loss per noise level and the judge's accuracy move. Training keeps going while you use other pages.")
can_control = roles.is_instructor()
if not can_control:
    st.info("You are a learner: watch the live run and compare runs; starting, pausing and stopping training "
            "are the instructor's.")

view.start_form(can_control)
view.controls(can_control)
view.live_panel()
view.film()
view.runs_table(can_control)
