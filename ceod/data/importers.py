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

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import cv2
import numpy as np

from ceod.data.manifest import Own, derive_dataset, read_rows
from ceod.contracts.errors import CeodError
from ceod.data.imageio import ImageDecodeError, read_image

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


def _points(values: Any) -> np.ndarray:
    """[[x, y], ...] from a flat or paired list of numbers; a malformed list is a ValueError."""
    points = np.asarray(values, dtype=float)
    if points.size == 0 or points.size % 2 or not np.isfinite(points).all():
        raise ValueError(f"a polygon needs an even number of finite coordinates, got {points.size}")
    return points.reshape(-1, 2)


def _lexically_inside(path: Path, root: Path) -> bool:
    """`path`, as written (links not followed), does not climb out of `root` through '..'."""
    import os
    return not os.path.relpath(os.path.normpath(path), os.path.normpath(root)).startswith("..")


def _coco_mask(seg: Any, h: int, w: int) -> np.ndarray:
    """COCO segmentation (polygon list, uncompressed or compressed RLE) -> {0,255} [h,w]."""
    if isinstance(seg, list):
        mask = np.zeros((h, w), np.uint8)
        for poly in seg:
            mask |= _polygon_mask(_points(poly), h, w)
        return mask
    if not isinstance(seg, dict):
        raise ValueError("segmentation is neither a polygon list nor an RLE")
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
    if not all(isinstance(x, list) for x in (images, annotations, categories)):
        raise AnnotationError(f"{path}: 'images', 'annotations' and 'categories' must be lists")
    root = opt.images or path.parent
    names: dict[Any, str] = {}
    for i, c in enumerate(categories):
        if not isinstance(c, dict) or not isinstance(c.get("name"), str) or isinstance(c.get("id"), (dict, list)):
            problems.add(f"{path.name} category {i}", "not a category with an id and a name")
            continue
        names[c["id"]] = c["name"]
    by_image: dict[Any, list[dict]] = {}
    for i, ann in enumerate(annotations):
        if not isinstance(ann, dict) or isinstance(ann.get("image_id"), (dict, list)):
            problems.add(f"{path.name} annotation {i}", "not an annotation with an image_id")
            continue
        by_image.setdefault(ann.get("image_id"), []).append(ann)
    entries = []
    for i, im in enumerate(images):
        if isinstance(im, dict) and isinstance(im.get("file_name"), str) and not isinstance(im.get("id"), (dict, list)):
            entries.append(im)
        else:
            problems.add(f"{path.name} image {i}", "not an image entry with an id and a file_name")
    images = entries
    known = {im.get("id") for im in images}
    for image_id in sorted(set(by_image) - known, key=str):
        problems.add(f"{path.name} annotation {by_image[image_id][0].get('id')}", f"image_id {image_id} is not in images")
    rows = []
    seen: dict[str, Any] = {}
    for im in images:
        file = root / im["file_name"]
        where = f"{path.name} image {im.get('id')} ({im.get('file_name')})"
        if im["file_name"] in seen:
            problems.add(where, f"the same file as image {seen[im['file_name']]}")
            continue
        seen[im["file_name"]] = im.get("id")
        if not _lexically_inside(file, root):
            problems.add(where, f"file_name leaves the image folder {root}")
            continue
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
            try:
                if isinstance(seg, list) and any(not _in_bounds(_points(p), h, w) for p in seg):
                    problems.add(awhere, f"polygon out of bounds of the {w}x{h} image")
                    broken = True
                    continue
                aoi.add(name, _coco_mask(seg, h, w))
            except Exception as exc:  # noqa: BLE001 - a malformed RLE or polygon
                problems.add(awhere, f"unreadable segmentation ({type(exc).__name__}: {str(exc)[:120]})")
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
    points = _points(shape.get("points", []))
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
            if not isinstance(image_rel, str) or not isinstance(shapes, list):
                raise TypeError("imagePath must be text and shapes a list")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            problems.add(str(path), f"not a LabelMe file ({type(exc).__name__}: {exc})")
            continue
        file = path.parent / image_rel
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
            name = shape.get("label", "") if isinstance(shape, dict) else None
            if not isinstance(name, str):
                problems.add(f"{path} shape {i}", "not a shape with a text label")
                broken = True
                continue
            if opt.aoi_categories and name not in opt.aoi_categories and name not in opt.hole_labels:
                continue
            try:
                points = _points(shape.get("points", []))
                if not _in_bounds(points, h, w):
                    problems.add(f"{path} shape {i} ({name})", f"polygon out of bounds of the {w}x{h} image")
                    broken = True
                    continue
                aoi.add(name, _labelme_shape_mask(shape, h, w))
            except (ValueError, TypeError) as exc:
                problems.add(f"{path} shape {i} ({name})", str(exc)[:200])
                broken = True
        if broken:
            continue
        flags = doc.get("flags") if isinstance(doc.get("flags"), dict) else {}
        label = _label_for(file, root, opt) or flags.get("label")
        if label is not None and not isinstance(label, str):
            problems.add(str(path), f"label {label!r} is not text")
            continue
        if label is None and opt.base is None:  # with --base the base dataset's labels are kept
            problems.add(str(path), "no label: pass --label FOLDER=LABEL or --default-label")
            continue
        rows.append(_Row(file, label, _split_of(file.parts[:-1], opt.split), "", aoi.mask()))
    return rows


