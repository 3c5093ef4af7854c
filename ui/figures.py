"""Plotly figure builders (go.Figure: ~10x cheaper to build than plotly.express, which matters when a
fragment redraws every few seconds for every open tab)."""
from __future__ import annotations

import textwrap

import numpy as np
import plotly.graph_objects as go

DIGIT_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf"]


# Legible on a 1024-px projector, where a chart is 280-560 px wide: the legend sits at the bottom of the whole
# figure (yref "container") so it never covers the x axis title, and a long title wraps instead of being cut.
LEGEND = dict(orientation="h", yref="container", y=0, yanchor="bottom", x=0, xanchor="left")
TITLE_CHARS = 40               # a longer title wraps: ~40 characters of the title font fit a 300-px-wide chart
# Two charts side by side in a wrapping row (st.container(horizontal=True)), each this wide: beside each other
# from a 1400-px-wide window (main column ~940 px), one above the other at 1024 px (~565 px), never squeezed
# to ~270 px as two st.columns would be there.
PAIR_WIDTH = 450
MAIN_WIDTH_1024 = 560          # the main column of a 1024-px-wide window beside the open sidebar: a table's limit


def wrap_title(title: str, width: int = TITLE_CHARS) -> str:
    """`title` broken into lines of at most `width` characters at spaces (Plotly never wraps a title itself)."""
    return "<br>".join(textwrap.wrap(title, width)) if len(title) > width else title


def log_ticks(lo: float, hi: float) -> list[float]:
    """Tick values 1, 2, 5 × 10^k from `lo` to `hi` (both > 0), each labelled in full: Plotly's own log ticks
    label the in-between ones with a bare digit ("2" for 0.02), which reads as a different number."""
    if not (0 < lo <= hi):
        raise ValueError(f"log ticks need 0 < lo <= hi, got lo = {lo}, hi = {hi}")
    ticks = []
    for k in range(int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi))) + 1):
        for m in (1, 2, 5):
            v = float(f"{m}e{k}")
            if lo <= v <= hi:
                ticks.append(v)
    return ticks


def _log_axis(axis: dict, values) -> dict:
    """`axis` made a log axis ticked at log_ticks of the positive `values`, each tick labelled in full (Plotly's
    own ticks where fewer than two fall in their range)."""
    positive = [float(v) for v in values if v is not None and v > 0]
    ticks = log_ticks(min(positive), max(positive)) if positive else []
    axis.update(type="log")
    if len(ticks) >= 2:
        axis.update(tickvals=ticks, ticktext=[f"{v:g}" for v in ticks])
    return axis


def _top_margin(title: str) -> int:
    return 10 if not title else 20 + 20 * (title.count("<br>") + 1)


def _layout(fig: go.Figure, title: str = "", height: int = 300, **kw) -> go.Figure:
    title = wrap_title(title)
    fig.update_layout(title=title, height=height, margin=dict(l=10, r=10, t=_top_margin(title), b=10),
                      legend=kw.pop("legend", LEGEND), **kw)
    return fig


def _fast_layout(title: str, height: int, **kw) -> dict:
    """The layout of `_layout` as a plain dict: a figure built in one constructor call validates once,
    where add_vline / update_* calls each walk the figure again (4 ms -> 2 ms per figure, on the slider path)."""
    title = wrap_title(title)
    return dict(title=title, height=height, margin=dict(l=10, r=10, t=_top_margin(title), b=10),
                legend=kw.pop("legend", LEGEND), **kw)


