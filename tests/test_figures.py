"""The figure builders of ui/figures.py, legible on a 1024-px projector: every chart says what its axes are,
categorical values sit on categorical axes with every category ticked, and a colour scale fits its quantity
(0-1 for an accuracy, sequential from 0 for counts, centred on 0 for signed values). No Streamlit needed."""
import numpy as np
import plotly.graph_objects as go
import pytest

from ui import figures

RNG = np.random.default_rng(0)
PER_CLASS = {c: list(RNG.uniform(0, 1, 5)) for c in range(10)}
SPEED_ROWS = [{"sampler": s, "steps": n, "seconds": sec, "n": 100, "judge_accuracy": acc}
              for s, n, sec, acc in (("ddim", 5, 0.9, 0.94), ("ddim", 25, 4.4, 1.0), ("ddpm", 1000, 180.0, 0.98))]

# one sample call per public builder that returns a figure: a builder added without an entry fails the
# completeness test below
BUILDERS = {
    "schedule_figure": lambda: figures.schedule_figure(
        {"linear": {"alpha_bar_t": np.linspace(1, 0, 1000)}, "cosine": {"alpha_bar_t": np.linspace(1, 0, 1000) ** 2}},
        "alpha_bar_t", 250, y_title="ᾱ_t (signal kept)"),
    "histogram_vs_normal": lambda: figures.histogram_vs_normal(RNG.normal(size=784)),
    "per_class_lines": lambda: figures.per_class_lines([0, 25, 50, 75, 100], PER_CLASS, "judge accuracy",
                                                       "% of the chain", "accuracy", [0.5] * 5, chance=0.1,
                                                       not_a_digit=[0.1] * 5),
    "loss_figure": lambda: figures.loss_figure([(i, 1 / (i + 1)) for i in range(50)]),
    "bucket_figure": lambda: figures.bucket_figure([0.1 * i for i in range(10)]),
    "heatmap": lambda: figures.heatmap(RNG.uniform(0, 1, (4, 10)), "digit", "guidance w", "judge accuracy",
                                       x=[str(c) for c in range(10)], y=["w = 0", "w = 1", "w = 2", "w = 4"],
                                       quantity="accuracy"),
    "recorded_loss_figure": lambda: figures.recorded_loss_figure([1, 2, 3], [0.3, 0.2, 0.1], [3], [0.2], 3, "ε-MSE"),
    "bucket_loss_figure": lambda: figures.bucket_loss_figure([[i / 10, (i + 1) / 10] for i in range(10)],
                                                             [0.1] * 10, "ε-MSE"),
    "judge_over_training_figure": lambda: figures.judge_over_training_figure(
        [{"step": s, "accuracy": 0.5, "per_class": {c: 0.5 for c in range(10)}, "not_a_digit": 0.1}
         for s in (100, 200)]),
    "model_accuracy_bars": lambda: figures.model_accuracy_bars(["a", "b"], [0.9, 0.5], ["red", "blue"], ["", ""],
                                                               "judge accuracy"),
    "loss_vs_accuracy_figure": lambda: figures.loss_vs_accuracy_figure(["a", "b", "c"], [0.0003, 0.02, 0.03],
                                                                       [0.3, 0.99, 0.6], ["red"] * 3),
    "speed_quality_figure": lambda: figures.speed_quality_figure(SPEED_ROWS),
    "ablation_loss_figure": lambda: figures.ablation_loss_figure(
        {"default": (list(range(0, 3000, 10)), list(np.geomspace(2, 0.02, 300)))}),
    "class_probability_bars": lambda: figures.class_probability_bars(np.full(10, 0.1), 3, "CLIP's own reading"),
    "tile_grid": lambda: figures.tile_grid(np.zeros((4, 28, 28), np.uint8), ["1", "2", "3", "4"], [""] * 4, cols=2,
                                           row_labels=["0", "1"], col_labels=["1", "2"], x_title="rank",
                                           y_title="digit"),
    "means_with_ci": lambda: figures.means_with_ci([0, 1], [{"name": "g", "mean": [1.0, 1.1], "lo": [0.9, 1.0],
                                                             "hi": [1.1, 1.2], "colour": "red"}],
                                                   "mean score", "digit", "score"),
    "strip_by_group": lambda: figures.strip_by_group(["a", "b"], [[1.0, 1.2], [0.5, 0.7]], ["red", "blue"],
                                                     [["", ""], ["", ""]], "scores", "CLIPScore"),
}


