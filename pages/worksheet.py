"""Worksheet: every prompt with a 'Show me' preset, the instructor's note, and the learner's answers."""
import time
from urllib.parse import urlencode

import streamlit as st

from ui import notes, roles
from ui.worksheet_content import PROMPTS

import ui  # noqa: E402

ui.ensure_frame()

st.title("Worksheet")
st.caption("Each 'Show me' opens the page with the settings that answer the prompt. Write your answers here "
           "and download them as Markdown.")
show_notes = roles.is_instructor() and st.toggle("Show instructor notes", key="worksheet.notes")

section = None
for p in PROMPTS:
    if p.section != section:
        section = p.section
        st.header(section)
    with st.container(border=True):
        c1, c2 = st.columns([5, 1])
        c1.markdown(f"**{p.number}** {p.text}")
        if c2.button("Show me", key=f"worksheet.show.{p.number}"):
            for name, value in p.preset.items():
                st.session_state[f"{p.namespace}.{name}"] = value
            st.switch_page(p.page, query_params={k: str(v) for k, v in p.preset.items()})
        if show_notes:
            st.info(notes.note(p.number) or p.note)
        st.text_area("Your answer", key=f"worksheet.answer.{p.number}", height=80, label_visibility="collapsed",
                     placeholder="Your answer…")

def _view_link(p) -> str:
    """Where the evidence for a prompt lives: the page's URL with the prompt's settings (opens the same view)."""
    page = p.page.split("/")[-1].removesuffix(".py")
    query = urlencode({k: v for k, v in p.preset.items()})
    return f"/{page}" + (f"?{query}" if query else "")


answers = "\n\n".join(f"## {p.number} {p.text}\n\nEvidence: [{p.page.split('/')[-1]}]({_view_link(p)})\n\n"
                      f"{st.session_state.get(f'worksheet.answer.{p.number}', '') or '_(no answer yet)_'}"
                      for p in PROMPTS)
st.download_button("Download my answers (Markdown)", f"# Diffusion Lab worksheet — {time.strftime('%Y-%m-%d')}\n\n{answers}\n",
                   file_name="diffusion-lab-answers.md", mime="text/markdown")
