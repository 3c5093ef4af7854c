"""Cached computations and panels of the Denoising page (the page itself only lays them out)."""
from __future__ import annotations

import time

import numpy as np
import streamlit as st
import torch

from engine import evidence, export
from engine.config import SampleConfig
from engine.judge import NOT_A_DIGIT, predict
from engine.metrics import first_recognised, memorisation
from engine.sampling import guided_eps, trajectory
from engine.schedule import NoiseSchedule

from . import compute, figures, pins, resources, widgets



@compute.heavy(32, "Denoising")
def cached_trajectory(path: str, sha: str, digit: int, seed: int, cfg: dict) -> dict:
    ck = resources.load_model(path)
    t0 = time.perf_counter()
    schedule = NoiseSchedule(ck.schedule_config)
    tr = trajectory(ck.model, schedule, torch.tensor([digit]), SampleConfig(**cfg), [seed])
    return {"t": tr["t"], "alpha_bar": [schedule.alpha_bar_at(t) for t in tr["t"]], "x_t": widgets.to_display(tr["x_t"][:, 0]), "x0": widgets.to_display(tr["x0_pred"][:, 0]),
            "terms": {k: v[:, 0, 0].numpy() for k, v in tr["terms"].items()},
            "final": tr["final"], "seconds": time.perf_counter() - t0}


@st.cache_resource
def _measured() -> compute.ResultStore:
    """Panels measured on request in this server, shared by all sessions: {(path, sha, panel, params): result}.
    (Not compute.heavy: the measurement drives a progress bar on the page.)"""
    return compute.ResultStore(16)


def cached_panel(path: str, sha: str, panel: str, params_json: str, progress=None, on_wait=None) -> dict:
    """A Denoising panel measured now, with the same code and parameters as `engine precompute` uses; measured
    once per server and settings, through the shared queue and the learner's budget (see ui.compute)."""
    import json

    store, key = _measured(), (path, sha, panel, params_json)

    def work():
        ck = resources.load_model(path)
        result = export.compute_panel(panel, ck, resources.get_judge(), json.loads(params_json),
                                      cache=resources.get_sample_cache(), progress=progress)
        store.put(key, result)
        return result

    hit = store.get(key)
    return hit if hit is not compute.ResultStore._MISSING else compute.run_limited(work, compute.limits(), on_wait)


def _settings_diff(stored: dict, wanted: dict, prefix: str = "") -> list[str]:
    """'name stored (yours: wanted)' for each setting that differs between two parameter dicts (nested)."""
    out = []
    for k in sorted(set(stored) | set(wanted)):
        a, b = stored.get(k), wanted.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _settings_diff(a, b, f"{k}.")
        elif a != b and k not in ("model_sha256", "judge"):
            out.append(f"{k} = {a} (yours: {b})")
    return out


def panel_result(ck, path: str, panel: str, params: dict, what: str, key: str) -> tuple[dict | None, str]:
    """(result, provenance) of a heavy panel: the stored measurement if `engine precompute` made one with these
    parameters, or one measured in this server since; else measured on request (a toggle saying how long it
    will take). A learner whose request would outlast their budget sees the stored measurement at other
    settings instead, labelled as such; (None, "") when there is nothing to show."""
    import json

    entry = evidence.lookup(path, panel, **params)
    if entry is not None:
        m = entry["measured"]
        return entry["result"], f"Measured by `{m['command']}` on {m['machine']} ({m['date']}, {entry['seconds']:.0f} s)."
    params_json = json.dumps(params, sort_keys=True)
    done = _measured().get((path, ck.sha256, panel, params_json))
    if done is not compute.ResultStore._MISSING:
        if key in st.session_state:                 # the toggle is not drawn: keep its state for other settings
            st.session_state[key] = st.session_state[key]
        return done, "Measured on request in this session of the dashboard (it is kept for everyone)."
    stored = [e for e in evidence.read_panel(path, panel).values() if isinstance(e, dict) and e.get("seconds")]
    est = stored[0]["seconds"] if len(stored) == 1 else None
    lim = compute.limits()
    if lim.seconds is not None and est is not None and est > lim.seconds:
        return _stored_instead(stored[0], params, what, est, lim.seconds)
    estimate = (f"it took {est:.0f} s at this model's landing settings on {stored[0]['measured']['machine']}"
                if est else "no earlier measurement to estimate from")
    if not st.toggle(f"Measure it now ({estimate})", key=key):
        st.info(f"{what} has not been measured for these settings yet.")
        return None, ""
    t0 = time.perf_counter()
    label = f"Measuring {what[0].lower() + what[1:]} ({estimate}; other learners' work may queue first)"
    bar = st.progress(0.0, text=label)

    def progress(done: int, total: int) -> None:
        bar.progress(min(done / max(total, 1), 1.0), text=f"{label}: {done} of {total}, {time.perf_counter() - t0:.0f} s")

    def on_wait(ahead: int, running: int) -> None:
        bar.progress(0.0, text=f"{label}: queued, {ahead} request{'s' if ahead != 1 else ''} ahead of yours "
                               f"({running} of {compute.QUEUE.workers} workers busy)")

    try:
        result = cached_panel(path, ck.sha256, panel, params_json, progress, on_wait)
    except compute.Refused as e:
        bar.empty()
        st.warning(str(e))
        return (_stored_instead(stored[0], params, what, est, lim.seconds, warn=False) if len(stored) == 1
                else (None, ""))
    bar.empty()
    return result, f"Measured now on {resources.device_label()} in {time.perf_counter() - t0:.0f} s."


