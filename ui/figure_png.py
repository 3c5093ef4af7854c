"""A figure on screen as a file a teacher can open: a PNG drawn by matplotlib from the Plotly figure's own data, and
the numbers it plots as CSV.

Plotly renders in the browser; turning a figure into an image on the server would need a headless Chrome (Kaleido),
which a learner's laptop may not have and the dashboard must not download. Every trace type the dashboard's figure
builders use (ui/figures.py: Scatter, Scattergl, Bar, Box, Heatmap, Image) and the layout parts they set (title,
axis titles, log and category axes, ranges, percentage ticks, reference lines, annotations, a PNG layer) are redrawn
here; tests/test_figures.py converts every builder's figure. The PNG is a faithful plot of the same numbers, not a
pixel copy of the browser's.
"""
from __future__ import annotations

import base64
import csv
import io
import re

import numpy as np

_TAG = re.compile(r"<[^>]+>")


def plain(text) -> str:
    """Plotly title or label markup as plain text: <br> as a line break, other tags dropped."""
    return _TAG.sub("", str(text or "").replace("<br>", "\n"))


def colour(c, default=None):
    """A Plotly colour (#hex, a name, rgb(...), rgba(...)) as something matplotlib takes (`default` when unset:
    None lets matplotlib take the next colour of its cycle, as Plotly does)."""
    if c is None:
        return default
    s = str(c).strip()
    m = re.fullmatch(r"rgba?\(([^)]*)\)", s)
    if m:
        parts = [float(p) for p in m.group(1).split(",")]
        rgb = [p / 255 for p in parts[:3]]
        return (*rgb, parts[3] if len(parts) > 3 else 1.0)
    return s


def _colours(c, n, default):
    if isinstance(c, (list, tuple, np.ndarray)):
        return [colour(v, default) for v in c]
    return [colour(c, default)] * n


def _transparent(c) -> bool:
    return isinstance(c, tuple) and len(c) == 4 and c[3] == 0


def _array(v):
    return None if v is None else list(v) if not isinstance(v, np.ndarray) else v.tolist()


def _scatter(ax, t) -> None:
    x, y = _array(t.x), _array(t.y)
    if y is None:
        return
    x = list(range(len(y))) if x is None else x
    mode = t.mode or "lines+markers"
    line_colour = colour(t.line.color if t.line else None)
    marker_colour = t.marker.color if t.marker else None
    name = t.name if t.showlegend is not False and t.name else None
    pts = [(a, b) for a, b in zip(x, y) if a is not None and b is not None]
    if not pts:
        return
    px, py = zip(*pts)
    if "lines" in mode:
        dash = {"dash": "--", "dot": ":", "dashdot": "-."}.get(t.line.dash if t.line else None, "-")
        (drawn,) = ax.plot(px, py, linestyle=dash, color=line_colour, label=name,
                           linewidth=(t.line.width or 2) * 0.75 if t.line else 1.5)
        line_colour = drawn.get_color()                 # the markers, error bars take the line's colour
        name = None
    if "markers" in mode:
        cs = _colours(marker_colour if marker_colour is not None else line_colour, len(px), line_colour)
        if not all(_transparent(c) for c in cs):
            size = t.marker.size if t.marker and isinstance(t.marker.size, (int, float)) else 6
            one = None if cs[0] is None else [cs[0]]
            ax.scatter(px, py, c=cs[:len(px)] if len(set(map(str, cs))) > 1 and len(cs) >= len(px) else one,
                       s=size ** 2 * 0.6, label=name, zorder=3)
    for err, axis in ((t.error_y, "y"), (t.error_x, "x")):
        if err is not None and err.array is not None:
            hi = np.asarray(err.array, dtype=float)
            lo = np.asarray(err.arrayminus if err.arrayminus is not None else err.array, dtype=float)
            kw = {f"{axis}err": [lo, hi]}
            ax.errorbar(x, y, fmt="none", ecolor=colour(err.color, line_colour), **kw)
    if "text" in mode and t.text is not None:
        texts = t.text if isinstance(t.text, (list, tuple, np.ndarray)) else [t.text] * len(x)
        positions = t.textposition if isinstance(t.textposition, (list, tuple)) else [t.textposition] * len(x)
        for a, b, s, pos in zip(x, y, texts, positions):
            if a is not None and b is not None and s:
                below = str(pos or "").startswith("bottom")
                ax.annotate(plain(s), (a, b), textcoords="offset points", xytext=(0, -10 if below else 6),
                            ha="center", va="top" if below else "bottom", fontsize=8)


