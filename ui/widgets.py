"""Reusable widgets and image helpers for the pages."""
from __future__ import annotations

import hashlib
import io
import threading
from collections import OrderedDict

import numpy as np
import streamlit as st
import torch
from PIL import Image

from . import pins, resources, state

MAX_UPLOAD_BYTES = 5 * 2**20     # as .streamlit/config.toml's server.maxUploadSize
MAX_PIXELS = 16_000_000          # a 12 MP phone photo of a digit fits; the decoded RGBA image is at most 64 MB
CANVAS_MAX_PIXELS = 1_000_000    # the drawing canvas sends 280x280; anything much larger is not from it
WORK_SIDE = 512                  # images are reduced to this many pixels a side right after decoding
FORMATS = ["PNG", "JPEG", "GIF", "BMP", "WEBP"]


def to_display(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """[-1, 1] image(s) -> uint8 (H, W) or (N, H, W), 0 = black background, 255 = white ink."""
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if a.dtype == np.uint8:
        return a
    a = np.squeeze(a, axis=-3) if a.ndim >= 3 and a.shape[-3] == 1 else a
    return ((np.clip(a, -1, 1) + 1) * 127.5).round().astype(np.uint8)


def mosaic(images: np.ndarray, cols: int, scale: int = 3, pad: int = 2) -> np.ndarray:
    """(N, H, W) uint8 -> one tiled, nearest-upscaled uint8 image (one PNG for the browser, not N)."""
    n, h, w = images.shape
    rows = max(1, -(-n // cols))
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad), 80, dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        out[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = images[i]
    return np.kron(out, np.ones((scale, scale), dtype=np.uint8))


def number_input(where, label: str, min_value, max_value, *, key: str, **kwargs):
    """where.number_input(...) whose default is the value the session already holds for `key` (clamped to the
    range). Streamlit's number input can fall back to its default during a rerun race (streamlit#9056: seen
    here as a preset's digit 7 or a clicked tile's class shown as 0 while the page reran on the browser's
    report of its workbook id); with the held value as the default, that fallback changes nothing. Streamlit
    keeps using the session's value whenever it has one."""
    if key in st.session_state and st.session_state[key] is not None:
        kwargs["value"] = type(min_value)(min(max(st.session_state[key], min_value), max_value))
    return where.number_input(label, min_value, max_value, key=key, **kwargs)


def show(img: np.ndarray, caption: str | None = None, scale: int = 8, width: int | None = None) -> None:
    big = np.kron(img, np.ones((scale, scale), dtype=np.uint8)) if img.ndim == 2 else img
    pins.image(st, big, caption=caption, output_format="PNG", width=width or "content")


class BadImage(ValueError):
    """An upload that cannot be turned into a digit; the message says why."""


def open_budgeted(data: bytes, max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_UPLOAD_BYTES) -> Image.Image:
    """Image file bytes -> its first frame, decoded and reduced to at most WORK_SIDE pixels a side.

    The pixel budget is checked from the header, before anything is decoded: a 180 KB PNG can declare 6300x6300
    pixels (159 MB decoded, 1.3 GB more as a float64 copy). JPEGs decode straight at a reduced scale (draft), the
    rest is reduced right after decoding, so later steps never see a large image. Only PNG, JPEG, GIF, BMP and
    WebP are opened. Raises BadImage with the size and the limit.
    """
    if len(data) == 0:
        raise BadImage("the file is empty")
    if len(data) > max_bytes:
        raise BadImage(f"the file is {len(data) / 2**20:.1f} MB; the limit is {max_bytes / 2**20:g} MB")
    try:
        im = Image.open(io.BytesIO(data), formats=FORMATS)     # lazy: reads the header only
    except Image.DecompressionBombError:
        raise BadImage(f"the image declares more pixels than PIL will open; the limit is {max_pixels / 1e6:g} MP: "
                       "scale it down (a digit needs only 28x28)") from None
    except Exception as e:  # PIL raises many types for non-images
        raise BadImage(f"this is not an image PIL can read ({type(e).__name__}); use PNG, JPEG, GIF, BMP or WebP") \
            from None
    w, h = im.size
    if w * h > max_pixels:
        raise BadImage(f"the image is {w}x{h} pixels ({w * h / 1e6:.1f} MP); the limit is {max_pixels / 1e6:g} MP. "
                       "Crop or scale it down (a digit needs only 28x28) and try again")
    if w < 8 or h < 8:
        raise BadImage(f"the image is only {w}x{h} pixels; draw or upload at least 8x8")
    try:
        if im.format == "JPEG":
            im.draft("L", (WORK_SIDE, WORK_SIDE))               # decode at 1/2, 1/4 or 1/8 scale, in grey
        im.load()                                               # the first frame only, for animated files
        if im.mode in ("P", "1", "LA", "PA", "CMYK", "YCbCr", "RGBX"):
            im = im.convert("RGBA" if im.mode in ("P", "LA", "PA") else "L")
        im.thumbnail((WORK_SIDE, WORK_SIDE))
    except Exception as e:  # truncated or corrupt data surfaces only when decoding
        raise BadImage(f"this is not an image PIL can read ({type(e).__name__}); use PNG, JPEG, GIF, BMP or WebP") \
            from None
    return im


def image_to_digit(data: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Any reasonable image file -> (28, 28) uint8 digit, white ink on black (MNIST's convention).

    Accepts PNG/JPG/GIF/BMP/WebP up to `max_pixels` (open_budgeted), RGBA (alpha flattened), 16-bit, palette;
    animated files use their first frame; dark-on-light drawings are inverted. Raises BadImage with a reason.
    """
    im = open_budgeted(data, max_pixels)                        # at most WORK_SIDE a side from here on
    if im.mode == "RGBA":
        rgba = np.asarray(im)
        opaque = rgba[..., 3] > 127
        # transparent pixels are background: put them behind the ink in the colour that contrasts with it
        ink_light = opaque.any() and rgba[opaque][:, :3].mean() > 127
        bg = Image.new("RGBA", im.size, (0, 0, 0, 255) if ink_light else (255, 255, 255, 255))
        im = Image.alpha_composite(bg, im)
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        rng = a.max() - a.min()
        im = Image.fromarray(((a - a.min()) / (rng if rng else 1) * 255).astype(np.uint8))
    g = np.asarray(im.convert("L").resize((28, 28), Image.LANCZOS), dtype=np.float64)
    border = np.concatenate([g[0], g[-1], g[:, 0], g[:, -1]])
    if border.mean() > 127:                  # light background: invert to white ink on black
        g = 255 - g
    lo, hi = np.percentile(g, 2), g.max()
    if hi - lo < 10:
        raise BadImage("the image is blank (no contrast): nothing to use as a digit")
    return center_like_mnist((np.clip((g - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8))


_DIGITS: OrderedDict[bytes, np.ndarray | str] = OrderedDict()   # sha256 -> digit, or the refusal's reason
_DIGITS_LOCK = threading.Lock()
DIGIT_CACHE_ENTRIES = 64


def cached_digit(data: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """image_to_digit, decoded once per distinct file for the whole server: results and refusals are kept by
    the bytes' sha256 (not the bytes), the DIGIT_CACHE_ENTRIES most recent. Every rerun of a page with an upload
    or a drawing asks again. Returns a copy the caller may change."""
    digest = hashlib.sha256(data).digest() + max_pixels.to_bytes(8, "little")
    with _DIGITS_LOCK:
        hit = _DIGITS.get(digest)
        if hit is not None:
            _DIGITS.move_to_end(digest)
    if hit is None:
        try:
            hit = image_to_digit(data, max_pixels)
        except BadImage as e:
            hit = str(e)
        with _DIGITS_LOCK:
            _DIGITS[digest] = hit
            while len(_DIGITS) > DIGIT_CACHE_ENTRIES:
                _DIGITS.popitem(last=False)
    if isinstance(hit, str):
        raise BadImage(hit)
    return hit.copy()


def center_like_mnist(img: np.ndarray) -> np.ndarray:
    """MNIST's own preprocessing: the ink's bounding box scaled to fit 20x20 (aspect kept), placed in 28x28
    with its centre of mass at the centre. (28, 28) uint8 in, (28, 28) uint8 out."""
    ys, xs = np.nonzero(img > 40)
    if len(ys) == 0:
        return img
    crop = img[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    h, w = crop.shape
    s = 20.0 / max(h, w)
    crop = np.asarray(Image.fromarray(crop).resize((max(1, round(w * s)), max(1, round(h * s))), Image.LANCZOS))
    out = np.zeros((28, 28), dtype=np.float64)
    h, w = crop.shape
    out[(28 - h) // 2:(28 - h) // 2 + h, (28 - w) // 2:(28 - w) // 2 + w] = crop
    total = out.sum()
    if total > 0:
        yy, xx = np.mgrid[0:28, 0:28]
        dy, dx = int(round(13.5 - (out * yy).sum() / total)), int(round(13.5 - (out * xx).sum() / total))
        out = np.roll(np.roll(out, dy, axis=0), dx, axis=1)
    return out.clip(0, 255).astype(np.uint8)


def pick_real_digit(digit: int, index: int) -> tuple[torch.Tensor, str]:
    """A held-out real digit of class `digit` (index wraps): (1, 1, 28, 28) in [-1, 1] and a caption."""
    _, held = resources.get_data()
    xs = held.of_class(digit)
    i = index % xs.shape[0]
    return xs[i:i + 1], f"held-out digit {digit} #{i}"


def model_sidebar() -> str | None:
    """The model picker (in the sidebar frame). Returns the chosen checkpoint path or None."""
    choices = resources.model_choices()
    if not choices:
        st.sidebar.warning("No diffusion model yet: train one on the Training page.")
        st.session_state["app.model_path"] = None
        return None
    labels = list(choices)
    wanted = st.query_params.get("model")
    idx = next((i for i, lab in enumerate(labels) if choices[lab].endswith(f"/{wanted}")), 0) if wanted else 0
    label = st.sidebar.selectbox("Model", labels, index=idx, key="app.model",
                                 help="Shipped models and your training runs (checkpoints/runs)")
    path = choices[label]
    st.query_params["model"] = path.rstrip("/").split("/")[-1]
    st.session_state["app.model_path"] = path
    return path


def digit_source(ns: str, default_digit: int = 3) -> tuple[torch.Tensor, str]:
    """Data-set picker or upload; returns (1, 1, 28, 28) in [-1, 1] and a caption. Bad uploads get st.error."""
    source = st.radio("Digit source", ["data set", "draw", "upload"], horizontal=True, key=f"{ns}.source")
    if source == "draw":
        from .canvas import draw_digit

        png = draw_digit(f"{ns}.canvas")
        if png is not None:
            try:
                d = cached_digit(png, CANVAS_MAX_PIXELS)
                return torch.from_numpy(d).float().div(127.5).sub(1).view(1, 1, 28, 28), "your drawing"
            except BadImage as e:
                st.caption(f"({e})")
        st.caption("Draw a digit above; until then a data-set digit stands in.")
        return pick_real_digit(default_digit, 0)
    if source == "upload":
        up = st.file_uploader(f"PNG / JPG of one digit (≤ {MAX_UPLOAD_BYTES // 2**20} MB, "
                              f"≤ {MAX_PIXELS // 10**6} MP)", type=["png", "jpg", "jpeg", "gif", "bmp", "webp"],
                              key=f"{ns}.upload")
        if up is not None:
            try:
                d = cached_digit(up.getvalue())
                return torch.from_numpy(d).float().div(127.5).sub(1).view(1, 1, 28, 28), state.escape_md(up.name)
            except BadImage as e:
                st.error(f"Cannot use this file: {e}.")
        st.info("Showing a data-set digit until a usable image is uploaded.")
        return pick_real_digit(default_digit, 0)
    c1, c2 = st.columns(2)
    st.session_state.setdefault(f"{ns}.digit", default_digit)
    digit = number_input(c1, "class", 0, 9, key=f"{ns}.digit")
    idx = number_input(c2, "example", 0, 99, key=f"{ns}.idx")
    return pick_real_digit(int(digit), int(idx))


def framed_mosaic(images: np.ndarray, kept: np.ndarray, cols: int, scale: int = 3) -> np.ndarray:
    """RGB mosaic with a green frame around kept digits and a red one around rejected ones."""
    n, h, w = images.shape
    frame, gap = 2, 2
    th, tw = h + 2 * frame + gap, w + 2 * frame + gap
    rows = max(1, -(-n // cols))
    out = np.full((rows * th + gap, cols * tw + gap, 3), 245, dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        y, x = gap + r * th, gap + c * tw
        out[y:y + h + 2 * frame, x:x + w + 2 * frame] = (40, 170, 60) if kept[i] else (200, 60, 60)
        out[y + frame:y + frame + h, x + frame:x + frame + w] = images[i][..., None]
    return np.kron(out, np.ones((scale, scale, 1), dtype=np.uint8))


def png_to_mask(png: bytes) -> np.ndarray:
    """A painted canvas (white = erase) -> (1, 1, 28, 28) float32 mask with 1 = known pixel, 0 = to fill.

    The bytes come from the browser, so they pass the canvas's pixel budget first (raises BadImage)."""
    im = open_budgeted(png, CANVAS_MAX_PIXELS)
    g = np.asarray(im.convert("L").resize((28, 28), Image.BILINEAR), dtype=np.float32)
    return (g < 64).astype(np.float32).reshape(1, 1, 28, 28)
