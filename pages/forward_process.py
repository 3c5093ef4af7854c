"""Forward process: worksheet 1.1 and 1.2 — a real digit, a noise slider, the closed form, the schedules."""
import streamlit as st
import torch

from engine.metrics import forward_recognisability
from ui import figures, forward_view, pins, resources, state, widgets

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
    widgets.number_input(st, "noise seed", 0, 9999, key=k("noise"))

with right:
    forward_view.noise_panel(PAGE, PARAMS, x0, caption)    # a fragment: slider moves rerun only this panel
_mid = {kind: resources.get_schedule(kind).signal_noise_coefficients(500)[0] for kind in ("linear", "cosine")}
st.caption(f"Halfway through the chain (t = 500) the linear schedule keeps {_mid['linear']:.0%} of the signal "
           f"amplitude and the cosine schedule {_mid['cosine']:.0%}: the cosine schedule spends more steps at the "
           "informative middle noise levels (Nichol & Dhariwal 2021).")


@st.cache_data(show_spinner="Noising 500 held-out digits at 21 levels and asking the judge (about half a minute "
                             "on a 2-core CPU: engine precompute measured 25-32 s)…")
def _recognisability(kind: str) -> dict:
    """The judge on noised held-out digits: the stored measurement (`engine precompute`), else measured now."""
    from engine import evidence, export

    params = export.evidence_params("forward_recognisability", schedule=kind)
    entry = evidence.lookup(resources.SHIPPED_ROOT / "judge", "forward_recognisability", **params)
    if entry is not None:
        return entry["result"]
    return export.compute_panel("forward_recognisability", None, resources.get_judge(), params)


st.subheader("When does a noised digit stop being recognisable?")
if resources.get_judge() is None:
    st.warning("The judge checkpoint (checkpoints/judge) is missing, so recognisability cannot be measured.")
else:
    curve = _recognisability(state.get(PAGE, "schedule"))
    pct = [100 * f for f in curve["fraction"]]
    row = st.container(horizontal=True)        # side by side from ~1400 px, one above the other at 1024 px
    pins.chart(row.container(width=figures.PAIR_WIDTH), figures.per_class_lines(
        pct, curve["accuracy"], "judge accuracy on noised real digits", "% of the chain (t / T)", "accuracy",
        curve["overall"], chance=0.1, not_a_digit=curve.get("not_a_digit")), key=k("acc"))
    pins.chart(row.container(width=figures.PAIR_WIDTH), figures.per_class_lines(
        pct, curve["confidence"], "judge confidence in the true class", "% of the chain (t / T)",
        "confidence"), key=k("conf"))
    half = next((f for f, a in zip(curve["fraction"], curve["overall"]) if a < 0.5), None)
    st.markdown(
        f"The judge reads **{curve['overall'][0]:.0%}** of these real digits right without noise"
        + (f", under half of them from **{100 * half:.0f} %** of the chain" if half is not None else "")
        + f", and **{curve['overall'][-1]:.0%}** at 100 %, where it answers \"not a digit\" for "
        f"**{curve['not_a_digit'][-1]:.0%}**. Misconception: \"under noise the model still knows the image\". "
        "Noise destroys information: a noised digit stays recognisable only while enough of its signal "
        "survives (√ᾱ_t above), and at the end of the chain nothing of *this* digit is left for anyone, model "
        "or judge, to recover. The model learns to produce *a* plausible digit, not to remember this one.")
