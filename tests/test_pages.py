"""Every page renders under streamlit.testing's AppTest, and its main control changes its main output.

A tiny model, trained for a few steps into a temporary runs folder, stands in for the shipped one.
"""
import json
import os

import pytest

pytest.importorskip("streamlit")
import streamlit as st  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402


APP = os.path.join(os.path.dirname(__file__), "..", "dashboard.py")


@pytest.fixture
def app(runs_root, monkeypatch):
    import ui.resources as res

    monkeypatch.setattr(res, "RUNS_ROOT", runs_root)
    st.cache_resource.clear()
    st.cache_data.clear()
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["model"] = "tiny"
    yield at
    trainer = res.get_trainer()
    trainer.stop(wait=30)
    st.cache_resource.clear()


def _ok(at):
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _charts(at):
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def _images(at):
    return [i for i in at.get("imgs")]


def test_home_page_and_forward_slider_changes_the_numbers(app):
    app.run()
    _ok(app)
    assert app.title[0].value == "Diffusion Lab"
    app.switch_page("pages/forward_process.py").run()
    _ok(app)
    assert app.title[0].value.startswith("Forward process")
    before = [m.value for m in app.latex]
    app.slider(key="forward.t").set_value(900).run()
    _ok(app)
    after = [m.value for m in app.latex]
    assert before != after and "x_{900}" in after[1]
    assert app.query_params["t"] == ["900"] or app.query_params["t"] == "900"
    assert any(c["data"][0].get("name") == "pixels of x_t" for c in _charts(app))


def test_shared_link_restores_the_view_and_bad_values_are_ignored(app):
    app.run()
    app.query_params["t"] = "123"
    app.query_params["digit"] = "banana"
    app.switch_page("pages/forward_process.py").run()
    _ok(app)
    assert app.slider(key="forward.t").value == 123
    assert app.number_input(key="forward.digit").value == 3          # default, the bad value was ignored


def test_bad_link_values_are_shown_as_typed_not_as_markdown(app):
    app.run()
    app.query_params["digit"] = "![x](http://evil.example/x.png)"
    app.query_params["noise"] = "[click](http://evil.example)"
    app.switch_page("pages/forward_process.py").run()
    _ok(app)
    toasts = sorted(t.value for t in app.toast)
    assert toasts == ["ignored link value digit=`![x](http://evil.exa…`: must be a whole number",
                      "ignored link value noise=`[click](http://evil.…`: must be a whole number"]


def test_denoising_page_renders_trajectory_and_changes_with_digit(app):
    app.run()
    app.switch_page("pages/denoising.py").run()
    _ok(app)
    distance = [m.value for m in app.markdown if m.value.startswith("Pixel distance")]
    app.slider(key="denoising.frame").set_value(0).run()
    _ok(app)
    assert any("Frame **1 /" in v for v in [m.value for m in app.markdown])
    # the judge's reading of the final sample is always said: a caption when right, a warning when a miss
    assert any(c.value.startswith("The judge reads the final sample") for c in app.caption) or \
        any("a miss" in w.value for w in app.warning)
    app.number_input(key="denoising.digit").set_value(2).run()
    _ok(app)
    assert distance and distance != [m.value for m in app.markdown if m.value.startswith("Pixel distance")]


def test_architecture_page_shows_the_loaded_model(app):
    app.run()
    app.switch_page("pages/architecture.py").run()
    _ok(app)
    diagram = _charts(app)[0]
    text = " ".join(str(t) for t in diagram["data"][0]["text"])
    assert "mid_attn" in text and "(1, 16, 14, 14)" in text            # TINY_MODEL: 8 / 16 channels
    app.slider(key="arch.told").set_value(10).run()
    _ok(app)
    tables = [d.value for d in app.dataframe if "model" in d.value.columns]
    assert tables and list(tables[0]["model"][:2]) == ["default (U-Net)", "fast (2×2 patch stem)"]   # shipped ones


def test_training_page_starts_a_tiny_run_and_progress_appears(app, runs_root):
    app.run()
    app.switch_page("pages/training.py").run()
    _ok(app)
    app.selectbox(key="training.preset").set_value("tiny").run()      # outside the form: reruns at once, as in a
    app.text_input(key="training.name").set_value("apptest-run")      # browser, setting the preset's steps
    app.number_input(key="training.steps").set_value(3)
    app.button[0].click().run()         # the form's submit button
    _ok(app)
    import ui.resources as res

    res.get_trainer().join(120)
    app.run()
    _ok(app)
    s = res.get_trainer().status()
    assert s.run_name == "apptest-run" and s.step == 3
    assert app.get("progress") and "apptest-run" in app.get("progress")[0].proto.text