def schedule_figure(curves: dict[str, dict[str, np.ndarray]], quantity: str, t_mark: int | None,
                    log_y: bool = False, y_title: str | None = None) -> go.Figure:
    """One line per schedule (e.g. linear vs cosine) of `quantity` over t, with the current t marked; `y_title`
    names the quantity for a reader (default: its key)."""
    traces = []
    for name, c in curves.items():
        y = np.asarray(c[quantity])
        step = max(1, len(y) // 250)                 # ~250 points draw the same curve; the slider stays fast
        xs = np.arange(0, len(y), step)
        traces.append(go.Scatter(x=xs, y=y[xs], mode="lines", name=name))
    shapes = [] if t_mark is None else [dict(type="line", x0=t_mark, x1=t_mark, y0=0, y1=1, yref="paper",
                                             line=dict(dash="dash", color="grey"))]
    y_title = y_title or quantity
    yaxis = dict(title=y_title + (" (log)" if log_y else ""), type="log" if log_y else "linear")
    return go.Figure(traces, layout=_fast_layout(f"{y_title} over t", 280, shapes=shapes,
                                                 xaxis=dict(title="timestep t"), yaxis=yaxis))


_NORMAL_X = np.linspace(-4, 4, 200)
_NORMAL_Y = np.exp(-_NORMAL_X ** 2 / 2) / np.sqrt(2 * np.pi)


def histogram_vs_normal(values: np.ndarray) -> go.Figure:
    """Pixel histogram of x_t (density) against the N(0, 1) density the chain converges to."""
    counts, edges = np.histogram(values.ravel(), bins=60, range=(-4, 4), density=True)
    return go.Figure([go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, width=edges[1] - edges[0],
                             name="pixels of x_t", opacity=0.7),
                      go.Scatter(x=_NORMAL_X, y=_NORMAL_Y, name="N(0, 1)", mode="lines")],
                     layout=_fast_layout("pixels of x_t vs N(0, 1)", 280,
                                         xaxis=dict(range=[-4, 4], title="pixel value"),
                                         yaxis=dict(title="density")))


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
    # twelve entries, five a row in equal slots: a narrow chart keeps a three-row legend instead of a scrolled list
    return _layout(fig, title, 360, legend=LEGEND | dict(entrywidth=0.2, entrywidthmode="fraction"))


def loss_figure(history: list[tuple[int, float]], smooth: int = 20) -> go.Figure:
    """The live run's loss per step (faint) and its running mean (bold), on a log y axis."""
    fig = go.Figure()
    losses = []
    if history:
        steps, losses = zip(*history)
        fig.add_trace(go.Scattergl(x=steps, y=losses, mode="lines", name="loss", line=dict(color="#9ecae1")))
        if len(losses) >= 3:
            k = min(smooth, len(losses))
            sm = np.convolve(losses, np.ones(k) / k, mode="valid")
            fig.add_trace(go.Scattergl(x=steps[k - 1:], y=sm, mode="lines", name=f"mean of {k}",
                                       line=dict(color="#08306b", width=3)))
    fig.update_xaxes(title="step")
    fig.update_yaxes(**_log_axis(dict(title="weighted MSE (log)"), losses))
    return _layout(fig, "training loss", 300, uirevision="loss")


def bucket_figure(buckets: list[float | None]) -> go.Figure:
    labels = [f"{10 * i}–{10 * (i + 1)}" for i in range(10)]          # short: level at 450 px, the unit in the title
    fig = go.Figure(go.Bar(x=labels, y=[b if b is not None else 0 for b in buckets]))
    fig.update_xaxes(title="timestep bucket (% of T)", type="category")
    fig.update_yaxes(title="MSE (running mean)")
    return _layout(fig, "loss per timestep bucket", 300)


