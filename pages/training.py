"""Training: worksheet 1.2, 3.1, 3.2, 5.3 and bonus B2 — the shipped model's recorded training, live runs, and every
shipped model and run side by side."""
import streamlit as st

from ui import roles, training_view as view

import ui  # noqa: E402

ui.ensure_frame()

st.title("Training")
st.caption("The charts show how the shipped model learned, from what it recorded while it was trained. Start a run "
           "(the `live` preset, the default, trained by flow matching, draws digits the judge reads right within "
           "about 30 s on a 2-core CPU) to watch the loss, the loss per noise "
           "level and the judge's accuracy move live above them. Training keeps going while you use other pages.")
can_control = roles.is_instructor()
if not can_control:
    st.info("You are a learner: explore the recorded history, watch a live run and compare models; starting, "
            "pausing and stopping training are the instructor's.")

view.start_form(can_control)
view.controls(can_control)
view.panels()
view.runs_table(can_control)