def _stored_instead(entry: dict, params: dict, what: str, est: float, allowed: float,
                    warn: bool = True) -> tuple[dict, str]:
    """The stored measurement at other settings, for a learner who may not measure theirs, with what differs."""
    diff = _settings_diff(entry.get("params", {}), params)
    if warn:
        st.info(f"{what} for your settings takes about {est:.0f} s to measure (at this model's landing settings), "
                f"more than the {allowed:.0f} s one learner request may use on the shared laptop. Shown instead: "
                f"the stored measurement at {', '.join(diff) or 'other settings'}. The instructor can measure "
                "yours; it is then shown to everyone.")
    m = entry["measured"]
    return entry["result"], (f"Stored measurement at other settings ({', '.join(diff) or 'see above'}), by "
                             f"`{m['command']}` on {m['machine']} ({m['date']}, {entry['seconds']:.0f} s).")


def trajectory_panel(ck, path: str, digit: int, seed: int, cfg: SampleConfig) -> torch.Tensor:
    tr = cached_trajectory(path, ck.sha256, digit, seed, cfg.to_dict())   # a refusal ends the page (errors.run_page)
    _scrubber(tr, cfg, seed, ck.schedule_config.T)
    judge = resources.get_judge()
    if judge is not None:                     # say so when this seed is one of the misses, rather than hide it
        probs, _ = predict(judge, tr["final"])
        read = int(probs[0].argmax())
        said = "not a digit" if read == NOT_A_DIGIT else f"a **{read}**"
        if read == digit:
            st.caption(f"The judge reads the final sample as a {read} ({float(probs[0, read]):.0%} confident).")
        else:
            report = resources.model_report(path)
            st.warning(f"The judge reads this final sample as {said}"
                       + ("" if read == NOT_A_DIGIT else f" ({float(probs[0, read]):.0%})") + f", not a {digit}: a miss. "
                       + (f"This model's evaluation reads {report['accuracy']:.1%} of {report['n_samples']:,} "
                          "samples right at its recommended guidance, so misses happen. "
                          if "accuracy" in report and "n_samples" in report else "")
                       + "Raise w or try another seed, and watch the step where the digit's identity settles.")
    return tr["final"]


