"""Applications: worksheet 5.1 and 5.2 — inpainting, editing, upscaling, interpolation, and the limits."""
import streamlit as st

from ui import applications_view as view, resources, state, widgets

import ui  # noqa: E402

ui.ensure_frame()

st.title("Applications: putting the model to work")
path, ck = resources.require_model()
PAGE = "apps"
APPS = ["Inpainting", "Editing (SDEdit)", "Upscaling", "Interpolation", "Style (B4)", "Limits"]
PARAMS = [                                   # the view in the URL: a shared link reopens the same application
    state.Param("choice", APPS[0], state.one_of(*APPS)),
    state.Param("steps", min(25, view.MAX_STEPS), state.int_in(5, view.MAX_STEPS)),
    state.Param("w", float(ck.recommended.guidance), state.float_in(0.0, 6.0)),
]
TAB_PARAMS = [p for params in view.TAB_PARAMS.values() for p in params]
state.init(PAGE, PARAMS + TAB_PARAMS)

left, right = st.columns([1, 3])
with left:
    x, caption = widgets.digit_source("apps", default_digit=3)
    widgets.show(widgets.to_display(x[0]), caption=caption, scale=4)
    steps = st.slider("denoising steps", 5, view.MAX_STEPS, key="apps.steps")
    w = st.slider("guidance w", 0.0, 6.0, step=0.1, key="apps.w")
cfg = ck.recommended.replace(sampler="ddim", steps=min(int(steps), ck.schedule_config.T), guidance=float(w))

with right:                  # a refusal by the compute budget ends the page with its reason (errors.run_page)
    choice = st.segmented_control("Application", APPS, key="apps.choice", wrap=True)   # all six at 1024 px
    state.sync(PAGE, PARAMS + view.TAB_PARAMS.get(choice, []))      # the settings of the application shown
    if choice is None:
        st.caption("Pick an application above.")
    elif choice == "Inpainting":
        view.inpainting_tab(path, x, cfg)
    elif choice == "Editing (SDEdit)":
        view.editing_tab(path, x, cfg)
    elif choice == "Upscaling":
        view.upscaling_tab(path, x, cfg)
    elif choice == "Interpolation":
        view.interpolation_tab(path, cfg)
    elif choice == "Style (B4)":
        view.style_tab(cfg)
    elif choice == "Limits":
        view.limits_tab(path, x, cfg)
