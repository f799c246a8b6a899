"""Clutter outside the part: objects a line's camera may catch beside the part that no training
image showed, for the audit's `clutter` replacement (the paper's case: "edges or areas that are
not of interest"). The kinds are the same for every class, drawn with OpenCV only where the AOI
mask is 0, so the part itself is never touched.

Kinds: a cable (a thick dark curve with a highlight), a label (a pale rectangle with dark bars of
"text"), glare (a bright soft ellipse), a bolt (a metal disc with a rim and a hex hole) and tape
(a translucent coloured strip)."""

from __future__ import annotations

import cv2
import numpy as np

CLUTTER_KINDS = ("cable", "label", "glare", "bolt", "tape")


def _cable(layer: np.ndarray, alpha: np.ndarray, rng: np.random.Generator) -> None:
    h, w = alpha.shape
    points = rng.uniform(0, 1, (4, 2)) * [w, h]
    t = np.linspace(0, 1, 64)[:, None]
    curve = ((1 - t) ** 3 * points[0] + 3 * (1 - t) ** 2 * t * points[1] + 3 * (1 - t) * t ** 2 * points[2]
             + t ** 3 * points[3]).astype(np.int32)
    thick = max(2, int(rng.uniform(0.015, 0.04) * min(h, w)))
    colour = rng.uniform(10, 60, 3)
    cv2.polylines(layer, [curve], False, colour.tolist(), thick, cv2.LINE_AA)
    cv2.polylines(alpha, [curve], False, 1.0, thick, cv2.LINE_AA)
    cv2.polylines(layer, [curve - [0, thick // 3]], False, (colour + 90).tolist(), max(1, thick // 4), cv2.LINE_AA)


def _label(layer: np.ndarray, alpha: np.ndarray, rng: np.random.Generator) -> None:
    h, w = alpha.shape
    bw, bh = int(rng.uniform(0.12, 0.25) * w), int(rng.uniform(0.06, 0.12) * h)
    x, y = int(rng.uniform(0, w - bw)), int(rng.uniform(0, h - bh))
    box = cv2.boxPoints(((x + bw / 2, y + bh / 2), (bw, bh), float(rng.uniform(-30, 30)))).astype(np.int32)
    cv2.fillPoly(layer, [box], rng.uniform(215, 250, 3).tolist())
    cv2.fillPoly(alpha, [box], 1.0)
    for row in range(3):
        yy = y + int((row + 1) * bh / 4)
        x0 = x + int(0.1 * bw)
        cv2.line(layer, (x0, yy), (x0 + int(rng.uniform(0.4, 0.8) * bw), yy), (30, 30, 30), max(1, bh // 10))


def _glare(layer: np.ndarray, alpha: np.ndarray, rng: np.random.Generator) -> None:
    h, w = alpha.shape
    spot = np.zeros((h, w), np.float32)
    centre = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
    axes = (int(rng.uniform(0.05, 0.15) * w), int(rng.uniform(0.02, 0.06) * h))
    cv2.ellipse(spot, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
    spot = cv2.GaussianBlur(spot, (0, 0), max(1.0, 0.3 * min(axes)))
    spot *= 0.9 / max(float(spot.max()), 1e-6)
    keep = spot > alpha
    layer[keep] = 255.0
    alpha[keep] = spot[keep]


def _bolt(layer: np.ndarray, alpha: np.ndarray, rng: np.random.Generator) -> None:
    h, w = alpha.shape
    r = max(3, int(rng.uniform(0.025, 0.05) * min(h, w)))
    centre = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
    metal = rng.uniform(120, 200)
    cv2.circle(layer, centre, r, (metal,) * 3, -1, cv2.LINE_AA)
    cv2.circle(layer, centre, r, (metal - 70,) * 3, max(1, r // 4), cv2.LINE_AA)
    hexagon = np.array([[centre[0] + 0.45 * r * np.cos(a), centre[1] + 0.45 * r * np.sin(a)]
                        for a in np.arange(6) * np.pi / 3], np.int32)
    cv2.fillPoly(layer, [hexagon], (metal - 100,) * 3)
    cv2.circle(alpha, centre, r, 1.0, -1, cv2.LINE_AA)


def _tape(layer: np.ndarray, alpha: np.ndarray, rng: np.random.Generator) -> None:
    h, w = alpha.shape
    strip = np.zeros((h, w), np.float32)
    width = max(3, int(rng.uniform(0.03, 0.07) * min(h, w)))
    a, b = rng.uniform(0, 1, 2) * [w, h], rng.uniform(0, 1, 2) * [w, h]
    cv2.line(strip, tuple(int(v) for v in a), tuple(int(v) for v in b), 1.0, width)
    keep = strip > 0
    layer[keep] = rng.choice([[230, 200, 40], [40, 90, 220], [220, 60, 50]])
    alpha[keep] = np.maximum(alpha[keep], 0.6)


_DRAW = {"cable": _cable, "label": _label, "glare": _glare, "bolt": _bolt, "tape": _tape}


def draw_clutter(image: np.ndarray, aoi: np.ndarray, rng: np.random.Generator, objects: tuple[int, int] = (3, 6)
                 ) -> np.ndarray:
    """The RGB uint8 image with `objects` (low, high inclusive) clutter objects of random kinds
    drawn outside the AOI (mask > 0 is the part); pixels inside the AOI are returned unchanged."""
    h, w = aoi.shape
    layer = image.astype(np.float32).copy()
    alpha = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(objects[0], objects[1] + 1))):
        _DRAW[CLUTTER_KINDS[int(rng.integers(len(CLUTTER_KINDS)))]](layer, alpha, rng)
    alpha[np.asarray(aoi) > 0] = 0.0
    out = image.astype(np.float32) * (1 - alpha[..., None]) + layer * alpha[..., None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
