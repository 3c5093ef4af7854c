"""A small drawing canvas (Streamlit components v2: inline HTML + JS, no extra package or download).

The learner draws white strokes on black, like MNIST; on every pen-up the canvas is sent as a PNG data URL.
"""
from __future__ import annotations

import base64

import streamlit as st

HTML = """
<div class="dl-canvas">
  <canvas width="280" height="280"></canvas>
  <button type="button">Clear</button>
</div>
"""
CSS = """
.dl-canvas canvas { background: #000; border-radius: 6px; touch-action: none; cursor: crosshair; width: 196px; height: 196px; }
.dl-canvas button { display: block; margin-top: 4px; }
"""
JS = """
export default function(component) {
  const { setStateValue, parentElement } = component;
  const canvas = parentElement.querySelector('canvas');
  const clear = parentElement.querySelector('button');
  const ctx = canvas.getContext('2d');
  const blank = () => { ctx.fillStyle = '#000'; ctx.fillRect(0, 0, canvas.width, canvas.height); };
  blank();
  ctx.lineCap = 'round'; ctx.lineJoin = 'round'; ctx.strokeStyle = '#fff'; ctx.lineWidth = 22;
  let drawing = false;
  const pos = (e) => { const r = canvas.getBoundingClientRect();
    return [(e.clientX - r.left) * canvas.width / r.width, (e.clientY - r.top) * canvas.height / r.height]; };
  const down = (e) => { drawing = true; const [x, y] = pos(e); ctx.beginPath(); ctx.moveTo(x, y);
    ctx.lineTo(x + 0.1, y + 0.1); ctx.stroke(); };
  const move = (e) => { if (!drawing) return; const [x, y] = pos(e); ctx.lineTo(x, y); ctx.stroke(); };
  const up = () => { if (!drawing) return; drawing = false; setStateValue('image', canvas.toDataURL('image/png')); };
  canvas.addEventListener('pointerdown', down);
  canvas.addEventListener('pointermove', move);
  window.addEventListener('pointerup', up);
  clear.onclick = () => { blank(); setStateValue('image', null); };
  return () => { window.removeEventListener('pointerup', up); };
}
"""

MAX_DATA_URL = 1_000_000     # characters; the 280x280 canvas's PNG is ~10-60 KB, the worst case ~420 KB in base64
PREFIX = "data:image/png;base64,"

_component = None


def png_from_data_url(url: object) -> bytes | None:
    """The PNG inside a canvas data URL, or None when there is none. The browser can send anything here: the
    length is bounded before base64 is decoded, and the image must pass the canvas's pixel budget (BadImage)."""
    from .widgets import CANVAS_MAX_PIXELS, BadImage, open_budgeted

    if not isinstance(url, str) or not url.startswith(PREFIX):
        return None
    if len(url) > MAX_DATA_URL:
        raise BadImage(f"the canvas sent {len(url):,} characters; a drawing is at most {MAX_DATA_URL:,}")
    try:
        png = base64.b64decode(url[len(PREFIX):], validate=True)
    except ValueError:
        raise BadImage("the canvas sent data that is not base64") from None
    open_budgeted(png, CANVAS_MAX_PIXELS)       # the header check and a small decode; raises BadImage
    return png


def draw_digit(key: str) -> bytes | None:
    """Show the canvas; returns the drawing as PNG bytes once something has been drawn, else None."""
    from .widgets import BadImage

    global _component
    if _component is None:
        _component = st.components.v2.component("diffusion_lab_canvas", html=HTML, css=CSS, js=JS)
    result = _component(key=key, on_image_change=lambda: None)
    try:
        return png_from_data_url(getattr(result, "image", None))
    except BadImage as e:
        st.warning(f"The drawing cannot be used: {e}. Clear the canvas and draw again.")
        return None
