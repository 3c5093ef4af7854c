"""Training: worksheet 1.2, 3.1, 3.2 and bonus B2 — train live, watch loss and quality, compare runs."""
import streamlit as st

from ui import training_view as view

st.title("Training")
st.caption("Start a run (the `tiny` preset learns visible digits within minutes on a CPU), then watch the loss, "
           "the loss per noise level and the judge's accuracy move. Training keeps going while you use other pages.")
can_control = True  # the classroom role gate (issue 10) narrows this for learners

view.start_form(can_control)
view.controls(can_control)
view.live_panel()
view.film()
view.runs_table(can_control)