def _bar(ax, t) -> None:
    x, y = _array(t.x), _array(t.y)
    horizontal = t.orientation == "h"
    cats, vals = (y, x) if horizontal else (x, y)
    if vals is None:
        return
    cats = list(cats if cats is not None else range(len(vals)))
    vals = [0 if v is None else v for v in vals]
    numeric = all(isinstance(c, (int, float)) for c in cats) and len(cats) > 1
    width = float(np.min(np.diff(sorted(cats)))) * 0.9 if numeric else 0.8     # a histogram's bins touch
    cats = cats if numeric else [str(c) for c in cats]
    cs = _colours(t.marker.color if t.marker else None, len(vals), None)
    draw = ax.barh if horizontal else ax.bar
    bars = draw(cats, vals, width, color=None if cs[0] is None else cs[:len(vals)] if len(cs) >= len(vals) else cs[0],
                label=t.name if t.name and t.showlegend is not False else None)
    if t.text is not None:
        texts = t.text if isinstance(t.text, (list, tuple, np.ndarray)) else [t.text] * len(vals)
        ax.bar_label(bars, labels=[plain(s) for s in texts], fontsize=8)


def _box(ax, t, position: int) -> float:
    values = _array(t.x if t.orientation == "h" else t.y) or []
    values = [v for v in values if v is not None]
    c = colour(t.marker.color if t.marker else None)
    if values:
        ax.boxplot([values], positions=[position], orientation="horizontal" if t.orientation == "h" else "vertical",
                   widths=0.5, showfliers=False, boxprops=dict(color=c), medianprops=dict(color=c))
        jitter = np.random.default_rng(position).uniform(-0.2, 0.2, len(values)) + position
        xy = (values, jitter) if t.orientation == "h" else (jitter, values)
        ax.scatter(*xy, s=6, color=c, alpha=0.5)
    return position


def _heatmap(ax, t) -> None:
    from matplotlib.colors import LinearSegmentedColormap

    z = np.asarray(t.z, dtype=float)
    cmap = (LinearSegmentedColormap.from_list("plotly", [(float(p), colour(c)) for p, c in t.colorscale])
            if t.colorscale else "viridis")                      # Plotly expands a named scale into stops
    zmin, zmax = t.zmin, t.zmax
    if t.zmid is not None and z.size:
        lim = float(np.nanmax(np.abs(z - t.zmid))) or 1.0
        zmin, zmax = t.zmid - lim, t.zmid + lim
    im = ax.imshow(z, aspect="auto", cmap=cmap, vmin=zmin, vmax=zmax, origin="lower", interpolation="nearest")
    for values, setter, n in ((t.x, ax.set_xticks, z.shape[1] if z.ndim == 2 else 0),
                              (t.y, ax.set_yticks, z.shape[0])):
        if values is not None and len(values) == n:
            setter(range(n), [str(v) for v in values])
    bar = ax.figure.colorbar(im, ax=ax, fraction=0.05)
    if t.colorbar and t.colorbar.title and t.colorbar.title.text:
        bar.set_label(plain(t.colorbar.title.text))
    if t.texttemplate:
        fmt = re.search(r"%\{z:([^}]*)\}", t.texttemplate)
        spec = fmt.group(1) if fmt else ".2g"
        lo, hi = im.get_clim()
        for (i, j), v in np.ndenumerate(z):
            if np.isfinite(v):                   # dark text on the light end of the scale, white on the dark end
                ax.text(j, i, format(v, spec), ha="center", va="center", fontsize=7,
                        color="black" if v > lo + 0.6 * (hi - lo) else "white")


