"""Pictures people look at: AOI contours and heatmaps over images (OpenCV only, no torch)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def draw_overlay(image: np.ndarray, aoi: np.ndarray | None = None, heatmap: np.ndarray | None = None,
                 text: str = "", scale: int = 2, colour=(0, 230, 0)) -> np.ndarray:
    """RGB uint8 image (upscaled), heatmap blended in JET, AOI contour drawn, caption on top."""
    h, w = image.shape[:2]
    size = (w * scale, h * scale)
    out = cv2.resize(image, size, interpolation=cv2.INTER_NEAREST).copy()
    if heatmap is not None:
        hm = heatmap.astype(np.float32)
        hm = hm / (hm.max() + 1e-8)
        hm = cv2.resize(hm, size, interpolation=cv2.INTER_LINEAR)
        jet = cv2.cvtColor(cv2.applyColorMap((hm * 255).astype(np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
        out = cv2.addWeighted(out, 0.55, jet, 0.45, 0)
    if aoi is not None:
        m = cv2.resize((aoi > 0).astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(m, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, colour, 1)
    if text:
        cv2.putText(out, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 2, cv2.LINE_AA)
        cv2.putText(out, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (20, 20, 20), 1, cv2.LINE_AA)
    return out


def save_rgb(path: str | Path, image: np.ndarray) -> Path:
    """Write an RGB picture; OSError when OpenCV could not (a full disk, a folder gone)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return path


def grid(tiles: list[np.ndarray], columns: int) -> np.ndarray:
    """Tiles of equal size in rows of `columns`, padded with black."""
    tiles = list(tiles)
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    return np.vstack([np.hstack(tiles[i:i + columns]) for i in range(0, len(tiles), columns)])
