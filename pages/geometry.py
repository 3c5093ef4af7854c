"""Geometry lab: diffusion and flow matching on 2-D points (Diffusion Explorer, GAN Lab), every particle visible."""
import streamlit as st

from engine import geometry as geo
from ui import canvas, figures, geometry_view as view, state, widgets

import ui  # noqa: E402

ui.ensure_frame()

PAGE = view.PAGE
PARAMS = [                                  # the view in the URL: a shared link reopens the same lab
    state.Param("data", "moons", state.one_of(*view.DATA_LABELS)),
    state.Param("objective", "ddpm", state.one_of(*geo.OBJECTIVES)),
    state.Param("steps", geo.GeometryConfig().steps, state.int_in(100, 8000)),
    state.Param("seed", 0, state.int_in(0, 9999)),
    state.Param("sampler", "ddpm", state.one_of(*view.SAMPLER_LABELS)),
    state.Param("n", "50", state.one_of(*map(str, view.SAMPLING_STEPS))),
    state.Param("t", 0.5, state.float_in(0.01, 1.0)),
    state.Param("w", 2.0, state.float_in(0.0, 8.0)),
]
state.init(PAGE, PARAMS)
k = view.k

st.title("Geometry lab: 2-D diffusion")
st.caption("The digit model's ideas on points in the plane, where every particle can be watched: pick data and an "
           "objective, train a small MLP (a few seconds), then see the noising, the learned field, the sampling paths, "
           "why few steps fail and what guidance does.")

top = st.container(horizontal=True)
with top.container(width=340):
    data = st.radio("Data", list(view.DATA_LABELS), format_func=view.DATA_LABELS.get, key=k("data"))
    objective = st.radio("Objective", list(view.OBJECTIVE_LABELS), format_func=view.OBJECTIVE_LABELS.get,
                         key=k("objective"))
    c1, c2 = st.columns(2)
    steps = widgets.number_input(c1, "training steps", 100, 8000, step=100, key=k("steps"))
    seed = widgets.number_input(c2, "seed", 0, 9999, key=k("seed"))
    points = None
    if data == "points":
        png = canvas.draw_digit(k("canvas"))
        points = view.drawing_points(png) if png is not None else None
        if points is None:
            st.caption("Draw a shape above (white strokes); its inked pixels become the data.")
    options = list(geo.SAMPLERS[objective])
    if st.session_state[k("sampler")] not in options:       # the other objective's sampler: this one's first
        st.session_state[k("sampler")] = options[0]
    sampler = st.radio("Sampler", options, format_func=view.SAMPLER_LABELS.get, horizontal=True, key=k("sampler"))
    n_steps = int(st.select_slider("sampling steps", [str(n) for n in view.SAMPLING_STEPS], key=k("n")))
state.sync(PAGE, PARAMS)

key = view.model_key(data, objective, steps, seed, points)
cfg = geo.GeometryConfig(objective=objective, steps=int(steps), seed=int(seed))
sets = view.data_sets(data, points) if data != "points" or points is not None else None
entry = view.trained(key)
title = f"{view.SAMPLER_LABELS[sampler]}, {n_steps} steps"
with top.container(width=figures.PAIR_WIDTH):
    if sets is None:
        st.info("No data yet: draw a shape on the canvas.")
    elif entry is None:
        view.stopped_note(key)
        train = st.button("Train", type="primary", key=k("train"),
                          help="Trains a 3-layer MLP (width 128) with Adam on 4,000 points; kept on this server")
        progress = st.container()                   # the progress bar and Stop, above the data while it trains
        view.data_figure(sets, None, title)
        if train:
            with progress:
                if view.train_now(key, sets, cfg) is not None:
                    st.rerun()                      # draw the page from the stored model, without the button
    else:
        r = entry["result"]
        st.caption(f"Trained {r.steps_done} steps in {r.seconds:.1f} s; final loss {r.losses[-1][1]:.3f} "
                   f"(running mean). {r.model.parameter_count():,} parameters.")
        fit = view.fit_data(key, sampler, n_steps)
        view.data_figure(sets, fit, title)
if entry is None:
    st.stop()
st.markdown(view.fit_note(fit, title))

st.subheader("Noising the data, and what the model learned, at one noise level")
view.level_panel(key, PARAMS)

st.subheader("From noise to data: the sampling paths")
view.trajectory_panel(key, sampler, n_steps)

st.subheader("Deterministic vs stochastic, from the same starts")
view.paired_panel(key, n_steps)

st.subheader("Few steps vs many")
view.steps_panel(key)

st.subheader("Classifier-free guidance")
if not geo.conditional_data(data):
    st.info("Guidance needs class labels: choose **Gaussian mixture (4 classes)** above; its model is trained with "
            "the class as input, dropped to a null class 10 % of the time (as the digit model).")
else:
    view.guidance_panel(key, PARAMS, sampler, n_steps)
