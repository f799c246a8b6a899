"""`ceod data check`: decode every row once and report counts, AOI coverage and every bad row."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ceod.contracts.classes import ANOMALY_CLASSES
from ceod.data.manifest import BadRow, DatasetError, Sample, read_manifest
from ceod.data.loading import load_sample


@dataclass
class CheckReport:
    """What `ceod data check` prints."""

    counts: dict[str, dict[str, int]]  # split -> class name -> rows
    aoi_coverage: dict[str, dict[str, float]]
    bad: list[BadRow]
    rows: int
    classes: tuple[str, ...] = ANOMALY_CLASSES

    @property
    def ok(self) -> bool:
        return not self.bad


def check_dataset(root: str | Path, split_column: str = "split", progress: bool = True,
                  classes: Sequence[str] | None = None) -> CheckReport:
    """Decode every row and report counts, AOI coverage and every bad row."""
    root = Path(root)
    manifest = read_manifest(root, split_column=split_column, collect_only=True, classes=classes)
    bad = list(manifest.bad)
    coverage: dict[str, list[float]] = {}
    good: list[Sample] = []

    def work(sample: Sample):
        try:
            image, aoi, _ = load_sample(sample, None, root)
        except DatasetError as exc:
            return exc
        return None if aoi is None else float(aoi.mean())

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = pool.map(work, manifest.samples)
        if progress:
            from ceod.progress import progress_bar
            results = progress_bar(results, total=len(manifest.samples), desc="checking")
        for sample, result in zip(manifest.samples, results):
            if isinstance(result, DatasetError):
                bad.append(result.bad or BadRow(sample.row, str(sample.image), str(result)))
                continue
            good.append(sample)
            if result is not None:
                coverage.setdefault(sample.split, []).append(result)
    counts: dict[str, dict[str, int]] = {}
    for s in good:
        per = counts.setdefault(s.split, {name: 0 for name in manifest.classes})
        per[manifest.classes[s.label]] += 1
    cov = {split: {"mean": float(np.mean(v)), "min": float(np.min(v)), "max": float(np.max(v)),
                   "n": len(v)} for split, v in coverage.items()}
    bad.sort(key=lambda b: b.row)
    return CheckReport(counts, cov, bad, len(manifest.samples) + len(manifest.bad), manifest.classes)