def heatmap(z: np.ndarray, x_title: str, y_title: str, title: str, x=None, y=None,
            zrange: tuple[float, float] | None = None, text_format: str | None = None,
            top_down: bool = False, quantity: str = "signed", z_title: str = "", height: int = 320) -> go.Figure:
    """A heatmap whose colour scale fits what it shows (`quantity`):

    - "accuracy": a share in [0, 1] on a sequential scale fixed at 0-1 (raises ValueError outside it), so a
      93 % cell looks the same on every chart;
    - "count": a sequential scale from 0 to the largest count (raises ValueError on a negative count);
    - "signed" (default): a diverging scale centred on 0 (embeddings, features), or `zrange` for a fixed
      sequential one.

    String `x` / `y` are categories: every one gets its tick (Plotly would otherwise skip some), never a
    numeric axis. `text_format` (e.g. ".0%") prints each cell's value on it; `top_down` puts the first row on top.
    """
    z = np.asarray(z)
    if quantity == "accuracy":
        if z.size and (np.nanmin(z) < 0 or np.nanmax(z) > 1):
            raise ValueError(f"an accuracy heatmap needs values in [0, 1], got {np.nanmin(z):g} to {np.nanmax(z):g}")
        kw = dict(colorscale="Viridis", zmin=0.0, zmax=1.0, colorbar=dict(tickformat=".0%"))
        z_title = z_title or "accuracy"
    elif quantity == "count":
        if z.size and np.nanmin(z) < 0:
            raise ValueError(f"a count heatmap needs counts >= 0, got {np.nanmin(z):g}")
        kw = dict(colorscale="Viridis", zmin=0, zmax=max(1, float(np.nanmax(z)) if z.size else 1), colorbar={})
        z_title = z_title or "count"
    elif quantity == "signed":
        kw = (dict(colorscale="Viridis", zmin=zrange[0], zmax=zrange[1], colorbar={}) if zrange else
              dict(colorscale="RdBu", zmid=0, colorbar={}))
    else:
        raise ValueError(f"quantity must be 'accuracy', 'count' or 'signed', got {quantity!r}")
    kw["colorbar"].update(thickness=12, title=dict(text=z_title, side="right"))
    if text_format:
        kw.update(texttemplate=f"%{{z:{text_format}}}", textfont=dict(size=10))
    xaxis, yaxis = dict(title=x_title), dict(title=y_title)
    for axis, values in ((xaxis, x), (yaxis, y)):
        if values is not None and len(values) and all(isinstance(v, str) for v in values):
            axis.update(type="category", tickmode="array", tickvals=list(values), ticktext=list(values))
    if top_down:                                                        # the first row on top, as in a table
        yaxis.update(autorange="reversed")
    return go.Figure(go.Heatmap(z=z, x=x, y=y, **kw), layout=_fast_layout(title, height, xaxis=xaxis, yaxis=yaxis))


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


def place_labels(points: list[tuple[float, float]], labels: list[str], char_px: float = 6.5, line_px: float = 14,
                 gap_px: float = 9, bounds: tuple[float, float, float, float] | None = None
                 ) -> list[tuple[float, float]]:
    """Pixel offsets (dx, dy; y down) for a label beside each point so that no two labels cover each other or a
    point: greedily, in order of x, the first of a ring of candidate offsets (above, below, right, left, then
    further out) whose box is clear and inside `bounds` (x0, y0, x1, y1: where a label is not cut off). `points`
    are pixel positions of the points in the plot area."""
    rings = [(0, -1), (0, 1), (1, 0), (-1, 0), (1, -1), (-1, -1), (1, 1), (-1, 1)]
    boxes, out = [], [(0.0, 0.0)] * len(points)
    dots = [(x - 5, y - 5, x + 5, y + 5) for x, y in points]

    def clear(box):
        inside = bounds is None or (box[0] >= bounds[0] and box[1] >= bounds[1] and box[2] <= bounds[2]
                                    and box[3] <= bounds[3])
        return inside and all(box[2] <= b[0] or box[0] >= b[2] or box[3] <= b[1] or box[1] >= b[3]
                              for b in boxes + dots)

    for i in sorted(range(len(points)), key=lambda i: points[i]):
        w, h = char_px * len(labels[i]) + 4, line_px
        x, y = points[i]
        choice = None
        for reach in (1, 2, 3, 4):
            for ux, uy in rings:
                dx = ux * (w / 2 + gap_px) * (1 if ux == 0 else 1 + 0.4 * (reach - 1))
                dy = uy * (h / 2 + gap_px + (reach - 1) * line_px)
                box = (x + dx - w / 2, y + dy - h / 2, x + dx + w / 2, y + dy + h / 2)
                if clear(box):
                    choice = (dx, dy, box)
                    break
            if choice:
                break
        if choice is None:                                        # nowhere clear: straight above, furthest out
            dy = -(h / 2 + gap_px + 3 * line_px)
            choice = (0.0, dy, (x - w / 2, y + dy - h / 2, x + w / 2, y + dy + h / 2))
        out[i] = (choice[0], choice[1])
        boxes.append(choice[2])
    return out


