"""`ceod data import`: the folders and annotation files users already have -> a ceod dataset.

Formats: `imagefolder` (one folder per class, optional train/val/test level), `mvtec` (MVTec AD's
layout), `coco` (COCO JSON: AOI polygons or RLE, as CVAT, Label Studio and Roboflow export) and
`labelme` (one LabelMe JSON per image). Images are never copied or re-encoded: the new dataset
reaches them through a `source` link; only AOI masks are written. Every broken entry (missing
image, polygon out of bounds, unknown category, size mismatch ...) is reported by file and
annotation; `skip_bad` skips them with a count, nothing is dropped silently.

Torch-free. COCO RLE is decoded with pycocotools (the reference implementation), not by hand.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import cv2
import numpy as np

from ceod.dataset import PATH_COLUMNS, link_source, write_manifest
from ceod.errors import CeodError
from ceod.imageio import ImageDecodeError, read_image

log = logging.getLogger(__name__)

FORMATS = ("imagefolder", "mvtec", "coco", "labelme")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                 "test": "test", "testing": "test"}


class AnnotationError(CeodError):
    """The source holds entries that cannot be imported; the message names file and annotation."""


@dataclass
class ImportOptions:
    labels: dict[str, str] = field(default_factory=dict)  # folder or category name -> label
    split: str = "train"  # split of rows whose path names none
    default_label: str | None = None  # coco/labelme: label of images whose folder maps to none
    aoi_categories: set[str] = field(default_factory=set)  # coco/labelme: empty = every category
    hole_labels: set[str] = field(default_factory=lambda: {"hole"})  # shapes subtracted from the AOI
    images: Path | None = None  # coco: the image folder (default: the JSON's folder)
    defect_classes: bool = False  # mvtec: each defect type its own class instead of `def`
    skip_bad: bool = False
    base: Path | None = None  # coco/labelme: fill the AOI cells of this dataset's rows instead


@dataclass
class _Row:
    image: Path  # absolute
    label: str | None
    split: str
    group: str = ""
    aoi: np.ndarray | None = None  # uint8 {0,255} at the image's own size
    defect_mask: Path | None = None
    extra: dict[str, str] = field(default_factory=dict)


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, reason: str) -> None:
        self.items.append(f"{where}: {reason}")


# ---------------------------------------------------------------- readers

class _AOI:
    """One image's AOI: shapes merged, shapes of a hole category cut out (a ring's hole stays outside)."""

    def __init__(self, h: int, w: int, hole_labels: set[str]) -> None:
        self.inside: np.ndarray | None = None
        self.holes = np.zeros((h, w), np.uint8)
        self.hole_labels = hole_labels

    def add(self, name: str, mask: np.ndarray) -> None:
        if name in self.hole_labels:
            self.holes |= mask
        else:
            self.inside = mask if self.inside is None else self.inside | mask

    def mask(self) -> np.ndarray | None:
        return None if self.inside is None else np.where(self.holes > 0, 0, self.inside).astype(np.uint8)


def _images_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not p.name.startswith("."))


def _split_of(parts: Iterable[str], default: str) -> str:
    for part in parts:
        if part.lower() in SPLIT_ALIASES:
            return SPLIT_ALIASES[part.lower()]
    return default


def _read_imagefolder(root: Path, opt: ImportOptions, problems: _Problems) -> list[_Row]:
    top = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not top:
        raise AnnotationError(f"{root}: no class folders (expected {root}/<class>/<images> or "
                              f"{root}/<train|test>/<class>/<images>)")
    with_split = all(p.name.lower() in SPLIT_ALIASES for p in top)
    pairs = [(SPLIT_ALIASES[s.name.lower()], c) for s in top for c in sorted(s.iterdir()) if c.is_dir()] \
        if with_split else [(opt.split, c) for c in top]
    rows = []
    for split, folder in pairs:
        label = opt.labels.get(folder.name, folder.name)
        images = _images_under(folder)
        if not images:
            problems.add(str(folder), "class folder holds no images")
        rows += [_Row(p, label, split) for p in images]
    return rows


def _read_mvtec(root: Path, opt: ImportOptions, problems: _Problems) -> list[_Row]:
    if not (root / "train" / "good").is_dir() or not (root / "test").is_dir():
        raise AnnotationError(f"{root}: not an MVTec AD category folder (needs train/good/ and test/)")
    rows = [_Row(p, "ok", "train", extra={"defect_type": "good"}) for p in _images_under(root / "train" / "good")]
    for folder in sorted(p for p in (root / "test").iterdir() if p.is_dir()):
        kind = folder.name
        for p in _images_under(folder):
            if kind == "good":
                rows.append(_Row(p, "ok", "test", extra={"defect_type": kind}))
                continue
            mask = root / "ground_truth" / kind / f"{p.stem}_mask.png"
            if not mask.is_file():
                problems.add(str(p), f"no ground-truth mask {mask.relative_to(root)}")
                continue
            rows.append(_Row(p, kind if opt.defect_classes else "def", "test", defect_mask=mask,
                             extra={"defect_type": kind}))
    return rows


def _image_size(path: Path) -> tuple[int, int] | None:
    """(height, width) of an image file, through the decode guard; None if it is not one."""
    try:
        return read_image(path).shape[:2]
    except ImageDecodeError:
        return None


def _label_for(path: Path, root: Path, opt: ImportOptions) -> str | None:
    for part in reversed(path.relative_to(root).parts[:-1] if path.is_relative_to(root) else path.parts[:-1]):
        if part in opt.labels:
            return opt.labels[part]
    return opt.default_label


def _polygon_mask(points: np.ndarray, h: int, w: int) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32).reshape(-1, 1, 2)], 255)
    return mask


def _in_bounds(points: np.ndarray, h: int, w: int, slack: float = 1.0) -> bool:
    return bool((points[:, 0] >= -slack).all() and (points[:, 0] <= w + slack).all()
                and (points[:, 1] >= -slack).all() and (points[:, 1] <= h + slack).all())


def _coco_mask(seg: Any, h: int, w: int) -> np.ndarray:
    """COCO segmentation (polygon list, uncompressed or compressed RLE) -> {0,255} [h,w]."""
    if isinstance(seg, list):
        mask = np.zeros((h, w), np.uint8)
        for poly in seg:
            mask |= _polygon_mask(np.asarray(poly, float).reshape(-1, 2), h, w)
        return mask
    from pycocotools import mask as coco_mask
    rle = coco_mask.frPyObjects(seg, h, w) if isinstance(seg.get("counts"), list) else seg
    if isinstance(rle.get("counts"), str):
        rle = {**rle, "counts": rle["counts"].encode()}
    return coco_mask.decode(rle).astype(np.uint8) * 255


def _read_coco(path: Path, opt: ImportOptions, problems: _Problems) -> list[_Row]:
    try:
        doc = json.loads(path.read_text())
        images, annotations, categories = doc["images"], doc.get("annotations", []), doc.get("categories", [])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AnnotationError(f"{path}: not a COCO JSON file ({type(exc).__name__}: {exc})") from None
    root = opt.images or path.parent
    names = {c["id"]: c["name"] for c in categories}
    by_image: dict[Any, list[dict]] = {}
    for ann in annotations:
        by_image.setdefault(ann.get("image_id"), []).append(ann)
    known = {im.get("id") for im in images}
    for image_id in sorted(set(by_image) - known, key=str):
        problems.add(f"{path.name} annotation {by_image[image_id][0].get('id')}", f"image_id {image_id} is not in images")
    rows = []
    for im in images:
        file = root / im.get("file_name", "")
        where = f"{path.name} image {im.get('id')} ({im.get('file_name')})"
        size = _image_size(file) if file.is_file() else None
        if size is None:
            problems.add(where, "image file missing or unreadable" if file.is_file() else f"missing image {file}")
            continue
        h, w = size
        if (im.get("height"), im.get("width")) not in ((None, None), (h, w)):
            problems.add(where, f"annotated size {im.get('width')}x{im.get('height')} differs from the image's {w}x{h}")
            continue
        aoi, broken = _AOI(h, w, opt.hole_labels), False
        for ann in by_image.get(im.get("id"), []):
            awhere = f"{path.name} annotation {ann.get('id')} on {im.get('file_name')}"
            name = names.get(ann.get("category_id"))
            if name is None:
                problems.add(awhere, f"unknown category id {ann.get('category_id')}")
                broken = True
                continue
            if opt.aoi_categories and name not in opt.aoi_categories and name not in opt.hole_labels:
                continue
            seg = ann.get("segmentation")
            if isinstance(seg, list) and any(not _in_bounds(np.asarray(p, float).reshape(-1, 2), h, w) for p in seg):
                problems.add(awhere, f"polygon out of bounds of the {w}x{h} image")
                broken = True
                continue
            try:
                aoi.add(name, _coco_mask(seg, h, w))
            except Exception as exc:  # noqa: BLE001 - a malformed RLE or polygon
                problems.add(awhere, f"unreadable segmentation ({type(exc).__name__})")
                broken = True
        if broken:
            continue
        label = _label_for(file, root, opt)
        if label is None and opt.base is None:  # with --base the base dataset's labels are kept
            problems.add(where, "no label: pass --label FOLDER=LABEL or --default-label")
            continue
        group = str(im.get("video_id", im.get("group", "")) or "")
        rows.append(_Row(file, label, _split_of(file.relative_to(root).parts[:-1] if file.is_relative_to(root)
                                                else (), opt.split), group, aoi.mask()))
    return rows


def _labelme_shape_mask(shape: dict, h: int, w: int) -> np.ndarray:
    points = np.asarray(shape.get("points", []), float).reshape(-1, 2)
    kind = shape.get("shape_type") or "polygon"
    if kind == "rectangle" and len(points) == 2:
        (x0, y0), (x1, y1) = points
        points = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    elif kind == "circle" and len(points) == 2:
        mask = np.zeros((h, w), np.uint8)
        radius = int(round(float(np.hypot(*(points[1] - points[0])))))
        cv2.circle(mask, tuple(int(round(v)) for v in points[0]), radius, 255, -1)
        return mask
    elif kind != "polygon" or len(points) < 3:
        raise ValueError(f"unsupported LabelMe shape {kind!r} with {len(points)} points")
    return _polygon_mask(points, h, w)


def _read_labelme(root: Path, opt: ImportOptions, problems: _Problems) -> list[_Row]:
    files = sorted(root.rglob("*.json"))
    if not files:
        raise AnnotationError(f"{root}: no LabelMe .json files")
    rows = []
    for path in files:
        try:
            doc = json.loads(path.read_text())
            image_rel, shapes = doc["imagePath"], doc.get("shapes", [])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problems.add(str(path), f"not a LabelMe file ({type(exc).__name__}: {exc})")
            continue
        file = (path.parent / image_rel).resolve()
        size = _image_size(file) if file.is_file() else None
        if size is None:
            problems.add(str(path), f"missing image {file}")
            continue
        h, w = size
        if (doc.get("imageHeight"), doc.get("imageWidth")) not in ((None, None), (h, w)):
            problems.add(str(path), f"annotated size {doc.get('imageWidth')}x{doc.get('imageHeight')} differs "
                                    f"from the image's {w}x{h}")
            continue
        aoi, broken = _AOI(h, w, opt.hole_labels), False
        for i, shape in enumerate(shapes):
            name = shape.get("label", "")
            if opt.aoi_categories and name not in opt.aoi_categories and name not in opt.hole_labels:
                continue
            points = np.asarray(shape.get("points", []), float).reshape(-1, 2)
            if len(points) and not _in_bounds(points, h, w):
                problems.add(f"{path} shape {i} ({name})", f"polygon out of bounds of the {w}x{h} image")
                broken = True
                continue
            try:
                aoi.add(name, _labelme_shape_mask(shape, h, w))
            except ValueError as exc:
                problems.add(f"{path} shape {i} ({name})", str(exc))
                broken = True
        if broken:
            continue
        label = _label_for(file, root, opt) or (doc.get("flags") or {}).get("label")
        if label is None and opt.base is None:  # with --base the base dataset's labels are kept
            problems.add(str(path), "no label: pass --label FOLDER=LABEL or --default-label")
            continue
        rows.append(_Row(file, label, _split_of(file.parts[:-1], opt.split), "", aoi.mask()))
    return rows


READERS = {"imagefolder": _read_imagefolder, "mvtec": _read_mvtec, "coco": _read_coco, "labelme": _read_labelme}


# ---------------------------------------------------------------- writing

def import_dataset(source: str | Path, out: str | Path, fmt: str, opt: ImportOptions | None = None) -> dict:
    """Read `source` in format `fmt` and write the dataset `out`; returns a summary with counts."""
    opt = opt or ImportOptions()
    source, out = Path(source), Path(out)
    if fmt not in READERS:
        raise AnnotationError(f"--from {fmt}: choose one of {', '.join(FORMATS)}")
    if not source.exists():
        raise AnnotationError(f"{source} does not exist")
    if (out / "manifest.csv").exists():
        raise FileExistsError(f"{out} already holds a dataset; choose a new folder")
    if out.exists() and any(out.iterdir()):
        raise AnnotationError(f"{out} is not empty; choose a new folder (nothing is overwritten)")
    problems = _Problems()
    rows = READERS[fmt](source, opt, problems)
    if problems.items and not opt.skip_bad:
        more = f" (and {len(problems.items) - 1} more)" if len(problems.items) > 1 else ""
        raise AnnotationError(f"{problems.items[0]}{more}. Fix the entry, or pass --skip-bad to skip it.")
    if problems.items:
        log.warning("skipped %d broken entr%s; first: %s", len(problems.items),
                    "y" if len(problems.items) == 1 else "ies", problems.items[0])
    if not rows:
        raise AnnotationError(f"{source}: nothing to import as {fmt}")
    if opt.base is not None:
        return _fill_base(rows, opt.base, out, problems)
    images_root = source if source.is_dir() else (opt.images or source.parent)
    out.mkdir(parents=True, exist_ok=True)
    link = link_source(out, images_root)
    records = []
    for row in rows:
        rel = row.image.resolve().relative_to(images_root.resolve())
        aoi_rel = ""
        if row.aoi is not None:
            aoi_rel = str(Path("aoi") / rel.with_suffix(".png"))
            (out / aoi_rel).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(out / aoi_rel), row.aoi)
        defect = "" if row.defect_mask is None else \
            str(Path(link.name) / row.defect_mask.resolve().relative_to(images_root.resolve()))
        records.append({"image": str(Path(link.name) / rel), "aoi": aoi_rel, "split": row.split, "label": row.label,
                        "defect_mask": defect, "group": row.group, **row.extra})
    write_manifest(out, records)
    return _summary(records, problems, out)


def _fill_base(rows: list[_Row], base: Path, out: Path, problems: _Problems) -> dict:
    """Close the annotation loop: `base`'s rows, with the AOI of every image the annotations cover."""
    if not (base / "manifest.csv").is_file():
        raise AnnotationError(f"--base {base}: no manifest.csv there")
    with (base / "manifest.csv").open(newline="") as fh:
        base_rows = list(csv.DictReader(fh))
    annotated = {r.image.resolve(): r for r in rows if r.aoi is not None}
    out.mkdir(parents=True, exist_ok=True)
    link = link_source(out, base)
    filled = 0
    for record in base_rows:
        rel = record["image"]
        row = annotated.pop((base / rel).resolve(), None)
        for column in PATH_COLUMNS:
            if record.get(column):
                record[column] = str(Path(link.name) / record[column])
        if row is not None:
            aoi_rel = Path("aoi") / Path(rel).with_suffix(".png")
            (out / aoi_rel).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(out / aoi_rel), row.aoi)
            record["aoi"] = str(aoi_rel)
            filled += 1
    for image in annotated:
        problems.add(str(image), f"annotated image is not a row of {base}")
    if annotated:
        log.warning("%d annotated image(s) are not rows of %s", len(annotated), base)
    write_manifest(out, base_rows)
    summary = _summary(base_rows, problems, out)
    summary["filled"] = filled
    return summary


def _summary(records: list[dict[str, Any]], problems: _Problems, out: Path) -> dict:
    counts: dict[str, dict[str, int]] = {}
    for r in records:
        per = counts.setdefault(r["split"], {})
        per[r["label"]] = per.get(r["label"], 0) + 1
    return {"out": str(out), "rows": len(records), "with_aoi": sum(bool(r.get("aoi")) for r in records),
            "skipped": len(problems.items), "counts": counts}
