"""One value in the browser's localStorage, read (and written or cleared) through a tiny inline component.

Used for what must outlive a Streamlit session yet stay with one browser: the workbook's anonymous id
(ui/workbook.py) and the instructor's signed token (ui/roles.py). The first run of a page visit returns None;
the browser then reports the value and the page reruns with it.
"""
from __future__ import annotations

import streamlit as st

JS = """
export default function(component) {
  const { data, setStateValue } = component;
  const KEY = data.name;
  try {
    if (data.set) { localStorage.setItem(KEY, data.set); }
    if (data.clear) { localStorage.removeItem(KEY); }
  } catch (e) {}
  let value = null;
  try { value = localStorage.getItem(KEY); } catch (e) {}
  if (data.make_id && !(value && /^[0-9a-f]{32}$/.test(value))) {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);          // available over plain HTTP too, unlike crypto.randomUUID
    value = Array.from(bytes, b => b.toString(16).padStart(2, '0')).join('');
    try { localStorage.setItem(KEY, value); } catch (e) {}
  }
  setStateValue('value', value);
}
"""
_component = None


def stored(name: str, key: str, *, set: str | None = None, clear: bool = False, make_id: bool = False) -> str | None:
    """The browser's localStorage[name] (None until it has reported). `set` stores a value first, `clear` removes
    it, `make_id` creates a random 32-hex-digit id when there is none. `key`: the widget key of this use."""
    global _component
    if _component is None:
        _component = st.components.v2.component("diffusion_lab_storage", html="<span></span>", js=JS)
    result = _component(key=key, data={"name": name, "set": set, "clear": clear, "make_id": make_id},
                        on_value_change=lambda: None)
    value = getattr(result, "value", None)
    return value if isinstance(value, str) else None
