"""Decoding manifest rows into arrays at model size (images, AOI and defect masks, rendered
backgrounds), one split at a time."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ceod.contracts.classes import ANOMALY_CLASSES
from ceod.data.imageio import ImageDecodeError, read_image, read_mask, resize_image, resize_mask
from ceod.data.manifest import BadRow, DatasetError, Sample, read_manifest
from ceod.data.splits import train_val

log = logging.getLogger(__name__)


def _rel(sample: Sample, path: Path, root: Path | None) -> str:
    try:
        return str(path.relative_to(root)) if root else str(path)
    except ValueError:
        return str(path)


def load_sample(sample: Sample, size: int | None = None, root: Path | None = None
                ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Decode one row: RGB uint8 image, {0,1} AOI and defect masks (None where absent).

    Raises DatasetError naming the row and file for unreadable images and size mismatches.
    """
    try:
        image = read_image(sample.image)
    except ImageDecodeError as exc:
        bad = BadRow(sample.row, _rel(sample, sample.image, root), str(exc))
        raise DatasetError(str(bad), bad) from None
    masks: list[np.ndarray | None] = []
    for path in (sample.aoi, sample.defect_mask):
        if path is None:
            masks.append(None)
            continue
        try:
            mask = read_mask(path)
        except ImageDecodeError as exc:
            bad = BadRow(sample.row, _rel(sample, path, root), str(exc))
            raise DatasetError(str(bad), bad) from None
        if mask.shape[:2] != image.shape[:2]:
            reason = f"mask size {mask.shape[1]}x{mask.shape[0]} differs from image {image.shape[1]}x{image.shape[0]}"
            bad = BadRow(sample.row, _rel(sample, path, root), reason)
            raise DatasetError(str(bad), bad)
        masks.append(mask)
    return _resized(image, masks[0], masks[1], size)


def _resized(image: np.ndarray, aoi: np.ndarray | None, defect: np.ndarray | None, size: int | None):
    if size is None:
        return image, aoi, defect
    return (resize_image(image, size), None if aoi is None else resize_mask(aoi, size),
            None if defect is None else resize_mask(defect, size))


@dataclass
class LoadedSplit:
    """Decoded, resized rows held in memory (small enough here; saves decoding every epoch)."""

    samples: list[Sample]
    images: np.ndarray  # [N,S,S,3] uint8 RGB
    aoi: np.ndarray  # [N,S,S] uint8 {0,1}; all ones where the row has no AOI
    has_aoi: np.ndarray  # [N] bool
    labels: np.ndarray  # [N] int64
    defects: np.ndarray | None = None  # [N,S,S] uint8 or None if no row has one
    sizes: np.ndarray | None = None  # [N,2] original (height, width), before resizing
    classes: tuple[str, ...] = ANOMALY_CLASSES
    backgrounds: np.ndarray | None = None  # [N,S,S,3] uint8, each scene without its part, or None

    def __len__(self) -> int:
        return len(self.samples)

    def subset(self, index: Iterable[int]) -> "LoadedSplit":
        idx = np.asarray(list(index), dtype=np.int64)
        return LoadedSplit([self.samples[i] for i in idx], self.images[idx], self.aoi[idx],
                           self.has_aoi[idx], self.labels[idx],
                           None if self.defects is None else self.defects[idx],
                           None if self.sizes is None else self.sizes[idx], self.classes,
                           None if self.backgrounds is None else self.backgrounds[idx])


def load_split(samples: list[Sample], size: int, skip_bad: bool = False, root: Path | None = None,
               progress: bool = False, desc: str = "loading",
               classes: Sequence[str] = ANOMALY_CLASSES, with_backgrounds: bool = True) -> LoadedSplit:
    """Decode and resize rows in parallel threads; bad rows raise or are skipped with a count.
    Rows' part-free backgrounds (a `background` column) are loaded too when every row has one."""
    with_backgrounds = with_backgrounds and all(s.background is not None for s in samples)
    if not samples:
        raise DatasetError("no rows to load: check the split name and the --split-column")

    def work(sample: Sample):
        try:
            image, aoi, defect = load_sample(sample, None, root)
            background = None
            if with_backgrounds:
                background = resize_image(read_image(sample.background), size)
        except ImageDecodeError as exc:
            return DatasetError(str(BadRow(sample.row, _rel(sample, sample.background, root), str(exc))))
        except DatasetError as exc:
            return exc
        return (*_resized(image, aoi, defect, size), image.shape[:2], background)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = pool.map(work, samples)
        if progress:
            from ceod.progress import progress_bar
            results = progress_bar(results, total=len(samples), desc=desc)
        results = list(results)
    errors = [r for r in results if isinstance(r, DatasetError)]
    if errors and not skip_bad:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise DatasetError(f"{errors[0]}{more}. Fix the row, or pass --skip-bad to skip bad rows.")
    if errors:
        log.warning("skipped %d unreadable row(s); first: %s", len(errors), errors[0])
    keep = [(s, r) for s, r in zip(samples, results) if not isinstance(r, DatasetError)]
    if not keep:
        raise DatasetError("every row failed to load")
    images = np.stack([r[0] for _, r in keep])
    has_aoi = np.array([r[1] is not None for _, r in keep])
    aoi = np.stack([r[1] if r[1] is not None else np.ones((size, size), np.uint8) for _, r in keep])
    any_defect = any(r[2] is not None for _, r in keep)
    defects = (np.stack([r[2] if r[2] is not None else np.zeros((size, size), np.uint8) for _, r in keep])
               if any_defect else None)
    labels = np.array([s.label for s, _ in keep], dtype=np.int64)
    sizes = np.array([r[3] for _, r in keep], dtype=np.int64)
    backgrounds = np.stack([r[4] for _, r in keep]) if with_backgrounds else None
    return LoadedSplit([s for s, _ in keep], images, aoi, has_aoi, labels, defects, sizes, tuple(classes),
                       backgrounds)


def load_train_val(data: str | Path, cfg, seed: int, skip_bad: bool = False,
                   filters: dict[str, str] | None = None, max_train_images: int | None = None,
                   require_aoi: bool = False, progress: bool = True) -> tuple[LoadedSplit, LoadedSplit]:
    """Decoded train and validation rows for a stage config (a ceod.contracts.schema.DataConfig).

    `max_train_images` keeps a seeded subset of the training rows (e.g. few annotated images);
    `require_aoi` keeps only rows with an AOI mask (the segmenter's targets).
    """
    manifest = read_manifest(data, cfg.split_column, skip_bad=skip_bad,
                             classes=getattr(cfg, "classes", None) or None, train_split=cfg.train_split)
    if require_aoi:
        manifest.samples = [s for s in manifest.samples if s.aoi is not None]
    train_rows, val_rows = train_val(manifest, cfg.train_split, cfg.val_split, cfg.val_fraction, filters,
                                     seed, cfg.max_val_images)
    if max_train_images:
        pick = np.random.default_rng(seed).permutation(len(train_rows))[:max_train_images]
        train_rows = [train_rows[i] for i in sorted(pick)]
    root = Path(data)
    return (load_split(train_rows, cfg.input_size, skip_bad, root, progress, "loading train", manifest.classes),
            load_split(val_rows, cfg.input_size, skip_bad, root, progress, "loading val", manifest.classes))