def test_worksheet_show_me_switches_page_with_settings(app):
    app.run()
    app.switch_page("pages/worksheet.py").run()
    _ok(app)
    assert len(app.text_area) >= 10
    app.toggle(key="worksheet.notes").set_value(True).run()
    assert app.info
    app.button(key="worksheet.show.3.3").click().run()
    _ok(app)
    assert app.title[0].value.startswith("Architecture")
    assert app.slider(key="arch.told").value == 900


def test_applications_page_runs_every_tab_and_strength_changes_the_edit(app):
    app.run()
    app.switch_page("pages/applications.py").run()
    _ok(app)
    assert app.title[0].value.startswith("Applications")
    assert any("RePaint" in m.value for m in app.markdown)          # the first application opens by default
    app.selectbox(key="apps.mask").set_value("draw it").run()
    _ok(app)
    assert any("Paint over part of the digit" in i.value for i in app.info)
    app.session_state["apps.choice"] = "Editing (SDEdit)"
    app.run()
    _ok(app)
    before = [m.value for m in app.markdown if "SDEdit" in m.value]
    app.slider(key="apps.strength").set_value(0.9).run()
    _ok(app)
    after = [m.value for m in app.markdown if "SDEdit" in m.value]
    assert before and after and before != after and "90%" in after[0]
    for choice in ("Upscaling", "Interpolation", "Limits", "Style (B4)"):
        app.session_state["apps.choice"] = choice
        app.run()
        _ok(app)
        if choice == "Limits":            # the captions count what the screen shows, not what a textbook says
            captions = " ".join(c.value for c in app.caption)
            judged = [m.value for m in app.markdown if m.value.startswith("judge")]
            refused = sum(line.split("→")[0].count("not a digit") for line in judged)
            assert f"says so for {refused} of the 4 odd inputs" in captions and "of 4 odd inputs into a" in captions


def test_clip_page_ranks_keeps_top_k_and_inspects_a_digit(app):
    app.run()
    app.switch_page("pages/clip_evaluation.py").run()
    _ok(app)
    assert app.title[0].value == "CLIP evaluation"
    summary = [m.value for m in app.markdown if m.value.startswith("Rank correlation")]
    assert summary and "ρ =" in summary[0]
    first = [m.value for m in app.markdown if m.value.startswith("CLIPScore **")]
    app.number_input(key="clip.pick_rank").set_value(10).run()
    _ok(app)
    last = [m.value for m in app.markdown if m.value.startswith("CLIPScore **")]
    best = float(first[0].split("**")[1])
    worst = float(last[0].split("**")[1])
    assert best >= worst                                          # rank 1 scores at least as high as rank 10
    assert "kept" in first[0] and "rejected" in last[0]           # top 3 of 10 kept


def test_clip_page_falls_back_to_digit_clip_when_pretrained_is_unavailable(app):
    app.run()
    app.switch_page("pages/clip_evaluation.py").run()
    app.selectbox(key="clip.kind").set_value("pretrained ViT-B-32 (if cached)").run()
    _ok(app)
    assert any("Showing digit-CLIP instead" in w.value for w in app.warning)
    assert any(m.value.startswith("Rank correlation") for m in app.markdown)


def test_denoising_link_with_more_steps_than_the_model_has(app):
    app.run()
    app.query_params["steps"] = "1000"                  # the tiny test model has T = 50
    app.switch_page("pages/denoising.py").run()
    _ok(app)
    assert app.number_input(key="denoising.steps").value == 50


def test_denoising_guidance_interval_control_reaches_the_sampler(app):
    app.run()
    app.query_params["gfrom"] = "0.6"                  # a shared link: guide only while t/T >= 0.6
    app.switch_page("pages/denoising.py").run()
    _ok(app)
    assert app.slider(key="denoising.gfrom").value == 0.6
    assert any("while t/T ≥ 0.6" in c.value for c in app.caption)
    app.slider(key="denoising.frame").set_value(0).run()            # the first step, at t = T - 1: guided
    assert any("This step is **guided**" in m.value for m in app.markdown)
    frames = app.slider(key="denoising.frame").max
    app.slider(key="denoising.frame").set_value(frames - 1).run()   # the last step, near t = 0: not guided
    assert any("This step is **not guided**" in m.value for m in app.markdown)
    app.slider(key="denoising.gfrom").set_value(0.0).run()
    _ok(app)
    assert not any("while t/T" in c.value for c in app.caption)


