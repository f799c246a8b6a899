"""The dataset contract every stage reads: DATASET/manifest.csv + the files it names (DESIGN §3).

No torch here: the runtime and `ceod data check` use it too.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ceod.classes import ANOMALY_CLASSES, infer_classes
from ceod.errors import CeodError
from ceod.imageio import ImageDecodeError, read_image, read_mask, resize_image, resize_mask

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("image", "aoi", "label")


class DatasetError(CeodError, ValueError):
    """The dataset is unusable as given; the message names the row and the file."""

    def __init__(self, message: str, bad: "BadRow | None" = None) -> None:
        super().__init__(message)
        self.bad = bad  # the row, when the error is about one row


# manifest columns that hold paths relative to the dataset folder (a derived dataset rewrites them)
PATH_COLUMNS = ("image", "aoi", "defect_mask", "background")


@dataclass(frozen=True)
class Sample:
    """One manifest row, paths resolved against the dataset folder."""

    row: int  # 1-based data row (the header is not counted)
    image: Path
    aoi: Path | None
    split: str
    label: int  # index into the manifest's (or the model's) class names
    defect_mask: Path | None = None
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    # the same scene without the part (the synthetic line renders it): the audit's clean swap donor
    background: Path | None = None


@dataclass
class BadRow:
    """A row that failed a check, with the file and the reason."""

    row: int
    file: str
    reason: str

    def __str__(self) -> str:
        return f"manifest row {self.row}: {self.file}: {self.reason}"


@dataclass
class Manifest:
    """The rows of a dataset that passed the cheap checks, and those that did not."""

    root: Path
    samples: list[Sample]
    bad: list[BadRow]
    split_column: str
    columns: list[str]
    classes: tuple[str, ...] = ANOMALY_CLASSES  # label index -> name

    def split(self, *names: str) -> list[Sample]:
        wanted = set(names)
        return [s for s in self.samples if s.split in wanted]

    @property
    def splits(self) -> list[str]:
        return sorted({s.split for s in self.samples})


def _resolve(root: Path, rel: str) -> Path:
    """Join a manifest path to the dataset folder, refusing absolute paths and `..` escapes.

    The check is on the text, not on resolved links: a link the dataset's owner placed inside
    the folder (`ceod predict-aoi` links `source` to the original images) is trusted.
    """
    norm = os.path.normpath(rel)
    if os.path.isabs(rel) or norm == ".." or norm.startswith(".." + os.sep):
        raise ValueError("path escapes the dataset folder")
    return root / norm


def _fail(bad: list[BadRow], skip_bad: bool, what: str) -> None:
    if not bad:
        return
    if skip_bad:
        log.warning("skipped %d bad row(s) %s; first: %s", len(bad), what, bad[0])
        return
    more = f" (and {len(bad) - 1} more; `ceod data check` lists them all)" if len(bad) > 1 else ""
    raise DatasetError(f"{bad[0]}{more}. Fix the row, or pass --skip-bad to skip bad rows.")


def read_manifest(root: str | Path, split_column: str = "split", skip_bad: bool = False,
                  require_aoi: bool = False, collect_only: bool = False,
                  classes: Sequence[str] | None = None, train_split: str = "train") -> Manifest:
    """Parse and check DATASET/manifest.csv without decoding images.

    Args:
        root: dataset folder.
        split_column: the column that holds the split (e.g. ``split_grouped``).
        skip_bad: drop bad rows with a warning and a count instead of raising.
        require_aoi: treat an empty ``aoi`` cell as a bad row.
        collect_only: never raise for bad rows; return them in ``Manifest.bad``.
        classes: the class names in index order (a model's, or the config's ``classes``). None infers
            them from the labels of ``train_split`` (all rows if it has none): ok/def when those are
            all ok or def, else their sorted set. A label outside the set is a bad row, so a typo in
            a test row never becomes a class of its own.
        train_split: the split whose labels define the classes when ``classes`` is None.
    """
    root = Path(root)
    manifest_path = root / "manifest.csv"
    if not manifest_path.is_file():
        raise DatasetError(f"{manifest_path} not found: a dataset is a folder with manifest.csv "
                           "(columns image,aoi,split,label[,defect_mask]); `ceod synth` makes one")
    columns, rows = _read_csv(manifest_path)
    missing = [c for c in (*REQUIRED_COLUMNS, split_column) if c not in columns]
    if missing:
        hint = f" (columns present: {', '.join(columns)})"
        raise DatasetError(f"{manifest_path}: missing column(s) {', '.join(missing)}{hint}")
    if not classes:
        train_labels = [(r.get("label") or "").strip() for r in rows
                        if (r.get(split_column) or "").strip() == train_split]
        classes = infer_classes(train_labels or [(r.get("label") or "").strip() for r in rows])
    classes = tuple(classes)
    index_of = {name: i for i, name in enumerate(classes)}
    samples: list[Sample] = []
    bad: list[BadRow] = []
    for index, row in enumerate(rows, start=1):
        image_rel = (row.get("image") or "").strip()
        label = (row.get("label") or "").strip()
        try:
            if not image_rel:
                raise _Bad("<empty>", "empty image path")
            if label not in index_of:
                raise _Bad(image_rel, f"label {label!r} is not one of {list(classes)} (the classes come "
                           "from the training split's labels or the config's `classes`)")
            paths: dict[str, Path | None] = {}
            for column in PATH_COLUMNS:
                rel = (row.get(column) or "").strip()
                if not rel:
                    if column == "image" or (column == "aoi" and require_aoi):
                        raise _Bad(image_rel, f"empty {column} path")
                    paths[column] = None
                    continue
                try:
                    paths[column] = _resolve(root, rel)
                except ValueError as exc:
                    raise _Bad(rel, str(exc)) from None
                if not paths[column].is_file():
                    raise _Bad(rel, f"{column} file does not exist")
        except _Bad as exc:
            bad.append(BadRow(index, exc.file, exc.reason))
            continue
        extra = {k: v for k, v in row.items() if k not in (*PATH_COLUMNS, "label")}
        samples.append(Sample(index, paths["image"], paths["aoi"], (row.get(split_column) or "").strip(),
                              index_of[label], paths["defect_mask"], extra, paths["background"]))
    samples, leaked = _split_leaks(samples)
    bad += leaked
    if not collect_only:
        _fail(bad, skip_bad, f"in {manifest_path}")
    return Manifest(root, samples, bad, split_column, columns, classes)


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Column names and rows of a manifest; unreadable text is one line naming the place.
    utf-8-sig: a byte-order mark (Excel writes one) is not part of the first column's name."""
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        try:
            return list(reader.fieldnames or []), list(reader)
        except UnicodeDecodeError as exc:
            raise DatasetError(f"{path}: not UTF-8 text (byte {exc.start} of the file's block near line "
                               f"{reader.line_num + 1}); save it as UTF-8") from None
        except csv.Error as exc:
            raise DatasetError(f"{path}, line {reader.line_num}: {exc}; a field that long is not "
                               "a path or a label") from None


