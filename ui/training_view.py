"""Widgets of the Training page that are more than a line: the form, the live panel, the shipped model's recorded
history (what the page shows before anyone trains), the film, the runs table."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from engine.checkpoints import CheckpointError, read_configs, resolve
from engine.config import ConfigError, TrainConfig
from engine.presets import PRESETS, check_model_size, customise
from engine.training.runs import (METRICS, SNAPSHOTS, bucket_loss, judge_snapshots, list_runs, list_shipped,
                                  load_snapshots, loss_history, read_metrics, read_report)
from engine.training.trainer import TrainerBusy

from . import figures, pins, resources, roles, widgets
from .errors import without_paths

HISTORY_MODEL = "default"      # the shipped model whose own recorded training the page shows before anyone trains
CHANCE = 0.1                   # a random guess among the ten digits


NAME, STEPS, STAMP = "training.name", "training.steps", "training.stamp"


def _form_defaults(preset: str) -> dict:
    """The start form's keyed fields as the preset sets them: a run name after the preset, its step count."""
    stamp = st.session_state.setdefault(STAMP, time.strftime("%H%M%S"))
    return {NAME: f"{preset}-{stamp}", STEPS: PRESETS[preset].train.steps}


def _follow_preset() -> None:
    """On a preset change: the default run name and the step count follow the new preset (the other fields are
    unkeyed, so they follow by themselves); a name the learner typed is kept."""
    stamp = st.session_state.get(STAMP)
    name = str(st.session_state.get(NAME) or "").strip()
    defaults = _form_defaults(st.session_state["training.preset"])
    if not name or name in {f"{p}-{stamp}" for p in PRESETS}:
        st.session_state[NAME] = defaults[NAME]
    st.session_state[STEPS] = defaults[STEPS]


def start_form(can_control: bool) -> None:
    trainer = resources.get_trainer()
    preset = st.selectbox("Preset", list(PRESETS), index=0, key="training.preset", on_change=_follow_preset,
                          format_func=lambda n: f"{n} — {PRESETS[n].description}")
    if st.session_state.pop("training.renew", False):                 # a run was started: a fresh default name
        st.session_state.pop(STAMP, None)
        st.session_state.update(_form_defaults(preset))
    for key, value in _form_defaults(preset).items():                # keyed fields: set once, then the learner's
        st.session_state.setdefault(key, value)
    with st.form("training.form"):
        c1, c2 = st.columns(2)
        name = c1.text_input("Run name", key=NAME)
        steps = c2.number_input("Steps", 1, 1_000_000, key=STEPS)
        # three a row: four squeezed the learning rate's digits out of its box at 1024 px
        c1, c2, c3 = st.columns(3)
        width = c1.number_input("Width (base channels)", 4, 512, value=PRESETS[preset].model.base_channels, step=4)
        depth = c2.number_input("Depth (blocks / level)", 1, 8, value=PRESETS[preset].model.num_res_blocks)
        batch = c3.number_input("Batch size", 1, 4096, value=PRESETS[preset].train.batch_size)
        c1, c2, c3 = st.columns(3)
        lr = c1.number_input("Learning rate", 1e-6, 1.0, value=PRESETS[preset].train.lr, format="%.5f")
        T = c2.number_input("T (diffusion steps)", 1, 10000, value=PRESETS[preset].schedule.T)
        kinds = ["cosine", "linear", "flow"]
        kind = c3.selectbox("Schedule", kinds, index=kinds.index(PRESETS[preset].schedule.kind),
                            help="cosine / linear: DDPM's noise prediction on that schedule; flow: flow matching, the "
                                 "velocity ε − x₀ on the straight path x = (1 − s)·x₀ + s·ε")
        p_uncond = st.slider("p_uncond (label dropout)", 0.0, 1.0, PRESETS[preset].train.p_uncond, 0.05)
        init = st.selectbox("Start from", ["fresh weights"] + list(resources.model_choices()),
                            help="'Train on top of' a shipped model or another run of the same architecture")
        submitted = st.form_submit_button("Start training", type="primary", disabled=not can_control,
                                          key="training.start")
    if submitted and roles.require_instructor("start training"):
        try:
            p = customise(preset, base_channels=int(width), num_res_blocks=int(depth), lr=float(lr),
                          batch_size=int(batch), T=int(T), kind=kind, p_uncond=float(p_uncond), steps=int(steps))
            check_model_size(p.model)                            # ConfigError with the reason, shown below
            init_from = None if init == "fresh weights" else resources.model_choices()[init]
            trainer.start(name, p.model, p.schedule, p.train, p.recommended, init_from=init_from)
            st.session_state["training.renew"] = True            # the next run gets a fresh default name
            st.toast(f"Started {name}")
        except (ConfigError, TrainerBusy, ValueError, FileExistsError) as e:
            st.error(str(e))
        except Exception as e:  # e.g. an init checkpoint of another architecture
            st.error(f"Could not start: {e}")


