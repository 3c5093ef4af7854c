"""The Geometry lab: engine/geometry.py (data, model, objectives, samplers, fields, fit figures), its figure builders,
the benchmark's entry point and the page under AppTest. Training here uses small budgets (a second or two each)."""
import json
import math
import os

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from engine import budget
from engine import geometry as geo
from engine.config import ConfigError, ScheduleConfig
from engine.schedule import NoiseSchedule

SMALL = 800            # training steps: enough for both objectives to leave the untrained model far behind


@pytest.fixture(scope="module")
def moons():
    return {part: geo.make_dataset("moons", n, seed) for part, n, seed in (("train", 2000, 0), ("held", 500, 1),
                                                                          ("fresh", 500, 2))}


@pytest.fixture(scope="module")
def trained(moons):
    """A DDPM and a flow model trained SMALL steps on two moons (one thread, ~1.5 s each)."""
    return {obj: geo.train(geo.GeometryConfig(objective=obj, steps=SMALL), moons["train"]) for obj in geo.OBJECTIVES}


@pytest.fixture(scope="module")
def mixture_model():
    data = geo.make_dataset("mixture", 2000, 0)
    return geo.train(geo.GeometryConfig(objective="flow", steps=SMALL), data, conditional=True).model, data


# -- data ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["moons", "spiral", "mixture"])
def test_data_sets_have_unit_scale_and_are_deterministic_by_seed(name):
    a, b, c = geo.make_dataset(name, 3000, 5), geo.make_dataset(name, 3000, 5), geo.make_dataset(name, 3000, 6)
    assert a.x.shape == (3000, 2) and a.x.dtype == torch.float32 and a.y.shape == (3000,)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and not torch.equal(a.x, c.x)
    rms = float(a.x.pow(2).mean().sqrt())
    assert 0.85 < rms < 1.15 and float(a.x.mean(0).abs().max()) < 0.1, (rms, a.x.mean(0))
    counts = torch.bincount(a.y, minlength=a.num_classes)
    assert int(counts.max() - counts.min()) <= 1                      # classes in equal shares


def test_mixture_points_sit_around_their_class_centre():
    d = geo.make_dataset("mixture", 4000, 0)
    assert d.labelled and d.num_classes == geo.MIXTURE_CLASSES and geo.conditional_data("mixture")
    nearest = torch.cdist(d.x, geo.mixture_centres()).argmin(1)
    assert float((nearest == d.y).float().mean()) > 0.9


def test_user_points_become_a_standardised_jittered_set_and_bad_input_is_refused():
    square = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], dtype=np.float32)
    d = geo.make_dataset("points", 2000, 0, points=square)
    assert d.x.shape == (2000, 2) and not d.labelled
    corners = geo.standardise_points(square)
    assert float(corners.pow(2).mean()) == pytest.approx(1.0, abs=1e-5)
    assert float(torch.cdist(d.x, corners).min(1).values.mean()) < 0.1      # each point near a drawn one
    assert torch.equal(d.x, geo.make_dataset("points", 2000, 0, points=square).x)
    with pytest.raises(ValueError, match="at least 3 distinct"):
        geo.make_dataset("points", 10, 0, points=np.array([[1.0, 1.0], [1.0, 1.0], [2.0, 2.0]]))
    with pytest.raises(ValueError, match="needs the user's points"):
        geo.make_dataset("points", 10, 0)
    with pytest.raises(ConfigError, match="data set"):
        geo.make_dataset("circles", 10, 0)


# -- the paths -----------------------------------------------------------------------------------------------------
def test_the_ddpm_path_is_the_projects_schedule_and_the_flow_path_is_straight():
    x0, noise = torch.randn(6, 2), torch.randn(6, 2)
    ddpm, flow = geo.GaussianPath("ddpm"), geo.GaussianPath("flow")
    sched = NoiseSchedule(ScheduleConfig(kind="cosine", T=1000))
    assert torch.allclose(ddpm.q_sample(x0, 0.5, noise), sched.q_sample(x0, torch.full((6,), 499), noise))
    a, b = ddpm.coefficients(0.5)
    assert a == pytest.approx(math.sqrt(float(sched.alpha_bar[499]))) and a * a + b * b == pytest.approx(1.0)
    assert torch.equal(ddpm.q_sample(x0, 0.0, noise), x0)
    assert torch.allclose(flow.q_sample(x0, 0.25, noise), 0.75 * x0 + 0.25 * noise)
    assert torch.allclose(flow.q_sample(x0, 1.0, noise), noise)
    assert ddpm.levels(4) == [1.0, 0.75, 0.5, 0.25, 0.0]               # trailing timesteps 999, 749, 499, 249
    assert flow.levels(2) == [1.0, 0.5, 0.0]
    with pytest.raises(ValueError, match="between 0 and 1"):
        flow.coefficients(1.5)


