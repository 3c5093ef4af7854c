"""Plotly figure builders (go.Figure: ~10x cheaper to build than plotly.express, which matters when a
fragment redraws every few seconds for every open tab)."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

DIGIT_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf"]


def _layout(fig: go.Figure, title: str = "", height: int = 300, **kw) -> go.Figure:
    fig.update_layout(title=title, height=height, margin=dict(l=10, r=10, t=40 if title else 10, b=10),
                      legend=dict(orientation="h", yanchor="top", y=-0.28), **kw)
    return fig


def _fast_layout(title: str, height: int, **kw) -> dict:
    """The layout of `_layout` as a plain dict: a figure built in one constructor call validates once,
    where add_vline / update_* calls each walk the figure again (4 ms -> 2 ms per figure, on the slider path)."""
    return dict(title=title, height=height, margin=dict(l=10, r=10, t=40 if title else 10, b=10),
                legend=dict(orientation="h", yanchor="top", y=-0.28), **kw)


def schedule_figure(curves: dict[str, dict[str, np.ndarray]], quantity: str, t_mark: int | None,
                    log_y: bool = False) -> go.Figure:
    """One line per schedule (e.g. linear vs cosine) of `quantity` over t, with the current t marked."""
    traces = []
    for name, c in curves.items():
        y = np.asarray(c[quantity])
        step = max(1, len(y) // 250)                 # ~250 points draw the same curve; the slider stays fast
        xs = np.arange(0, len(y), step)
        traces.append(go.Scatter(x=xs, y=y[xs], mode="lines", name=name))
    shapes = [] if t_mark is None else [dict(type="line", x0=t_mark, x1=t_mark, y0=0, y1=1, yref="paper",
                                             line=dict(dash="dash", color="grey"))]
    yaxis = dict(type="log") if log_y else {}
    return go.Figure(traces, layout=_fast_layout(quantity, 260, shapes=shapes, xaxis=dict(title="t"), yaxis=yaxis))


_NORMAL_X = np.linspace(-4, 4, 200)
_NORMAL_Y = np.exp(-_NORMAL_X ** 2 / 2) / np.sqrt(2 * np.pi)


def histogram_vs_normal(values: np.ndarray) -> go.Figure:
    """Pixel histogram of x_t (density) against the N(0, 1) density the chain converges to."""
    counts, edges = np.histogram(values.ravel(), bins=60, range=(-4, 4), density=True)
    return go.Figure([go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, width=edges[1] - edges[0],
                             name="pixels of x_t", opacity=0.7),
                      go.Scatter(x=_NORMAL_X, y=_NORMAL_Y, name="N(0, 1)", mode="lines")],
                     layout=_fast_layout("pixel histogram of x_t", 260, xaxis=dict(range=[-4, 4], title="pixel value")))


def per_class_lines(x: list[float], per_class: dict, title: str, x_title: str, y_title: str,
                    overall: list[float] | None = None, chance: float | None = None,
                    not_a_digit: list[float] | None = None) -> go.Figure:
    """One line per digit class (+ all classes in black); `chance` draws the guessing level (0.1 for ten
    classes) as a dotted line; `not_a_digit` adds the share the judge abstained on, dashed grey."""
    fig = go.Figure()
    for c, ys in sorted(per_class.items(), key=lambda kv: int(kv[0])):
        fig.add_trace(go.Scatter(x=x, y=ys, mode="lines", name=str(c), line=dict(color=DIGIT_COLOURS[int(c) % 10])))
    if overall is not None:
        fig.add_trace(go.Scatter(x=x, y=overall, mode="lines", name="all", line=dict(color="black", width=4)))
    if not_a_digit is not None:
        fig.add_trace(go.Scatter(x=x, y=not_a_digit, mode="lines", name="'not a digit'",
                                 line=dict(color="grey", width=3, dash="dash")))
    if chance is not None:
        fig.add_hline(y=chance, line=dict(color="grey", dash="dot"), annotation_text=f"chance ({chance:.0%})",
                      annotation_position="bottom right")
    fig.update_xaxes(title=x_title)
    fig.update_yaxes(title=y_title, range=[0, 1.02])
    return _layout(fig, title, 330)


def loss_figure(history: list[tuple[int, float]], smooth: int = 20) -> go.Figure:
    fig = go.Figure()
    if history:
        steps, losses = zip(*history)
        fig.add_trace(go.Scattergl(x=steps, y=losses, mode="lines", name="loss", opacity=0.35))
        if len(losses) >= 3:
            k = min(smooth, len(losses))
            sm = np.convolve(losses, np.ones(k) / k, mode="valid")
            fig.add_trace(go.Scattergl(x=steps[k - 1:], y=sm, mode="lines", name=f"mean of {k}"))
    fig.update_xaxes(title="step")
    fig.update_yaxes(title="weighted MSE", type="log")
    return _layout(fig, "training loss", 300, uirevision="loss")


def bucket_figure(buckets: list[float | None]) -> go.Figure:
    labels = [f"{10 * i}–{10 * (i + 1)} %" for i in range(10)]
    fig = go.Figure(go.Bar(x=labels, y=[b if b is not None else 0 for b in buckets]))
    fig.update_xaxes(title="timestep bucket (% of T)")
    fig.update_yaxes(title="MSE (running mean)")
    return _layout(fig, "loss per timestep bucket", 300)


def heatmap(z: np.ndarray, x_title: str, y_title: str, title: str, x=None, y=None,
            zrange: tuple[float, float] | None = None, text_format: str | None = None,
            top_down: bool = False) -> go.Figure:
    """A heatmap; signed values get a diverging scale centred on 0, or give `zrange` (e.g. (0, 1) for an
    accuracy) for a sequential one; `text_format` (e.g. ".0%") prints each cell's value on it."""
    kw = dict(colorscale="Viridis", zmin=zrange[0], zmax=zrange[1]) if zrange else dict(colorscale="RdBu", zmid=0)
    if text_format:
        kw.update(texttemplate=f"%{{z:{text_format}}}", textfont=dict(size=9))
    fig = go.Figure(go.Heatmap(z=z, x=x, y=y, **kw))
    if x is not None and all(isinstance(v, str) for v in x):
        fig.update_xaxes(type="category")
    if y is not None and all(isinstance(v, str) for v in y):
        fig.update_yaxes(type="category")
    if top_down:                                                        # the first row on top, as in a table
        fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title=x_title)
    fig.update_yaxes(title=y_title)
    return _layout(fig, title, 320)


