"""Where a classifier's AOI masks come from: the manifest, a segmenter run, or a predict-aoi dataset.

This lives in pipeline/ because it joins the two model packages, which never import each other.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ceod.data.manifest import DatasetError, Sample, read_manifest
from ceod.data.loading import load_split


def mask_source(spec: str, cache_dir: Path | None = None):
    """Return (label, source) where source(samples, size) -> masks [N,S,S] uint8, or (gt, None)."""
    if spec in ("gt", "", None):
        return "gt", None
    path = Path(spec)
    if (path / "manifest.csv").is_file():
        return f"dataset:{path}", _from_dataset(path)
    if (path / "best.pt").is_file() or path.suffix == ".pt":
        return f"segmenter:{path}", _from_segmenter(path, cache_dir)
    raise DatasetError(f"--masks {spec}: expected 'gt', a segmenter run folder (with best.pt) "
                       "or a dataset made by `ceod predict-aoi` (with manifest.csv)")


def _from_dataset(root: Path):
    manifest = read_manifest(root, collect_only=True)
    # The predicted dataset reaches the images through its `source` link: compare resolved paths.
    by_image = {s.image.resolve(): s for s in manifest.samples}

    def source(samples: list[Sample], size: int) -> np.ndarray:
        rows = []
        for s in samples:
            match = by_image.get(s.image.resolve())
            if match is None or match.aoi is None:
                raise DatasetError(f"manifest row {s.row}: {s.image.name}: no predicted AOI for this image in {root}")
            rows.append(match)
        return load_split(rows, size, root=root).aoi

    return source


def _from_segmenter(run: Path, cache_dir: Path | None):
    def source(samples: list[Sample], size: int) -> np.ndarray:
        key = hashlib.sha256(("|".join(str(s.image) for s in samples) + f"|{size}|"
                              + str((run / "best.pt").stat().st_mtime if (run / "best.pt").exists() else run)
                              ).encode()).hexdigest()[:16]
        cache = cache_dir / f"aoi_cache_{key}.npz" if cache_dir else None
        if cache is not None and cache.is_file():
            return np.load(cache)["masks"]
        from ceod.segmenter.predict import load_segmenter, predict_masks
        model, cfg, _ = load_segmenter(run)
        data = load_split(samples, cfg.input_size, progress=True, desc="segmenting")
        masks = predict_masks(model, cfg, data.images)
        if masks.shape[1] != size:
            import cv2
            masks = np.stack([cv2.resize(m, (size, size), interpolation=cv2.INTER_NEAREST) for m in masks])
        if cache is not None:  # atomic: under torchrun every rank may write it
            import os
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(f".{cache.name}.{os.getpid()}.npz")
            np.savez_compressed(tmp, masks=masks)
            os.replace(tmp, cache)
        return masks

    return source
