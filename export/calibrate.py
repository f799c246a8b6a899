"""`ceod calibrate`: a new verdict threshold for an exported ok/def model from parts a person
checked on the line, written into a copy of the model with where it came from. No torch: this
runs on the line PC (onnx edits the metadata, onnxruntime scores the parts)."""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ceod.contracts.classes import ANOMALY_CLASSES, is_anomaly
from ceod.contracts.errors import CeodError
from ceod.contracts.metrics import (calibrate_threshold, min_defects_for, operating_point, threshold_provenance)
from ceod.contracts.model import PREFIX
from ceod.data.imageio import read_image
from ceod.export.model_file import check_new_model_path, write_model_copy
from ceod.export.runtime import OnnxModel, classify

MIN_PARTS_PER_CLASS = 20  # below this a class's scores speak for a handful of parts only


class CalibrationError(CeodError):
    """The labels cannot fix the asked operating point, or the files are not usable."""


@dataclass
class CalibrationResult:
    threshold_before: float
    threshold_after: float
    before: dict[str, Any]
    after: dict[str, Any]
    provenance: dict[str, Any]
    out: Path


def read_labels(path: Path) -> tuple[list[Path], np.ndarray]:
    """(image paths, labels 1 = def) from a CSV with a header `path,label` (`image` also names the
    path column); relative paths are read from the CSV's folder. A bad row is an error naming it."""
    if not path.is_file():
        raise CalibrationError(f"--labels {path}: no such file")
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        column = "path" if "path" in columns else "image" if "image" in columns else None
        if column is None or "label" not in columns:
            raise CalibrationError(f"--labels {path}: needs a header with 'path' (or 'image') and 'label'; "
                                   f"it has {columns}")
        images, labels = [], []
        for number, row in enumerate(reader, start=2):
            label = (row.get("label") or "").strip()
            if label not in ANOMALY_CLASSES:
                raise CalibrationError(f"--labels {path} line {number}: label {label!r} is not ok or def")
            image = Path((row.get(column) or "").strip())
            image = image if image.is_absolute() else path.parent / image
            if not image.is_file():
                raise CalibrationError(f"--labels {path} line {number}: image {image} not found")
            images.append(image)
            labels.append(ANOMALY_CLASSES.index(label))
    return images, np.asarray(labels, np.int64)


def check_enough(labels: np.ndarray, mode: str, target_recall: float, target_escape: float) -> None:
    """Refuse, in one line, labels too few to fix the asked operating point."""
    n_def, n_ok = int(labels.sum()), int((labels == 0).sum())
    if min(n_def, n_ok) < MIN_PARTS_PER_CLASS:
        raise CalibrationError(f"{n_ok} ok and {n_def} def parts: at least {MIN_PARTS_PER_CLASS} of each class are "
                               "needed to move a threshold; label more parts")
    need = {"escape": min_defects_for(target_escape), "recall": min_defects_for(1 - target_recall)}.get(mode, 0)
    if n_def < need:
        target = f"an escape rate of {target_escape:.2%}" if mode == "escape" else f"a recall of {target_recall:.2%}"
        raise CalibrationError(f"{n_def} def parts cannot fix {target} ({need} needed): label more defects, or "
                               "use --mode balanced")


def calibrate_model(model_path: str | Path, labels_path: str | Path, out: str | Path, mode: str | None = None,
                    target_recall: float = 0.95, target_escape: float = 0.01, provider: str = "cpu",
                    batch: int = 32) -> CalibrationResult:
    """Score the labelled parts with the model as the line runs it, fit the threshold by `mode`
    (default: the rule the model's threshold was fitted with), and write a copy of the model with
    the new threshold and its provenance. The input model is never modified."""
    model_path, labels_path, out = Path(model_path), Path(labels_path), Path(out)
    check_new_model_path(model_path, out)
    model = OnnxModel(model_path, provider)
    if not is_anomaly(model.info.class_names):
        raise CalibrationError(f"{model_path} decides {len(model.info.class_names)} classes by argmax: only ok/def "
                               "models have a threshold to calibrate")
    fit_before = json.loads(model.info.raw.get(f"{PREFIX}threshold_fit", "null")) or {}
    mode = mode or fit_before.get("mode") or "balanced"
    images, labels = read_labels(labels_path)
    check_enough(labels, mode, target_recall, target_escape)
    scores = np.concatenate([classify(model, model.run([read_image(p) for p in images[i:i + batch]]))[0]
                             for i in range(0, len(images), batch)])
    before_t = model.info.threshold
    after_t = calibrate_threshold(scores, labels, mode, target_recall, target_escape)
    digest = hashlib.sha256(labels_path.read_bytes()).hexdigest()[:16]
    provenance = threshold_provenance(mode, target_recall, target_escape,
                                      f"calibration labels {labels_path.name} (sha256 {digest})",
                                      scores, labels, None, after_t)  # line parts carry no family
    provenance["previous"] = {"threshold": before_t, **({"fit": fit_before} if fit_before else {})}
    write_model_copy(model_path, {f"{PREFIX}threshold": json.dumps(after_t),
                                  f"{PREFIX}threshold_fit": json.dumps(provenance)}, out)
    return CalibrationResult(before_t, after_t, operating_point(scores, labels, before_t),
                             operating_point(scores, labels, after_t), provenance, out)