def recorded_loss_figure(steps: list[int], loss: list[float], smooth_steps: list[int], smoothed: list[float],
                         k: int, y_title: str) -> go.Figure:
    """Logged losses (raw, faint) and their running mean of k points, on a log y axis."""
    traces = [go.Scattergl(x=steps, y=loss, mode="lines", name="logged loss (one batch each)",
                           line=dict(color="#9ecae1", width=1))]
    if smoothed:
        traces.append(go.Scattergl(x=smooth_steps, y=smoothed, mode="lines", name=f"mean of {k} logged",
                                   line=dict(color="#08306b", width=3)))
    return go.Figure(traces, layout=_fast_layout("training loss (recorded)", 320, xaxis=dict(title="step"),
                                                 yaxis=dict(title=y_title, type="log")))


def bucket_loss_figure(buckets: list[list[float]], mse: list[float], y_title: str) -> go.Figure:
    """One bar per noise bucket (lo, hi as fractions of T), the value printed on each bar."""
    labels = [f"{100 * lo:.0f}–{100 * hi:.0f}" for lo, hi in buckets]
    bar = go.Bar(x=labels, y=mse, text=[f"{v:.2g}" for v in mse], textposition="outside", cliponaxis=False,
                 name="ε-MSE")
    return go.Figure([bar], layout=_fast_layout("loss per noise bucket (measured)", 320,
                                                xaxis=dict(title="noise level t/T (%)"),
                                                yaxis=dict(title=y_title, rangemode="tozero")))


