"""`ceod evaluate-segmenter`: IoU and Dice (mean and worst five) with overlays of the worst images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ceod.data.loading import load_split
from ceod.data.manifest import read_manifest
from ceod.contracts.errors import CeodError
from ceod.contracts.metrics import iou_dice
from ceod.data.overlay import draw_overlay, grid, save_rgb
from ceod.segmenter.predict import load_segmenter, predict_masks


def evaluate_segmenter(run: str | Path, data: str | Path, split: str, split_column: str | None = None,
                       filters: dict[str, str] | None = None, skip_bad: bool = False,
                       overlay_dir: Path | None = None) -> dict[str, Any]:
    model, cfg, _ = load_segmenter(run)
    manifest = read_manifest(data, split_column or cfg.split_column, skip_bad=skip_bad)
    rows = [s for s in manifest.split(split) if s.aoi is not None]
    for column, value in (filters or {}).items():
        rows = [s for s in rows if s.extra.get(column) == value]
    if not rows:
        raise CeodError(f"split '{split}' has no rows with an AOI mask (splits: {manifest.splits})")
    loaded = load_split(rows, cfg.input_size, skip_bad, Path(data), progress=True, desc="evaluating")
    pred = predict_masks(model, cfg, loaded.images)
    iou, dice = iou_dice(pred, loaded.aoi)
    worst = np.argsort(iou)[:5]
    result: dict[str, Any] = {
        "split": split, "n": int(len(rows)), "iou_mean": float(iou.mean()), "dice_mean": float(dice.mean()),
        "iou_median": float(np.median(iou)),
        "worst": [{"image": str(loaded.samples[i].image), "iou": float(iou[i]), "dice": float(dice[i])} for i in worst]}
    if overlay_dir is not None:
        tiles = []
        for i in worst:
            tile = draw_overlay(loaded.images[i], loaded.aoi[i], text=f"IoU {iou[i]:.3f}", scale=2)
            tiles.append(draw_overlay(tile[::2, ::2], pred[i], text=f"IoU {iou[i]:.3f}", scale=2,
                                      colour=(255, 40, 40)))
        result["overlay"] = str(save_rgb(overlay_dir / f"worst_{split}.png", grid(tiles, 5)))
    return result
