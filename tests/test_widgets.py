"""Uploads: every unusable file gets a clear reason; usable ones become a centred 28x28 white-on-black digit."""
import io

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