def controls(can_control: bool) -> None:
    """Pause, Resume and Stop of the run training now: the one place to resume a paused run (the runs table
    resumes interrupted runs from their checkpoint)."""
    trainer = resources.get_trainer()
    s = trainer.status()
    row = st.container(horizontal=True)                  # each button as wide as its label: none is cut
    if row.button("Pause", disabled=not can_control or s.state != "running", key="training.pause") \
            and roles.require_instructor("pause training"):
        trainer.pause()
        st.rerun()
    if row.button("Resume", disabled=not can_control or s.state != "paused", key="training.resume") \
            and roles.require_instructor("resume training"):
        trainer.resume()
        st.rerun()
    if row.button("Stop", disabled=not can_control or not s.active, key="training.stop") \
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
            st.error(without_paths(s.error))
        row = st.container(horizontal=True)              # wraps: two a row from ~1400 px, one at 1024 px
        pins.chart(row.container(width=figures.PAIR_WIDTH), figures.loss_figure(list(s.loss_history)),
                                                             key="training.loss")
        pins.chart(row.container(width=figures.PAIR_WIDTH), figures.bucket_figure(list(s.loss_by_bucket)),
                                                             key="training.buckets")
        judged = [{"step": step, "accuracy": acc, "per_class": {c: per.get(str(c), per.get(c)) for c in range(10)}}
                  for step, acc, per in s.judge_history]
        pins.chart(row.container(width=figures.PAIR_WIDTH), figures.judge_over_training_figure(judged, CHANCE),
                                                             key="training.judge")
        if active and not s.active:
            st.rerun()        # the run ended: one full rerun stops the polling and refreshes the runs table

    panel()


def panels() -> None:
    """The run started in this server session, live, above the shipped model's recorded history (always shown:
    the worksheet's prompts land on it, whatever was trained since the server started)."""
    live = bool(resources.get_trainer().status().run_name)
    if live:
        live_panel()
        s = resources.get_trainer().status()
        film(list(s.snapshots), "training.film", f"run {s.run_name}")
    shipped_history(live)