def read_rows(root: str | Path) -> list[dict[str, str]]:
    """A dataset's manifest rows as they are written (every column kept), for deriving a dataset."""
    path = Path(root) / "manifest.csv"
    if not path.is_file():
        raise DatasetError(f"{root}: no manifest.csv there")
    return _read_csv(path)[1]


def _split_leaks(samples: list[Sample]) -> tuple[list[Sample], list[BadRow]]:
    """One image file in two splits leaks (a test image the model trained on): every row after
    the first of such an image is a bad row naming the first; the first is kept."""
    first: dict[Path, Sample] = {}
    kept, bad = [], []
    for s in samples:
        seen = first.setdefault(s.image.resolve(), s)
        if seen is not s and seen.split != s.split:
            bad.append(BadRow(s.row, str(s.image.name), f"the same image is in split '{seen.split}' at row "
                              f"{seen.row} and in split '{s.split}' here: leakage between splits"))
            continue
        kept.append(s)
    return kept, bad


class _Bad(Exception):
    def __init__(self, file: str, reason: str) -> None:
        super().__init__(reason)
        self.file, self.reason = file, reason


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


def write_manifest(root: Path, rows: list[dict], columns: Sequence[str] = ("image", "aoi", "split", "label")
                   ) -> Path:
    """DATASET/manifest.csv from row dicts; the columns are every key in first-seen order
    (`columns` when there are no rows). Written to a temporary file and renamed, so a reader (or
    a second process writing the same dataset) never sees half a manifest."""
    names: list[str] = []
    for row in rows:
        names += [k for k in row if k not in names]
    path = Path(root) / "manifest.csv"
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=names or list(columns))
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
    return path


class Own(str):
    """A path-column value that names a file of the derived dataset itself (one it writes, such as
    a predicted AOI), not a file of its source: `derive_dataset` keeps it as it is."""


