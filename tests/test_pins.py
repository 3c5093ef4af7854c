"""Pinning a figure on screen to a worksheet answer (ui/pins.py, ui/workbook.py, ui/figure_png.py): the figure is
kept as a PNG with the numbers it plots, listed under its answer and exported in the zip."""
import io
import zipfile

import numpy as np
import pytest

from ui import figure_png, workbook

from .test_figures import BUILDERS

BOOK = "0123456789abcdef0123456789abcdef"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_every_figure_builder_redraws_as_a_png_with_its_numbers(name):
    fig = BUILDERS[name]()
    png = figure_png.plotly_png(fig)
    assert png.startswith(PNG) and len(png) > 2_000
    rows = figure_png.plotly_numbers(fig).splitlines()
    assert rows[0] == "trace,x,y,value,label"


def test_the_numbers_are_the_plotted_ones_and_the_png_changes_with_them():
    from ui import figures

    a = figures.model_accuracy_bars(["small", "wide"], [0.25, 0.75], ["red", "blue"], ["", ""], "judge accuracy")
    b = figures.model_accuracy_bars(["small", "wide"], [0.75, 0.25], ["red", "blue"], ["", ""], "judge accuracy")
    rows = figure_png.plotly_numbers(a).splitlines()[1:]
    assert [r.split(",")[1:3] for r in rows] == [["small", "0.25"], ["wide", "0.75"]]
    assert figure_png.plotly_png(a) != figure_png.plotly_png(b)
    heat = figures.heatmap(np.array([[0.1, 0.9]]), "digit", "w", "acc", x=["0", "1"], y=["w = 1"],
                           quantity="accuracy")
    assert figure_png.plotly_numbers(heat).splitlines()[1:] == ["trace 1,0,w = 1,0.1,", "trace 1,1,w = 1,0.9,"]


def test_a_tile_grids_click_targets_are_not_numbers():
    rows = figure_png.plotly_numbers(BUILDERS["tile_grid"]()).splitlines()
    assert rows == ["trace,x,y,value,label"]


def test_pins_are_kept_listed_removed_and_bounded(tmp_path):
    pid = workbook.add_pin(BOOK, "1.3", title="judge accuracy", caption="", view="/denoising?seed=2", png=PNG + b"x",
                           numbers="trace,x\n", root=tmp_path)
    workbook.save_answer(BOOK, "1.3", "around 40 %", root=tmp_path)       # an answer change keeps the pins
    pins = workbook.load_pins(BOOK, tmp_path)
    assert [p["id"] for p in pins["1.3"]] == [pid] and pins["1.3"][0]["view"] == "/denoising?seed=2"
    assert workbook.pin_file(BOOK, pid, "png", tmp_path) == PNG + b"x"
    for _ in range(workbook.MAX_PINS - 1):
        workbook.add_pin(BOOK, "1.3", title="t", caption="", view="/x", png=PNG, numbers="", root=tmp_path)
    with pytest.raises(workbook.WorkbookError, match="already has 4 pinned figures"):
        workbook.add_pin(BOOK, "1.3", title="t", caption="", view="/x", png=PNG, numbers="", root=tmp_path)
    with pytest.raises(workbook.WorkbookError, match="not a pinned figure"):
        workbook.pin_file(BOOK, "../../etc/passwd", "png", tmp_path)
    workbook.remove_pin(BOOK, "1.3", pid, tmp_path)
    assert pid not in [p["id"] for p in workbook.load_pins(BOOK, tmp_path)["1.3"]]
    assert not (workbook.files_of(BOOK, tmp_path) / f"{pid}.png").exists()
    workbook.clear(BOOK, tmp_path)
    assert workbook.load_pins(BOOK, tmp_path) == {} and not workbook.files_of(BOOK, tmp_path).exists()