def test_denoising_speed_vs_quality_chart_runs_and_ignores_the_seed(app, monkeypatch):
    import engine.metrics

    import engine.export

    calls = []
    real = engine.metrics.sampling_figures
    monkeypatch.setattr(engine.metrics, "sampling_figures", lambda *a, **k: calls.append(1) or real(*a, **k))
    configs = engine.export.speed_configs                          # three of the 17 configurations: the page's
    monkeypatch.setattr(engine.export, "speed_configs", lambda *a, **k: configs(*a, **k)[:3])   # logic, in 1/5 the time
    app.run()
    app.switch_page("pages/denoising.py").run()
    app.toggle(key="denoising.speed").set_value(True).run()
    _ok(app)
    assert len(app.get("plotly_chart")) >= 1 and len(calls) == 1
    import torch

    if not torch.cuda.is_available():                              # on a CPU the chart points to the fast model
        assert any("shipped `fast` model" in c.value for c in app.caption)
    app.number_input(key="denoising.seed").set_value(3).run()      # a new seed: the chart is not measured again
    _ok(app)
    assert len(calls) == 1
    app.slider(key="denoising.w").set_value(2.0).run()             # a new guidance weight: measured again
    _ok(app)
    assert len(calls) == 2


def test_switching_the_model_resets_the_sampler_settings_to_its_recommendation(app):
    app.run()
    app.switch_page("pages/denoising.py").run()                       # the tiny run
    app.number_input(key="denoising.steps").set_value(1).run()
    app.slider(key="denoising.w").set_value(7.0).run()
    assert not any("Another model" in i.value for i in app.info)
    app.session_state["denoising._model"] = "/a/model/picked/before"    # as if the sidebar had another one before
    app.run()
    _ok(app)
    rec = app.session_state["app.model_path"]
    from engine.checkpoints import load_checkpoint

    rec = load_checkpoint(rec).recommended
    assert app.number_input(key="denoising.steps").value == rec.steps != 1
    assert app.slider(key="denoising.w").value == rec.guidance != 7.0
    assert any("Another model: sampler, steps and guidance are reset" in i.value for i in app.info)
    app.number_input(key="denoising.seed").set_value(5).run()         # the same model again: nothing is reset
    assert not any("Another model" in i.value for i in app.info)


def test_applications_keeps_its_view_in_the_url_and_a_link_reopens_it(app):
    app.query_params["choice"] = "Style (B4)"
    app.query_params["steps"] = "40"
    app.run()
    app.switch_page("pages/applications.py").run()
    _ok(app)
    assert app.slider(key="apps.steps").value == 40
    assert app.session_state["apps.choice"] == "Style (B4)"
    app.slider(key="apps.w").set_value(1.5).run()
    assert dict(app.query_params) == {"model": "tiny", "choice": "Style (B4)", "steps": "40", "w": "1.5",
                                      "style_digit": "4", "style_seed": "0"}


def _param(at, name):
    v = at.query_params.get(name)
    return v[0] if isinstance(v, list) else v


def test_an_applications_link_carries_the_settings_of_the_application_shown(app):
    app.query_params.update({"choice": "Editing (SDEdit)", "edit_label": "5", "strength": "0.8", "edit_seed": "7"})
    app.run()
    app.switch_page("pages/applications.py").run()
    _ok(app)
    assert app.number_input(key="apps.edit_label").value == 5 and app.slider(key="apps.strength").value == 0.8
    assert app.number_input(key="apps.edit_seed").value == 7
    assert any("80%" in m.value for m in app.markdown if "SDEdit" in m.value)     # the edit used the link's strength
    app.number_input(key="apps.edit_label").set_value(2).run()
    assert _param(app, "edit_label") == "2" and "mask" not in app.query_params    # only the shown application's
    app.session_state["apps.choice"] = "Inpainting"
    app.run()
    _ok(app)
    assert _param(app, "mask") == "right" and "edit_label" not in app.query_params


