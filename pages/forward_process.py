"""Forward process: worksheet 1.1 and 1.2 — a real digit, a noise slider, the closed form, the schedules."""
import streamlit as st
import torch

from engine.metrics import forward_recognisability
from ui import figures, forward_view, resources, state, widgets

import ui  # noqa: E402

ui.ensure_frame()

PAGE = "forward"
PARAMS = [
    state.Param("digit", 3, state.int_in(0, 9)),
    state.Param("idx", 0, state.int_in(0, 99)),
    state.Param("t", 250, state.int_in(0, 999)),
    state.Param("noise", 0, state.int_in(0, 9999)),
    state.Param("schedule", "cosine", state.one_of("cosine", "linear")),
]
state.init(PAGE, PARAMS)
k = lambda name: state.key(PAGE, name)  # noqa: E731

st.title("Forward process: adding noise")
st.caption("Worksheet 1.1 and 1.2. Pick a digit, move t, and watch the signal fade into Gaussian noise.")

left, right = st.columns([1, 2])
with left:
    x0, caption = widgets.digit_source(PAGE)
    st.radio("Schedule", ["cosine", "linear"], horizontal=True, key=k("schedule"))
    st.number_input("noise seed", 0, 9999, key=k("noise"))

with right:
    forward_view.noise_panel(PAGE, PARAMS, x0, caption)    # a fragment: slider moves rerun only this panel
st.caption("The linear schedule destroys most of the signal by the middle of the chain; the cosine schedule "
           "spends more steps at the informative middle noise levels (Nichol & Dhariwal 2021).")


@st.cache_data(show_spinner="Noising 500 held-out digits at 21 levels and asking the judge…")
def _recognisability(kind: str) -> dict:
    judge = resources.get_judge()
    _, held = resources.get_data()
    idx = torch.arange(0, len(held), 2)                     # 50 digits per class
    fractions = [i / 20 for i in range(21)]
    return forward_recognisability(judge, resources.get_schedule(kind), held.images[idx], held.labels[idx], fractions)


st.subheader("When does a noised digit stop being recognisable?")
if resources.get_judge() is None:
    st.warning("The judge checkpoint (checkpoints/judge) is missing, so recognisability cannot be measured.")
elif st.toggle("Measure it: the judge on 500 held-out digits at 21 noise levels (a few seconds, once)",
               key=k("measure")):
    curve = _recognisability(state.get(PAGE, "schedule"))
    pct = [100 * f for f in curve["fraction"]]
    c1, c2 = st.columns(2)
    c1.plotly_chart(figures.per_class_lines(pct, curve["accuracy"], "judge accuracy on noised real digits",
                                            "% of the chain (t / T)", "accuracy", curve["overall"]), key=k("acc"))
    c2.plotly_chart(figures.per_class_lines(pct, curve["confidence"], "judge confidence in the true class",
                                            "% of the chain (t / T)", "confidence"), key=k("conf"))
