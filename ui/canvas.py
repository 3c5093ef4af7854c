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

_component = None


def draw_digit(key: str) -> bytes | None:
    """Show the canvas; returns the drawing as PNG bytes once something has been drawn, else None."""
    global _component
    if _component is None:
        _component = st.components.v2.component("diffusion_lab_canvas", html=HTML, css=CSS, js=JS)
    result = _component(key=key, on_image_change=lambda: None)
    url = getattr(result, "image", None)
    if not url or not isinstance(url, str) or not url.startswith("data:image/png;base64,"):
        return None
    try:
        return base64.b64decode(url.split(",", 1)[1], validate=True)
    except ValueError:
        return None