def test_the_clip_model_is_part_of_the_link(app):
    app.query_params["kind"] = "pretrained ViT-B-32 (if cached)"
    app.run()
    app.switch_page("pages/clip_evaluation.py").run()
    _ok(app)
    assert app.selectbox(key="clip.kind").value == "pretrained ViT-B-32 (if cached)"
    assert _param(app, "kind") == "pretrained ViT-B-32 (if cached)"


def _widths(table) -> dict:
    """{column: width in px} of an st.dataframe's visible columns (None where none was set)."""
    config = json.loads(table.proto.columns or "{}")
    return {c: config.get(c, {}).get("width") for c in table.value.columns}


def test_architecture_tables_fit_a_1024_px_screen(app):
    from ui import figures

    app.run()
    app.switch_page("pages/architecture.py").run()
    _ok(app)
    tables = {tuple(d.value.columns): _widths(d) for d in app.dataframe}
    summary = next(w for cols, w in tables.items() if "kind" in cols)
    assert list(summary) == ["name", "kind", "in", "out", "params", "MFLOP"]        # shapes, params and cost
    assert None not in summary.values() and sum(summary.values()) <= figures.PAIR_WIDTH
    assert any("(1, 16, 14, 14)" in str(t) for t in _charts(app)[0]["data"][0]["text"])   # the diagram: (1, C, H, W)
    shapes = next(d.value for d in app.dataframe if "kind" in d.value.columns)
    assert "16×14×14" in set(shapes["out"])                                        # the table: C×H×W
    for cols, widths in tables.items():
        assert None not in widths.values() and sum(widths.values()) <= figures.MAIN_WIDTH_1024, widths
    runs = next(d.value for d in app.dataframe if "run" in d.value.columns)        # the learner's own runs
    assert runs.loc[runs["run"] == "tiny", "width × depth"].tolist() == ["8 × 1"]   # TINY_MODEL: 8 channels, depth 1


def test_denoising_guidance_heatmap_is_an_accuracy_on_categorical_axes(app, monkeypatch):
    import engine.export

    monkeypatch.setattr(engine.export, "GRID_SEEDS", 1)          # one seed per cell: the layout is under test
    app.run()
    app.switch_page("pages/denoising.py").run()
    app.toggle(key="denoising.grid").set_value(True).run()
    _ok(app)
    (heat,) = [c for c in _charts(app) if c["data"][0]["type"] == "heatmap"]
    h, layout = heat["data"][0], heat["layout"]
    assert (h["zmin"], h["zmax"]) == (0, 1) and "zmid" not in h             # an accuracy: 0-1, not −1…1
    weights = engine.export.GRID_WEIGHTS
    assert layout["yaxis"]["type"] == "category" and layout["yaxis"]["tickvals"] == [f"w = {w:g}" for w in weights]
    assert layout["xaxis"]["tickvals"] == [str(c) for c in range(10)]
    assert layout["xaxis"]["title"]["text"] and layout["yaxis"]["title"]["text"]


def test_23_shows_the_guidance_grid_beside_the_context_mask_and_denoising_links_its_open_panels(app):
    app.query_params["model"] = "default"                             # the shipped model: its grid is stored
    app.run()
    app.switch_page("pages/architecture.py").run()
    _ok(app)
    assert any("arch.gridacc" in c.proto.id for c in app.get("plotly_chart"))
    assert any("Mean over classes: w = 0" in m.value for m in app.markdown)
    app.query_params["wrong"] = "True"
    app.switch_page("pages/denoising.py").run()
    _ok(app)
    assert app.toggle(key="denoising.wrong").value is True            # a link reopens the comparison
    assert any("Dropping σ_t·z keeps only the posterior" in m.value for m in app.markdown)