def _chance(chance: float) -> dict:
    """A dashed red line at the chance level across the plot, labelled on a white ground (bars may be behind)."""
    return dict(shapes=[dict(type="line", xref="paper", x0=0, x1=1, y0=chance, y1=chance,
                             line=dict(color="red", dash="dash"))],
                annotations=[dict(xref="paper", x=1, y=chance, text=f"chance {100 * chance:.0f} %", showarrow=False,
                                  xanchor="right", yanchor="bottom", font=dict(color="red", size=11),
                                  bgcolor="rgba(255,255,255,0.85)")])


def judge_over_training_figure(history: list[dict], chance: float = 0.1) -> go.Figure:
    """Judge accuracy of fixed-seed samples over training (history: dicts with step, accuracy, per_class and,
    where measured, not_a_digit), the share read as "not a digit", one line per digit (one legend entry for all
    ten, hidden until clicked) and the chance line of a random guess among the digits."""
    steps = [h["step"] for h in history]
    traces = [go.Scatter(x=steps, y=[h["per_class"].get(c) for h in history], mode="lines", name="each digit",
                         legendgroup="digits", showlegend=c == 0, visible="legendonly", text=f"digit {c}",
                         hoverinfo="x+y+text", line=dict(color=DIGIT_COLOURS[c], width=1)) for c in range(10)]
    if history and all("not_a_digit" in h for h in history):
        traces.append(go.Scatter(x=steps, y=[h["not_a_digit"] for h in history], mode="lines",
                                 name="'not a digit'", line=dict(color="grey", dash="dot")))
    traces.append(go.Scatter(x=steps, y=[h["accuracy"] for h in history], mode="lines+markers", name="all digits",
                             line=dict(color="black", width=3)))
    return go.Figure(traces, layout=_fast_layout("judge accuracy of fixed-seed samples", 320, **_chance(chance),
                                                 xaxis=dict(title="step"), uirevision="judge",
                                                 yaxis=dict(title="judge accuracy", range=[0, 1.05],
                                                            tickformat=".0%")))


def model_accuracy_bars(labels: list[str], values: list[float], colours: list[str], hover: list[str],
                        y_title: str, chance: float = 0.1) -> go.Figure:
    """Judge accuracy per model, the value on each bar, the chance line drawn."""
    bar = go.Bar(x=labels, y=values, marker_color=colours, text=[f"{100 * v:.1f} %" for v in values],
                 textposition="outside", cliponaxis=False, constraintext="none", textfont=dict(size=11),
                 hovertext=hover, hoverinfo="x+y+text")
    return go.Figure([bar], layout=_fast_layout("judge accuracy per model", 340, **_chance(chance),
                                                xaxis=dict(title="model"),
                                                yaxis=dict(title=y_title, range=[0, 1.1], tickformat=".0%")))


def loss_vs_accuracy_figure(labels: list[str], losses: list[float], accuracies: list[float],
                            colours: list[str]) -> go.Figure:
    """Final training loss against judge accuracy, one labelled point per model (log x); labels alternate above
    and below the points in order of loss, so neighbours do not print over each other."""
    order = sorted(range(len(losses)), key=lambda i: losses[i])
    positions = [""] * len(losses)
    for rank, i in enumerate(order):
        positions[i] = "top center" if rank % 2 == 0 else "bottom center"
    pts = go.Scatter(x=losses, y=accuracies, mode="markers+text", text=labels, textposition=positions,
                     marker=dict(size=10, color=colours), cliponaxis=False, name="models")
    return go.Figure([pts], layout=_fast_layout("final loss vs judge accuracy", 340,
                                                xaxis=dict(title="final training loss (log)", type="log"),
                                                yaxis=dict(title="judge accuracy", range=[0, 1.12],
                                                           tickformat=".0%")))


