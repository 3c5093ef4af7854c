"""Denoising: worksheet 1.3, 2.3, 5.2 — the reverse process step by step, guidance, samplers, memorisation."""
import streamlit as st

from engine import samplers
from engine.config import ConfigError, SampleConfig
from ui import denoising_view as view, resources, roles, state, widgets

import ui  # noqa: E402

ui.ensure_frame()

PAGE = "denoising"
st.title("Denoising: from noise to a digit")
path, ck = resources.require_model()
rec = ck.recommended                      # the model's own recommended settings are the page's defaults
PARAMS = [
    state.Param("digit", 7, state.int_in(0, 9)),
    state.Param("seed", 2, state.int_in(0, 99999)),      # a 7 both shipped models draw right (tests check it)
    state.Param("w", float(rec.guidance), state.float_in(0.0, 10.0)),
    state.Param("gfrom", float(rec.guidance_interval[0]), state.float_in(0.0, 0.95)),
    state.Param("sampler", rec.sampler, state.one_of(*samplers.names())),
    state.Param("steps", min(rec.steps, ck.schedule_config.T), state.int_in(1, 1000)),
    state.Param("noise", "on", state.one_of("on", "off")),
    state.Param("wrong", False, state.flag),             # the right-vs-wrong DDPM comparison, open or not
]
state.init(PAGE, PARAMS)
k = lambda name: state.key(PAGE, name)  # noqa: E731
MODEL_SETTINGS = ("w", "gfrom", "sampler", "steps")      # what a model recommends for itself
if st.session_state.get(k("_model")) not in (None, path):  # the learner picked another model: its own settings
    for p in PARAMS:
        if p.name in MODEL_SETTINGS:
            st.session_state[k(p.name)] = p.default
    st.info(f"Another model: sampler, steps and guidance are reset to its recommendation ({rec.sampler.upper()}-"
            f"{min(rec.steps, ck.schedule_config.T)}, w = {rec.guidance:g}, guided while t/T ≥ "
            f"{rec.guidance_interval[0]:g}); a setting made for one model can be wrong for another (T = "
            f"{ck.schedule_config.T} here).")
st.session_state[k("_model")] = path
if st.session_state[k("steps")] > ck.schedule_config.T:      # a link made for a model with a longer chain
    st.toast(f"this model has T = {ck.schedule_config.T} steps; using {ck.schedule_config.T}")
    st.session_state[k("steps")] = ck.schedule_config.T

# Two rows of controls: seven in one row break their labels mid-word on a 1024-px projector
c = st.columns(4)
widgets.number_input(c[0], "digit", 0, 9, key=k("digit"))
widgets.number_input(c[1], "seed", 0, 99999, key=k("seed"))
c[2].selectbox("sampler", samplers.names(), key=k("sampler"), format_func=str.upper,
               help="  \n".join(s.title for s in samplers.SAMPLERS.values()))
widgets.number_input(c[3], "steps", 1, ck.schedule_config.T, key=k("steps"))
c = st.columns(3)
c[0].slider("guidance w", 0.0, 10.0, step=0.1, key=k("w"), help="ε = (1 + w)·ε(x_t, y) − w·ε(x_t, ∅); w = 0: no guidance")
c[1].slider("guide while t/T ≥", 0.0, 0.95, step=0.05, key=k("gfrom"),
            help="Guidance only at high noise, where the digit's identity is decided; later steps run the "
                 "conditional model alone, one forward instead of two (0 = guide every step)")
c[2].selectbox("ancestral noise (DDPM)", ["on", "off"], key=k("noise"),
               help="'off' is the classic bug: the DDPM step without its σ·z noise term (compare both in the "
                    "Samplers section below)")
state.sync(PAGE, PARAMS)
get = lambda name: state.get(PAGE, name)  # noqa: E731
steps_cap = min(ck.schedule_config.T, roles.max_steps() or ck.schedule_config.T)
if int(get("steps")) > steps_cap:
    st.info(f"Learners sample with at most {steps_cap} steps; using {steps_cap}.")
try:
    cfg = SampleConfig(sampler=get("sampler"), steps=min(int(get("steps")), steps_cap),
                       guidance=float(get("w")), add_noise=get("noise") == "on",
                       guidance_interval=(float(get("gfrom")), 1.0))
except ConfigError as e:
    st.error(str(e))
    st.stop()

st.subheader("The reverse trajectory (1.3)")
final = view.trajectory_panel(ck, path, int(get("digit")), int(get("seed")), cfg)

st.subheader("What the network predicts: ε̂ beside the true noise")
view.eps_panel(ck, path, int(get("digit")))

st.subheader("At what % can you recognise it? Does it depend on the digit? (1.3)")
view.recognisability_panel(ck, path, cfg)

st.subheader("Classifier-free guidance: class × weight (2.3)")
view.guidance_grid_panel(ck, path, cfg)

st.subheader("Samplers: the wrong sampler; DDPM, DDIM and multistep solvers, speed and quality (5.2)")
view.sampler_panel(ck, path, cfg, int(get("digit")), int(get("seed")))

st.subheader("Few steps: why they are hard, and a distilled student (5.2, 5.3)")
view.few_steps_panel(int(get("digit")), int(get("seed")))

st.subheader("Flow matching beside DDPM: same network, another objective (5.3)")
view.objectives_panel(int(get("digit")), int(get("seed")))

st.subheader("Did the model copy a training digit? (5.2)")
view.memorisation_panel(final)
