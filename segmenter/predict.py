"""Predicting AOI masks: model output -> threshold -> largest component -> small-hole filling."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from ceod.training.checkpoint import load_model
from ceod.data.manifest import Own, derive_dataset, read_manifest, read_rows
from ceod.data.loading import load_split
from ceod.data.imageio import normalize
from ceod.segmenter.config import PostprocessConfig, SegmenterConfig
from ceod.segmenter.model import build_segmenter


def load_segmenter(run: str | Path | None, payload: dict[str, Any] | None = None
                   ) -> tuple[torch.nn.Module, SegmenterConfig, dict[str, Any]]:
    """(model in eval mode, config, metadata) from a segmenter run folder or .pt file (or a
    checkpoint already loaded)."""
    return load_model(run, "segmenter", SegmenterConfig, build_segmenter, payload)


def postprocess(prob: np.ndarray, cfg: PostprocessConfig) -> np.ndarray:
    """A probability map [H,W] -> a clean {0,1} uint8 mask."""
    mask = (prob >= cfg.threshold).astype(np.uint8)
    if cfg.largest_component and mask.any():
        n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        if n > 2:
            mask = (labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
    if cfg.fill_holes_below > 0:
        limit = cfg.fill_holes_below * mask.size
        n, labels, stats, _ = cv2.connectedComponentsWithStats(1 - mask, connectivity=4)
        h, w = mask.shape
        for i in range(1, n):
            x, y, bw, bh, area = stats[i]
            touches_border = x == 0 or y == 0 or x + bw == w or y + bh == h
            if not touches_border and area < limit:
                mask[labels == i] = 1
    return mask


@torch.no_grad()
def predict_probs(model: torch.nn.Module, cfg: SegmenterConfig, images: np.ndarray,
                  batch_size: int = 32) -> np.ndarray:
    """AOI probabilities [N,S,S] for RGB uint8 images already at the model's input size."""
    out = []
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(normalize(images[i:i + batch_size], cfg.mean, cfg.std))
        out.append(torch.sigmoid(model(x))[:, 0].numpy())
    return np.concatenate(out)


def predict_masks(model: torch.nn.Module, cfg: SegmenterConfig, images: np.ndarray) -> np.ndarray:
    """Post-processed {0,1} masks [N,S,S]."""
    return np.stack([postprocess(p, cfg.postprocess) for p in predict_probs(model, cfg, images)])


def predict_dataset(run: str | Path, data: str | Path, out: str | Path, split_column: str = "split",
                    skip_bad: bool = False, batch: int = 256) -> dict[str, Any]:
    """Write DATASET_PRED: a manifest pointing at the original images (through a `source` link,
    never copied) and at predicted masks, resized back to each image's own size."""
    model, cfg, _ = load_segmenter(run)
    data, out = Path(data), Path(out)
    if (out / "manifest.csv").exists():
        raise FileExistsError(f"{out} already holds a dataset; choose an empty folder")
    manifest = read_manifest(data, split_column, skip_bad=skip_bad)
    raw = read_rows(data)  # every column of every row, as written
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    from ceod.progress import progress_bar
    for start in progress_bar(range(0, len(manifest.samples), batch), desc="predict-aoi",
                              total=(len(manifest.samples) + batch - 1) // batch):
        chunk = manifest.samples[start:start + batch]
        loaded = load_split(chunk, cfg.input_size, skip_bad, data)
        masks = predict_masks(model, cfg, loaded.images)
        for sample, mask, (h, w) in zip(loaded.samples, masks, loaded.sizes.tolist()):
            rel = sample.image.relative_to(data)
            full = cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST) if (h, w) != mask.shape else mask
            aoi_rel = Path("aoi") / rel.with_suffix(".png")
            (out / aoi_rel).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(out / aoi_rel), full * 255)
            rows.append({**raw[sample.row - 1], "aoi": Own(aoi_rel)})
    derive_dataset(out, data, rows)
    return {"rows": len(rows), "out": str(out)}