# -- tiles with their numbers, and means with confidence intervals (the CLIP evaluation page) ------------------------
def _png_data_uri(rgb: np.ndarray) -> str:
    """(H, W, 3) uint8 -> a PNG data URI (one small image in the figure instead of H*W*3 numbers in its JSON)."""
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def tile_grid(tiles: np.ndarray, texts: list[str], hovers: list[str], cols: int, frames: list | None = None,
              row_labels: list[str] | None = None, col_labels: list[str] | None = None,
              customdata: list | None = None, highlight: int | None = None, height: int = 600,
              title: str = "", scale: int = 3, text_colours: list[str] | None = None,
              font_size: int = 10) -> go.Figure:
    """Tiles (N, 28, 28) uint8 in a grid of `cols` columns, `texts[i]` printed under tile i, `hovers[i]` on hover,
    an optional RGB frame per tile and a highlight box around tile `highlight`.

    Trace 1 holds one invisible marker per tile centre (customdata[i]), so st.plotly_chart(on_select="rerun",
    selection_mode="points") turns a click on a tile into a selection of that tile. Coordinates are the grid's
    pixels; the image is upscaled `scale`x with nearest neighbours so the browser does not blur the digits.
    """
    n = len(tiles)
    rows = max(1, -(-n // cols))
    frame, gap, label = 2, 3, 9                                   # pixels around, between and under each tile
    cw, ch = 28 + 2 * frame + gap, 28 + 2 * frame + label + gap
    canvas = np.full((rows * ch + gap, cols * cw + gap, 3), 255, dtype=np.uint8)
    xs, ys = [], []
    for i in range(n):
        r, c = divmod(i, cols)
        x0, y0 = gap + c * cw, gap + r * ch
        if frames is not None and frames[i] is not None:
            canvas[y0:y0 + 28 + 2 * frame, x0:x0 + 28 + 2 * frame] = frames[i]
        canvas[y0 + frame:y0 + frame + 28, x0 + frame:x0 + frame + 28] = np.asarray(tiles[i], dtype=np.uint8)[..., None]
        xs.append(x0 + frame + 14)
        ys.append(y0 + frame + 14)
    big = np.kron(canvas, np.ones((scale, scale, 1), dtype=np.uint8))
    image = go.Image(source=_png_data_uri(big), x0=0, dx=1 / scale, y0=0, dy=1 / scale, hoverinfo="skip")
    markers = go.Scatter(x=xs, y=ys, mode="markers", customdata=customdata, hovertext=hovers, hoverinfo="text",
                         marker=dict(size=22, symbol="square", color="rgba(0,0,0,0)"),
                         selected=dict(marker=dict(opacity=0)), unselected=dict(marker=dict(opacity=0)),
                         showlegend=False)
    colours = text_colours or ["#222"] * n
    annotations = [dict(x=x, y=y + 14 + frame + label / 2 + 0.5, text=t, showarrow=False, xanchor="center",
                        yanchor="middle", font=dict(size=font_size, color=colours[i]))
                   for i, (x, y, t) in enumerate(zip(xs, ys, texts))]
    shapes = []
    if highlight is not None and 0 <= highlight < n:
        x, y = xs[highlight], ys[highlight]
        half = 14 + frame + 1.5
        shapes.append(dict(type="rect", x0=x - half, x1=x + half, y0=y - half, y1=y + half + label,
                           line=dict(color="#1f4fff", width=3)))
    W, H = canvas.shape[1], canvas.shape[0]
    xaxis = dict(range=[0, W], showgrid=False, zeroline=False, fixedrange=True, side="top", tickangle=0,
                 tickfont=dict(size=font_size), tickvals=xs[:cols] if col_labels else [], ticktext=col_labels or [],
                 constrain="domain", constraintoward="left")
    yaxis = dict(range=[H, 0], showgrid=False, zeroline=False, fixedrange=True, scaleanchor="x", constrain="domain",
                 constraintoward="top", tickvals=ys[::cols] if row_labels else [], ticktext=row_labels or [],
                 automargin=True)
    return go.Figure([image, markers], layout=dict(
        title=title, height=height, margin=dict(l=10, r=10, t=(60 if title else 24) if col_labels else
                                                (40 if title else 10), b=6),
        xaxis=xaxis, yaxis=yaxis, annotations=annotations, shapes=shapes, dragmode=False, hovermode="closest",
        hoverdistance=40, plot_bgcolor="white", clickmode="event+select"))


def means_with_ci(x: list, groups: list[dict], title: str, x_title: str, y_title: str, height: int = 320,
                  horizontal: bool = False) -> go.Figure:
    """Means with asymmetric error bars (e.g. 95 % CIs), one marker series per group, offset so they do not
    overlap. groups: [{"name", "mean", "lo", "hi", "colour", "text" (optional hover)}] aligned with x. The value
    axis spans the data (lowest lower bound to highest upper bound, 8 % padding), not 0: differences of a few
    hundredths stay visible, and the axis says where it starts."""
    traces = []
    k = len(groups)
    lows = [v for g in groups for v in g["lo"]]
    highs = [v for g in groups for v in g["hi"]]
    span = (max(highs) - min(lows)) or 1e-3
    value_range = [min(lows) - 0.08 * span, max(highs) + 0.08 * span]
    for j, g in enumerate(groups):
        offset = (j - (k - 1) / 2) * 0.18
        pos = [i + offset for i in range(len(x))]
        err = dict(type="data", symmetric=False, array=[h - m for h, m in zip(g["hi"], g["mean"])],
                   arrayminus=[m - lo for m, lo in zip(g["mean"], g["lo"])], color=g["colour"], thickness=1.5, width=4)
        common = dict(mode="markers", name=g["name"], marker=dict(color=g["colour"], size=9),
                      hovertext=g.get("text"), hoverinfo="text+name" if g.get("text") else "x+y+name")
        if horizontal:
            traces.append(go.Scatter(x=g["mean"], y=pos, error_x=err, **common))
        else:
            traces.append(go.Scatter(x=pos, y=g["mean"], error_y=err, **common))
    cat_axis = dict(title=x_title, tickvals=list(range(len(x))), ticktext=[str(v) for v in x])
    val_axis = dict(title=y_title, range=value_range)
    if horizontal:
        cat_axis.update(autorange="reversed")
        return go.Figure(traces, layout=_fast_layout(title, height, xaxis=val_axis, yaxis=cat_axis))
    return go.Figure(traces, layout=_fast_layout(title, height, xaxis=cat_axis, yaxis=val_axis))


def strip_by_group(names: list[str], values: list[list[float]], colours: list[str], hovers: list[list[str]],
                   title: str, x_title: str, height: int = 420, marks: list[dict] | None = None) -> go.Figure:
    """One horizontal box per group with every point drawn beside it (jittered): where each group lies on one
    scale. marks: vertical reference lines [{"x", "text", "colour"}]."""
    traces = [go.Box(x=v, name=n, orientation="h", boxpoints="all", jitter=0.5, pointpos=0, marker=dict(
        color=c, size=4, opacity=0.55), line=dict(color=c, width=1.5), fillcolor="rgba(0,0,0,0)", hovertext=h,
        hoverinfo="text+x", showlegend=False) for n, v, c, h in zip(names, values, colours, hovers)]
    shapes, annotations = [], []
    for m in marks or []:
        shapes.append(dict(type="line", x0=m["x"], x1=m["x"], yref="paper", y0=0, y1=1,
                           line=dict(color=m.get("colour", "grey"), dash="dash")))
        annotations.append(dict(x=m["x"], yref="paper", y=1.0, text=m["text"], showarrow=False, yanchor="bottom",
                                font=dict(size=11, color=m.get("colour", "grey"))))
    return go.Figure(traces, layout=_fast_layout(title, height, xaxis=dict(title=x_title),
                                                 yaxis=dict(autorange="reversed", automargin=True),
                                                 shapes=shapes, annotations=annotations))
