"""The Training page under streamlit.testing's AppTest: on a fresh server it shows the shipped model's recorded
history (loss, loss per noise bucket, judge accuracy, the film) and every shipped model beside the saved runs; a
run started in the session takes the panels over; a missing evidence file or a broken model folder never breaks it.
"""
import json
import os
import shutil

import numpy as np
import pytest

pytest.importorskip("streamlit")
import streamlit as st  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from engine import evidence  # noqa: E402
from engine.training.runs import (DEFAULT_SHIPPED_ROOT, SHIPPED_MODELS, bucket_loss, judge_snapshots,  # noqa: E402
                                  load_snapshots, loss_history, read_metrics)

APP = os.path.join(os.path.dirname(__file__), "..", "dashboard.py")
SMALL_FILES = ("config.json", "meta.json", "report.json", "metrics.jsonl")


@pytest.fixture
def app(tmp_path, monkeypatch):
    import ui.resources as res

    monkeypatch.setattr(res, "RUNS_ROOT", tmp_path / "runs")
    st.cache_resource.clear()
    st.cache_data.clear()
    at = AppTest.from_file(APP, default_timeout=180)
    yield at
    res.get_trainer().stop(wait=30)
    st.cache_resource.clear()
    st.cache_data.clear()


@pytest.fixture
def shipped_copy(tmp_path, monkeypatch):
    """The shipped models' small files (no weights, no evidence) in a temporary root the page reads instead."""
    import ui.resources as res

    root = tmp_path / "shipped"
    for rel in SHIPPED_MODELS:
        src = DEFAULT_SHIPPED_ROOT / rel
        if not src.is_dir():
            continue
        (root / rel).mkdir(parents=True)
        for name in SMALL_FILES:
            if (src / name).exists():
                shutil.copy(src / name, root / rel / name)
        if (src / "snapshots").is_dir():
            shutil.copytree(src / "snapshots", root / rel / "snapshots")
    monkeypatch.setattr(res, "SHIPPED_ROOT", root)
    return root


