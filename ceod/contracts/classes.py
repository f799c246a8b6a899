"""Class sets: the anomaly pair (ok, def) with a calibrated threshold, or K named classes with argmax.

Torch-free: the dataset layer, the metrics and the line runtime all decide verdicts the same way.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

ANOMALY_CLASSES: tuple[str, str] = ("ok", "def")


def infer_classes(labels: Iterable[str]) -> tuple[str, ...]:
    """ok/def when the labels are ok/def or include both (anomaly semantics: any other label is
    then a typo, reported as a bad row, unless the config's `classes` lists it); otherwise the
    sorted label set (ok / scratch / dent ...)."""
    names = {label for label in labels if label}
    if names <= set(ANOMALY_CLASSES) or set(ANOMALY_CLASSES) <= names:
        return ANOMALY_CLASSES
    return tuple(sorted(names))


def is_anomaly(classes: Sequence[str]) -> bool:
    """True for the ok/def pair: a `def` score and a calibrated threshold decide, not argmax."""
    return tuple(classes) == ANOMALY_CLASSES


def decide(probs: np.ndarray, classes: Sequence[str], threshold: float = 0.5) -> np.ndarray:
    """Predicted class index per row of `probs` [N,K]: P(def) >= threshold for ok/def, argmax otherwise."""
    probs = np.asarray(probs)
    if is_anomaly(classes):
        return (probs[:, 1] >= threshold).astype(np.int64)
    return probs.argmax(1).astype(np.int64)