@st.fragment
def _scrubber(tr: dict, cfg: SampleConfig, seed: int, T: int) -> None:
    """A fragment: moving through the frames reruns only this panel, not the page (30 learners, 2 cores)."""
    n = len(tr["t"])
    i = st.slider("denoising step", 0, n - 1, n - 1, key="denoising.frame",
                  help="Scrub through the reverse process: x_t is the state, x̂₀ the model's current guess.")
    done = 100 * i / (n - 1)
    t = tr["t"][i]
    c1, c2, c3 = st.columns([1, 1, 2])
    with c1:
        widgets.show(tr["x_t"][i], caption=f"x_t at t = {t}" if t >= 0 else "final sample x₀", scale=7)
    with c2:
        widgets.show(tr["x0"][i], caption=f"x̂₀ predicted at t = {t}" if t >= 0 else "final sample x₀", scale=7)
    with c3:
        st.markdown(f"Frame **{i + 1} / {n}** ({done:.0f} % of denoising done). "
                    "x̂₀ = (x_t − √(1−ᾱ_t)·ε̂) / √ᾱ_t: what the network's noise estimate says the clean digit is.")
        if t >= 0:
            a = tr["alpha_bar"][i]
            if a < 0.01:      # x0_pred divides by sqrt(alpha_bar) < 0.1: it amplifies eps-hat's error 10x or more
                st.warning(f"At t = {t}, √ᾱ_t = {a ** 0.5:.1e}: x̂₀ divides by it, so any error in ε̂ is multiplied "
                           f"by {1 / a ** 0.5:,.0f}. This x̂₀ is amplified noise clipped to [−1, 1], not yet a guess "
                           "of a digit; it becomes one as √ᾱ_t grows (scrub right).")
        if t >= 0 and cfg.guidance > 0:
            st.markdown("This step is **guided**: two forwards, with and without the label."
                        if cfg.guidance_at(t, T) > 0 else
                        f"This step is **not guided** (t/T = {t / T:.2f} is below the guidance interval): "
                        "the conditional model alone, one forward.")
        lo = cfg.guidance_interval[0]
        st.caption(f"{cfg.sampler.upper()}-{cfg.steps}, guidance w = {cfg.guidance}"
                   + (f" while t/T ≥ {lo:g}" if lo > 0 and cfg.guidance > 0 else "") + f", seed {seed}: "
                   f"{tr['seconds']:.2f} s for this digit on {resources.device_label()}.")
        pins.image(st, widgets.mosaic(tr["x0"][:: max(1, n // 10)], cols=10, scale=2), output_format="PNG",
                 caption="x̂₀ along the way")
    if t >= 0 and tr["terms"]:
        _update_terms(tr, i, cfg)


def _update_terms(tr: dict, i: int, cfg: SampleConfig) -> None:
    """The sampler's update at this step split into its terms: they add up to the next x_t exactly."""
    names = list(tr["terms"])
    t_next = tr["t"][i + 1]
    st.markdown(f"**This step's update** ({cfg.sampler.upper()}): x_{{{t_next if t_next >= 0 else 0}}} = "
                + " + ".join(f"[{n}]" for n in names)
                + (" — each image on its own scale; the number is its RMS size in pixel units." if names else ""))
    cols = st.columns(len(names) + 1)
    total = sum(tr["terms"][n][i] for n in names)
    for col, name in zip(cols, names + ["sum = next x_t"]):
        img = total if name.startswith("sum") else tr["terms"][name][i]
        rms = float(np.sqrt(np.mean(img ** 2)))
        span = max(float(np.abs(img).max()), 1e-6)
        with col:
            widgets.show(((img / span + 1) * 127.5).clip(0, 255).astype(np.uint8), caption=f"{name}: RMS {rms:.3f}",
                         scale=3)


def recognisability_panel(ck, path: str, cfg: SampleConfig) -> None:
    if resources.get_judge() is None:
        st.warning("No judge checkpoint: recognisability cannot be measured.")
        return
    params = export.evidence_params("reverse_recognisability", ck, config=cfg)
    curve, source = panel_result(ck, path, "reverse_recognisability", params,
                                 f"Recognisability ({params['per_class']} seeds per class, every step judged)",
                                 "denoising.curve")
    if curve is None:
        return
    pct = [100 * d for d in curve["done"]]
    row = st.container(horizontal=True)
    pins.chart(row.container(width=figures.PAIR_WIDTH), figures.per_class_lines(
        pct, curve["x0_pred"]["accuracy"], "judge accuracy on x̂₀", "% of denoising done", "accuracy",
        curve["x0_pred"]["overall"], chance=0.1, not_a_digit=curve["x0_pred"].get("not_a_digit")),
        key="denoising.x0curve")
    pins.chart(row.container(width=figures.PAIR_WIDTH), figures.per_class_lines(
        pct, curve["x_t"]["accuracy"], "judge accuracy on x_t", "% of denoising done", "accuracy",
        curve["x_t"]["overall"], chance=0.1, not_a_digit=curve["x_t"].get("not_a_digit")),
        key="denoising.xtcurve")
    st.markdown(recognisability_sentence(curve))
    st.caption(source)


def recognisability_sentence(curve: dict) -> str:
    """What the curves say, computed from them: when x-hat-0 and x_t are first read right >= 90 % of the time,
    per class, and the spread between classes."""
    first_x0 = first_recognised(curve["done"], curve["x0_pred"]["accuracy"])
    first_xt = first_recognised(curve["done"], curve["x_t"]["accuracy"])
    pct = lambda d: "never" if d is None else f"{100 * d:.0f} %"                       # noqa: E731
    reached = {c: d for c, d in first_x0.items() if d is not None}
    text = ("First % of denoising at which the judge reads ≥ 90 % of x̂₀ right: "
            + ", ".join(f"**{c}** {pct(d)}" for c, d in first_x0.items())
            + ". On x_t: " + ", ".join(f"**{c}** {pct(d)}" for c, d in first_xt.items()) + ".")
    if reached:
        early = min(reached, key=reached.get)
        late = max(reached, key=reached.get)
        both = [c for c in reached if first_xt.get(c) is not None]
        sooner = sum(reached[c] < first_xt[c] for c in both)
        text += (f" x̂₀ is readable before x_t for {sooner} of the {len(both)} classes that reach 90 % on both; "
                 f"across classes x̂₀ gets there from {pct(reached[early])} (digit {early}) to {pct(reached[late])} "
                 f"(digit {late}).")
    return text


def guidance_grid_panel(ck, path: str, cfg: SampleConfig, ns: str = "denoising") -> None:
    """The class × guidance grid (samples and judge accuracy per cell); `ns` keeps its widget keys apart on the
    pages that show it (Denoising, and Architecture for 2.3: what the class label does at sampling time)."""
    params = export.evidence_params("guidance_grid", ck, config=cfg)
    g, source = panel_result(ck, path, "guidance_grid", params,
                             f"The class × guidance grid ({params['seeds']} seeds per cell)", f"{ns}.grid")
    if g is None:
        return
    weights = g["weights"]
    images = np.asarray(g["images"], dtype=np.uint8).reshape(-1, 28, 28)
    row = st.container(horizontal=True)
    pins.image(row.container(width=figures.PAIR_WIDTH),
        widgets.mosaic(images, cols=10, scale=3), output_format="PNG",
        caption="rows: guidance w = " + ", ".join(f"{w:g}" for w in weights) + "; columns: digits 0…9 "
                f"(the first of {params['seeds']} seeds per cell, DDIM-{params['config']['steps']})")
    if g["accuracy"] is not None:
        acc = np.asarray(g["accuracy"])
        pins.chart(row.container(width=figures.PAIR_WIDTH), figures.heatmap(
            acc, "digit", "guidance weight w", "judge accuracy per cell", x=[str(c) for c in range(10)],
            y=[f"w = {w:g}" for w in weights], quantity="accuracy", text_format=".0%", top_down=True),
            key=f"{ns}.gridacc")
        conf = np.asarray(g["confidence"]).mean(1)
        per_w = acc.mean(1)
        st.markdown("Mean over classes: " + "; ".join(
            f"w = {w:g}: accuracy **{a:.1%}**, confidence **{c:.3f}**" for w, a, c in zip(weights, per_w, conf)) + ".")
    st.caption(source)


@st.cache_data(max_entries=64, show_spinner=False)
def cached_eps(path: str, sha: str, digit: int, t: int, noise_seed: int) -> dict:
    """A real held-out digit noised to t with a known eps, and the network's eps-hat for it (one forward)."""
    ck = resources.load_model(path)
    schedule = NoiseSchedule(ck.schedule_config)
    _, held = resources.get_data()
    x0 = held.of_class(digit)[:1]
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(noise_seed))
    x_t = schedule.q_sample(x0, torch.tensor([t]), eps)
    device = next(ck.model.parameters()).device
    with torch.inference_mode():
        eps_hat = guided_eps(ck.model, x_t.to(device), t, torch.tensor([digit], device=device), 0.0,
                             schedule=schedule).cpu()
    x0_hat = schedule.predict_x0_from_eps(x_t, t, eps_hat).clamp(-1, 1)
    to_grey = lambda e: ((e[0, 0].numpy() / 3 + 1) * 127.5).clip(0, 255).astype(np.uint8)   # noqa: E731  ±3 sd
    return {"x0": widgets.to_display(x0[0]), "x_t": widgets.to_display(x_t[0]), "eps": to_grey(eps),
            "eps_hat": to_grey(eps_hat), "error": to_grey(eps_hat - eps), "x0_hat": widgets.to_display(x0_hat[0]),
            "mse": float(((eps_hat - eps) ** 2).mean()), "eps_var": float(eps.var()),
            "alpha_bar": schedule.alpha_bar_at(t)}


@st.fragment
def eps_panel(ck, path: str, digit: int) -> None:
    """What the network actually outputs: eps-hat beside the true eps for a real digit noised to t."""
    T = ck.schedule_config.T
    t = st.slider("noise level t of the real digit", 0, T - 1, min(T - 1, T // 2), key="denoising.eps_t")
    e = cached_eps(path, ck.sha256, digit, int(t), 0)
    cols = st.columns(6)
    items = [("x0", "real digit x₀"), ("x_t", f"x_t at t = {t}"), ("eps", "true noise ε"),
             ("eps_hat", "network's ε̂"), ("error", "ε̂ − ε"), ("x0_hat", "x̂₀ from ε̂")]
    for col, (k, cap) in zip(cols, items):
        with col:
            widgets.show(e[k], caption=cap, scale=3)
    what = ("The network is trained to output the noise that was added (ε-prediction)." if ck.schedule_config.kind
            != "flow" else "This flow model's network outputs the velocity v = ε − x₀ (flow matching); the ε̂ "
            "shown is what that velocity implies, ε̂ = k·x_t + (1 − s)·v (engine/schedule.py).")
    st.markdown(f"{what} Here its error is "
                f"**MSE {e['mse']:.4f}** per pixel, against a variance of {e['eps_var']:.2f} for ε itself "
                f"(noise images shown on ±3 standard deviations). ᾱ_t = {e['alpha_bar']:.4f}: "
                + ("at this low noise x_t is almost the clean digit, and the little noise in it is hard to tell "
                   "from the strokes." if e["alpha_bar"] > 0.9 else
                   "at this high noise x_t is almost ε itself, so ε̂ ≈ x_t is easy, but x̂₀ is a rough guess."
                   if e["alpha_bar"] < 0.1 else "move t to see the error change with the noise level."))


def memorisation_panel(final: torch.Tensor) -> None:
    train, _ = resources.get_data()
    m = memorisation(final, train.images, None, heldout_nearest=resources.get_heldout_nearest())
    idx = m["nearest_train_index"][0]
    c1, c2, c3 = st.columns([1, 1, 2])
    with c1:
        widgets.show(widgets.to_display(final[0]), caption="generated", scale=5)
    with c2:
        widgets.show(widgets.to_display(train.images[idx]), caption=f"nearest training digit #{idx}", scale=5)
    with c3:
        st.markdown(f"Pixel distance **{m['nearest_train_l2'][0]:.2f}**; held-out real digits are typically "
                    f"{m['heldout_nearest_l2_median']:.2f} from their nearest training digit and only 1 % are closer "
                    f"than {m['threshold_l2']:.2f}. A much smaller distance would mean the model copied.")


def sampler_panel(ck, path: str, cfg: SampleConfig, digit: int, seed: int) -> None:
    """Right vs wrong ancestral sampler side by side, and steps vs time vs judge accuracy per sampler."""
    # two more samplings per seed: on request, so a new seed costs one trajectory, not three (30 learners, 2 cores)
    if st.toggle("Compare the right and the wrong DDPM step for this digit and seed", key="denoising.wrong"):
        try:
            right = cached_trajectory(path, ck.sha256, digit, seed,
                                      cfg.replace(sampler="ddpm", add_noise=True).to_dict())
            wrong = cached_trajectory(path, ck.sha256, digit, seed,
                                      cfg.replace(sampler="ddpm", add_noise=False).to_dict())
        except compute.Refused as e:
            st.warning(str(e))
        else:
            c1, c2, c3 = st.columns([1, 1, 2])
            with c1:
                widgets.show(right["x0"][-1], caption="DDPM with σ·z (right)", scale=5)
            with c2:
                widgets.show(wrong["x0"][-1], caption="DDPM without σ·z (wrong)", scale=5)
            with c3:
                st.markdown(wrong_sampler_note(right["final"], wrong["final"], digit))
    speed_panel(ck, path, cfg)


def wrong_sampler_note(right: torch.Tensor, wrong: torch.Tensor, digit: int) -> str:
    """What dropping sigma*z did to this digit, measured on the two pictures shown."""
    ink = lambda x: float(((x + 1) / 2 > 0.5).float().mean())                          # noqa: E731
    judge = resources.get_judge()
    reads = ""
    if judge is not None:
        p = predict(judge, torch.cat([right, wrong]))[0].argmax(1).tolist()
        name = lambda c: "not a digit" if c == NOT_A_DIGIT else str(c)                # noqa: E731
        reads = f" The judge reads the right one as **{name(p[0])}** and the wrong one as **{name(p[1])}**."
    a, b = ink(right), ink(wrong)
    more = "more" if b > a else "less" if b < a else "as much"
    return ("The ancestral step is x_{t−1} = μ_θ(x_t, t) + σ_t·z. Dropping σ_t·z keeps only the posterior *mean* "
            f"at every step, so the chain lacks the variance it should have. Here the wrong sampler's digit has "
            f"{more} ink: **{b:.1%}** of its pixels are bright vs **{a:.1%}** for the right one.{reads} The textbook "
            "warns of blurry averages; what you see depends on the model and the number of steps, so compare the "
            "two for a few seeds and step counts. (DDIM with η = 0 is deterministic by design: its update is a "
            "different, consistent step.)")


def speed_panel(ck, path: str, cfg: SampleConfig) -> None:
    import pandas as pd

    params = export.evidence_params("sampler_speed", ck, config=cfg)
    rows, source = panel_result(ck, path, "sampler_speed", params,
                                f"Speed vs quality (DDIM and DDPM step counts, {10 * params['per_class']} digits each)",
                                "denoising.speed")
    if rows is None:
        return
    df = pd.DataFrame(rows)
    n = int(df["n"].iloc[0])
    row = st.container(horizontal=True)
    pins.chart(row.container(width=figures.PAIR_WIDTH), figures.speed_quality_figure(rows),
                                                         key="denoising.speedchart")
    side = row.container(width=figures.PAIR_WIDTH)
    side.dataframe(_speed_table(df), hide_index=True, height=35 * (len(df) + 1) + 3,    # every row, no scrolling
                   column_config={
        "sampler": st.column_config.TextColumn(width=118), "steps": st.column_config.NumberColumn(width=50),
        "seconds": st.column_config.NumberColumn(format="%.2f", width=66),
        "judge accuracy": st.column_config.NumberColumn("judge acc.", format="%.1f %%", width=84),
        "judge confidence": st.column_config.NumberColumn("confidence", format="%.3f", width=86)})
    slow, quick = df.loc[df["seconds"].idxmax()], df.loc[df["seconds"].idxmin()]
    st.markdown(f"{figures.sampler_label(slow['sampler'])}-{slow['steps']} took **{slow['seconds']:.1f} s** for {n} "
                f"digits, {slow['seconds'] / quick['seconds']:.0f}× "
                f"{figures.sampler_label(quick['sampler'])}-{quick['steps']} "
                f"(**{quick['seconds']:.2f} s**); judge accuracy {slow.get('judge_accuracy', float('nan')):.0%} vs "
                f"{quick.get('judge_accuracy', float('nan')):.0%}. {source}")
    fast = resources.SHIPPED_ROOT / "fast"
    if (ck.model_config.patch_size == 1 and (fast / "weights.safetensors").exists()
            and not torch.cuda.is_available()):
        fast_ck = resources.load_model(str(fast))
        side.caption("Sampling on a CPU: the shipped `fast` model (pick it in the sidebar) folds 2×2 pixel patches "
                   "into channels and has no 28×28 level: "
                   f"{resources.model_mflop(str(fast), fast_ck.sha256):.0f} MFLOP per image and step against this "
                   f"model's {resources.model_mflop(path, ck.sha256):.0f}; its evaluation reads "
                   f"{resources.model_report(fast).get('accuracy', float('nan')):.1%} judge accuracy and "
                   f"{resources.model_report(fast).get('frechet_ratio_to_baseline', float('nan')):.2f}× the real Fréchet "
                   f"distance (this model: {resources.model_report(path).get('accuracy', float('nan')):.1%}, "
                   f"{resources.model_report(path).get('frechet_ratio_to_baseline', float('nan')):.2f}×). The "
                   "Architecture page compares the two.")


def _speed_table(df):
    """The speed measurements as a table that fits a 450-px column: sampler, steps, seconds, judge accuracy in %
    and confidence (each row measured on the same number of digits, said in the chart's x axis title)."""
    out = df[["sampler", "steps", "seconds"]].copy()
    out["sampler"] = out["sampler"].map(figures.sampler_label)
    if "judge_accuracy" in df:
        out["judge accuracy"] = 100 * df["judge_accuracy"]
    if "judge_confidence" in df:
        out["judge confidence"] = df["judge_confidence"]
    return out


DISTILLED = resources.SHIPPED_ROOT / "distilled"


def few_steps_panel(digit: int, seed: int) -> None:
    """Why few steps are hard, on the shipped `fast` model and its distilled student: the teacher's DDIM-25
    x̂₀ along the way beside the student's few steps from the same starting noise, and what each answer to
    "fewer steps" costs, read from the stored measurements (the speed chart above, the models' reports)."""
    teacher_path = resources.SHIPPED_ROOT / "fast"
    if not (DISTILLED / "weights.safetensors").exists() or not (teacher_path / "weights.safetensors").exists():
        st.caption("No distilled student is shipped (`python -m engine distill`, see README): this panel compares "
                   "it with its teacher when there is one.")
        return
    student, teacher = resources.load_model(str(DISTILLED)), resources.load_model(str(teacher_path))
    s_cfg = student.recommended
    t_cfg = teacher.recommended.replace(sampler="ddim", steps=25)
    s_tr = cached_trajectory(str(DISTILLED), student.sha256, digit, seed, s_cfg.to_dict())
    t_tr = cached_trajectory(str(teacher_path), teacher.sha256, digit, seed, t_cfg.to_dict())
    k = len(s_tr["t"]) - 1
    # the teacher's frames at the student's timesteps (the student's grid is a sub-grid of DDIM's for 25 steps
    # only when it divides it; else the nearest teacher frame at or after each student t)
    picks = [min(range(len(t_tr["t"])), key=lambda j: (t_tr["t"][j] < t, abs(t_tr["t"][j] - t))) for t in s_tr["t"]]
    row = st.container(horizontal=True)
    pins.image(row.container(width=figures.PAIR_WIDTH), widgets.mosaic(np.stack([*s_tr["x0"], *t_tr["x0"][picks]]),
                                                                       cols=k + 1, scale=3),
               output_format="PNG", caption=f"x̂₀ at each of the student's {k} steps and its result (top); the "
                                            f"teacher's DDIM-25 x̂₀ at the same t (bottom), digit {digit}, seed {seed}")
    first, rest = _x0_change(t_tr["x0"])
    s_rep, t_rep = resources.model_report(DISTILLED), resources.model_report(teacher_path)
    side = row.container(width=figures.PAIR_WIDTH)
    side.markdown(
        f"**Why few steps are hard.** A DDIM step moves x_t straight toward the current x̂₀, but x̂₀ keeps changing "
        f"as t falls: along the teacher's 25 steps it changed by {first:.0f} grey levels per pixel (summed) in the "
        f"first fifth of the steps and {rest:.0f} in the other four fifths. The path from noise to digit bends, "
        "and a few long straight steps cut the bend. DPM-Solver++(2M) extrapolates x̂₀'s trend from the previous "
        "step (second order); UniPC also redoes each step once the next x̂₀ is known; a distilled student is "
        "trained so that one of its steps lands where two of its teacher's land, so it learns the bend.")
    if s_rep.get("accuracy") is not None and t_rep.get("accuracy") is not None:
        side.markdown(
            f"**What distillation traded** (the models' evaluations, {s_rep.get('n_samples', 1000):,} digits each): "
            f"the student, {s_cfg.sampler.upper()}-{s_cfg.steps} with one network call per step, reads "
            f"{s_rep['accuracy']:.1%} judge accuracy and {s_rep.get('frechet_ratio_to_baseline', float('nan')):.2f}× "
            f"the real Fréchet distance; its teacher at DDIM-25 with guidance, {t_rep['accuracy']:.1%} and "
            f"{t_rep.get('frechet_ratio_to_baseline', float('nan')):.2f}×. Its guidance is baked in: w is fixed "
            "at the teacher's, and the student cannot be steered with it.")


FLOW = resources.SHIPPED_ROOT / "flow"
TWIN = resources.SHIPPED_ROOT / "fast"            # the DDPM model the flow model shares everything else with
FEWER_STEPS = (2, 4, 8, 16)                       # the evaluations both models have below their 25 steps


def objective_reports() -> dict[str, dict[int, dict]]:
    """{line name: {steps: evaluate report}} of the DDPM model (DDIM) and the flow model (Euler, Heun) at 2-25
    steps, 1,000 digits each at the same guidance, from their shipped reports (PROVENANCE says the commands)."""
    lines = {"DDPM (fast), DDIM": {n: resources.model_report(DISTILLED, f"reports/teacher_ddim-{n}.json")
                                   for n in FEWER_STEPS} | {25: resources.model_report(TWIN)},
             "flow matching, Euler": {n: resources.model_report(FLOW, f"reports/euler-{n}.json")
                                      for n in FEWER_STEPS} | {25: resources.model_report(FLOW)},
             "flow matching, Heun (2N − 1 calls)": {n: resources.model_report(FLOW, f"reports/heun-{n}.json")
                                                   for n in FEWER_STEPS}}
    return {name: {n: r for n, r in by.items() if r.get("frechet_ratio_to_baseline") is not None}
            for name, by in lines.items()}


def _x0_change(x0: np.ndarray) -> tuple[float, float]:
    """How much x̂₀ moves along a trajectory: the mean absolute change per pixel between consecutive frames
    (grey levels), summed over the first fifth of the steps and over the rest."""
    change = [float(np.abs(x0[j + 1].astype(float) - x0[j].astype(float)).mean()) for j in range(len(x0) - 1)]
    return sum(change[: len(change) // 5]), sum(change[len(change) // 5:])


def objectives_panel(digit: int, seed: int) -> None:
    """Flow matching beside DDPM, on two models that differ only in their objective (same U-Net, data, steps,
    batch and guidance): x̂₀ along each one's 25 deterministic steps from the same seed, how much x̂₀ moves early
    and late, and quality against the number of steps from the models' evaluations."""
    if not (FLOW / "weights.safetensors").exists() or not (TWIN / "weights.safetensors").exists():
        st.caption("No flow-matching model is shipped (`python -m engine train --objective flow`, see "
                   "checkpoints/flow/PROVENANCE.md): this panel compares it with its DDPM twin when there is one.")
        return
    flow, twin = resources.load_model(str(FLOW)), resources.load_model(str(TWIN))
    f_cfg = flow.recommended.replace(sampler="euler", steps=25)
    d_cfg = twin.recommended.replace(sampler="ddim", steps=25)
    f_tr = cached_trajectory(str(FLOW), flow.sha256, digit, seed, f_cfg.to_dict())
    d_tr = cached_trajectory(str(TWIN), twin.sha256, digit, seed, d_cfg.to_dict())
    twin_ab = d_tr["alpha_bar"][0]
    picks = [round(i * 25 / 8) for i in range(9)]
    row = st.container(horizontal=True)
    pins.image(row.container(width=figures.PAIR_WIDTH),
               widgets.mosaic(np.stack([*d_tr["x0"][picks], *f_tr["x0"][picks]]), cols=len(picks), scale=2),
               output_format="PNG",
               caption=f"x̂₀ at steps {', '.join(map(str, picks[:-1]))} of 25 and the finished digit, digit {digit}, "
                       f"seed {seed}: the DDPM model with DDIM (top), the flow model with Euler (bottom), "
                       f"w = {f_cfg.guidance:g}")
    d_early, d_late = _x0_change(d_tr["x0"])
    f_early, f_late = _x0_change(f_tr["x0"])
    gap = lambda tr: float(np.abs(tr["x0"][0].astype(float) - tr["x0"][-1].astype(float)).mean())  # noqa: E731
    side = row.container(width=figures.PAIR_WIDTH)
    side.markdown(
        "**Two objectives, one network.** Both models are the `fast` U-Net trained on the same digits for the same "
        "12,000 steps of 128. The DDPM model learns the noise ε on the cosine schedule; the flow model learns the "
        "velocity v = ε − x₀ along the straight line x = (1 − s)·x₀ + s·ε (flow matching, Lipman et al. 2023; "
        "rectified flow, Liu et al. 2022). Both sample by the same update: a DDIM step is an Euler step of the "
        "straight-line ODE (the engine tests they give the same images), so what differs is what was learnt and "
        "where the steps fall (the flow model's levels are evenly spaced in s).")
    side.markdown(
        f"**Along these 25 steps** x̂₀ moved by {d_early + d_late:.0f} grey levels per pixel in all (summed over "
        f"steps; {d_early:.0f} in the first fifth) for the DDPM model and by {f_early + f_late:.0f} "
        f"({f_early:.0f}) for the flow model. The flow model's first guess, from pure noise, is {gap(f_tr):.0f} "
        f"grey levels per pixel from its finished digit; the DDPM model's is {gap(d_tr):.0f}"
        + (" (at its first level x̂₀ divides the network's error by √ᾱ ≈ "
           f"{twin_ab ** 0.5:.0e}: what shows is amplified noise, clipped)." if twin_ab < 1e-3 else ".")
        + " One digit and seed: change them above and compare.")
    lines = objective_reports()
    steps = sorted({n for by in lines.values() for n in by})
    if not any(len(by) > 1 for by in lines.values()):
        st.caption("The models' evaluations at fewer steps are missing (see the PROVENANCE files).")
        return
    ratios = {name: [by[n]["frechet_ratio_to_baseline"] if n in by else None for n in steps]
              for name, by in lines.items() if by}
    row = st.container(horizontal=True)
    left, right = row.container(width=figures.PAIR_WIDTH), row.container(width=figures.PAIR_WIDTH)
    pins.chart(left, figures.steps_fit_figure(
        steps, ratios, 2.0, "Fréchet vs steps (1,000 digits each)",
        colours={"DDPM (fast), DDIM": "#1f77b4", "flow matching, Euler": "#d62728",
                 "flow matching, Heun (2N − 1 calls)": "#ff7f0e"},
        y_title="Fréchet (× real-vs-real, log)", floor_label="1 = as close as real digits"),
        key="denoising.objectives")
    short = {"DDPM (fast), DDIM": "DDPM · DDIM", "flow matching, Euler": "flow · Euler",
             "flow matching, Heun (2N − 1 calls)": "flow · Heun"}
    table = ["| steps | " + " | ".join(short[name] for name in lines) + " |", "|---:|" + "---:|" * len(lines)]
    for n in steps:
        cells = [f"{by[n]['accuracy']:.1%} · {by[n]['frechet_ratio_to_baseline']:.2f}×" if n in by else "–"
                 for by in lines.values()]
        table.append(f"| {n} | " + " | ".join(cells) + " |")
    right.markdown("Judge accuracy · Fréchet distance (× real-vs-real) by sampling steps:\n\n" + "\n".join(table))
    both = [n for n in steps if n in lines["DDPM (fast), DDIM"] and n in lines["flow matching, Euler"]]
    if both:
        fewest = both[0]
        d, f = lines["DDPM (fast), DDIM"][fewest], lines["flow matching, Euler"][fewest]
        right.caption(
            f"At {fewest} steps the flow model reads {f['accuracy']:.1%} and {f['frechet_ratio_to_baseline']:.2f}×, "
            f"the DDPM model {d['accuracy']:.1%} and {d['frechet_ratio_to_baseline']:.2f}×; at 25, "
            f"{lines['flow matching, Euler'].get(25, {}).get('frechet_ratio_to_baseline', float('nan')):.2f}× and "
            f"{lines['DDPM (fast), DDIM'].get(25, {}).get('frechet_ratio_to_baseline', float('nan')):.2f}×. "
            "Heun makes 2N − 1 model evaluations for N steps. The Geometry lab trains both objectives on 2-D points, "
            "where every path can be seen.")
