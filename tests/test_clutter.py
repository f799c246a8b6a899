"""The audit's clutter: objects drawn outside the part only, the same for every class."""

from __future__ import annotations

import numpy as np

from ceod.data.clutter import CLUTTER_KINDS, _DRAW, draw_clutter


def _scene(value: int, size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size]
    aoi = ((xx - size / 2) ** 2 + (yy - size / 2) ** 2 <= (0.3 * size) ** 2).astype(np.uint8)
    return np.full((size, size, 3), value, np.uint8), aoi


def test_clutter_never_touches_the_part_and_marks_the_outside_of_every_image():
    for seed in range(20):
        image, aoi = _scene(90)
        out = draw_clutter(image, aoi, np.random.default_rng(seed))
        assert np.array_equal(out[aoi > 0], image[aoi > 0])
        changed = np.abs(out.astype(int) - image).max(axis=2) > 10
        assert changed[aoi == 0].mean() > 0.01, seed


def test_what_is_drawn_does_not_depend_on_the_class_the_part_belongs_to():
    # the same draw on two parts (a defect-like dark one, an ok-like bright one) on the same
    # background: the same pixels change outside, and by the same amounts
    background, aoi = _scene(90)
    dark, bright = background.copy(), background.copy()
    dark[aoi > 0], bright[aoi > 0] = 40, 200
    a = draw_clutter(dark, aoi, np.random.default_rng(7))
    b = draw_clutter(bright, aoi, np.random.default_rng(7))
    assert np.array_equal(a[aoi == 0], b[aoi == 0]) and not np.array_equal(a, b)


def test_every_kind_draws_something_visible():
    assert set(_DRAW) == set(CLUTTER_KINDS)
    for kind in CLUTTER_KINDS:
        drawn = 0
        for seed in range(5):
            layer, alpha = np.full((96, 96, 3), 90.0, np.float32), np.zeros((96, 96), np.float32)
            _DRAW[kind](layer, alpha, np.random.default_rng(seed))
            drawn += int((alpha > 0.3).sum() > 10 and np.abs(layer - 90).max() > 30)
        assert drawn >= 4, kind