def _image(ax, t) -> None:
    from PIL import Image

    if t.source:
        rgb = np.asarray(Image.open(io.BytesIO(base64.b64decode(t.source.split(",", 1)[1]))).convert("RGB"))
    else:
        rgb = np.asarray(t.z, dtype=np.uint8)
    h, w = rgb.shape[:2]
    x0, y0, dx, dy = t.x0 or 0, t.y0 or 0, t.dx or 1, t.dy or 1
    ax.imshow(rgb, extent=(x0, x0 + w * dx, y0 + h * dy, y0), interpolation="nearest")


def _axis(ax, which: str, axis, heatmap: bool) -> None:
    from matplotlib.ticker import PercentFormatter

    set_label, set_scale, set_lim = ((ax.set_xlabel, ax.set_xscale, ax.set_xlim) if which == "x"
                                     else (ax.set_ylabel, ax.set_yscale, ax.set_ylim))
    if axis.title and axis.title.text:
        set_label(plain(axis.title.text))
    log = axis.type == "log"
    if log:
        set_scale("log")
    if axis.range is not None and not heatmap:
        lo, hi = axis.range
        if log:
            lo, hi = 10 ** lo, 10 ** hi
        set_lim(lo, hi)
    elif axis.autorange == "reversed":
        (ax.invert_xaxis if which == "x" else ax.invert_yaxis)()
    if axis.tickvals is not None and not heatmap and axis.type != "category":
        labels = axis.ticktext if axis.ticktext is not None else [f"{v:g}" for v in axis.tickvals]
        (ax.set_xticks if which == "x" else ax.set_yticks)(list(axis.tickvals), [plain(s) for s in labels])
    if axis.tickformat and axis.tickformat.endswith("%"):
        (ax.xaxis if which == "x" else ax.yaxis).set_major_formatter(PercentFormatter(1.0, decimals=0))


def _decorations(ax, layout) -> None:
    from matplotlib.patches import Rectangle

    for s in layout.shapes or []:
        c = colour(s.line.color if s.line else None, "grey")
        style = {"dash": "--", "dot": ":"}.get(s.line.dash if s.line else None, "-")
        if s.type == "line":
            if s.xref == "paper":
                ax.axhline(s.y0, color=c, linestyle=style, linewidth=1)
            elif s.yref == "paper":
                ax.axvline(s.x0, color=c, linestyle=style, linewidth=1)
            else:
                ax.plot([s.x0, s.x1], [s.y0, s.y1], color=c, linestyle=style, linewidth=1)
        elif s.type == "rect" and s.xref != "paper" and s.yref != "paper":
            ax.add_patch(Rectangle((min(s.x0, s.x1), min(s.y0, s.y1)), abs(s.x1 - s.x0), abs(s.y1 - s.y0),
                                   fill=False, edgecolor=c, linewidth=s.line.width or 1 if s.line else 1))
    for a in layout.annotations or []:
        if not a.text:
            continue
        xpaper, ypaper = a.xref == "paper", a.yref == "paper"
        x, y = a.x if a.x is not None else 0, a.y if a.y is not None else 0
        if not xpaper and layout.xaxis.type == "log":
            x = 10 ** x                                  # Plotly places annotations on a log axis by log10
        if not ypaper and layout.yaxis.type == "log":
            y = 10 ** y
        transform = (ax.transAxes if xpaper and ypaper else ax.get_xaxis_transform() if ypaper
                     else ax.get_yaxis_transform() if xpaper else ax.transData)
        style = dict(fontsize=7, color=colour(a.font.color if a.font else None, "black"))
        if a.showarrow and (a.ax or a.ay):                # a label set off from its point, a line back to it
            ax.annotate(plain(a.text), (x, y), xycoords=transform, textcoords="offset points",
                        xytext=(0.75 * (a.ax or 0), -0.75 * (a.ay or 0)), ha="center", va="center",
                        arrowprops=dict(arrowstyle="-", color="#999", lw=0.6), **style)
            continue
        ax.text(x, y, plain(a.text), transform=transform,
                ha={"left": "left", "right": "right"}.get(a.xanchor, "center"),
                va={"top": "top", "bottom": "bottom"}.get(a.yanchor, "center"), **style)