def test_the_general_ancestral_step_is_the_schedules_posterior_and_ddim():
    """One formula on (a, b) coefficients: with the cosine schedule's, η = 1 is q(x_prev | x_t, x0) (Ho et al.
    eq. 6-7, strided) and η = 0 the schedule's DDIM terms; on the flow's straight path, η = 0 is an Euler step."""
    sched = NoiseSchedule(ScheduleConfig(kind="cosine", T=1000))
    path = geo.GaussianPath("ddpm")
    x_t, x0, z = torch.randn(5, 2), torch.randn(5, 2), torch.randn(5, 2)
    t, t_prev = 599, 399
    eps = sched.predict_eps_from_x0(x_t, t, x0)
    (a, b), (ap, bp) = path.coefficients((t + 1) / 1000), path.coefficients((t_prev + 1) / 1000)
    _, _, mean, var = sched.q_posterior(x0, x_t, t, t_prev)
    assert torch.allclose(geo.ancestral_step(a, b, ap, bp, x0, eps, 1.0, z), mean + var.sqrt() * z, atol=1e-5)
    det = sum(sched.ddim_terms(x0, eps, t_prev, torch.tensor(0.0)))
    assert torch.allclose(geo.ancestral_step(a, b, ap, bp, x0, eps, 0.0, None), det, atol=1e-5)
    s, s_prev, v = 0.7, 0.4, torch.randn(5, 2)                         # flow: x̂0 = x - s v, ε̂ = x + (1 - s) v
    step = geo.ancestral_step(1 - s, s, 1 - s_prev, s_prev, x_t - s * v, x_t + (1 - s) * v, 0.0, None)
    assert torch.allclose(step, x_t + (s_prev - s) * v, atol=1e-6)


# -- the model -----------------------------------------------------------------------------------------------------
def test_the_denoiser_maps_points_to_2d_with_a_null_class():
    net = geo.MLPDenoiser(hidden=32, layers=3, num_classes=4)
    x, s = torch.randn(7, 2), torch.rand(7)
    assert net(x, s).shape == (7, 2) and net(x, s, torch.arange(7) % 4).shape == (7, 2)
    assert torch.equal(net(x, s), net(x, s, torch.full((7,), 4)))     # no labels = the null class
    assert net.class_embedding.num_embeddings == 5
    assert geo.MLPDenoiser(hidden=32, num_classes=0).class_embedding is None


def test_guidance_weight_zero_is_the_conditional_model_and_w_extrapolates():
    model = geo.GeometryModel(geo.GeometryConfig(hidden=32), num_classes=3)
    x, y = torch.randn(6, 2), torch.arange(6) % 3
    cond, uncond = model.predict(x, 0.5, y), model.predict(x, 0.5, None)
    assert torch.allclose(model.predict(x, 0.5, y, 0.0), cond)
    assert torch.allclose(model.predict(x, 0.5, y, 2.0), 3 * cond - 2 * uncond, atol=1e-5)


def test_config_errors_name_the_field_and_value():
    with pytest.raises(ConfigError, match="objective must be one of ddpm, flow; got 'gan'"):
        geo.GeometryConfig(objective="gan")
    with pytest.raises(ConfigError, match="training steps must be between 1 and 100000, got 0"):
        geo.GeometryConfig(steps=0)
    with pytest.raises(ValueError, match="no labels"):
        geo.train(geo.GeometryConfig(steps=1), geo.make_dataset("spiral", 10, 0), conditional=True)


# -- training ------------------------------------------------------------------------------------------------------
def test_training_is_deterministic_by_seed_and_leaves_the_global_rng_alone(moons):
    state = torch.random.get_rng_state()
    runs = [geo.train(geo.GeometryConfig(steps=30, seed=seed), moons["train"], every=10) for seed in (3, 3, 4)]
    assert torch.equal(torch.random.get_rng_state(), state)
    w = [torch.cat([p.flatten() for p in r.model.net.parameters()]) for r in runs]
    assert torch.equal(w[0], w[1]) and not torch.equal(w[0], w[2])
    assert runs[0].losses == runs[1].losses and [s for s, _ in runs[0].losses] == [10, 20, 30]


