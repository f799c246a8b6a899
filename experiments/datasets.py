"""The datasets `ceod experiment` runs on: presets (configs/experiments.yaml) and the grouped
cross-validation folds."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ceod.contracts.config import read_packaged
from ceod.contracts.errors import CeodError


@dataclass
class DatasetSpec:
    name: str
    data: Path
    split_column: str
    test_splits: list[str]
    overrides: dict[str, Any] = field(default_factory=dict)
    max_train_images: int | None = None
    # grouped cross-validation: "seed" k trains on the other folds and tests on fold k
    # (split column fold{k}); the folds are made by `make_folds`
    folds: int = 0
    # the audit (5 replacements, a forward pass each) runs on a seeded subset of at most this many
    # test images per split (0: all); accuracy is always measured on the whole split
    audit_max: int = 0

    def split_column_for(self, seed: int) -> str:
        """Seed s of a k-fold preset runs fold s mod k: seeds 0..k-1 are the folds, k..2k-1 a second
        run of each (its own validation carve and initialisation, both drawn from the seed)."""
        if not self.folds:
            return self.split_column
        if seed < 0:
            raise CeodError(f"{self.name} is {self.folds}-fold cross-validation: seed s runs fold s mod {self.folds}, "
                            "so seeds are 0 or more")
        return f"fold{seed % self.folds}"


def make_folds(source: Path, out: Path, k: int = 3, seed: int = 0, within: str | None = None) -> Path:
    """A derived dataset (manifest only; images reached through OUT/source) with every column of
    the source plus fold0..fold{k-1} = train | test: every family (`group`) in one test fold,
    label mix kept per fold (sklearn's StratifiedGroupKFold). Rows whose AOI was flagged are left out.
    `within`: only the source's rows whose column of that name says `train` (the inner folds of
    an outer fold's training families, for cross-fitted scores)."""
    from sklearn.model_selection import StratifiedGroupKFold

    from ceod.data.manifest import derive_dataset, read_rows

    if (out / "manifest.csv").is_file():
        return out
    rows = [r for r in read_rows(source) if r.get("aoi_status", "ok") == "ok" and (within is None or r[within] == "train")]
    if not rows or "group" not in rows[0]:
        raise CeodError(f"{source}/manifest.csv needs a 'group' column (one id per family of near-copies) "
                        "for grouped cross-validation")
    labels = [r["label"] for r in rows]
    groups = [r["group"] for r in rows]
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    test_fold = np.empty(len(rows), dtype=np.int64)
    for fold, (_, test_index) in enumerate(splitter.split(np.zeros(len(rows)), labels, groups)):
        test_fold[test_index] = fold
    # written atomically: workers may race to make the folds
    derive_dataset(out, source, [{**r, **{f"fold{f}": "test" if f == fold else "train" for f in range(k)}}
                                 for r, fold in zip(rows, test_fold)])
    return out


def presets(out: Path, casting: Path | None = None) -> dict[str, DatasetSpec]:
    """The dataset presets of configs/experiments.yaml; `data: casting` is the --casting folder,
    any other `data` a folder under `out`."""
    specs = {}
    for name, entry in read_packaged("experiments.yaml")["datasets"].items():
        data = (casting or Path("--casting")) if entry["data"] == "casting" else out / entry["data"]
        specs[name] = DatasetSpec(name, Path(data), entry["split_column"], list(entry["test_splits"]),
                                  dict(entry.get("overrides") or {}), entry.get("max_train_images"),
                                  int(entry.get("folds", 0)), int(entry.get("audit_max", 0)))
    return specs
