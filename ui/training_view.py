"""Widgets of the Training page that are more than a line: the form, the live panel, the film, the runs."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import streamlit as st

from engine.config import ConfigError
from engine.presets import PRESETS, customise
from engine.training.runs import list_runs
from engine.training.trainer import TrainerBusy

from . import figures, resources, roles, widgets


def start_form(can_control: bool) -> None:
    trainer = resources.get_trainer()
    preset = st.selectbox("Preset", list(PRESETS), index=0, key="training.preset",
                          format_func=lambda n: f"{n} — {PRESETS[n].description}")
    stamp = st.session_state.setdefault("training.stamp", time.strftime("%H%M%S"))
    with st.form("training.form"):
        c1, c2 = st.columns(2)
        name = c1.text_input("Run name", value=f"{preset}-{stamp}", key="training.name")
        steps = c2.number_input("Steps", 1, 1_000_000, value=PRESETS[preset].train.steps, key="training.steps")
        c1, c2, c3, c4 = st.columns(4)
        width = c1.number_input("Width (base channels)", 4, 512, value=PRESETS[preset].model.base_channels, step=4)
        depth = c2.number_input("Depth (blocks / level)", 1, 8, value=PRESETS[preset].model.num_res_blocks)
        lr = c3.number_input("Learning rate", 1e-6, 1.0, value=PRESETS[preset].train.lr, format="%.5f")
        batch = c4.number_input("Batch size", 1, 4096, value=PRESETS[preset].train.batch_size)
        c1, c2, c3 = st.columns(3)
        T = c1.number_input("T (diffusion steps)", 1, 10000, value=PRESETS[preset].schedule.T)
        kind = c2.selectbox("Schedule", ["cosine", "linear"], index=0)
        p_uncond = c3.slider("p_uncond (label dropout)", 0.0, 1.0, PRESETS[preset].train.p_uncond, 0.05)
        init = st.selectbox("Start from", ["fresh weights"] + list(resources.model_choices()),
                            help="'Train on top of' a shipped model or another run of the same architecture")
        submitted = st.form_submit_button("Start training", type="primary", disabled=not can_control,
                                          key="training.start")
    if submitted and roles.require_instructor("start training"):
        try:
            p = customise(preset, base_channels=int(width), num_res_blocks=int(depth), lr=float(lr),
                          batch_size=int(batch), T=int(T), kind=kind, p_uncond=float(p_uncond), steps=int(steps))
            init_from = None if init == "fresh weights" else resources.model_choices()[init]
            trainer.start(name, p.model, p.schedule, p.train, p.recommended, init_from=init_from)
            st.session_state.pop("training.stamp", None)        # the next run gets a fresh default name
            st.toast(f"Started {name}")
        except (ConfigError, TrainerBusy, ValueError, FileExistsError) as e:
            st.error(str(e))
        except Exception as e:  # e.g. an init checkpoint of another architecture
            st.error(f"Could not start: {e}")


def controls(can_control: bool) -> None:
    trainer = resources.get_trainer()
    s = trainer.status()
    c1, c2, c3, _ = st.columns([1, 1, 1, 4])
    if c1.button("Pause", disabled=not can_control or s.state != "running", key="training.pause") \
            and roles.require_instructor("pause training"):
        trainer.pause()
        st.rerun()
    if c2.button("Resume", disabled=not can_control or s.state != "paused", key="training.resume") \
            and roles.require_instructor("resume training"):
        trainer.resume()
        st.rerun()
    if c3.button("Stop", disabled=not can_control or not s.active, key="training.stop") \
            and roles.require_instructor("stop training"):
        trainer.stop()
        st.rerun()


def live_panel() -> None:
    """Progress, loss, per-bucket loss and judge accuracy; polled every 3 s only while a run is active."""
    active = resources.get_trainer().status().active

    @st.fragment(run_every=3 if active else None)
    def panel() -> None:
        s = resources.get_trainer().status()
        if not s.run_name:
            st.info("No training run yet in this server session. Start one above, or resume one below.")
            return
        frac = min(s.step / s.total, 1.0) if s.total else 0.0
        eta = f", about {s.eta_s / 60:.1f} min left" if s.eta_s and s.state == "running" else ""
        st.progress(frac, text=f"**{s.run_name}** · {s.state} · step {s.step}/{s.total} · "
                               f"{s.images_per_s:.0f} images/s on {s.device}{eta}")
        if s.error:
            st.error(s.error)
        c1, c2, c3 = st.columns(3)
        c1.plotly_chart(figures.loss_figure(list(s.loss_history)), key="training.loss")
        c2.plotly_chart(figures.bucket_figure(list(s.loss_by_bucket)), key="training.buckets")
        c3.plotly_chart(figures.judge_history_figure(list(s.judge_history)), key="training.judge")
        if active and not s.active:
            st.rerun()        # the run ended: one full rerun stops the polling and refreshes the runs table

    panel()


def film() -> None:
    s = resources.get_trainer().status()
    snaps = list(s.snapshots)
    if not snaps:
        return
    st.subheader("Samples through training (3.2)")
    steps = [st_ for st_, _ in snaps]
    step = st.select_slider("snapshot at step", options=steps, value=steps[-1], key="training.film")
    grid = dict(snaps)[step]
    _, held = resources.get_data()
    real = np.stack([widgets.to_display(held.of_class(c)[i]) for c in range(10) for i in range(2)])
    c1, c2 = st.columns(2)
    c1.image(widgets.mosaic(grid, cols=10, scale=3), caption=f"fixed seeds, step {step} (2 per class, 0…9)",
             output_format="PNG")
    c2.image(widgets.mosaic(real, cols=10, scale=3), caption="real held-out digits of the same classes",
             output_format="PNG")


def runs_table(can_control: bool) -> None:
    st.subheader("Runs (bonus B2: how do width and depth change time and quality?)")
    runs = list_runs(resources.RUNS_ROOT)
    if not runs:
        st.caption("No runs saved yet.")
        return
    df = pd.DataFrame(runs).drop(columns=["path"], errors="ignore")
    st.dataframe(df, hide_index=True)
    ok = [r for r in runs if "error" not in r]
    if ok:
        st.plotly_chart(figures.bar_table([r["name"] for r in ok], [r.get("judge_accuracy") or 0 for r in ok],
                                          "judge accuracy per run", "accuracy"), key="training.cmp")
    resumable = [r["name"] for r in ok if r.get("interrupted")]
    if resumable:
        c1, c2 = st.columns([3, 1])
        name = c1.selectbox("Interrupted runs", resumable, key="training.resume_name")
        if c2.button("Resume run", disabled=not can_control, key="training.resume_run") \
                and roles.require_instructor("resume a run"):
            try:
                resources.get_trainer().resume_run(name)
                st.rerun()
            except (TrainerBusy, FileNotFoundError, ValueError) as e:
                st.error(str(e))