def test_a_progress_callback_sees_every_report_and_can_stop_training(moons):
    seen = []

    def progress(step, total, loss):
        seen.append((step, total))
        return step < 20                                                # False at step 20: stop there

    r = geo.train(geo.GeometryConfig(steps=100), moons["train"], progress=progress, every=10)
    assert seen == [(10, 100), (20, 100)] and r.stopped and r.steps_done == 20


def test_a_learners_deadline_stops_training():
    with budget.deadline(0.05), pytest.raises(budget.BudgetExceeded):
        geo.train(geo.GeometryConfig(steps=100_000), geo.make_dataset("moons", 500, 0))


@pytest.mark.parametrize("objective", geo.OBJECTIVES)
def test_both_objectives_learn_two_moons(objective, trained, moons):
    """Within SMALL steps the samples get far closer to held-out data than the same network untrained."""
    model = trained[objective].model
    ref = geo.FitReference(moons["held"].x, moons["fresh"].x)
    noise = geo.start_noise(500, 0)
    sampler = geo.SAMPLERS[objective][0]
    after = ref.report(geo.sample(model, noise, 20, sampler, generator=torch.Generator().manual_seed(1))[-1])
    fresh_model = geo.GeometryModel(model.config, 0, model.clip)
    before = ref.report(geo.sample(fresh_model, noise, 20, sampler, generator=torch.Generator().manual_seed(1))[-1])
    assert after["distance"] < 0.65 * before["distance"], (after, before)
    assert after["ratio"] < 2.3 and not before["good"]
    losses = [loss for _, loss in trained[objective].losses]
    assert losses[-1] < losses[0]


# -- sampling ------------------------------------------------------------------------------------------------------
def test_trajectories_start_at_the_noise_and_have_one_row_per_level(trained):
    noise = geo.start_noise(40, 0)
    for objective in geo.OBJECTIVES:
        for sampler in geo.SAMPLERS[objective]:
            traj = geo.sample(trained[objective].model, noise, 7, sampler, generator=torch.Generator().manual_seed(0))
            assert traj.shape == (8, 40, 2) and torch.equal(traj[0], noise) and torch.isfinite(traj).all()
    with pytest.raises(ValueError, match="does not fit the flow model"):
        geo.sample(trained["flow"].model, noise, 5, "ddim")


def test_ddim_and_euler_are_deterministic_ddpm_and_ancestral_are_stochastic(trained):
    noise = geo.start_noise(50, 3)
    for objective in geo.OBJECTIVES:
        model = trained[objective].model
        det, stoch = geo.DETERMINISTIC[objective], geo.STOCHASTIC[objective]
        assert torch.equal(geo.sample(model, noise, 10, det), geo.sample(model, noise, 10, det))
        g = lambda seed: torch.Generator().manual_seed(seed)  # noqa: E731
        a, b = geo.sample(model, noise, 10, stoch, generator=g(1)), geo.sample(model, noise, 10, stoch, generator=g(2))
        assert torch.equal(a, geo.sample(model, noise, 10, stoch, generator=g(1)))       # reproducible by seed
        assert float((a[-1] - b[-1]).norm(dim=1).mean()) > 0.05                           # another seed, other ends


def test_flow_euler_with_many_steps_matches_heun(trained):
    model, noise = trained["flow"].model, geo.start_noise(200, 1)
    heun = geo.sample(model, noise, 200, "heun")[-1]
    many = float((geo.sample(model, noise, 400, "euler")[-1] - heun).norm(dim=1).mean())
    few = float((geo.sample(model, noise, 4, "euler")[-1] - heun).norm(dim=1).mean())
    assert many < 0.02 and few > 5 * many, (many, few)


