import math

import numpy as np
import pytest

from engine.style import measure, slant_one, style_words, thickness_one


def _bar(width: int, shear: float = 0.0) -> np.ndarray:
    img = np.zeros((28, 28), np.uint8)
    for y in range(4, 24):
        x0 = int(round(14 - width / 2 + shear * (14 - y)))
        img[y, max(0, x0):x0 + width] = 255
    return img


@pytest.mark.parametrize("width", [2, 3, 5])
def test_thickness_of_a_bar_is_its_width(width):
    assert abs(thickness_one(_bar(width)) - width) < 0.8


def test_thicker_bars_measure_thicker():
    t = [thickness_one(_bar(w)) for w in (2, 3, 4, 6)]
    assert t == sorted(t)


@pytest.mark.parametrize("shear", [-0.4, 0.0, 0.3])
def test_slant_of_a_sheared_bar(shear):
    assert abs(slant_one(_bar(3, shear)) - math.degrees(math.atan(shear))) < 3.0


def test_measure_shapes_and_words():
    s = measure(np.stack([_bar(2), _bar(5, 0.3)]))
    assert s.shape == (2, 2) and s[1, 0] > s[0, 0] and s[1, 1] > 10
    ref = np.array([[1.0, -10], [2.0, 0], [3.0, 10]] * 10)
    assert style_words(3.0, 12, ref) == ["thick", "right-slanted"]
    assert style_words(1.0, -12, ref) == ["thin", "left-slanted"]