def loss_vs_accuracy_figure(labels: list[str], losses: list[float], accuracies: list[float],
                            colours: list[str], width_px: int = PAIR_WIDTH) -> go.Figure:
    """Final training loss against judge accuracy, one labelled point per model (log x). Models cluster (similar
    losses and accuracies), so each name is placed by `place_labels` where it covers no other name, with a thin
    line to its point when it sits away from it."""
    pts = go.Scatter(x=losses, y=accuracies, mode="markers", marker=dict(size=10, color=colours),
                     hovertext=labels, hoverinfo="text+x+y", cliponaxis=False, name="models")
    xaxis = _log_axis(dict(title="final training loss (log)"), losses)
    y_range = [0, 1.12]
    height = 340
    plot_w, plot_h = width_px - 90, height - 120                 # the plot area inside the margins and axis labels
    positive = [v for v in losses if v and v > 0]
    lo, hi = (np.log10(min(positive)), np.log10(max(positive))) if positive else (0.0, 1.0)
    pad = 0.05 * ((hi - lo) or 1.0)
    lo, hi = lo - pad, hi + pad
    xs = [(np.log10(v) - lo) / (hi - lo) * plot_w if v and v > 0 else 0.0 for v in losses]
    ys = [(1 - (a - y_range[0]) / (y_range[1] - y_range[0])) * plot_h for a in accuracies]
    offsets = place_labels(list(zip(xs, ys)), labels, bounds=(-40, -30, plot_w + 8, plot_h + 10))
    annotations = [dict(x=np.log10(v) if v and v > 0 else 0, y=a, text=name, ax=dx, ay=dy, showarrow=True,
                        arrowhead=0, arrowwidth=1, arrowcolor="#999", standoff=6, font=dict(size=11))
                   for name, v, a, (dx, dy) in zip(labels, losses, accuracies, offsets)]
    xaxis["range"] = [lo, hi]
    return go.Figure([pts], layout=_fast_layout("final loss vs judge accuracy", height, xaxis=xaxis,
                                                annotations=annotations,
                                                yaxis=dict(title="judge accuracy", range=y_range,
                                                           tickformat=".0%")))


SAMPLER_LABELS = {"ddim": "DDIM", "ddpm": "DDPM", "dpmpp-2m": "DPM-Solver++(2M)", "unipc": "UniPC", "euler": "Euler",
                  "heun": "Heun"}


def sampler_label(name: str) -> str:
    """A registered sampler's name as the pages print it."""
    return SAMPLER_LABELS.get(name, name.upper())


def speed_quality_figure(rows: list[dict]) -> go.Figure:
    """Judge accuracy against seconds (log x) per sampler, one point per step count labelled with it; rows: dicts
    with sampler, steps, seconds, n and judge_accuracy (as engine precompute's sampler_speed measures them)."""
    traces = []
    for name in sorted({r["sampler"] for r in rows}):
        rs = sorted((r for r in rows if r["sampler"] == name), key=lambda r: r["seconds"])
        traces.append(go.Scatter(x=[r["seconds"] for r in rs], y=[r.get("judge_accuracy") for r in rs],
                                 mode="lines+markers+text", text=[str(r["steps"]) for r in rs],
                                 textposition="top center", cliponaxis=False, textfont=dict(size=11),
                                 name=f"{sampler_label(name)} (label: steps)",
                                 hovertext=[f"{sampler_label(name)}-{r['steps']}: {r['seconds']:.2f} s" for r in rs],
                                 hoverinfo="text+y"))
    n = rows[0]["n"] if rows else 0
    xaxis = _log_axis(dict(title=f"seconds for {n} digits (log scale)"), [r["seconds"] for r in rows])
    return go.Figure(traces, layout=_fast_layout("speed vs quality", 340, **_chance(0.1), xaxis=xaxis,
                                                 yaxis=dict(title="judge accuracy", range=[0, 1.12],
                                                            tickformat=".0%")))


