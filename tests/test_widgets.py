"""Uploads: every unusable file gets a clear reason; usable ones become a centred 28x28 white-on-black digit."""
import io
import os

import numpy as np
import pytest
from PIL import Image

from ui.widgets import MAX_UPLOAD_BYTES, BadImage, image_to_digit


def _png(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _drawn_seven(mode="L", size=200, ink=0, paper=255):
    img = Image.new(mode, (size, size), paper if mode != "RGBA" else (0, 0, 0, 0))
    from PIL import ImageDraw

    d = ImageDraw.Draw(img)
    colour = ink if mode == "L" else (ink, ink, ink, 255) if mode == "RGBA" else (ink, ink, ink)
    d.line([(40, 40), (160, 40), (90, 170)], fill=colour, width=18)
    return img


@pytest.mark.parametrize("data, reason", [
    (b"", "empty"), (b"not an image at all", "not an image"), (b"\x89PNG\r\n\x1a\n" + b"\x00" * 50, "not an image"),
    (b"0" * (MAX_UPLOAD_BYTES + 1), "limit"),
    (_png(Image.new("L", (1, 1))), "only 1x1"), (_png(Image.new("L", (64, 64), 255)), "blank"),
])
def test_unusable_uploads_say_why(data, reason):
    with pytest.raises(BadImage, match=reason):
        image_to_digit(data)


@pytest.mark.parametrize("make", [
    lambda: _png(_drawn_seven()),                                           # black on white, grayscale
    lambda: _png(_drawn_seven("RGB")),
    lambda: _png(_drawn_seven("RGBA", ink=0)),                              # dark ink, transparent background
    lambda: _png(_drawn_seven("RGBA", ink=255)),                            # light ink, transparent background
    lambda: _png(_drawn_seven().convert("I;16")),                           # 16-bit
    lambda: _png(_drawn_seven(), "GIF", save_all=True, append_images=[Image.new("L", (200, 200))]),  # animated
    lambda: _png(_drawn_seven(ink=255, paper=0), "JPEG"),                   # white on black JPEG
])
def test_usable_uploads_become_centred_white_on_black_digits(make):
    d = image_to_digit(make())
    assert d.shape == (28, 28) and d.dtype == np.uint8
    assert d[0].max() < 60 and d[:, 0].max() < 60                        # dark border: white ink on black
    ys, xs = np.nonzero(d > 100)
    assert 10 <= ys.mean() <= 18 and 10 <= xs.mean() <= 18                # centred like MNIST
    assert (ys.max() - ys.min()) <= 21 and (xs.max() - xs.min()) <= 21   # fits the 20x20 box


def test_painted_mask_marks_the_painted_region_missing():
    from ui.widgets import png_to_mask

    img = Image.new("L", (280, 280), 0)
    from PIL import ImageDraw

    ImageDraw.Draw(img).rectangle([140, 0, 279, 279], fill=255)           # paint the right half
    m = png_to_mask(_png(img))
    assert m.shape == (1, 1, 28, 28) and m[0, 0, :, :13].min() == 1 and m[0, 0, :, 15:].max() == 0


def test_model_report_reads_the_evaluate_report_and_tolerates_none_or_corrupt(tmp_path):
    from ui.resources import model_report

    assert model_report(tmp_path) == {}
    (tmp_path / "report.json").write_text("{not json")
    assert model_report(tmp_path) == {}
    (tmp_path / "report.json").write_text('{"accuracy": 0.994, "n_samples": 1000}')
    assert model_report(str(tmp_path)) == {"accuracy": 0.994, "n_samples": 1000}


# -- hardening: an image file cannot take the server's memory or CPU ---------------------------------------------------
@pytest.fixture(scope="module")
def bomb_png() -> bytes:
    """6300x6300 fully transparent RGBA: ~150-180 KB on disk, 159 MB decoded, 1.3 GB as the float64 copy it got."""
    return _png(Image.new("RGBA", (6300, 6300), (0, 0, 0, 0)))


def test_a_huge_image_is_refused_from_its_header_quickly(bomb_png, monkeypatch):
    import time

    def no_decoding(self, *a, **k):
        raise AssertionError("decoded an image that the header already shows is over the budget")

    monkeypatch.setattr(Image.Image, "load", no_decoding)
    t0 = time.perf_counter()
    with pytest.raises(BadImage, match=r"6300x6300 pixels \(39.7 MP\); the limit is 16 MP"):
        image_to_digit(bomb_png)
    assert time.perf_counter() - t0 < 1.0 and len(bomb_png) < MAX_UPLOAD_BYTES


def test_a_phone_photo_sized_jpeg_is_accepted():
    from PIL import ImageDraw

    photo = Image.new("RGB", (4000, 3000), (235, 230, 220))              # 12 MP, dark ink on paper
    ImageDraw.Draw(photo).line([(1200, 700), (2800, 700), (1700, 2400)], fill=(30, 30, 40), width=220)
    d = image_to_digit(_png(photo, "JPEG", quality=90))
    assert d.shape == (28, 28) and d.dtype == np.uint8 and d[0].max() < 60 and d.max() > 200


def test_a_large_transparent_png_is_reduced_before_any_float_copy(tmp_path):
    """Peak memory (ru_maxrss, in a fresh process: it sees PIL's C allocations, tracemalloc does not) of turning a
    12 MP RGBA PNG into a digit stays far below one float64 copy of it (384 MB)."""
    import subprocess
    import sys

    code = """if True:
        import gc, io, resource
        from PIL import Image, ImageDraw
        from ui.widgets import image_to_digit
        img = Image.new("RGBA", (4000, 3000), (0, 0, 0, 0))
        ImageDraw.Draw(img).line([(1000, 600), (3000, 600), (1800, 2600)], fill=(0, 0, 0, 255), width=250)
        buf = io.BytesIO(); img.save(buf, "PNG"); data = buf.getvalue(); del img, buf; gc.collect()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        d = image_to_digit(data)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(d.shape, (after - before) // 1024)
    """
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.returncode == 0, out.stderr[-2000:]
    shape, grown_mb = out.stdout.rsplit(")", 1)
    assert shape + ")" == "(28, 28)" and int(grown_mb) < 120, out.stdout


def test_each_distinct_file_is_decoded_once_and_refusals_are_remembered(bomb_png, monkeypatch):
    import ui.widgets as w

    calls = []
    real = w.image_to_digit
    monkeypatch.setattr(w, "image_to_digit", lambda data, *a: calls.append(len(data)) or real(data, *a))
    monkeypatch.setattr(w, "_DIGITS", type(w._DIGITS)())
    seven = _png(_drawn_seven())
    first = w.cached_digit(seven)
    first[:] = 0                                                        # a copy: the cached digit is unchanged
    assert w.cached_digit(seven).max() > 200
    for _ in range(2):
        with pytest.raises(BadImage, match="39.7 MP"):
            w.cached_digit(bomb_png)
    assert len(calls) == 2
    for i in range(w.DIGIT_CACHE_ENTRIES + 5):                          # bounded: the oldest entries go
        with pytest.raises(BadImage):
            w.cached_digit(b"not an image %d" % i)
    assert len(w._DIGITS) == w.DIGIT_CACHE_ENTRIES


def test_the_canvas_bounds_what_a_client_sends(bomb_png, monkeypatch):
    import base64

    from ui import canvas
    from ui.widgets import png_to_mask

    drawing = _png(_drawn_seven("RGB", size=280, ink=255, paper=0))
    assert canvas.png_from_data_url(canvas.PREFIX + base64.b64encode(drawing).decode()) == drawing
    assert canvas.png_from_data_url(None) is None and canvas.png_from_data_url("data:text/html,<b>") is None
    bomb_url = canvas.PREFIX + base64.b64encode(bomb_png).decode()
    with pytest.raises(BadImage, match="6300x6300 pixels .* the limit is 1 MP"):
        canvas.png_from_data_url(bomb_url)
    with pytest.raises(BadImage, match="6300x6300 pixels .* the limit is 1 MP"):
        png_to_mask(bomb_png)
    with pytest.raises(BadImage, match="not base64"):
        canvas.png_from_data_url(canvas.PREFIX + "@@@@")
    monkeypatch.setattr(canvas.base64, "b64decode", lambda *a, **k: pytest.fail("decoded an over-long data URL"))
    with pytest.raises(BadImage, match="characters; a drawing is at most"):
        canvas.png_from_data_url(canvas.PREFIX + "A" * canvas.MAX_DATA_URL)


def test_upload_names_and_link_values_cannot_become_markdown():
    from ui.state import Param, escape_md, int_in, parse_params

    for hostile in ("![x](http://evil.example/x.png)", "[click](http://evil.example)"):
        shown = escape_md(hostile)
        assert shown == f"`{hostile}`"                                   # one code span: shown exactly as typed
        _, notes = parse_params({"t": hostile}, [Param("t", 0, int_in(0, 9))])
        assert notes == [f"ignored link value t={escape_md(hostile, 20)}: must be a whole number"]
        assert notes[0].count("`") == 2 and "evil" not in notes[0].split("`")[0] + notes[0].split("`")[2]
    assert escape_md("a`b\n\nc") == "`a'b  c`"                           # cannot close the span or the paragraph
    assert escape_md(":material/home: $x$ <img src=x>") == "`:material/home: $x$ <img src=x>`"
    assert escape_md("") == "(empty)" and escape_md("x" * 50, 10) == "`" + "x" * 10 + "…`"


def test_a_keyed_number_input_defaults_to_the_value_the_session_holds(monkeypatch):
    """Streamlit's number input can fall back to its default in a rerun race (streamlit#9056); ours default to
    the session's own value (clamped to the range), so the fallback shows what the session holds, not the minimum."""
    import streamlit as st

    from ui import widgets

    calls = []

    class Where:
        def number_input(self, label, lo, hi, **kwargs):
            calls.append(kwargs)
            return kwargs.get("value", lo)

    held = {"denoising.digit": 7, "clip.seed": 123_456, "apps.seed": None}
    monkeypatch.setattr(st, "session_state", held)
    assert widgets.number_input(Where(), "digit", 0, 9, key="denoising.digit") == 7
    assert widgets.number_input(Where(), "seed", 0, 99_999, key="clip.seed") == 99_999       # clamped
    assert widgets.number_input(Where(), "seed", 0, 9, key="apps.seed") == 0                 # nothing held
    assert widgets.number_input(Where(), "seed", 0, 9, key="nowhere", step=1) == 0
    assert [c.get("value") for c in calls] == [7, 99_999, None, None]
    assert all(c["key"] for c in calls) and calls[-1]["step"] == 1