def _open(at):
    at.run()
    at.switch_page("pages/training.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def _charts(at) -> dict:
    out = {}
    for c in at.get("plotly_chart"):
        spec = json.loads(c.proto.spec)
        out[spec["layout"].get("title", {}).get("text")] = spec
    return out


def _table(at):
    """The runs table: its quality and cost halves joined on the model."""
    quality = next(d.value for d in at.dataframe if "judge %" in d.value.columns)
    cost = next(d.value for d in at.dataframe if "MFLOP" in d.value.columns)
    assert list(quality["model"]) == list(cost["model"])
    return quality.join(cost.drop(columns=["model", "kind"] + (["error"] if "error" in cost else [])))


def _captions(at) -> str:
    return "\n".join(c.value for c in at.caption)


def test_fresh_server_shows_the_shipped_history_and_every_shipped_model(app):
    _open(app)
    assert any("Recorded history of the shipped model `default`" in s.value for s in app.subheader)
    assert "not a live run" in " ".join(s.value for s in app.subheader)
    assert not any("No training run yet" in i.value for i in app.info)
    charts = _charts(app)

    # loss: raw and smoothed, log y, the warm-up left out and the caption's numbers computed from the same data
    loss = charts["training loss (recorded)"]
    assert loss["layout"]["yaxis"]["type"] == "log" and loss["layout"]["yaxis"]["title"]["text"]
    metrics = read_metrics(DEFAULT_SHIPPED_ROOT / "default" / "metrics.jsonl")
    h = loss_history(metrics, skip_until=100, smooth=20)
    raw, smooth = loss["data"][0], loss["data"][1]
    assert min(raw["x"]) > 100 and len(raw["y"]) == len(h["loss"]) and smooth["y"] == pytest.approx(h["smoothed"])
    caps = _captions(app)
    assert "first 100 steps (learning-rate warm-up) are left out" in caps
    assert f"went from {h['smoothed'][0]:.4f} (step {h['smooth_steps'][0]:,}) to {h['smoothed'][-1]:.4f}" in caps

    # loss per noise bucket: where the shipped evidence exists, the caption names its largest bucket
    entry = bucket_loss(DEFAULT_SHIPPED_ROOT / "default")
    if entry is not None:
        mse, buckets = entry["result"]["mse"], entry["result"]["buckets"]
        lo, hi = buckets[int(np.argmax(mse))]
        assert f"Largest at {100 * lo:.0f}–{100 * hi:.0f} % noise" in caps
        assert _charts(app)["loss per noise bucket (measured)"]["data"][0]["y"] == pytest.approx(mse)
    else:
        assert any("not measured yet" in i.value for i in app.info)

    # judge accuracy over training: measured now on the 12 snapshots, chance line drawn, y axis titled
    judge = charts["judge accuracy of fixed-seed samples"]
    from engine.judge import load_judge

    expected = judge_snapshots(load_judge(), load_snapshots(DEFAULT_SHIPPED_ROOT / "default"))
    overall = next(t for t in judge["data"] if t["name"] == "all digits")
    assert overall["x"] == [e["step"] for e in expected] and overall["y"] == [e["accuracy"] for e in expected]
    assert any(s["y0"] == s["y1"] == 0.1 for s in judge["layout"]["shapes"])
    assert judge["layout"]["yaxis"]["title"]["text"]

    # the film: a slider over the snapshot steps, the samples framed by the judge beside real digits
    film = app.select_slider(key="training.history_film")
    assert film.value == expected[-1]["step"] and len(film.options) == len(expected)
    assert len(app.get("image")) >= 2
    right = sum(expected[0]["correct"])
    film.set_value(expected[0]["step"]).run()
    assert not app.exception
    caption = app.get("image")[0].proto.imgs[0].caption
    assert f"step {expected[0]['step']} " in caption and f"{right} of 20" in caption

    # the table lists every shipped model with its figures; the chart of judge accuracy has a titled y axis
    table = _table(app)
    shipped = table[table["kind"] == "shipped"]
    assert {"default", "fast", "deep", "no-skip", "no-time", "plain-cnn"} <= set(shipped["model"])
    default = shipped[shipped["model"] == "default"].iloc[0]
    report = json.loads((DEFAULT_SHIPPED_ROOT / "default" / "report.json").read_text())
    assert default["judge %"] == round(100 * report["accuracy"], 1)
    assert default["Fréchet ×"] == report["frechet_ratio_to_baseline"] and default["T"] == 1000
    assert default["params (M)"] > 0 and default["MFLOP"] > 0 and default["images/s"] > 0
    bars = charts["judge accuracy per model"]
    assert bars["layout"]["yaxis"]["title"]["text"] and "default" in bars["data"][0]["x"]


@pytest.mark.parametrize("largest", [0, 9])
def test_bucket_panel_reads_the_evidence_file_and_names_the_largest_bucket_from_it(app, shipped_copy, largest):
    buckets = [[i / 10, (i + 1) / 10] for i in range(10)]
    mse = [0.01 * (i + 1) for i in range(10)]               # rising with noise ...
    mse = mse if largest == 9 else mse[::-1]                 # ... or falling
    evidence.record(shipped_copy / "default", "bucket_loss", {"seed": 0},
                    {"buckets": buckets, "mse": mse, "n_images": 40}, 1.0, "a test")
    _open(app)
    chart = _charts(app)["loss per noise bucket (measured)"]
    assert chart["data"][0]["y"] == mse and chart["layout"]["yaxis"]["title"]["text"]
    caps = _captions(app)
    lab = f"{10 * largest}–{10 * largest + 10} %"
    assert f"Largest at {lab} noise" in caps and "40 held-out digits" in caps
    if largest == 9:        # the data says high noise dominates: the page must not say otherwise
        assert "The high-noise half (50–100 %)" in caps and "least noisy inputs are the hardest" not in caps
    else:
        assert "The low-noise half (0–50 %)" in caps and "least noisy inputs are the hardest" in caps


def test_missing_evidence_says_not_measured_and_a_broken_folder_shows_its_error(app, shipped_copy):
    (shipped_copy / "ablations" / "no-skip" / "meta.json").write_text("{ torn")
    _open(app)
    assert any("not measured yet" in i.value for i in app.info)
    assert "loss per noise bucket (measured)" not in _charts(app)
    table = _table(app)
    broken = table[table["model"] == "no-skip"].iloc[0]
    assert "meta.json" in broken["error"] and np.isnan(broken["params (M)"])
    others = table[table["model"] != "no-skip"]
    assert others["error"].isna().all() and (others["params (M)"] > 0).all() and len(others) >= 5
    assert "Could not read no-skip:" in _captions(app)
    assert "training loss (recorded)" in _charts(app)       # the rest of the page is unaffected


def test_a_run_started_in_the_session_appears_above_the_shipped_history(app):
    _open(app)
    app.selectbox(key="training.preset").set_value("tiny").run()         # outside the form: reruns at once
    app.text_input(key="training.name").set_value("takeover")
    app.number_input(key="training.steps").set_value(3)
    app.button[0].click().run()
    import ui.resources as res

    res.get_trainer().join(120)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    assert app.get("progress") and "takeover" in app.get("progress")[0].proto.text
    subheaders = [s.value for s in app.subheader]
    live_at = next(i for i, v in enumerate(subheaders) if "Samples through training" in v)
    assert any("Recorded history" in v for v in subheaders[live_at:])       # the evidence stays, below the run
    charts = _charts(app)
    assert "training loss" in charts and "training loss (recorded)" in charts
    assert "comparison with the run above" in _captions(app)
    live_judge = charts["judge accuracy of fixed-seed samples"]
    assert any(s["y0"] == s["y1"] == 0.1 for s in live_judge["layout"]["shapes"])       # chance drawn live too
    table = _table(app)
    assert "run: takeover" in set(table["model"]) and "default" in set(table["model"])


def test_the_form_refuses_a_model_over_the_size_cap_before_starting(app):
    import ui.resources as res

    _open(app)
    app.selectbox(key="training.preset").set_value("tiny").run()
    next(n for n in app.number_input if n.label.startswith("Width")).set_value(512)
    next(n for n in app.number_input if n.label.startswith("Depth")).set_value(8)
    app.button[0].click().run()
    assert not app.exception
    (refusal,) = [e.value for e in app.error]
    assert "946.7 M parameters" in refusal and "limited to 20 M parameters" in refusal and "lower the width" in refusal
    assert res.get_trainer().status().state == "idle" and not res.get_trainer().status().run_name


def test_the_default_run_name_and_steps_follow_the_preset_and_a_typed_name_stays(app):
    from engine.presets import PRESETS

    _open(app)
    name = app.text_input(key="training.name").value            # the first preset, the in-class demo's
    assert name.startswith("live-") and app.number_input(key="training.steps").value == PRESETS["live"].train.steps
    stamp = name.removeprefix("live-")
    app.selectbox(key="training.preset").set_value("deep").run()
    assert not app.exception and not app.warning, [w.value for w in app.warning]   # no default-vs-state warning
    assert app.text_input(key="training.name").value == f"deep-{stamp}"
    assert app.number_input(key="training.steps").value == PRESETS["deep"].train.steps
    assert next(n for n in app.number_input if n.label.startswith("Width")).value == PRESETS["deep"].model.base_channels
    # a name of one's own, sent with the form (here refused: too big a model), stays through a preset change
    app.text_input(key="training.name").set_value("my-own-run")
    next(n for n in app.number_input if n.label.startswith("Depth")).set_value(8)
    next(n for n in app.number_input if n.label.startswith("Width")).set_value(512)
    app.button(key="training.start").click().run()
    assert any("limited to 20 M parameters" in e.value for e in app.error)
    app.selectbox(key="training.preset").set_value("one-step").run()
    assert app.text_input(key="training.name").value == "my-own-run"
    assert app.number_input(key="training.steps").value == PRESETS["one-step"].train.steps


def test_a_paused_run_has_one_resume_control_and_other_interrupted_runs_keep_theirs(app, tmp_path):
    """A paused run resumes with the live controls' Resume; the runs table's Resume run is for interrupted runs
    that are not the one training now, and waits while that one is active (one training job at a time)."""
    import ui.resources as res
    from engine.training.run import TrainingRun

    from .conftest import TINY_MODEL, TINY_SAMPLE, TINY_SCHEDULE, TINY_TRAIN

    for name in ("paused-one", "other"):        # two runs saved part-way: both interrupted on disk
        run = TrainingRun.create(TINY_MODEL, TINY_SCHEDULE, TINY_TRAIN.replace(steps=100_000), TINY_SAMPLE,
                                 tmp_path / "runs" / name)
        run.step()
        run.save()
    _open(app)
    assert app.selectbox(key="training.resume_name").options == ["other", "paused-one"]    # nothing active yet
    trainer = res.get_trainer()
    trainer.resume_run("paused-one")
    trainer.pause()
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    assert trainer.status().state == "paused"
    resumes = [b for b in app.button if b.label.startswith("Resume")]
    assert {b.key: b.disabled for b in resumes} == {"training.resume": False, "training.resume_run": True}
    assert app.selectbox(key="training.resume_name").options == ["other"]            # not the paused run again
    app.button(key="training.resume").click().run()
    assert trainer.status().state == "running"