def derive_dataset(out: str | Path, source: str | Path, rows: list[dict[str, Any]]) -> Path:
    """Write a dataset derived from `source` (rows from `read_rows(source)`, edited): OUT/source
    links to the source and every path column (image, aoi, defect_mask, background) of every row
    is rewritten to reach its file through that link, except values marked `Own`. Every other
    column is kept as it is. Returns the manifest's path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    link_source(out, Path(source))
    derived = [{k: (str(Path("source") / v) if k in PATH_COLUMNS and v and not isinstance(v, Own) else str(v))
                for k, v in row.items()} for row in rows]
    return write_manifest(out, derived)


def link_source(out: Path, target: Path) -> Path:
    """OUT/source -> target: how a derived dataset reaches images it never copies (kept if present)."""
    link = Path(out) / "source"
    if not link.exists():
        os.symlink(Path(target).resolve(), link, target_is_directory=True)
    return link


_CONTENT_HASHES: dict[tuple[str, int, int], str] = {}


def content_hash(path: Path) -> str:
    """sha256 of a file's bytes, remembered per (path, size, mtime) for the process's lifetime."""
    try:
        st = path.stat()
    except OSError:
        return "missing"
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _CONTENT_HASHES:
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        _CONTENT_HASHES[key] = digest.hexdigest()
    return _CONTENT_HASHES[key]


def fingerprint(samples: list[Sample]) -> str:
    """A short hash of what a model was trained on: every file's contents (image, AOI, defect
    mask), label and split. A file replaced by another of the same size changes it."""
    digest = hashlib.sha256()
    for s in sorted(samples, key=lambda s: str(s.image)):
        files = "|".join(content_hash(f) if f is not None else "-" for f in (s.image, s.aoi, s.defect_mask))
        digest.update(f"{s.image.name}|{files}|{s.label}|{s.split}\n".encode())
    return digest.hexdigest()[:16]


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


def select(manifest: Manifest, split: str, filters: dict[str, str] | None = None) -> list[Sample]:
    """Rows of one split that match every `column=value` filter (e.g. aoi_status=ok)."""
    rows = manifest.split(split)
    for column, value in (filters or {}).items():
        if column not in manifest.columns:
            raise DatasetError(f"filter column '{column}' is not in the manifest ({', '.join(manifest.columns)})")
        rows = [s for s in rows if s.extra.get(column) == value]
    return rows


def train_val(manifest: Manifest, train_split: str, val_split: str, val_fraction: float,
              filters: dict[str, str] | None = None, seed: int = 0, max_val: int = 0
              ) -> tuple[list[Sample], list[Sample]]:
    train, val = _train_val(manifest, train_split, val_split, val_fraction, filters, seed)
    if max_val and len(val) > max_val:
        keep = sorted(np.random.default_rng(seed + 1).permutation(len(val))[:max_val])
        val = [val[i] for i in keep]
    return train, val


def _train_val(manifest: Manifest, train_split: str, val_split: str, val_fraction: float,
               filters: dict[str, str] | None = None, seed: int = 0) -> tuple[list[Sample], list[Sample]]:
    """The training and validation rows. Without a val split, hold out val_fraction of train,
    whole `group`s at a time where the manifest has that column (copies never straddle)."""
    train = select(manifest, train_split, filters)
    if not train:
        raise DatasetError(f"no rows in split '{train_split}' (column '{manifest.split_column}'; "
                           f"splits present: {manifest.splits})")
    val = select(manifest, val_split, filters)
    if val:
        return train, val
    key = lambda s: s.extra.get("group") or str(s.image)  # noqa: E731
    sizes: dict[str, int] = {}
    family_label: dict[str, list[int]] = {}
    for s in train:
        sizes[key(s)] = sizes.get(key(s), 0) + 1
        family_label.setdefault(key(s), []).append(s.label)
    keys = sorted(sizes)
    np.random.default_rng(seed).shuffle(keys)
    # Per label, hold out val_fraction of its rows, built from many families none over a fifth of
    # that target: one big family of near-copies would make validation measure a single photo
    # (perfect AUROC, useless threshold), and big ok-families would crowd out one class.
    held: set[str] = set()
    for label in sorted({s.label for s in train}):
        target = val_fraction * sum(s.label == label for s in train)
        cap = max(1.0, target / 5)
        count = 0
        for k in keys:
            if count >= target:
                break
            majority = max(set(family_label[k]), key=family_label[k].count)
            if majority != label or sizes[k] > cap or k in held:
                continue
            held.add(k)
            count += sizes[k]
    in_val = [(s.extra.get("group") or str(s.image)) in held for s in train]
    return ([s for s, v in zip(train, in_val) if not v], [s for s, v in zip(train, in_val) if v])


MIN_VAL_GROUPS = 5    # families of one class below which validation speaks for a few parts only
MIN_VAL_IMAGES = 20


def validation_warnings(val: list[Sample], classes: tuple[str, ...] | list[str]) -> list[str]:
    """What makes a validation set unfit to pick a checkpoint or calibrate a threshold: a class
    with too few images or too few families (`group`; an image without one is its own)."""
    warnings_ = []
    for index, name in enumerate(classes):
        rows = [s for s in val if s.label == index]
        groups = {s.extra.get("group") or str(s.image) for s in rows}
        if len(rows) < MIN_VAL_IMAGES or len(groups) < MIN_VAL_GROUPS:
            warnings_.append(f"validation holds {len(rows)} '{name}' image(s) from {len(groups)} famil"
                             f"{'y' if len(groups) == 1 else 'ies'} (fewer than {MIN_VAL_IMAGES} images or "
                             f"{MIN_VAL_GROUPS} families): its scores speak for those parts only")
    return warnings_


def load_train_val(data: str | Path, cfg, seed: int, skip_bad: bool = False,
                   filters: dict[str, str] | None = None, max_train_images: int | None = None,
                   require_aoi: bool = False, progress: bool = True) -> tuple[LoadedSplit, LoadedSplit]:
    """Decoded train and validation rows for a stage config (a ceod.schema.DataConfig).

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
