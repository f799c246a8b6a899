"""The dataset contract every stage reads: DATASET/manifest.csv and the files it names. Parsing
and checking the rows, writing a manifest, deriving one dataset from another, and the content
fingerprint a model records. No torch: the runtime and `ceod data check` use it too."""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence


from ceod.contracts.classes import ANOMALY_CLASSES, infer_classes
from ceod.contracts.errors import CeodError

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


class _Bad(Exception):
    def __init__(self, file: str, reason: str) -> None:
        super().__init__(reason)
        self.file, self.reason = file, reason


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


def dataset_root(data: str | Path | None, meta: dict[str, Any], why: str) -> Path:
    """The dataset a model was trained on (`data`, else the path its metadata recorded), or an
    error naming what needs it and the flag that gives it."""
    root = Path(data or meta.get("data_path", ""))
    if not (root / "manifest.csv").is_file():
        raise DatasetError(f"{why}: pass --data DATASET (tried {root})")
    return root


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