from .test_geometry import FIGURE_SAMPLES  # noqa: E402  (the Geometry lab's builders, sampled beside their tests)

BUILDERS.update(FIGURE_SAMPLES)


def _title(axis) -> str:
    return (axis.title.text or "") if axis.title is not None else ""


def test_every_figure_builder_has_a_sample_call():
    public = {name for name in dir(figures) if not name.startswith("_") and callable(getattr(figures, name))
              and getattr(getattr(figures, name), "__annotations__", {}).get("return") in (go.Figure, "go.Figure")}
    assert public == set(BUILDERS)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_every_chart_titles_both_axes(name):
    fig = BUILDERS[name]()
    assert _title(fig.layout.xaxis).strip(), f"{name}: x axis without a title"
    assert _title(fig.layout.yaxis).strip(), f"{name}: y axis without a title"


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_legends_sit_below_the_whole_figure_and_titles_wrap(name):
    fig = BUILDERS[name]()
    if fig.layout.legend.orientation is not None:      # builders with a legend of our making: never over the x title
        assert fig.layout.legend.yref == "container" and fig.layout.legend.y == 0
    title = fig.layout.title.text or ""
    assert all(len(line) <= figures.TITLE_CHARS for line in title.split("<br>")), title


def test_a_long_title_wraps_at_spaces_and_a_short_one_does_not():
    long = "CLIPScore vs guidance weight (same seeds), 95 % CI"
    assert figures.wrap_title(long) == "CLIPScore vs guidance weight (same<br>seeds), 95 % CI"
    assert figures.wrap_title("speed vs quality") == "speed vs quality"
    fig = figures.means_with_ci([0], [{"name": "g", "mean": [1.0], "lo": [0.9], "hi": [1.1], "colour": "red"}],
                                long, "w", "score")
    assert fig.layout.title.text.count("<br>") == 1 and fig.layout.margin.t > 40     # room for the second line


def test_an_accuracy_heatmap_is_fixed_at_0_to_1_on_categorical_axes():
    weights = ["w = 0", "w = 1", "w = 2", "w = 4"]          # unevenly spaced weights: categories, not numbers
    acc = np.full((4, 10), 0.95)
    fig = figures.heatmap(acc, "digit", "guidance w", "judge accuracy per cell", x=[str(c) for c in range(10)],
                          y=weights, quantity="accuracy", text_format=".0%", top_down=True)
    h = fig.data[0]
    assert (h.zmin, h.zmax) == (0, 1) and h.zmid is None       # 95 % looks the same on every chart, not "the top"
    assert h.colorscale[0][1] != h.colorscale[-1][1] and h.colorbar.title.text == "accuracy"
    assert fig.layout.yaxis.type == "category" and list(fig.layout.yaxis.tickvals) == weights
    assert fig.layout.xaxis.type == "category" and list(fig.layout.xaxis.tickvals) == [str(c) for c in range(10)]
    assert fig.layout.yaxis.autorange == "reversed"
    with pytest.raises(ValueError, match=r"\[0, 1\].*1\.5"):
        figures.heatmap(np.array([[0.5, 1.5]]), "x", "y", "t", quantity="accuracy")