def plotly_png(fig, width_in: float = 8.0) -> bytes:
    """The figure redrawn by matplotlib as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    height = fig.layout.height or 400
    out = Figure(figsize=(width_in, max(3.0, height / 80)), dpi=110)
    ax = out.subplots()
    heatmap = False
    box_names = []
    for t in fig.data:
        if t.visible in (False, "legendonly"):
            continue
        kind = t.type
        if kind in ("scatter", "scattergl"):
            _scatter(ax, t)
        elif kind == "bar":
            _bar(ax, t)
        elif kind == "box":
            box_names.append(plain(t.name or f"group {len(box_names) + 1}"))
            _box(ax, t, len(box_names) - 1)
        elif kind == "heatmap":
            heatmap = True
            _heatmap(ax, t)
        elif kind == "image":
            _image(ax, t)
    if box_names:
        horizontal = fig.data[0].orientation == "h"
        (ax.set_yticks if horizontal else ax.set_xticks)(range(len(box_names)), box_names)
    layout = fig.layout
    _axis(ax, "x", layout.xaxis, heatmap)
    _axis(ax, "y", layout.yaxis, heatmap)
    if layout.yaxis.scaleanchor == "x":
        ax.set_aspect("equal")
    _decorations(ax, layout)
    if layout.title and layout.title.text:
        ax.set_title(plain(layout.title.text), fontsize=11)
    handles, labels = ax.get_legend_handles_labels()
    if labels:
        ax.legend(handles, labels, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18),
                  ncol=min(4, len(labels)), frameon=False)
    buf = io.BytesIO()
    out.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def plotly_numbers(fig, max_rows: int = 20_000) -> str:
    """The numbers the figure plots, as CSV: one row per point (trace, x, y, text) or per heatmap cell
    (trace, x, y, z). Images carry pixels, not numbers: only their hover texts (if any) are listed."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["trace", "x", "y", "value", "label"])
    rows = 0
    for i, t in enumerate(fig.data):
        name = plain(t.name) if t.name else f"trace {i + 1}"
        if t.type == "heatmap" and t.z is not None:
            z = np.asarray(t.z, dtype=float)
            xs = list(t.x) if t.x is not None else list(range(z.shape[1]))
            ys = list(t.y) if t.y is not None else list(range(z.shape[0]))
            for (r, c), v in np.ndenumerate(z):
                w.writerow([name, xs[c], ys[r], f"{v:.6g}", ""])
                rows += 1
        elif t.type in ("scatter", "scattergl", "bar", "box"):
            if t.type == "scatter" and t.marker and _transparent(colour(t.marker.color)):
                continue                       # click targets (tile_grid), not data
            x, y = _array(t.x), _array(t.y)
            n = max(len(x or []), len(y or []))
            texts = t.hovertext if t.hovertext is not None else t.text
            texts = texts if isinstance(texts, (list, tuple, np.ndarray)) else [texts] * n
            for j in range(n):
                w.writerow([name, x[j] if x and j < len(x) else "", y[j] if y and j < len(y) else "", "",
                            plain(texts[j]) if j < len(texts) and texts[j] is not None else ""])
                rows += 1
        if rows >= max_rows:
            w.writerow(["(cut)", "", "", "", f"more than {max_rows:,} rows"])
            break
    return buf.getvalue()


def image_png(array) -> bytes:
    """An image shown with st.image (a uint8 or [0, 1] float array, or PIL image) as PNG bytes."""
    from PIL import Image

    if isinstance(array, Image.Image):
        img = array
    else:
        a = np.asarray(array)
        if a.dtype != np.uint8:
            a = np.clip(a * 255 if a.max() <= 1.0 else a, 0, 255).astype(np.uint8)
        img = Image.fromarray(a)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()