READERS = {"imagefolder": _read_imagefolder, "mvtec": _read_mvtec, "coco": _read_coco, "labelme": _read_labelme}


# ---------------------------------------------------------------- writing

def import_dataset(source: str | Path, out: str | Path, fmt: str, opt: ImportOptions | None = None) -> dict:
    """Read `source` in format `fmt` and write the dataset `out`; returns a summary with counts.

    The dataset is built in a hidden folder beside `out` and renamed to `out` only when complete,
    so a failed import leaves nothing behind; every file it writes is checked to lie inside it."""
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
    images_root = source if source.is_dir() else (opt.images or source.parent)
    if opt.base is not None:
        records, aois = _fill_base(rows, opt.base, problems)
    else:
        records, aois = _new_records(rows, images_root, problems)
    if problems.items and not opt.skip_bad:
        more = f" (and {len(problems.items) - 1} more)" if len(problems.items) > 1 else ""
        raise AnnotationError(f"{problems.items[0]}{more}. Fix the entry, or pass --skip-bad to skip it.")
    if problems.items:
        log.warning("skipped %d broken entr%s; first: %s", len(problems.items),
                    "y" if len(problems.items) == 1 else "ies", problems.items[0])
    if not records:
        raise AnnotationError(f"{source}: nothing to import as {fmt}")
    _build(out, opt.base if opt.base is not None else images_root, records, aois)
    summary = _summary(records, problems, out)
    if opt.base is not None:
        summary["filled"] = len(aois)
    return summary


def _new_records(rows: list[_Row], images_root: Path, problems: _Problems
                 ) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Manifest records for a new dataset reaching its images through `source/`, and the AOI
    masks to write (relative path -> mask). A row's path inside the source folder is what counts,
    not where a link in it points (an imagefolder of symlinks imports)."""
    records, aois = [], {}
    for row in rows:
        if not _lexically_inside(row.image, images_root):
            problems.add(str(row.image), f"image lies outside the source folder {images_root}")
            continue
        rel = Path(os.path.relpath(os.path.normpath(row.image), os.path.normpath(images_root)))
        aoi_rel = ""
        if row.aoi is not None:
            aoi_rel = Own(Path("aoi") / rel.with_suffix(".png"))
            aois[aoi_rel] = row.aoi
        defect = "" if row.defect_mask is None else os.path.relpath(
            os.path.normpath(row.defect_mask), os.path.normpath(images_root))
        records.append({"image": str(rel), "aoi": aoi_rel, "split": row.split, "label": row.label,
                        "defect_mask": defect, "group": row.group, **row.extra})
    return records, aois


def _fill_base(rows: list[_Row], base: Path, problems: _Problems
               ) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Close the annotation loop: `base`'s rows, with the AOI of every image the annotations
    cover. An annotated image that is not a row of `base` is a bad entry."""
    base_rows = read_rows(base)
    annotated = {os.path.normpath(r.image.resolve()): r for r in rows if r.aoi is not None}
    aois = {}
    for record in base_rows:
        rel = record["image"]
        row = annotated.pop(os.path.normpath((base / rel).resolve()), None)
        if row is not None:
            aoi_rel = Own(Path("aoi") / Path(rel).with_suffix(".png"))
            if not _lexically_inside(Path(aoi_rel), Path("aoi")):
                problems.add(str(row.image), f"base row {rel!r} would put its AOI outside the new dataset")
                continue
            aois[aoi_rel] = row.aoi
            record["aoi"] = aoi_rel
    for image in annotated:
        problems.add(str(image), f"annotated image is not a row of {base}")
    return base_rows, aois


def _build(out: Path, source: Path, records: list[dict[str, Any]], aois: dict[str, np.ndarray]) -> None:
    """Write the dataset into a hidden sibling of `out`, checking every path stays inside it,
    then rename it to `out`; on any failure the sibling is removed and `out` is untouched."""
    import shutil
    import tempfile
    out.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{out.name}.importing-", dir=out.parent))
    try:
        for rel, mask in aois.items():
            target = build / rel
            if not _lexically_inside(target, build / "aoi"):
                raise AnnotationError(f"AOI path {rel} would be written outside {out}; refused (nothing written)")
            target.parent.mkdir(parents=True, exist_ok=True)
            if not cv2.imwrite(str(target), mask):
                raise AnnotationError(f"cannot write {target.relative_to(build)} (disk full or not writable)")
        derive_dataset(build, source, records)
        if out.exists():
            out.rmdir()  # empty (checked at start): a folder the user made for it
        os.replace(build, out)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise


def _summary(records: list[dict[str, Any]], problems: _Problems, out: Path) -> dict:
    counts: dict[str, dict[str, int]] = {}
    for r in records:
        per = counts.setdefault(r["split"], {})
        per[r["label"]] = per.get(r["label"], 0) + 1
    return {"out": str(out), "rows": len(records), "with_aoi": sum(bool(r.get("aoi")) for r in records),
            "skipped": len(problems.items), "counts": counts}
