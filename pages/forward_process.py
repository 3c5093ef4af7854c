"""Forward process: worksheet 1.1 and 1.2 — a real digit, a noise slider, the closed form, the schedules."""
import numpy as np
import streamlit as st
import torch

from engine.metrics import forward_recognisability
from engine.schedule import noising_strip, schedule_curves
from ui import figures, resources, state, widgets

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

schedule = resources.get_schedule(state.get(PAGE, "schedule"))
T = schedule.T

with right:
    t = st.slider(f"noise level t (0 … {T - 1})", 0, T - 1, key=k("t"))
    state.sync(PAGE, PARAMS)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(state.get(PAGE, "noise")))
    x_t = schedule.q_sample(x0, torch.tensor([t]), noise)
    a, b = schedule.signal_noise_coefficients(t)
    c1, c2, c3 = st.columns([1, 1, 3])
    with c1:
        widgets.show(widgets.to_display(x0[0]), caption=f"x₀ · {caption}", scale=6)
    with c2:
        widgets.show(widgets.to_display(x_t[0]), caption=f"x_t at t = {t} ({100 * t / (T - 1):.0f} % of T)", scale=6)
    with c3:
        st.latex(r"q(x_t \mid x_0) = \mathcal{N}\!\left(\sqrt{\bar\alpha_t}\,x_0,\;(1-\bar\alpha_t)\,I\right)")
        st.latex(rf"x_{{{t}}} = {a:.3f}\,x_0 + {b:.3f}\,\epsilon,\quad \epsilon\sim\mathcal{{N}}(0, I)")
        st.markdown(f"ᾱ_t = **{a * a:.4f}** — {100 * a:.1f} % of the signal amplitude is left; "
                    f"SNR = **{10 * np.log10(a * a / max(b * b, 1e-12)):.1f} dB**.")
    fractions = [i / 10 for i in range(11)]
    strip = noising_strip(schedule, x0, fractions, noise)
    st.image(widgets.mosaic(widgets.to_display(strip), cols=11, scale=2), output_format="PNG",
             caption="the same digit and noise at 0 %, 10 %, …, 100 % of the chain")
    st.plotly_chart(figures.histogram_vs_normal(x_t.numpy()), key=k("hist"))

st.subheader("Schedules: how fast the signal goes (1.2)")
curves = {name: schedule_curves(resources.get_schedule(name)) for name in ("linear", "cosine")}
c1, c2, c3 = st.columns(3)
c1.plotly_chart(figures.schedule_figure(curves, "beta_t", t, log_y=True), key=k("beta"))
c2.plotly_chart(figures.schedule_figure(curves, "alpha_bar_t", t), key=k("abar"))
c3.plotly_chart(figures.schedule_figure(curves, "SNR (dB)", t), key=k("snr"))
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