def test_an_edited_workbook_cannot_name_other_files(tmp_path):
    import json

    workbook.save(BOOK, {"1.1": "x"}, tmp_path)
    path = workbook.path_of(BOOK, tmp_path)
    data = json.loads(path.read_text())
    data["pins"] = {"1.1": [{"id": "../../secret", "title": "t"}, {"id": "abcdef012345", "title": "ok"}], "2.1": 7}
    path.write_text(json.dumps(data))
    assert [p["id"] for p in workbook.load_pins(BOOK, tmp_path)["1.1"]] == ["abcdef012345"]


def test_the_zip_holds_the_answers_with_each_pinned_figure_and_its_numbers(tmp_path):
    from ui.worksheet_content import PROMPTS

    fig = BUILDERS["model_accuracy_bars"]()
    pid = workbook.add_pin(BOOK, "B2", title="judge accuracy per model", caption="", view="/training?x=1",
                           png=figure_png.plotly_png(fig), numbers=figure_png.plotly_numbers(fig), root=tmp_path)
    img = workbook.add_pin(BOOK, "1.1", title="x₀ · digit 3", caption="x₀ · digit 3, judge reads 3", view="/forward_process",
                           png=figure_png.image_png(np.zeros((28, 28), np.uint8)), numbers="", root=tmp_path)
    data = workbook.export_zip(BOOK, PROMPTS, {"B2": "wider is slower"}, "http://host:8501", "2026-12-01",
                               root=tmp_path)
    z = zipfile.ZipFile(io.BytesIO(data))
    assert sorted(z.namelist()) == sorted(["answers.md", f"figures/{pid}.png", f"figures/{pid}.csv",
                                           f"figures/{img}.png"])
    md = z.read("answers.md").decode()
    b2 = md.split("## B2 ")[1]
    assert "wider is slower" in b2 and f"![judge accuracy per model](figures/{pid}.png)" in b2
    assert f"[figures/{pid}.csv](figures/{pid}.csv)" in b2 and "([the view](http://host:8501/training?x=1))" in b2
    one = md.split("## 1.1 ")[1].split("## ")[0]
    assert "Caption on screen: x₀ · digit 3, judge reads 3" in one and ".csv" not in one
    assert z.read(f"figures/{pid}.png").startswith(PNG)
    assert "a,0.9" in z.read(f"figures/{pid}.csv").decode().replace("trace 1,", "")


def test_a_learner_pins_a_figure_from_the_sidebar_and_finds_it_under_the_answer(framed_app, tmp_path, monkeypatch):
    monkeypatch.setattr(workbook, "WORKBOOKS", tmp_path)
    monkeypatch.setattr(workbook, "browser_id", lambda: BOOK)              # AppTest runs no JavaScript
    at = framed_app
    at.run()
    at.switch_page("pages/forward_process.py").run()
    assert not at.exception
    figures_on_screen = at.selectbox(key="pins.figure").options
    assert any("pixels of x_t vs N(0, 1)" in f for f in figures_on_screen)
    assert any(f.startswith("x₀ ·") for f in figures_on_screen)
    answer = at.selectbox(key="pins.prompt")
    assert answer.value == 0                                                # this page's first prompt: 1.1
    at.selectbox(key="pins.figure").set_value(next(f for f in figures_on_screen if "pixels of x_t" in f))
    at.button(key="pins.pin").click().run()
    assert any("Pinned “pixels of x_t vs N(0, 1)” to your answer to 1.1" in s.value for s in at.success)
    pins = workbook.load_pins(BOOK)
    assert [p["title"] for p in pins["1.1"]] == ["pixels of x_t vs N(0, 1)"]
    assert pins["1.1"][0]["view"].startswith("/forward_process?")
    csv = workbook.pin_file(BOOK, pins["1.1"][0]["id"], "csv").decode()
    assert csv.startswith("trace,x,y,value,label") and "N(0, 1)" in csv
    at.switch_page("pages/worksheet.py").run()
    assert not at.exception
    assert f"worksheet.unpin.{pins['1.1'][0]['id']}" in [b.key for b in at.button]
    assert any("1 pinned figure" in b.label for b in at.get("download_button"))
    at.button(key=f"worksheet.unpin.{pins['1.1'][0]['id']}").click().run()
    assert workbook.load_pins(BOOK) == {}