def ablation_loss_figure(curves: dict[str, tuple[list[int], list[float]]], k: int = 25) -> go.Figure:
    """Each model's training loss as the running mean of `k` logged values (log y): curves {name: (steps, loss)}."""
    traces, values = [], []
    for name, (steps, loss) in curves.items():
        if not loss:
            continue
        m = min(k, len(loss))
        smooth = np.convolve(loss, np.ones(m) / m, mode="valid")
        values += [float(smooth.min()), float(smooth.max())]
        traces.append(go.Scatter(x=list(steps)[m - 1:], y=smooth, mode="lines", name=name))
    return go.Figure(traces, layout=_fast_layout(f"training loss (mean of {k} logged)", 340,
                                                 xaxis=dict(title="step"),
                                                 yaxis=_log_axis(dict(title="training loss (log)"), values)))


def class_probability_bars(probs, highlight: int | None, title: str, x_title: str = "digit",
                           y_title: str = "probability", height: int = 200) -> go.Figure:
    """One bar per class (0-9) of a probability vector on a 0-1 axis, the class `highlight` in green."""
    bar = go.Bar(x=[str(c) for c in range(len(probs))], y=list(np.asarray(probs, dtype=float)),
                 marker_color=["#2ca02c" if c == highlight else "#9aa5b1" for c in range(len(probs))])
    return go.Figure([bar], layout=_fast_layout(title, height, xaxis=dict(title=x_title, type="category"),
                                                yaxis=dict(title=y_title, range=[0, 1])))


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
              font_size: int = 10, x_title: str = "", y_title: str = "") -> go.Figure:
    """Tiles (N, 28, 28) uint8 in a grid of `cols` columns, `texts[i]` printed under tile i, `hovers[i]` on hover,
    an optional RGB frame per tile and a highlight box around tile `highlight`; `x_title` / `y_title` say what
    the columns and rows are (e.g. "rank by CLIPScore", "digit").

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
    xaxis = dict(title=x_title, range=[0, W], showgrid=False, zeroline=False, fixedrange=True, side="top", tickangle=0,
                 tickfont=dict(size=font_size), tickvals=xs[:cols] if col_labels else [], ticktext=col_labels or [],
                 constrain="domain", constraintoward="left")
    yaxis = dict(title=y_title, range=[H, 0], showgrid=False, zeroline=False, fixedrange=True, scaleanchor="x",
                 constrain="domain", constraintoward="top", tickvals=ys[::cols] if row_labels else [],
                 ticktext=row_labels or [], automargin=True)
    return go.Figure([image, markers], layout=dict(
        title=wrap_title(title), height=height,
        margin=dict(l=10, r=10, t=((60 if title else 24) if col_labels else (40 if title else 10))
                    + (20 if x_title else 0), b=6),
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
                   title: str, x_title: str, height: int = 420, marks: list[dict] | None = None,
                   y_title: str = "source") -> go.Figure:
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
                                                 yaxis=dict(title=y_title, autorange="reversed", automargin=True),
                                                 shapes=shapes, annotations=annotations))


# -- the Geometry lab: 2-D points, their paths and the learned field -----------------------------------------------
GEOMETRY_DATA = "rgba(120, 120, 120, 0.35)"      # the data, drawn behind whatever the model made of it


def _plane(extent: float, x_title: str = "x₁", y_title: str = "x₂") -> dict:
    """Square axes over [-extent, extent]² with equal units: a circle stays a circle at any chart width."""
    return dict(xaxis=dict(title=x_title, range=[-extent, extent], zeroline=False, constrain="domain"),
                yaxis=dict(title=y_title, range=[-extent, extent], zeroline=False, scaleanchor="x", scaleratio=1,
                           constrain="domain"))


def _xy(points) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(points, dtype=np.float32).reshape(-1, 2)
    return np.round(p[:, 0], 3), np.round(p[:, 1], 3)


def _segments(starts, ends) -> tuple[np.ndarray, np.ndarray]:
    """Line segments start -> end as one trace's x, y, separated by gaps (NaN): one trace instead of one per line."""
    starts, ends = np.asarray(starts, dtype=np.float32), np.asarray(ends, dtype=np.float32)
    gap = np.full((len(starts), 1), np.nan, dtype=np.float32)
    x = np.concatenate([starts[:, :1], ends[:, :1], gap], axis=1).ravel()
    y = np.concatenate([starts[:, 1:], ends[:, 1:], gap], axis=1).ravel()
    return x, y


