"""A learner's answers on the server's disk (ui/workbook.py): one file per browser id, written atomically, read
bounded; a crafted id names no other path; the browser round trip is in test_browser.py."""
import pytest

from ui import workbook

BOOK = "0123456789abcdef0123456789abcdef"


def test_answers_round_trip_and_one_answer_changes_alone(tmp_path):
    assert workbook.load(BOOK, tmp_path) == {}
    workbook.save_answer(BOOK, "1.1", "noise in small steps", tmp_path)
    workbook.save_answer(BOOK, "2.2", "skips carry detail", tmp_path)
    workbook.save_answer(BOOK, "1.1", "noise, step by step", tmp_path)
    assert workbook.load(BOOK, tmp_path) == {"1.1": "noise, step by step", "2.2": "skips carry detail"}
    workbook.save_answer(BOOK, "2.2", "", tmp_path)                    # an emptied box is not kept
    assert workbook.load(BOOK, tmp_path) == {"1.1": "noise, step by step"}
    assert [p.name for p in tmp_path.iterdir()] == [f"{BOOK}.json"]   # no temporary file left behind
    workbook.clear(BOOK, tmp_path)
    assert workbook.load(BOOK, tmp_path) == {}


@pytest.mark.parametrize("bad", ["../../etc/passwd", "ABCDEF0123456789abcdef0123456789", "x" * 32, "", None,
                                 BOOK + "0", f"{BOOK[:-1]}/"])
def test_a_crafted_id_names_no_path(tmp_path, bad):
    with pytest.raises(workbook.WorkbookError, match="malformed"):
        workbook.save_answer(bad, "1.1", "x", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_an_overlong_answer_and_a_full_shelf_are_refused_with_a_reason(tmp_path, monkeypatch):
    with pytest.raises(workbook.WorkbookError, match="longer than 20,000 characters"):
        workbook.save_answer(BOOK, "1.1", "x" * 20_001, tmp_path)
    monkeypatch.setattr(workbook, "MAX_BOOKS", 1)
    workbook.save_answer(BOOK, "1.1", "mine", tmp_path)
    workbook.save_answer(BOOK, "1.2", "mine too", tmp_path)            # an existing workbook may still change
    with pytest.raises(workbook.WorkbookError, match="already keeps 1 workbooks"):
        workbook.save_answer("f" * 32, "1.1", "a new browser", tmp_path)


def test_a_broken_workbook_file_says_so(tmp_path):
    (tmp_path / f"{BOOK}.json").write_text("[" * 100_000)
    with pytest.raises(workbook.WorkbookError, match="could not be read"):
        workbook.load(BOOK, tmp_path)
    (tmp_path / f"{BOOK}.json").write_text('{"answers": {"1.1": "ok", "1.2": 5}}')
    assert workbook.load(BOOK, tmp_path) == {"1.1": "ok"}


def test_the_worksheet_saves_a_box_when_left_and_clears_only_when_confirmed(tmp_path, monkeypatch):
    import os

    from streamlit.testing.v1 import AppTest

    monkeypatch.setattr(workbook, "WORKBOOKS", tmp_path)
    monkeypatch.setattr(workbook, "browser_id", lambda: BOOK)        # AppTest runs no JavaScript
    at = AppTest.from_file(os.path.join(os.path.dirname(__file__), "..", "dashboard.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/worksheet.py").run()
    at.text_area(key="worksheet.answer.1.1").input("gradual noise").run()
    assert workbook.load(BOOK) == {"1.1": "gradual noise"}
    at.switch_page("pages/forward_process.py").run()                 # leaving the page drops the box's state
    at.switch_page("pages/worksheet.py").run()
    assert at.text_area(key="worksheet.answer.1.1").value == "gradual noise"
    assert at.button(key="worksheet.clear").disabled
    at.checkbox(key="worksheet.confirm_clear").check().run()
    assert "delete my answer from" in at.checkbox(key="worksheet.confirm_clear").label
    at.button(key="worksheet.clear").click().run()
    assert workbook.load(BOOK) == {} and at.text_area(key="worksheet.answer.1.1").value == ""
    assert not at.exception and not at.error


def test_the_export_links_each_answer_to_the_learners_own_view_on_this_server():
    from ui.worksheet_content import PROMPTS

    md = workbook.export_markdown(PROMPTS, {"1.1": "gradual noise"}, {"1.1": "/forward_process?model=default&t=123"},
                                  "http://10.0.0.5:8501", "2026-12-01")
    first, second = md.split("## ")[1:3]
    assert "[Forward process](http://10.0.0.5:8501/forward_process?model=default&t=123) (the view I looked at)" in first
    assert first.rstrip().endswith("gradual noise")
    assert "(http://10.0.0.5:8501/forward_process?t=500&schedule=linear) (the prompt's preset view)" in second
    assert "_(no answer yet)_" in second and md.count("## ") == len(PROMPTS)


def test_a_show_me_then_a_change_of_view_is_what_the_export_links_to(tmp_path, monkeypatch):
    import os

    from streamlit.testing.v1 import AppTest

    monkeypatch.setattr(workbook, "WORKBOOKS", tmp_path)
    monkeypatch.setattr(workbook, "browser_id", lambda: BOOK)
    at = AppTest.from_file(os.path.join(os.path.dirname(__file__), "..", "dashboard.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/worksheet.py").run()
    at.button(key="worksheet.show.1.1").click().run()                 # Show me: to Forward process, t = 300
    at.switch_page("pages/forward_process.py").run()                 # (AppTest does not follow st.switch_page)
    assert "t=300" in workbook.load_views(BOOK)["1.1"]
    at.slider(key="forward.t").set_value(640).run()
    view = workbook.load_views(BOOK)["1.1"]
    assert view.startswith("/forward_process?") and "t=640" in view and "digit=3" in view
    assert not at.exception