def test_a_count_heatmap_is_sequential_from_0():
    conf = np.array([[10, 0, 0], [0, 7, 3]])
    h = figures.heatmap(conf, "CLIP class", "judge class", "counts", x=["0", "1", "2"], y=["0", "1"],
                        quantity="count").data[0]
    assert (h.zmin, h.zmax) == (0, 10) and h.zmid is None and h.colorbar.title.text == "count"
    zero = figures.heatmap(np.zeros((2, 2)), "x", "y", "no counts yet", quantity="count").data[0]
    assert (zero.zmin, zero.zmax) == (0, 1)                   # an empty table still gets a scale from 0
    with pytest.raises(ValueError, match="counts >= 0"):
        figures.heatmap(np.array([[-1, 2]]), "x", "y", "t", quantity="count")


def test_a_signed_heatmap_is_diverging_around_0_and_numbers_stay_numeric():
    fig = figures.heatmap(RNG.normal(size=(11, 8)), "embedding dimension", "class", "embeddings",
                          y=[str(i) for i in range(10)] + ["∅ (null)"])
    h = fig.data[0]
    assert h.zmid == 0 and h.zmin is None and fig.layout.yaxis.type == "category"
    assert fig.layout.xaxis.type is None                      # no x labels given: Plotly's numeric axis
    t = figures.heatmap(np.ones((2, 3)), "timestep t", "feature", "time features", x=[0, 500, 999])
    assert t.layout.xaxis.type is None                        # numeric t stays on a numeric axis
    with pytest.raises(ValueError, match="quantity"):
        figures.heatmap(np.ones((2, 2)), "x", "y", "t", quantity="percent")


def test_log_axes_are_labelled_with_whole_numbers():
    assert figures.log_ticks(0.0003, 0.03) == [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02]
    assert figures.log_ticks(0.9, 180) == [1, 2, 5, 10, 20, 50, 100]
    with pytest.raises(ValueError):
        figures.log_ticks(0, 1)
    x = BUILDERS["speed_quality_figure"]().layout.xaxis
    assert list(x.ticktext) == ["1", "2", "5", "10", "20", "50", "100"]
    y = BUILDERS["ablation_loss_figure"]().layout.yaxis
    assert y.type == "log" and "0.05" in y.ticktext and "0.1" in y.ticktext


def test_speed_points_are_labelled_with_their_steps_and_the_chance_line_is_drawn():
    fig = BUILDERS["speed_quality_figure"]()
    ddim = next(t for t in fig.data if t.name.startswith("DDIM"))
    assert list(ddim.text) == ["5", "25"] and list(ddim.x) == [0.9, 4.4]
    assert any(s.y0 == s.y1 == 0.1 for s in fig.layout.shapes)


def test_names_of_clustered_models_never_cover_each_other():
    """The shipped models cluster on "final loss vs judge accuracy" (default, fast and deep within a few pixels):
    every name gets its own clear box, and the figure carries those offsets."""
    labels = ["default", "fast", "deep", "no-skip", "no-time", "plain-cnn", "one-step"]
    points = [(300.0, 10.0), (298.0, 10.0), (301.0, 11.0), (320.0, 90.0), (305.0, 75.0), (310.0, 60.0), (20.0, 150.0)]
    offsets = figures.place_labels(points, labels)
    boxes = []
    for (x, y), (dx, dy), name in zip(points, offsets, labels):
        w, h = 6.5 * len(name) + 4, 14
        boxes.append((x + dx - w / 2, y + dy - h / 2, x + dx + w / 2, y + dy + h / 2))
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)
        for x, y in points:                              # nor a point
            assert not (a[0] < x < a[2] and a[1] < y < a[3])
    fig = figures.loss_vs_accuracy_figure(labels, [0.021, 0.0192, 0.0205, 0.0296, 0.022, 0.0235, 0.0003],
                                          [0.994, 0.995, 0.991, 0.586, 0.653, 0.737, 0.317], ["blue"] * 7)
    assert [a.text for a in fig.layout.annotations] == labels
    assert len({(a.ax, a.ay) for a in fig.layout.annotations[:3]}) == 3       # the cluster's names go three ways
