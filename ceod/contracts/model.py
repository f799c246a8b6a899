"""The model metadata contract, stated once. Torch-free: trainers write it into
checkpoints, `ceod export` copies it into the ONNX `metadata_props`, and the line runtime reads
preprocessing, class names and the threshold back from there, never from a second file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ceod import __version__
from ceod.contracts.classes import ANOMALY_CLASSES
from ceod.contracts.errors import CeodError

PREFIX = "ceod."
MAX_PROP_CHARS = 65_536  # one metadata value; ceod's own are a few hundred characters
KINDS = ("classifier", "segmenter")
# Keys every exported model carries (values are JSON in the ONNX file, model_kind plain text).
REQUIRED = ("model_kind", "input_size", "colour_order", "mean", "std", "class_names", "threshold",
            "training_loss", "package_version", "data_fingerprint")


class MetadataError(CeodError):
    """A model or checkpoint lacks the ceod metadata the runtime needs."""


def model_metadata(kind: str, *, input_size: int, mean: list[float], std: list[float], class_names: list[str],
                   threshold: float, training_loss: str, data_fingerprint: str, **extra: Any) -> dict[str, Any]:
    """The metadata dict a trainer stores in its checkpoint: the contract's keys, then its extras
    (seed, data path, backbone ...), which travel along but are not required."""
    if kind not in KINDS:
        raise ValueError(f"model kind {kind!r} is not one of {KINDS}")
    return {"model_kind": kind, "input_size": int(input_size), "colour_order": "RGB",
            "mean": [float(v) for v in mean], "std": [float(v) for v in std], "class_names": list(class_names),
            "threshold": float(threshold), "training_loss": training_loss, "package_version": __version__,
            "data_fingerprint": data_fingerprint, **extra}


def class_names(meta: dict[str, Any]) -> tuple[str, ...]:
    """The class names a model was trained on (ok/def for checkpoints that predate K classes)."""
    return tuple(meta.get("class_names") or ANOMALY_CLASSES)


def to_onnx_props(meta: dict[str, Any]) -> dict[str, str]:
    """Checkpoint metadata -> ONNX metadata_props (JSON-encoded values under the ceod. prefix)."""
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise MetadataError(f"checkpoint metadata lacks {missing}: retrain with this ceod version")
    return {f"{PREFIX}{k}": (v if k == "model_kind" else json.dumps(v)) for k, v in meta.items()}


@dataclass(frozen=True)
class ModelInfo:
    """What the runtime needs, read from the model's metadata_props."""

    kind: str
    input_size: int
    colour_order: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    class_names: tuple[str, ...]
    threshold: float
    training_loss: str
    package_version: str
    data_fingerprint: str
    outputs: tuple[str, ...]
    raw: dict[str, str]

    @classmethod
    def from_props(cls, props: dict[str, str], outputs: tuple[str, ...], path: str) -> "ModelInfo":
        if props.get(f"{PREFIX}model_kind") not in KINDS:
            raise MetadataError(f"{path} carries no ceod metadata (ceod.model_kind); export it with "
                                "`ceod export`, which writes preprocessing and threshold into the model")
        oversize = [k for k, v in props.items() if k.startswith(PREFIX) and len(v) > MAX_PROP_CHARS]
        if oversize:
            raise MetadataError(f"{path}: metadata value {oversize[0]} is over {MAX_PROP_CHARS} characters; "
                                "refused (re-export it with `ceod export`)")
        try:
            get = lambda k: json.loads(props[f"{PREFIX}{k}"])  # noqa: E731
            return cls(props[f"{PREFIX}model_kind"], int(get("input_size")), get("colour_order"),
                       tuple(get("mean")), tuple(get("std")), tuple(get("class_names")), float(get("threshold")),
                       get("training_loss"), get("package_version"), get("data_fingerprint"), outputs, props)
        except (KeyError, ValueError, TypeError) as exc:
            raise MetadataError(f"{path}: incomplete ceod metadata ({exc})") from None
        except RecursionError:
            raise MetadataError(f"{path}: ceod metadata nested too deeply to read; refused") from None