def test_the_few_steps_panel_sets_the_student_beside_its_teacher_with_measured_words(app, runs_root, tmp_path,
                                                                                    monkeypatch):
    """Denoising's few-steps panel on stand-ins for the shipped `fast` teacher and its distilled student: the
    student's x̂₀ per step above the teacher's, the bend measured on the teacher's trajectory, and the trade read
    from the two models' reports."""
    import shutil

    import ui.denoising_view as dv
    import ui.resources as res
    from engine.checkpoints import read_configs, write_json_atomic

    shipped = tmp_path / "shipped"
    for name in ("fast", "distilled"):
        shutil.copytree(runs_root / "tiny", shipped / name)
    config, _ = read_configs(shipped / "distilled")
    config["recommended"].update(sampler="ddim", steps=4, guidance=0.0)
    write_json_atomic(shipped / "distilled" / "config.json", config)
    write_json_atomic(shipped / "distilled" / "report.json",
                      {"accuracy": 0.973, "frechet_ratio_to_baseline": 2.41, "n_samples": 1000})
    write_json_atomic(shipped / "fast" / "report.json",
                      {"accuracy": 0.995, "frechet_ratio_to_baseline": 1.89, "n_samples": 1000})
    monkeypatch.setattr(res, "SHIPPED_ROOT", shipped)
    monkeypatch.setattr(dv, "DISTILLED", shipped / "distilled")
    app.run()
    app.switch_page("pages/denoising.py").run()
    _ok(app)
    text = " ".join(m.value for m in app.markdown)
    assert "**Why few steps are hard.**" in text and "grey levels per pixel" in text
    assert ("the student, DDIM-4 with one network call per step, reads 97.3% judge accuracy and 2.41× the real "
            "Fréchet distance; its teacher at DDIM-25 with guidance, 99.5% and 1.89×") in text
    shown = list(app.session_state["pins._on_screen"])              # every figure drawn, by its caption or title
    assert any("x̂₀ at each of the student's 4 steps and its result (top)" in c for c in shown), shown


def test_the_objectives_panel_sets_flow_matching_beside_ddpm_from_the_reports(app, runs_root, tmp_path, monkeypatch):
    """Denoising's flow-vs-DDPM panel on stand-ins for the shipped `fast` and `flow` models: both x̂₀ rows, the
    measured share of x̂₀'s change in the first fifth, and quality by steps read from the reports (a missing
    report leaves its cell empty, not invented)."""
    import shutil

    import ui.denoising_view as dv
    import ui.resources as res
    from engine.checkpoints import read_configs, write_json_atomic

    shipped = tmp_path / "shipped"
    for name in ("fast", "flow", "distilled"):
        shutil.copytree(runs_root / "tiny", shipped / name)
    config, _ = read_configs(shipped / "flow")
    config["schedule"]["kind"] = "flow"
    config["recommended"].update(sampler="euler", steps=25)
    write_json_atomic(shipped / "flow" / "config.json", config)
    for folder, name, acc, ratio in [("fast", "report.json", 0.995, 1.89), ("flow", "report.json", 0.99, 1.95),
                                     ("distilled", "reports/teacher_ddim-4.json", 0.885, 11.65),
                                     ("flow", "reports/euler-4.json", 0.97, 4.2), ("flow", "reports/heun-4.json",
                                                                                    0.98, 3.1)]:
        (shipped / folder / name).parent.mkdir(exist_ok=True)
        write_json_atomic(shipped / folder / name, {"accuracy": acc, "frechet_ratio_to_baseline": ratio,
                                                    "n_samples": 1000})
    monkeypatch.setattr(res, "SHIPPED_ROOT", shipped)
    monkeypatch.setattr(dv, "DISTILLED", shipped / "distilled")
    monkeypatch.setattr(dv, "FLOW", shipped / "flow")
    monkeypatch.setattr(dv, "TWIN", shipped / "fast")
    app.run()
    app.switch_page("pages/denoising.py").run()
    _ok(app)
    text = " ".join(m.value for m in app.markdown)
    assert "**Two objectives, one network.**" in text and "The flow model's first guess, from pure noise," in text
    assert "| steps | DDPM · DDIM | flow · Euler | flow · Heun |" in text
    assert "| 4 | 88.5% · 11.65× | 97.0% · 4.20× | 98.0% · 3.10× |" in text
    assert "| 25 | 99.5% · 1.89× | 99.0% · 1.95× | – |" in text
    assert any("At 4 steps the flow model reads 97.0% and 4.20×, the DDPM model 88.5% and 11.65×; at 25, 1.95× "
               "and 1.89×" in c.value for c in app.caption)
    shown = app.session_state["pins._on_screen"]                    # label -> what a learner can pin
    assert any("the DDPM model with DDIM (top), the flow model with Euler (bottom)" in item.caption
               for item in shown.values()), list(shown)
    chart = next(c for c in _charts(app) if "Fréchet vs steps" in json.dumps(c["layout"].get("title"),
                                                                                          ensure_ascii=False))
    assert {t["name"] for t in chart["data"]} >= {"DDPM (fast), DDIM", "flow matching, Euler"}