def film(snaps: list[tuple[int, np.ndarray]], key: str, label: str, judged: list[dict] | None = None,
         stacked: bool = False) -> None:
    """Fixed-seed samples at a chosen snapshot beside (or, stacked, above) real held-out digits of the same classes;
    with `judged` (judge_snapshots of the same snapshots) each sample is framed by the judge's reading."""
    if not snaps:
        return
    if not stacked:
        st.subheader("Samples through training (3.2)")
    steps = [st_ for st_, _ in snaps]
    step = st.select_slider("snapshot at step", options=steps, value=steps[-1], key=key)
    grid = dict(snaps)[step]
    per = max(1, grid.shape[0] // 10)
    _, held = resources.get_data()
    real = np.stack([widgets.to_display(held.of_class(c)[i]) for c in range(10) for i in range(per)])
    reading = {j["step"]: j for j in judged or []}.get(step)
    c1, c2 = (st.container(), st.container()) if stacked else st.columns(2)
    if reading is not None:
        right = int(sum(reading["correct"]))
        pins.image(c1, widgets.framed_mosaic(grid, np.array(reading["correct"]), cols=10, scale=3), output_format="PNG",
                 caption=f"{label}: fixed seeds, step {step} ({per} per class, 0…9); green frame = the judge reads "
                         f"the asked digit, red = it does not: {right} of {len(reading['correct'])}")
    else:
        pins.image(c1, widgets.mosaic(grid, cols=10, scale=3), caption=f"{label}: fixed seeds, step {step} "
                 f"({per} per class, 0…9)", output_format="PNG")
    pins.image(c2, widgets.mosaic(real, cols=10, scale=3), caption="real held-out digits of the same classes",
             output_format="PNG")


# -- the shipped model's recorded history ------------------------------------------------------------------------------
def history_dir() -> Path:
    return Path(resources.SHIPPED_ROOT) / HISTORY_MODEL


def _stamp(folder: Path) -> tuple:
    """What the cached history depends on: the names and mtimes of the files it reads."""
    files = [folder / METRICS, folder / "meta.json", folder / "config.json", folder / "report.json",
             *sorted((folder / SNAPSHOTS).glob("step-*.npy"))]
    return tuple((f.name, f.stat().st_mtime_ns) for f in files if f.exists())


@st.cache_data(max_entries=4, show_spinner=False)
def _recorded(folder: str, stamp: tuple) -> dict:
    """config, meta, metrics records, snapshots and report of a model folder (raises CheckpointError); a run
    in the middle of a save is read from its complete copy (engine.checkpoints.resolve)."""
    config, meta = read_configs(folder)                   # re-reads by itself when a save swaps the folder
    copy = resolve(folder)
    return {"config": config, "meta": meta, "metrics": read_metrics(copy / METRICS),
            "snapshots": load_snapshots(copy), "report": read_report(copy)}


@st.cache_data(max_entries=4, show_spinner="The judge is reading each snapshot…")
def _judged(folder: str, stamp: tuple) -> list[dict] | None:
    """The judge's reading of each snapshot of `folder` (None without a judge); ~0.1 s for 12 snapshots."""
    judge = resources.get_judge()
    if judge is None:
        return None
    return judge_snapshots(judge, load_snapshots(resolve(folder)))


def _loss_title(tc: TrainConfig | None) -> str:
    if tc is not None and tc.min_snr_gamma > 0:
        return f"Min-SNR-weighted ε-MSE (γ = {tc.min_snr_gamma:g})"
    return "ε-MSE"


def shipped_history(live: bool = False) -> None:
    """Loss, loss per noise bucket, judge accuracy over training and the film of the shipped model, as recorded;
    `live`: a run of this server session is shown above."""
    folder = history_dir()
    st.subheader(f"Recorded history of the shipped model `{HISTORY_MODEL}` (not a live run)")
    try:
        rec = _recorded(str(folder), _stamp(folder))
    except CheckpointError as e:
        st.warning(f"No training run yet in this server session, and the shipped model's history cannot be read: {e}")
        return
    try:
        tc = TrainConfig.from_dict(rec["config"]["train"])
    except (KeyError, TypeError, ValueError):
        tc = None
    meta, snaps = rec["meta"], rec["snapshots"]
    wall = meta.get("wall_time_s")
    made = (f"{int(meta.get('step', 0)):,} steps × {tc.batch_size} digits" if tc else f"{meta.get('step')} steps") + \
           (f", {wall / 60:.0f} min on {meta.get('device', '?')}" if wall else "")
    every = f", a film of {snaps[0][1].shape[0]} fixed-seed samples every {snaps[1][0] - snaps[0][0]} steps" \
        if len(snaps) > 1 else ""
    if live:
        st.caption(f"For comparison with the run above: what `checkpoints/{HISTORY_MODEL}` recorded while it was "
                   f"trained ({made}; its metrics.jsonl{every}).")
    else:
        st.caption(f"No run has been started in this server session, so these charts replay what "
                   f"`checkpoints/{HISTORY_MODEL}` recorded while it was trained ({made}; its metrics.jsonl{every}). "
                   "A run started above appears above them, live; the shipped models stay in the table below.")
    st.markdown("**The loss, over training and per noise level (1.2, 3.1)**")
    row = st.container(horizontal=True)                  # side by side from ~1400 px, stacked at 1024 px
    with row.container(width=figures.PAIR_WIDTH):
        _recorded_loss(rec["metrics"], tc)
    with row.container(width=figures.PAIR_WIDTH):
        _recorded_buckets(folder, tc)
    st.markdown("**Quality: what the samples look like, and how many the judge recognises (3.1, 3.2)**")
    row = st.container(horizontal=True)
    with row.container(width=figures.PAIR_WIDTH):
        judged = _recorded_judge(folder, rec)
    with row.container(width=figures.PAIR_WIDTH):
        film(snaps, "training.history_film", f"shipped {HISTORY_MODEL}", judged, stacked=True)


def _change(a: float, b: float) -> str:
    """'fell ... % lower' / 'rose ... % higher' from a to b, as computed."""
    pct = 100 * (b - a) / a if a else 0.0
    return f"{abs(pct):.0f} % {'lower' if pct < 0 else 'higher'}"


def _recorded_loss(metrics: list[dict], tc: TrainConfig | None) -> None:
    warmup = tc.warmup_steps if tc else 0
    h = loss_history(metrics, skip_until=warmup, smooth=20)
    if not h["loss"]:
        st.info("This model's metrics.jsonl holds no losses after warm-up.")
        return
    pins.chart(st, figures.recorded_loss_figure(h["steps"], h["loss"], h["smooth_steps"], h["smoothed"], h["k"],
                                                 _loss_title(tc)), key="training.history_loss")
    text = "Faint: each logged loss (one batch's); bold: the mean of the last {k} logged. The y axis is logarithmic"
    text = text.format(k=h["k"])
    if h["skipped_loss"]:
        text += (f", and the first {warmup} steps (learning-rate warm-up) are left out: there the loss fell from "
                 f"{h['skipped_loss'][0]:.2f} to {h['skipped_loss'][-1]:.3f}, which would squash the rest")
    text += "."
    sm, ss = h["smoothed"], h["smooth_steps"]
    if len(sm) > 1:
        a, b = sm[0], sm[-1]
        text += (f" After that the mean went from {a:.4f} (step {ss[0]:,}) to {b:.4f} (step {ss[-1]:,}), "
                 f"{_change(a, b)}")
        span = (ss[-1] - ss[0]) // 3
        j = next((i for i, s_ in enumerate(ss) if s_ >= ss[-1] - span), None)
        if span > 0 and j is not None and j < len(sm) - 1:
            text += f"; over the last {ss[-1] - ss[j]:,} steps it went from {sm[j]:.4f} to {b:.4f}, {_change(sm[j], b)}"
        text += "."
    st.caption(text)


def _recorded_buckets(folder: Path, tc: TrainConfig | None) -> None:
    entry = bucket_loss(folder)
    if entry is None:
        st.info(f"**Loss per noise bucket: not measured yet** for `{HISTORY_MODEL}`. It appears here once "
                f"`checkpoints/{HISTORY_MODEL}/evidence/bucket_loss.json` is shipped beside the model "
                "(see engine/evidence.py).")
        return
    res = entry["result"]
    mse, buckets = [float(v) for v in res["mse"]], res["buckets"]
    pins.chart(st, figures.bucket_loss_figure(buckets, mse, "ε-MSE (unweighted)"), key="training.history_buckets")

    def lab(i: int) -> str:
        return f"{100 * buckets[i][0]:.0f}–{100 * buckets[i][1]:.0f} %"

    hi, lo = int(np.argmax(mse)), int(np.argmin(mse))
    total = sum(mse)
    half = len(mse) // 2
    low_share = sum(mse[:half]) / total if total else 0.0
    n = res.get("n_images")
    text = (f"Unweighted ε-MSE of `{HISTORY_MODEL}` on {f'{n:,} ' if isinstance(n, int) else ''}held-out digits, "
            f"noised to each tenth of the noise range. Largest at {lab(hi)} noise ({mse[hi]:.3g}, "
            f"{100 * mse[hi] / total:.0f} % of the ten bars' sum); smallest at {lab(lo)} ({mse[lo]:.3g}"
            + (f", {mse[hi] / mse[lo]:.0f}× smaller" if mse[lo] > 0 else "") + "). ")
    if low_share >= 0.5:
        text += (f"The low-noise half ({lab(0).split('–')[0]}–{100 * buckets[half - 1][1]:.0f} %) holds "
                 f"{100 * low_share:.0f} % of the sum.")
        if hi < half:
            text += (" With ε-prediction the least noisy inputs are the hardest: there the noise is tiny, so "
                     "predicting it means knowing the clean digit to the pixel; at high noise x_t is almost all "
                     "noise and ε can nearly be read off it.")
    else:
        text += (f"The high-noise half ({100 * buckets[half][0]:.0f}–{100 * buckets[-1][1]:.0f} %) holds "
                 f"{100 * (1 - low_share):.0f} % of the sum.")
    if tc is not None and tc.min_snr_gamma > 0:
        text += " The recorded training loss weights the noise levels (Min-SNR-γ), so it is not these bars' mean."
    m = entry.get("measured") or {}
    if m:
        text += f" Measured {m.get('date', '')} on {m.get('machine', '?')} (`python -m engine precompute`)."
    st.caption(text)


def _recorded_judge(folder: Path, rec: dict) -> list[dict] | None:
    if not rec["snapshots"]:
        st.info("This model shipped no snapshots, so there is no judge accuracy over training to show.")
        return None
    judged = _judged(str(folder), _stamp(folder))
    if judged is None:
        st.info("The judge (checkpoints/judge) could not be loaded, so accuracy over training cannot be measured.")
        return None
    pins.chart(st, figures.judge_over_training_figure(judged, CHANCE), key="training.history_judge")
    n = len(judged[-1]["correct"])
    first, last = judged[0], judged[-1]
    s90 = next((j["step"] for j in judged if j["accuracy"] >= 0.9), None)
    text = (f"The judge's reading, computed now, of the {n} fixed-seed samples saved at each snapshot "
            f"({n // 10} per class, so one digit is {100 / n:.0f} points): {100 * first['accuracy']:.0f} % at step "
            f"{first['step']:,}, {100 * last['accuracy']:.0f} % at step {last['step']:,}")
    text += f"; first at or above 90 % at step {s90:,}. " if s90 is not None else "; never at or above 90 %. "
    text += (f"Read as 'not a digit': {100 * first['not_a_digit']:.0f} % at step {first['step']:,}, "
             f"{100 * last['not_a_digit']:.0f} % at the end. Red dashes: chance ({100 * CHANCE:.0f} %, a random "
             "guess among ten digits). Click 'each digit' in the legend for one line per class.")
    report = rec["report"]
    if isinstance(report.get("accuracy"), (int, float)):
        text += (f" The finished model's evaluate report measured {100 * report['accuracy']:.1f} % on "
                 f"{report.get('n_samples', '?'):,} samples.")
    st.caption(text)
    return judged


@st.cache_data(ttl=60, max_entries=4, show_spinner=False)
def _shipped_rows(root: str) -> list[dict]:
    """list_shipped, cached for a minute (each row builds its model once to count FLOPs)."""
    return list_shipped(root)


def _label(r: dict) -> str:
    return r["name"] if r["source"] == "shipped" else f"run: {r['name']}"


def runs_table(can_control: bool) -> None:
    st.subheader("Shipped models and runs (1.2, 3.1, 5.3, B2)")
    st.markdown("How do width, depth, the architecture and T change training cost and quality?")
    rows = _shipped_rows(str(resources.SHIPPED_ROOT)) + list_runs(resources.RUNS_ROOT)
    if not rows:
        st.caption("No shipped models and no runs saved yet.")
        return
    # Two narrow tables (quality, then cost) rather than one wide one: each fits a 1024-px screen beside the sidebar.
    table = [{"model": _label(r), "kind": r["source"], "T": r.get("T"),
              "judge %": round(100 * r["judge_accuracy"], 1) if r.get("judge_accuracy") is not None else None,
              "Fréchet ×": r.get("frechet_ratio"), "final loss": r.get("final_loss"),
              "judge % from": r.get("judged_on"),
              "params (M)": r["params"] / 1e6 if r.get("params") else None, "MFLOP": r.get("mflop_per_image"),
              "images/s": r.get("images_per_s"),
              "wall min": r["wall_time_s"] / 60 if r.get("wall_time_s") else None,
              "steps": r.get("step"), "error": without_paths(r["error"]) if r.get("error") else None} for r in rows]
    df = pd.DataFrame(table)
    from_report = all(str(r.get("judged_on", "")).startswith("report.json") for r in rows if "error" not in r)
    errors = ["error"] if not df["error"].isna().all() else []

    def num(fmt: str) -> st.column_config.NumberColumn:
        return st.column_config.NumberColumn(format=fmt, width="small")

    config = {"kind": st.column_config.TextColumn(width="small"), "judge %": num("%.1f"), "Fréchet ×": num("%.2f"),
              "final loss": num("%.4f"), "T": num("%d"), "params (M)": num("%.2f"), "MFLOP": num("%.0f"),
              "images/s": num("%.0f"), "wall min": num("%.0f"), "steps": num("%d")}
    st.markdown("**Quality**")
    quality = ["model", "kind", "T", "judge %", "Fréchet ×", "final loss"] + ([] if from_report else ["judge % from"])
    st.dataframe(df[quality + errors], hide_index=True, column_config=config, key="training.table_quality")
    st.markdown("**Cost**")
    st.dataframe(df[["model", "kind", "params (M)", "MFLOP", "images/s", "wall min", "steps"] + errors],
                 hide_index=True, column_config=config, key="training.table_cost")
    samples = sorted({r["judged_on"] for r in rows if str(r.get("judged_on", "")).startswith("report.json")})
    st.caption("judge %: the share of generated digits the judge reads as the asked class; Fréchet ×: Fréchet "
               "distance ÷ the real-vs-real baseline (1 = as close as real digits); both from each model's "
               + (", ".join(samples) if samples else "report.json")
               + ("" if from_report else "; a run without a report shows the last accuracy logged in training, on a "
                  "few fixed-seed samples ('judge % from')")
               + ". final loss: mean of the last 10 logged training losses. T: diffusion steps. MFLOP: one forward "
               "pass per image. images/s = images seen ÷ wall time, from meta.json: the shipped models were trained "
               "with different thread counts, partly side by side (see their PROVENANCE.md), so compare their cost "
               "with MFLOP."
               + "".join(f" {_label(r)}'s final loss is its velocity MSE (flow matching's v = ε − x₀), another "
                         "quantity than the others' ε-MSE." for r in rows if r.get("objective") == "flow")
               + "".join(f" Could not read {r['name']}: {without_paths(r['error'])}." for r in rows if "error" in r))
    ok = [r for r in rows if "error" not in r and r.get("judge_accuracy") is not None]
    if ok:
        colours = ["#1f77b4" if r["source"] == "shipped" else "#ff7f0e" for r in ok]
        row = st.container(horizontal=True)
        bars = figures.model_accuracy_bars([_label(r) for r in ok], [r["judge_accuracy"] for r in ok], colours,
                                           [r.get("judged_on") or "" for r in ok], "judge accuracy", CHANCE)
        pins.chart(row.container(width=figures.PAIR_WIDTH), bars, key="training.cmp")
        lossy = [r for r in ok if r.get("final_loss") and r.get("objective") != "flow"]    # one quantity: ε-MSE
        if lossy:
            scatter = figures.loss_vs_accuracy_figure([_label(r) for r in lossy], [r["final_loss"] for r in lossy],
                                                      [r["judge_accuracy"] for r in lossy],
                                                      [c for r, c in zip(ok, colours) if r in lossy])
            pins.chart(row.container(width=figures.PAIR_WIDTH), scatter, key="training.loss_vs_acc")
        st.caption(_loss_vs_quality(lossy) + " Blue: shipped; orange: your runs. Red dashes: chance.")
    # Resume run: interrupted runs other than the one training now (a paused run resumes with Resume above:
    # one control per meaning); while a run is active, another cannot start (one training job at a time).
    s = resources.get_trainer().status()
    current = s.run_name if s.active else None
    resumable = [r["name"] for r in rows if r["source"] == "run" and "error" not in r and r.get("interrupted")
                 and r["name"] != current]
    if resumable:
        c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
        name = c1.selectbox("Interrupted runs", resumable, key="training.resume_name")
        busy = f"run {current!r} is {s.state}: stop it first (one training job at a time)" if current else None
        if c2.button("Resume run", disabled=not can_control or current is not None, key="training.resume_run",
                     help=busy or "continue this run from its last checkpoint") \
                and roles.require_instructor("resume a run"):
            try:
                resources.get_trainer().resume_run(name)
                st.rerun()
            except (TrainerBusy, FileNotFoundError, ValueError, CheckpointError) as e:
                st.error(str(e))


def _loss_vs_quality(rows: list[dict]) -> str:
    """Sentences, computed from the rows, on how final loss and judge accuracy line up (3.1: loss is not quality)."""
    if not rows:
        return ""
    low = min(rows, key=lambda r: r["final_loss"])
    best = max(rows, key=lambda r: r["judge_accuracy"])
    if low is best:
        text = (f"{_label(low)} has both the lowest final loss ({low['final_loss']:.4f}) and the highest judge "
                f"accuracy ({100 * low['judge_accuracy']:.1f} %).")
    else:
        text = (f"Lowest final loss: {_label(low)} ({low['final_loss']:.4f}, judge accuracy "
                f"{100 * low['judge_accuracy']:.1f} %); highest judge accuracy: {_label(best)} "
                f"({100 * best['judge_accuracy']:.1f} %, final loss {best['final_loss']:.4f}).")
    ref = next((r for r in rows if r["source"] == "shipped" and r["name"] == HISTORY_MODEL), None)
    if ref is not None:
        for r in rows:
            ratio = r["final_loss"] / ref["final_loss"]
            gap = ref["judge_accuracy"] - r["judge_accuracy"]
            if r is not ref and ratio <= 1.15 and gap >= 0.10:
                t_note = f" (T = {r['T']})" if r.get("T") != ref.get("T") else ""
                text += (f" {_label(r)}{t_note} reached a final loss {ratio:.2f}× {HISTORY_MODEL}'s, yet its "
                         f"judge accuracy is {100 * r['judge_accuracy']:.1f} % against "
                         f"{100 * ref['judge_accuracy']:.1f} %.")
    return text