def test_guidance_pulls_samples_toward_their_class(mixture_model):
    """Guidance w = 4 against none (w = 0), same starts: each class narrower, its samples where only their class
    lives (nearest data points of their class) and farther from every other class's centre."""
    model, data = mixture_model
    labels, noise = geo.balanced_labels(400, model.num_classes), geo.start_noise(400, 0)
    plain_x = geo.sample(model, noise, 20, "euler", labels, 0.0)[-1]
    guided_x = geo.sample(model, noise, 20, "euler", labels, 4.0)[-1]
    plain, guided = geo.guidance_report(plain_x, labels, data), geo.guidance_report(guided_x, labels, data)
    assert guided["mean_spread"] < 0.8 * plain["mean_spread"]
    assert guided["agreement"] > plain["agreement"] and guided["agreement"] > 0.97

    def to_other_classes(x):
        d = torch.cdist(x, geo.mixture_centres())
        d[torch.arange(len(x)), labels] = float("inf")
        return float(d.min(1).values.mean())

    assert to_other_classes(guided_x) > to_other_classes(plain_x)


# -- fields and figures of merit ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("objective", geo.OBJECTIVES)
def test_the_learned_field_points_toward_the_data_at_low_noise(objective, trained, moons):
    points = geo.grid(2.5, 15)
    f = geo.learned_field(trained[objective].model, 0.1, points)
    assert f["points"].shape == f["vectors"].shape == (225, 2)
    nearest = moons["train"].x[torch.cdist(points, moons["train"].x).argmin(1)]
    toward = ((nearest - points) * f["vectors"]).sum(1)
    assert float((toward > 0).float().mean()) > 0.8
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        geo.learned_field(trained[objective].model, 0.0, points)


def test_mmd_is_zero_for_the_same_set_matches_the_direct_formula_and_grows_with_a_shift():
    a, b = geo.make_dataset("moons", 400, 0).x, geo.make_dataset("moons", 400, 1).x
    assert geo.mmd(a, a) == pytest.approx(0.0, abs=1e-3)
    direct = sum(torch.exp(-torch.cdist(p, q) ** 2 / (2 * h * h)).mean() * sign
                 for h in geo.MMD_BANDWIDTHS for p, q, sign in ((a, a, 1), (b, b, 1), (a, b, -2)))
    assert geo.mmd(a, b) == pytest.approx(float(direct) ** 0.5, rel=1e-3)
    ref = geo.FitReference(a, b)
    assert ref.floor == pytest.approx(geo.mmd(b, a), rel=1e-5)
    near, far = ref.report(b + 0.02), ref.report(b + 0.5)
    assert near["good"] and not far["good"] and far["ratio"] > 3 * near["ratio"]


def test_path_stretch_is_one_for_straight_paths_and_more_for_bends():
    line = torch.linspace(0, 1, 11)[:, None, None] * torch.tensor([[1.0, 2.0]])          # (11, 1, 2)
    assert geo.path_stretch(line) == pytest.approx(1.0, abs=1e-5)
    corner = torch.tensor([[[0.0, 0.0]], [[1.0, 0.0]], [[1.0, 1.0]]])
    assert geo.path_stretch(corner) == pytest.approx(2 / math.sqrt(2), rel=1e-5)


def test_guidance_report_reads_spread_and_class_agreement_against_the_data():
    data = geo.make_dataset("mixture", 2000, 0)
    same = geo.guidance_report(data.x, data.y, data)
    assert same["mean_spread"] == pytest.approx(1.0) and 0.9 < same["data_agreement"] < 1.0
    at_centres = geo.mixture_centres()[data.y]                         # every sample at its class centre
    r = geo.guidance_report(at_centres, data.y, data)
    assert r["mean_spread"] < 0.01 and r["agreement"] == 1.0
    wrong = geo.guidance_report(at_centres, (data.y + 1) % geo.MIXTURE_CLASSES, data)
    assert wrong["agreement"] == 0.0


# -- figure builders (tests/test_figures.py can take these: BUILDERS.update(FIGURE_SAMPLES)) -------------------------
def _figure_samples():
    from ui import figures

    rng = np.random.default_rng(0)
    traj = rng.normal(size=(6, 20, 2))
    return {
        "points_figure": lambda: figures.points_figure(
            [{"name": "data", "points": rng.normal(size=(50, 2)), "colour": figures.GEOMETRY_DATA}], "points"),
        "trajectory_figure": lambda: figures.trajectory_figure(traj, [f"t = {s:.1f}" for s in np.linspace(1, 0, 6)],
                                                               "paths", background=rng.normal(size=(30, 2))),
        "quiver_figure": lambda: figures.quiver_figure(rng.normal(size=(9, 2)), 0.1 * rng.normal(size=(9, 2)),
                                                       "field", background=rng.normal(size=(30, 2))),
        "paths_figure": lambda: figures.paths_figure([{"name": "DDIM", "paths": traj, "colour": "blue"}], traj[0],
                                                     "paired"),
        "steps_fit_figure": lambda: figures.steps_fit_figure([1, 2, 5, 50], {"DDIM": [9.0, 5.0, 2.0, 1.2]}, 1.5,
                                                             "fit vs steps"),
        "guidance_figure": lambda: figures.guidance_figure([0, 1, 2], [1.0, 0.7, 0.5], [1.0, 1.01, 1.02], 1.0,
                                                           "guidance"),
    }