def _polylines(paths) -> tuple[np.ndarray, np.ndarray]:
    """Paths (S + 1, K, 2) as one trace's x, y: each particle's path, separated by gaps (NaN)."""
    paths = np.asarray(paths, dtype=np.float32)
    k = paths.shape[1]
    per = np.concatenate([paths.transpose(1, 0, 2), np.full((k, 1, 2), np.nan, dtype=np.float32)], axis=1)
    return np.round(per[:, :, 0].ravel(), 3), np.round(per[:, :, 1].ravel(), 3)


def points_figure(layers: list[dict], title: str, extent: float = 3.0, height: int = 380) -> go.Figure:
    """Point clouds on the plane, one trace per layer {"name", "points" (N, 2), "colour", optional "size",
    "opacity", "symbol"}; the first layers are drawn first (put the data first, behind)."""
    traces = []
    for layer in layers:
        x, y = _xy(layer["points"])
        traces.append(go.Scatter(x=x, y=y, mode="markers", name=layer["name"], marker=dict(
            color=layer["colour"], size=layer.get("size", 4), opacity=layer.get("opacity", 0.8),
            symbol=layer.get("symbol", "circle")), hoverinfo="name"))
    return go.Figure(traces, layout=_fast_layout(title, height, **_plane(extent)))


