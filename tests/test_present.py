"""Home's start-here path and the instructor's "Present the worksheet" mode (ui/present.py), driven with AppTest
through the dashboard's frame (conftest's framed_app: present mode lives in its sidebar)."""
from pathlib import Path

import pytest

pytest.importorskip("streamlit")

ROOT = Path(__file__).resolve().parent.parent
ORDER = ["forward_process", "denoising", "architecture", "training", "clip_evaluation", "applications", "geometry",
         "worksheet"]


@pytest.fixture
def app(framed_app):
    return framed_app


def _ok(at):
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _param(at, name):
    v = at.query_params.get(name)
    return v[0] if isinstance(v, list) else v


def _shown(at, text):
    return any(text in m.value for m in at.markdown)


def test_home_path_links_every_page_in_order_with_the_prompts_it_answers(app):
    from ui.worksheet_content import PROMPTS

    app.run()
    _ok(app)
    links = app.get("page_link")
    assert [link.proto.page for link in links] == ORDER
    titles = ["Forward process", "Denoising", "Architecture", "Training", "CLIP evaluation", "Applications",
              "Geometry lab", "Worksheet"]
    assert [link.label for link in links] == [f"{n} · {title}" for n, title in enumerate(titles, 1)]
    # every page file but Home is on the path
    assert sorted(ORDER) == sorted(p.stem for p in (ROOT / "pages").glob("*.py") if p.stem != "home")
    lines = [m.value for m in app.markdown if "*Worksheet: " in m.value]
    assert len(lines) == len(ORDER)
    for page, line in zip(ORDER, lines):
        numbers = [p.number for p in PROMPTS if p.page == f"pages/{page}.py"]
        want = (f"all {len(PROMPTS)} prompts" if page == "worksheet" else ", ".join(numbers) if numbers
                else "more evidence for 1.1, 1.2, 1.3, 5.3")
        assert line.endswith(f"*Worksheet: {want}.*"), (page, line)
    # every prompt's "Show me" opens exactly one page of the path
    shown = [line.rsplit("*Worksheet: ", 1)[1][:-2] for line in lines[:-1]]
    assert sorted(n for s in shown if not s.startswith("more") for n in s.split(", ")) == \
        sorted(p.number for p in PROMPTS)
    assert _shown(app, "**How the worksheet works:** each prompt has a **Show me**")
    assert any("Present the worksheet" in c.value for c in app.caption)        # the local user is the instructor


def test_present_mode_steps_through_the_prompts_with_their_notes(app):
    from ui import notes
    from ui.worksheet_content import PROMPTS

    app.run()
    assert "present.next" not in [b.key for b in app.button]                 # off until the instructor turns it on
    app.toggle(key="present.on").set_value(True).run()
    _ok(app)
    first, second = PROMPTS[0], PROMPTS[1]
    assert app.session_state["present.index"] == 0                           # Home answers no prompt: start at 1
    assert any(c.value.startswith(f"Prompt 1 of {len(PROMPTS)}") for c in app.caption)
    assert _shown(app, f"**{first.number}** {first.text}")
    assert _shown(app, notes.note(first.number))
    assert app.button(key="present.previous").disabled
    assert app.button(key="present.open").label == f"Open {first.number}'s view"   # not on its page yet

    app.button(key="present.next").click().run()
    _ok(app)
    assert app.title[0].value.startswith("Forward process")
    assert app.session_state["present.index"] == 1 and app.toggle(key="present.on").value   # still presenting
    assert _param(app, "model") == "tiny"                                    # the model on screen stays
    for name, value in second.preset.items():                                # the preset, as "Show me" sets it
        assert app.session_state[f"{second.namespace}.{name}"] == value
        assert _param(app, name) == str(value)
    assert any(c.value.startswith(f"Prompt 2 of {len(PROMPTS)}") for c in app.caption)
    assert _shown(app, notes.note(second.number)) and not _shown(app, notes.note(first.number))
    assert "present.open" not in [b.key for b in app.button]                 # its page is the one shown

    app.button(key="present.previous").click().run()
    _ok(app)
    assert app.session_state["present.index"] == 0
    assert app.session_state["forward.t"] == first.preset["t"] == 300 and app.session_state["forward.digit"] == 3
    assert _param(app, "t") == "300" and app.slider(key="forward.t").value == 300
    assert _shown(app, notes.note(first.number))
    assert "schedule" not in first.preset and second.preset["schedule"] == "linear"
    assert app.session_state["forward.schedule"] == "cosine"                 # 1.2's setting did not carry over
    assert _param(app, "schedule") == "cosine"


def test_present_mode_starts_at_the_current_pages_first_prompt(app):
    from ui.worksheet_content import PROMPTS

    app.run()
    app.switch_page("pages/architecture.py").run()
    app.toggle(key="present.on").set_value(True).run()
    _ok(app)
    i = next(i for i, p in enumerate(PROMPTS) if p.page == "pages/architecture.py")
    assert app.session_state["present.index"] == i
    assert _shown(app, f"**{PROMPTS[i].number}** {PROMPTS[i].text}")
    app.toggle(key="present.on").set_value(False).run()
    assert "present.index" not in app.session_state and "present.next" not in [b.key for b in app.button]


def test_a_learner_sees_no_present_mode(framed_app, monkeypatch):
    monkeypatch.setenv("DIFFUSION_LAB_CLASSROOM", "1")
    monkeypatch.setenv("DIFFUSION_LAB_PASSCODE", "open-sesame")
    at = framed_app
    at.run()
    _ok(at)
    assert any("Role: **learner**" in c.value for c in at.caption)
    assert "present.on" not in [t.key for t in at.toggle]
    assert not any("Present the worksheet" in c.value for c in at.caption)
    at.session_state["present.on"] = True             # even a crafted state shows a learner nothing
    at.run()
    assert not any(c.value.startswith("Prompt ") for c in at.caption) and "present.next" not in [
        b.key for b in at.button]
    assert len(at.get("page_link")) == len(ORDER)   # the start-here path is for learners too