FIGURE_SAMPLES = _figure_samples()


@pytest.mark.parametrize("name", sorted(FIGURE_SAMPLES))
def test_geometry_figures_title_both_axes_keep_legends_below_and_wrap_titles(name):
    from ui import figures

    fig = FIGURE_SAMPLES[name]()
    assert isinstance(fig, go.Figure)
    assert (fig.layout.xaxis.title.text or "").strip() and (fig.layout.yaxis.title.text or "").strip()
    if fig.layout.legend.orientation is not None:
        assert fig.layout.legend.yref == "container" and fig.layout.legend.y == 0
    assert all(len(line) <= figures.TITLE_CHARS for line in (fig.layout.title.text or "").split("<br>"))


def test_the_trajectory_figure_has_a_frame_and_a_slider_step_per_state():
    fig = FIGURE_SAMPLES["trajectory_figure"]()
    assert len(fig.frames) == 6 and len(fig.layout.sliders[0].steps) == 6
    assert fig.layout.sliders[0].active == 5                           # it opens on the samples
    assert fig.layout.yaxis.scaleanchor == "x"                         # equal units: a circle stays round


def test_a_drawing_becomes_points_y_up():
    from PIL import Image, ImageDraw
    import io

    from ui.geometry_view import drawing_points

    im = Image.new("RGB", (280, 280), "black")
    ImageDraw.Draw(im).line([(40, 240), (240, 240)], fill="white", width=22)     # a stroke near the bottom
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    pts = drawing_points(buf.getvalue())
    assert pts is not None and pts.shape[1] == 2 and len(pts) > 50
    assert pts[:, 1].max() < -50 and np.ptp(pts[:, 0]) > 40                  # y up: the bottom is most negative
    blank = io.BytesIO()
    Image.new("RGB", (280, 280), "black").save(blank, format="PNG")
    assert drawing_points(blank.getvalue()) is None


def test_the_benchmark_trains_from_scratch_and_reports_the_fit():
    from benchmarks.geometry import time_to_fit_two_moons

    r = time_to_fit_two_moons("flow", steps=200, threads=None, n_steps=10, log=lambda *_: None)
    assert r["steps"] == 200 and r["seconds"] > 0 and r["floor"] > 0
    assert r["ratio"] == pytest.approx(r["distance"] / r["floor"], rel=0.01) and r["ratio"] < r["untrained_ratio"]


# -- the page ------------------------------------------------------------------------------------------------------
APP = os.path.join(os.path.dirname(__file__), "..", "dashboard.py")


@pytest.fixture
def app(runs_root, monkeypatch):
    pytest.importorskip("streamlit")
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    import ui.resources as res

    monkeypatch.setattr(res, "RUNS_ROOT", runs_root)
    st.cache_resource.clear()
    st.cache_data.clear()
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["model"] = "tiny"
    yield at
    st.cache_resource.clear()


def _ok(at):
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _chart(at, key):
    """The spec of the chart drawn with key `geometry.<key>`."""
    return next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if c.key == f"geometry.{key}")