def trajectory_figure(trajectory: np.ndarray, labels: list[str], title: str, background=None,
                      colours: list[str] | str = "#1f77b4", n_paths: int = 60, extent: float = 3.0,
                      height: int = 520) -> go.Figure:
    """Particles moving along their sampling paths, trajectory (S + 1, N, 2) with labels[k] naming state k
    (e.g. "t = 0.50"): the first n_paths paths drawn faintly, the particles at the last state, and a slider and
    a play button that move them through the states in the browser (Plotly animation frames, no server round
    trip). `background`: the data, grey, behind. No legend: the caption says what the colours are."""
    trajectory = np.asarray(trajectory, dtype=np.float32)
    last = len(trajectory) - 1
    traces = []
    if background is not None:
        bx, by = _xy(background)
        traces.append(go.Scatter(x=bx, y=by, mode="markers", name="data", hoverinfo="skip",
                                 marker=dict(color=GEOMETRY_DATA, size=3)))
    px, py = _polylines(trajectory[:, :n_paths])
    traces.append(go.Scatter(x=px, y=py, mode="lines", name="paths", hoverinfo="skip",
                             line=dict(color="rgba(31, 119, 180, 0.3)", width=1)))
    moving = len(traces)
    x, y = _xy(trajectory[last])
    traces.append(go.Scatter(x=x, y=y, mode="markers", name="particles", hoverinfo="skip",
                             marker=dict(color=colours, size=5, opacity=0.85)))
    frames = []
    for k in range(len(trajectory)):
        fx, fy = _xy(trajectory[k])
        frames.append(go.Frame(data=[go.Scatter(x=fx, y=fy)], traces=[moving], name=str(k)))
    still = dict(mode="immediate", frame=dict(duration=0, redraw=False), transition=dict(duration=0))
    # under the x axis title: the play button at the left, the slider beside it, its reading at its right end
    slider = dict(active=last, x=0.16, len=0.84, y=0, yanchor="top", pad=dict(t=62, b=0),
                  currentvalue=dict(prefix="showing ", xanchor="right", font=dict(size=13, color="#222")),
                  font=dict(size=1, color="rgba(0,0,0,0)"),          # one tick per state: no crowded tick labels
                  steps=[dict(label=labels[k], method="animate", args=[[str(k)], still])
                         for k in range(len(trajectory))])
    play = dict(type="buttons", showactive=False, x=0, xanchor="left", y=0, yanchor="top", pad=dict(t=88, r=10),
                buttons=[dict(label="▶ play", method="animate", args=[None, dict(
                    mode="immediate", fromcurrent=False, frame=dict(duration=max(30, 1500 // len(trajectory)),
                                                                    redraw=False), transition=dict(duration=0))])])
    layout = _fast_layout(title, height, showlegend=False, sliders=[slider], updatemenus=[play], **_plane(extent))
    layout["margin"] = dict(l=10, r=10, t=_top_margin(layout["title"]), b=130)
    return go.Figure(traces, layout=layout, frames=frames)


def quiver_figure(points: np.ndarray, vectors: np.ndarray, title: str, background=None, extent: float = 3.0,
                  height: int = 380, name: str = "field") -> go.Figure:
    """Arrows from each point (M, 2) along its vector (M, 2), drawn as line segments with two-stroke heads (one
    trace), over an optional grey `background` cloud. The caller scales the vectors to the length to draw."""
    points, vectors = np.asarray(points, dtype=np.float32), np.asarray(vectors, dtype=np.float32)
    tips = points + vectors
    length = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.maximum(length, 1e-9)
    head = np.minimum(0.35 * length, 0.12)                                     # head strokes: 35 % of the arrow
    traces = []
    if background is not None:
        bx, by = _xy(background)
        traces.append(go.Scatter(x=bx, y=by, mode="markers", name="noised data", hoverinfo="skip",
                                 marker=dict(color=GEOMETRY_DATA, size=3)))
    starts, ends = [points], [tips]
    for angle in (2.6, -2.6):                                                   # ±150° from the arrow's direction
        c, s = np.cos(angle), np.sin(angle)
        turned = np.stack([c * unit[:, 0] - s * unit[:, 1], s * unit[:, 0] + c * unit[:, 1]], axis=1)
        starts.append(tips)
        ends.append(tips + head * turned)
    x, y = _segments(np.concatenate(starts), np.concatenate(ends))
    traces.append(go.Scatter(x=np.round(x, 3), y=np.round(y, 3), mode="lines", name=name, hoverinfo="skip",
                             line=dict(color="#d62728", width=1.3)))
    return go.Figure(traces, layout=_fast_layout(title, height, **_plane(extent)))


def paths_figure(groups: list[dict], starts: np.ndarray, title: str, background=None, extent: float = 3.0,
                 height: int = 400) -> go.Figure:
    """Several samplers' paths from the same starting points (K, 2): groups [{"name", "paths" (S + 1, K, 2),
    "colour", optional "width"}], each drawn as lines with its end points marked, the first group at the bottom;
    the shared starts as black dots on top."""
    traces = []
    if background is not None:
        bx, by = _xy(background)
        traces.append(go.Scatter(x=bx, y=by, mode="markers", name="data", hoverinfo="skip",
                                 marker=dict(color=GEOMETRY_DATA, size=3)))
    for g in groups:
        px, py = _polylines(g["paths"])
        traces.append(go.Scatter(x=px, y=py, mode="lines", name=g["name"], legendgroup=g["name"], hoverinfo="skip",
                                 line=dict(color=g["colour"], width=g.get("width", 1.2))))
        ex, ey = _xy(np.asarray(g["paths"])[-1])
        traces.append(go.Scatter(x=ex, y=ey, mode="markers", name=f"{g['name']}: end", legendgroup=g["name"],
                                 showlegend=False, hoverinfo="skip",
                                 marker=dict(color=g["colour"], size=8, line=dict(color="white", width=1))))
    sx, sy = _xy(starts)
    traces.append(go.Scatter(x=sx, y=sy, mode="markers", name="shared start", hoverinfo="skip",
                             marker=dict(color="black", size=6)))
    return go.Figure(traces, layout=_fast_layout(title, height, **_plane(extent)))


def steps_fit_figure(steps: list[int], ratios: dict[str, list[float]], good: float, title: str,
                     colours: dict[str, str] | None = None, y_title: str = "distance to data (× a fresh draw's, log)",
                     floor_label: str = "1 = a fresh draw of the data") -> go.Figure:
    """Distance to the data (as a multiple of a fresh draw's) against the number of sampling steps, both on log
    axes, one line per sampler (`colours` by name); dotted lines at 1 (as close as a fresh draw of the data) and
    at `good`, labelled at opposite ends so they never print over each other."""
    colours = colours or {}
    traces = [go.Scatter(x=steps, y=r, mode="lines+markers", name=name, line=dict(color=colours.get(name)),
                         connectgaps=True) for name, r in ratios.items()]
    shapes, annotations = [], []
    for level, text, side in ((1.0, floor_label, "left"),
                              (good, f"good fit (≤ {good:g}×)", "right")):
        shapes.append(dict(type="line", xref="paper", x0=0, x1=1, y0=level, y1=level,
                           line=dict(color="grey", dash="dot")))
        annotations.append(dict(xref="paper", x=0 if side == "left" else 1, y=float(np.log10(level)), text=text,
                                showarrow=False, xanchor=side, yanchor="bottom" if side == "right" else "top",
                                font=dict(size=11, color="grey"), bgcolor="rgba(255,255,255,0.8)"))
    xaxis = dict(title="sampling steps (log scale)", type="log", tickvals=list(steps), ticktext=[str(s) for s in steps])
    values = [v for r in ratios.values() for v in r if v is not None and v > 0] + [0.9, good]
    yaxis = _log_axis(dict(title=y_title), values)
    yaxis.update(range=[float(np.log10(min(values))) - 0.05, float(np.log10(max(values))) + 0.05])
    return go.Figure(traces, layout=_fast_layout(title, 340, xaxis=xaxis, yaxis=yaxis, shapes=shapes,
                                                 annotations=annotations))


def guidance_figure(weights: list[float], spread: list[float], agreement: list[float], w_mark: float | None,
                    title: str) -> go.Figure:
    """Against the guidance weight w: the samples' spread within their class and how clearly they sit in their
    class (the share of nearest data points of that class), both relative to the data's (1 = as the data); the
    current w dashed."""
    traces = [go.Scatter(x=weights, y=spread, mode="lines+markers", name="spread within class"),
              go.Scatter(x=weights, y=agreement, mode="lines+markers", name="nearest data in its class")]
    shapes = [] if w_mark is None else [dict(type="line", x0=w_mark, x1=w_mark, yref="paper", y0=0, y1=1,
                                             line=dict(dash="dash", color="grey"))]
    shapes.append(dict(type="line", xref="paper", x0=0, x1=1, y0=1, y1=1, line=dict(color="grey", dash="dot")))
    top = max([1.0] + list(spread) + list(agreement))
    return go.Figure(traces, layout=_fast_layout(title, 340, shapes=shapes, xaxis=dict(title="guidance weight w"),
                                                 yaxis=dict(title="relative to the data (1 = as the data)",
                                                            range=[0, 1.1 * top])))
