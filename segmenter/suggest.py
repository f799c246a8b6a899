"""`ceod suggest-annotations`: which images to annotate next, with the segmenter's AOI as a
pre-annotation that CVAT / LabelMe open for correction; `ceod data import --base` brings the
corrected file back (the loop).

Uncertainty of an image: the mean pixel entropy of the segmenter's probability averaged over
the image and its horizontal flip, plus the mean disagreement between the two (a flip-consistency
check costs one more forward and catches confident-but-unstable predictions).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from ceod.data.loading import load_split
from ceod.data.manifest import read_manifest
from ceod.data.splits import select
from ceod.contracts.errors import CeodError
from ceod.segmenter.predict import load_segmenter, postprocess, predict_probs


def uncertainty_scores(model: torch.nn.Module, cfg, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image [N]: mean binary entropy of the flip-averaged probability + mean flip disagreement;
    and the plain AOI probabilities [N,S,S] it computed on the way (the pre-annotations' source)."""
    p = predict_probs(model, cfg, images)
    q = predict_probs(model, cfg, np.ascontiguousarray(images[:, :, ::-1]))[:, :, ::-1]
    m = np.clip((p + q) / 2, 1e-6, 1 - 1e-6)
    entropy = -(m * np.log2(m) + (1 - m) * np.log2(1 - m))
    return entropy.mean((1, 2)) + np.abs(p - q).mean((1, 2)), p


def _polygons(mask: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Outer outlines and hole outlines of a {0,1} mask, simplified to about a pixel."""
    contours, hierarchy = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    outer, holes = [], []
    for c, h in zip(contours, hierarchy[0] if hierarchy is not None else []):
        c = cv2.approxPolyDP(c, 1.0, True).reshape(-1, 2)
        if len(c) >= 3:
            (holes if h[3] >= 0 else outer).append(c)
    return outer, holes


def write_task(items: list[dict[str, Any]], data: Path, out: Path) -> dict[str, str]:
    """COCO JSON (file_names relative to the dataset folder) and one LabelMe JSON per image."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "labelme").mkdir(exist_ok=True)
    coco: dict[str, Any] = {"images": [], "annotations": [],
                            "categories": [{"id": 1, "name": "aoi"}, {"id": 2, "name": "hole"}]}
    for index, item in enumerate(items, start=1):
        h, w = item["mask"].shape
        rel = os.path.relpath(item["image"], data)
        coco["images"].append({"id": index, "file_name": rel, "width": w, "height": h})
        outer, holes = _polygons(item["mask"])
        shapes = []
        for category, polys in ((1, outer), (2, holes)):
            for poly in polys:
                x, y, bw, bh = cv2.boundingRect(poly)
                coco["annotations"].append({
                    "id": len(coco["annotations"]) + 1, "image_id": index, "category_id": category, "iscrowd": 0,
                    "segmentation": [poly.astype(float).ravel().tolist()], "area": float(cv2.contourArea(poly)),
                    "bbox": [float(x), float(y), float(bw), float(bh)]})
                shapes.append({"label": "aoi" if category == 1 else "hole", "shape_type": "polygon",
                               "points": poly.astype(float).tolist(), "group_id": None, "flags": {}})
        labelme = {"version": "5.0.1", "flags": {}, "shapes": shapes,
                   "imagePath": os.path.relpath(item["image"], out / "labelme"),
                   "imageData": None, "imageHeight": h, "imageWidth": w}
        (out / "labelme" / f"{index:04d}_{Path(item['image']).stem}.json").write_text(json.dumps(labelme, indent=1))
    (out / "coco.json").write_text(json.dumps(coco))
    with (out / "suggestions.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["rank", "image", "uncertainty"])
        writer.writeheader()
        writer.writerows({"rank": i + 1, "image": os.path.relpath(it["image"], data),
                          "uncertainty": round(float(it["score"]), 6)} for i, it in enumerate(items))
    return {"coco": str(out / "coco.json"), "labelme": str(out / "labelme"), "list": str(out / "suggestions.csv")}


def suggest_annotations(run: str | Path, data: str | Path, n: int, out: str | Path, split: str = "train",
                        split_column: str | None = None, filters: dict[str, str] | None = None) -> dict[str, Any]:
    """Rank the split's images without an AOI by uncertainty and write the top n as a task."""
    if n < 1:
        raise CeodError(f"--n {n}: ask for at least one image")
    data, out = Path(data), Path(out)
    if out.exists() and any(out.iterdir()):
        raise CeodError(f"--out {out} is not empty; choose a new folder (nothing is overwritten)")
    model, cfg, _ = load_segmenter(run)
    manifest = read_manifest(data, split_column or cfg.split_column)
    rows = [s for s in select(manifest, split, filters) if s.aoi is None]
    if not rows:
        raise CeodError(f"split '{split}' of {data} has no image without an AOI: nothing to suggest")
    loaded = load_split(rows, cfg.input_size, root=data, progress=True, desc="scoring")
    scores, probs = uncertainty_scores(model, cfg, loaded.images)
    top = np.argsort(-scores, kind="stable")[:n]
    items = []
    for i in top:
        h, w = (int(v) for v in loaded.sizes[i])
        mask = cv2.resize(postprocess(probs[i], cfg.postprocess), (w, h), interpolation=cv2.INTER_NEAREST)
        items.append({"image": str(loaded.samples[i].image), "score": float(scores[i]), "mask": mask})
    files = write_task(items, data, out)
    return {"candidates": len(rows), "suggested": len(items), **files,
            "uncertainty_range": [float(scores.min()), float(scores.max())]}
