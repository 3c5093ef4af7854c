"""The Forward page's slider panel: everything that follows t, redrawn alone when the slider moves.

`noise_panel` is an st.fragment, so a slider move reruns only this function (not the frame, the sidebar or the
digit source), and it is built for speed: no model, one 28x28 q_sample, an 11-image strip, and Plotly figures
constructed in one validated pass. It records its own server time in session state (`forward.panel_ms`), which
the benchmark reads (`forward_panel_ms`).
"""
from __future__ import annotations

import time
from functools import cache

import numpy as np
import streamlit as st
import torch

from engine.schedule import noising_strip, schedule_curves
from ui import figures, pins, resources, state, widgets

PANEL_MS = "forward.panel_ms"
_QUANTITIES = {"ᾱ_t (signal kept)": ("alpha_bar_t", False), "SNR (dB)": ("SNR (dB)", False),
               "β_t (noise added per step)": ("beta_t", True)}


@cache
def _curves() -> dict:
    return {name: schedule_curves(resources.get_schedule(name)) for name in ("linear", "cosine")}


@st.fragment
def noise_panel(page: str, params: list, x0: torch.Tensor, caption: str) -> None:
    start = time.perf_counter()
    k = lambda name: state.key(page, name)  # noqa: E731
    schedule = resources.get_schedule(state.get(page, "schedule"))
    T = schedule.T
    t = st.slider(f"noise level t (0 … {T - 1})", 0, T - 1, key=k("t"))
    state.sync(page, params)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(state.get(page, "noise")))
    x_t = schedule.q_sample(x0, torch.tensor([t]), noise)
    a, b = schedule.signal_noise_coefficients(t)
    c1, c2, c3 = st.columns([1, 1, 2])
    with c1:
        widgets.show(widgets.to_display(x0[0]), caption=f"x₀ · {caption}", scale=6)
    with c2:
        widgets.show(widgets.to_display(x_t[0]), caption=f"x_t at t = {t} ({100 * t / (T - 1):.0f} % of T)", scale=6)
    with c3:
        st.markdown(f"ᾱ_t = **{a * a:.4f}** — {100 * a:.1f} % of the signal amplitude is left; "
                    f"SNR = **{10 * np.log10(a * a / max(b * b, 1e-12)):.1f} dB**.")
    # the formulas under the pictures, across the panel: beside them they were cut off at 1024 px
    st.latex(r"q(x_t \mid x_0) = \mathcal{N}\!\left(\sqrt{\bar\alpha_t}\,x_0,\;(1-\bar\alpha_t)\,I\right)")
    st.latex(rf"x_{{{t}}} = {a:.3f}\,x_0 + {b:.3f}\,\epsilon,\quad \epsilon\sim\mathcal{{N}}(0, I)")
    strip = noising_strip(schedule, x0, [i / 10 for i in range(11)], noise)
    pins.image(st, widgets.mosaic(widgets.to_display(strip), cols=11, scale=2), output_format="PNG",
             caption="the same digit and noise at 0 %, 10 %, …, 100 % of the chain")
    # side by side where the panel is wide enough, one above the other on a 1024-px screen
    row = st.container(horizontal=True)
    pins.chart(row.container(width=300), figures.histogram_vs_normal(x_t.numpy()), key=k("hist"))
    with row.container(width=300):
        # one quantity at a time: each Plotly figure costs ~2.5 ms of server time per slider move
        quantity = st.radio("Schedules (1.2): how fast the signal goes — linear vs cosine, current t dashed",
                            list(_QUANTITIES), horizontal=True, key=k("quantity"))
        name, log_y = _QUANTITIES[quantity]
        pins.chart(st, figures.schedule_figure(_curves(), name, t, log_y=log_y, y_title=quantity),
                        key=k("schedule_plot"))
    st.session_state[PANEL_MS] = 1000 * (time.perf_counter() - start)
