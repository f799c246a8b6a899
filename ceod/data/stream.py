"""`ceod data stream`: a line stream made of a real dataset's images, changing at a known frame.

The drift watch's bench on real parts: frames drawn from one split's images in a seeded order,
each with a small label-preserving jitter (flips, a gain within 2 %, sensor noise) so that no two
frames are identical, and from frame `at` on the change drawn on the real frames. The changes are
the synthetic stream's kinds, drawn with the frame's AOI mask so that those meant to stay outside
the part (belt, fixture, dirt) never touch it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np

from ceod.contracts.config import ConfigError
from ceod.data.imageio import read_image, read_mask
from ceod.data.manifest import Sample, read_manifest
from ceod.data.synth import CHANGES, first_changed_frame

REAL_CHANGES: dict[str, str] = {
    "none": CHANGES["none"],
    "lamp": "the lamp dims: every grey level x0.75",
    "belt": "a new belt: a coarse woven texture over the background outside the part",
    "fixture": "a bright fixture bar across the top of the frame, outside the part",
    "camera": "the camera shifts by 5% of the frame to the right (the part and its AOI move)",
    "dirt": "dark marks on the background outside the part, in every frame",
    "defect_rate": "the defect rate rises to 0.9",
}


def _jitter(image: np.ndarray, aoi: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if rng.random() < 0.5:
        image, aoi = image[:, ::-1], aoi[:, ::-1]
    if rng.random() < 0.5:
        image, aoi = image[::-1], aoi[::-1]
    noisy = image.astype(np.float32) * rng.uniform(0.98, 1.02) + rng.normal(0, 1.0, image.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8), np.ascontiguousarray(aoi)


def _change(image: np.ndarray, aoi: np.ndarray, change: str, rng: np.random.Generator
            ) -> tuple[np.ndarray, np.ndarray]:
    h, w = aoi.shape
    outside = aoi == 0
    image = image.copy()
    if change == "lamp":
        image = (image.astype(np.float32) * 0.75).astype(np.uint8)
    elif change == "belt":
        yy, xx = np.mgrid[0:h, 0:w]
        period = max(6, w // 16)
        weave = 0.75 + 0.25 * ((((yy // period) + (xx // period)) % 2) * 0.6
                               + 0.4 * (np.sin(2 * np.pi * xx / period) > 0))
        woven = (image.astype(np.float32) * weave[..., None]).astype(np.uint8)
        image[outside] = woven[outside]
    elif change == "fixture":
        bar = np.zeros((h, w), bool)
        bar[: max(2, int(0.07 * h))] = True
        image[bar & outside] = (235, 235, 230)
    elif change == "camera":
        shift = np.float32([[1, 0, 0.05 * w], [0, 1, 0]])
        image = cv2.warpAffine(image, shift, (w, h), borderMode=cv2.BORDER_REFLECT_101)
        aoi = cv2.warpAffine(aoi, shift, (w, h), flags=cv2.INTER_NEAREST, borderValue=0)
    elif change == "dirt":
        marks = np.zeros((h, w), np.uint8)
        for _ in range(int(rng.integers(3, 7))):
            centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            axes = (int(rng.integers(2, max(3, w // 20))), int(rng.integers(2, max(3, h // 30))))
            cv2.ellipse(marks, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        image[(marks > 0) & outside] = (35, 32, 30)
    return image, aoi


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def stream_from_dataset(dataset: str | Path, out: str | Path, split: str = "test", split_column: str = "split",
                        change: str = "none", at: int | None = None, frames: int = 1000, seed: int = 0,
                        progress: bool = True) -> dict:
    """Write OUT/frames, OUT/aoi, OUT/stream.csv (frame, image, aoi, label, changed, source) and
    OUT/change.json (the ground truth: kind, first changed frame). The dataset is only read."""
    from ceod.progress import progress_bar

    out = Path(out)
    at = first_changed_frame(change, REAL_CHANGES, frames, at)
    if (out / "stream.csv").exists() or (out / "frames").exists():
        raise FileExistsError(f"{out} already holds a stream; choose an empty folder")
    manifest = read_manifest(dataset, split_column, collect_only=True)
    rows = [s for s in manifest.split(split) if s.aoi is not None]
    if not rows:
        raise ConfigError(f"split '{split}' (column '{split_column}') has no row with an AOI mask; splits present: "
                          f"{manifest.splits}")
    by_label: dict[int, list[Sample]] = {}
    for s in rows:
        by_label.setdefault(s.label, []).append(s)
    def_index = manifest.classes.index("def") if "def" in manifest.classes else None
    if change == "defect_rate" and (def_index is None or len(by_label) < 2):
        raise ConfigError("--change defect_rate needs ok and def rows in the split")
    start = time.perf_counter()
    for folder in ("frames", "aoi"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    order = np.random.default_rng([seed, 7]).permutation(len(rows))
    cursors = {label: 0 for label in by_label}
    png = [cv2.IMWRITE_PNG_COMPRESSION, 1]
    lines = []
    for i in progress_bar(range(frames), total=frames, desc="stream", disable=not progress):
        rng = np.random.default_rng([seed, 99, i])
        changed = i >= at
        if change == "defect_rate" and changed:
            label = def_index if rng.random() < 0.9 else next(k for k in by_label if k != def_index)
            pool = by_label[label]
            sample = pool[cursors[label] % len(pool)]
            cursors[label] += 1
        else:
            sample = rows[order[i % len(rows)]]
        image, aoi = _jitter(read_image(sample.image), (read_mask(sample.aoi) > 0).astype(np.uint8) * 255, rng)
        if changed:
            image, aoi = _change(image, aoi, change, rng)
        name = f"frame_{i:05d}.png"
        cv2.imwrite(str(out / "frames" / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), png)
        cv2.imwrite(str(out / "aoi" / name), aoi, png)
        lines.append(f"{i},frames/{name},aoi/{name},{manifest.classes[sample.label]},{int(changed)},"
                     f"{_relative(sample.image, Path(dataset))}")
    (out / "stream.csv").write_text("frame,image,aoi,label,changed,source\n" + "\n".join(lines) + "\n")
    truth = {"change": change, "description": REAL_CHANGES[change], "at": at if change != "none" else None,
             "frames": frames, "dataset": str(Path(dataset).resolve()), "split": split, "split_column": split_column,
             "seed": seed}
    (out / "change.json").write_text(json.dumps(truth, indent=1))
    return {**truth, "seconds": round(time.perf_counter() - start, 2), "out": str(out)}