def test_geometry_page_trains_and_every_panel_follows_its_controls(app):
    app.run()
    app.query_params["steps"] = "100"
    app.switch_page("pages/geometry.py").run()
    _ok(app)
    assert app.title[0].value.startswith("Geometry lab")
    assert [b.label for b in app.button] == ["Train"] and len(app.get("plotly_chart")) == 1     # the data alone
    app.button(key="geometry.train").click().run()
    _ok(app)
    notes = " ".join(m.value for m in app.markdown)
    assert "**Fit** (DDPM ancestral, 50 steps)" in notes and "× the floor" in notes
    assert any(c.value.startswith("Trained 100 steps in") for c in app.caption)
    assert [c.key.split(".")[1] for c in app.get("plotly_chart")] == [
        "data_fig", "forward_fig", "field_fig", "traj_fig", "paired_fig", "steps_fig", "few_fig"]
    traj = _chart(app, "traj_fig")
    assert len(traj["frames"]) == 51 and traj["layout"]["sliders"][0]["steps"][0]["label"].startswith("t = 1.00")
    before = _chart(app, "forward_fig")["layout"]["title"]["text"]
    app.slider(key="geometry.t").set_value(0.9).run()
    _ok(app)
    assert _chart(app, "forward_fig")["layout"]["title"]["text"] != before and "t = 0.90" in \
        _chart(app, "forward_fig")["layout"]["title"]["text"]
    assert app.query_params["t"] in ("0.9", ["0.9"])
    assert any("Guidance needs class labels" in i.value for i in app.info)
    # another objective: its own samplers; the model for these settings is not trained yet
    app.radio(key="geometry.objective").set_value("flow").run()
    _ok(app)
    assert app.radio(key="geometry.sampler").options == ["Euler", "Heun", "ancestral (stochastic)"]
    assert app.radio(key="geometry.sampler").value == "euler" and [b.label for b in app.button] == ["Train"]


def test_geometry_page_guidance_on_the_labelled_mixture(app):
    app.run()
    app.query_params.update({"steps": "300", "data": "mixture", "objective": "flow", "sampler": "euler", "n": "10",
                             "w": "4.0"})
    app.switch_page("pages/geometry.py").run()
    _ok(app)
    app.button(key="geometry.train").click().run()
    _ok(app)
    note = next(m.value for m in app.markdown if m.value.startswith("At w = 4"))
    assert "Without guidance (w = 0)" in note and "less diverse" in note
    spread = float(note.split("spread **")[1].split("×")[0])
    assert spread < 1.0 and "narrower than" in note                    # the direction word follows the number
    app.slider(key="geometry.w").set_value(0.0).run()
    _ok(app)
    assert any(m.value.startswith("At w = 0 ") for m in app.markdown)


# -- the page's sentences follow the numbers they describe ----------------------------------------------------------
def _sweep(det_ratios, stretch):
    return {"steps": [1, 2, 5, 10, 20, 50], "ratios": {"euler": det_ratios, "heun": [3.0, 1.4, 1.2, 1.1, 1.1, 1.1]},
            "stretch": {"euler": stretch}}


def test_the_steps_note_reads_its_ratios_and_calls_paths_curved_only_when_they_are():
    from ui.geometry_view import steps_note

    curved = steps_note(_sweep([9.0, 6.0, 3.0, 2.0, 1.8, 1.6], 1.4), "euler")
    assert "**3.8×** as far from the data as with 50 steps (6.00× vs 1.60×" in curved
    assert "Euler at none of 1–50 steps; Heun from 2 steps" in curved and "cut across their curves" in curved
    straight = steps_note(_sweep([9.0, 1.2, 1.2, 1.2, 1.2, 1.25], 1.05), "euler")
    assert "about as far from the data as with 50 steps (0.96×)" in straight and "from 2 steps" in straight
    assert "nearly straight" in straight and "curves" not in straight


def test_the_guidance_note_says_narrower_or_wider_from_the_spread():
    from ui.geometry_view import guidance_note

    def rep(spread, agree):
        return {"mean_spread": spread, "agreement": agree, "data_agreement": 0.97}

    g = {"weights": [0.0, 2.0], "reports": [rep(1.03, 0.96), rep(0.6, 1.0)]}
    assert "narrower than the data" in guidance_note(g, 1) and "less diverse" in guidance_note(g, 1)
    g["reports"][1] = rep(1.3, 0.9)
    assert "wider than the data" in guidance_note(g, 1) and "more diverse" in guidance_note(g, 1)
    assert "Without guidance" not in guidance_note(g, 0)


def test_a_learner_whose_training_outlasts_the_request_budget_is_told_so(app, monkeypatch):
    from ui import compute

    monkeypatch.setattr(compute, "limits", lambda: compute.Limits("learner-test", 1.0))
    app.run()
    app.query_params["steps"] = "8000"
    app.switch_page("pages/geometry.py").run()
    app.button(key="geometry.train").click().run()
    _ok(app)
    assert any("more than the 1 s of computing one learner request may use" in w.value for w in app.warning), \
        [w.value for w in app.warning]
    assert [b.label for b in app.button] == ["Train"]                   # nothing stored: still untrained
