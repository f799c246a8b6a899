"""The line-side runtime: ONNX Runtime sessions whose preprocessing and threshold come from the
model's own metadata. Imports numpy, OpenCV and onnxruntime only - never torch."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ceod.contracts.errors import CeodError
from ceod.contracts.classes import decide, is_anomaly
from ceod.contracts.model import MetadataError, ModelInfo
from ceod.data.imageio import preprocess

log = logging.getLogger(__name__)

PROVIDERS = {"tensorrt": "TensorrtExecutionProvider", "cuda": "CUDAExecutionProvider",
             "cpu": "CPUExecutionProvider"}
AUTO_ORDER = ("tensorrt", "cuda", "cpu")


class RuntimeModelError(MetadataError):
    """The model cannot be used: missing file, no ceod metadata, unavailable provider, bad input."""


# Libraries whose absence means a provider cannot load; `auto` skips it instead of letting ORT
# print a page of errors on every CPU-only line PC.
_NEEDS = {"cuda": ("libcuda.so.1",), "tensorrt": ("libcuda.so.1", "libnvinfer.so.10")}


def _loadable(provider: str) -> bool:
    import ctypes
    import sys
    if not sys.platform.startswith("linux"):
        return True  # let onnxruntime decide
    for lib in _NEEDS.get(provider, ()):
        try:
            ctypes.CDLL(lib)
        except OSError:
            return False
    return True


def _quiet_preload(ort) -> None:
    """onnxruntime.preload_dlls (CUDA/cuDNN from the torch or nvidia-* wheels) prints a line per
    library it cannot find, on stdout; on a line PC stdout carries records, so send it to stderr
    at the file-descriptor level (the messages come from C code too)."""
    import os
    import sys
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        ort.preload_dlls()
    except Exception as exc:  # noqa: BLE001 - only a hint
        log.info("preload_dlls: %s", exc)
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def resolve_providers(provider: str, notes: list[str] | None = None) -> list[Any]:
    """Provider list for a session: `auto` tries TensorRT, CUDA, CPU; a named one is required.
    Why a provider of `auto` was skipped goes into `notes` (one short reason each)."""
    import onnxruntime as ort

    notes = notes if notes is not None else []
    available = ort.get_available_providers()
    names = AUTO_ORDER if provider == "auto" else (provider,)
    if provider != "auto" and provider not in PROVIDERS:
        raise RuntimeModelError(f"--provider {provider}: choose auto, {', '.join(PROVIDERS)}")
    loadable = {n: _loadable(n) for n in names}
    if any(n in ("cuda", "tensorrt") and (loadable[n] or provider != "auto") for n in names) \
            and hasattr(ort, "preload_dlls"):
        _quiet_preload(ort)
    chosen: list[Any] = []
    for n in names:
        full = PROVIDERS[n]
        if provider == "auto" and not loadable[n]:
            notes.append(f"{n}: no {' / '.join(_NEEDS[n])} on this machine")
            continue
        if full not in available:
            if provider != "auto":
                raise RuntimeModelError(f"provider {full} is not in this onnxruntime build ({available})")
            notes.append(f"{n}: not in this onnxruntime build")
            continue
        if n == "cuda":
            chosen.append((full, {"cudnn_conv_algo_search": "HEURISTIC"}))
        elif n == "tensorrt":
            chosen.append((full, {"trt_fp16_enable": False}))
        else:
            chosen.append(full)
    return chosen


def create_session(path: str | Path, provider: str = "auto", threads: int = 0, spin: bool = True,
                   notes: list[str] | None = None):
    """An InferenceSession and its ModelInfo; fails when a named provider does not load.

    `spin=False` stops idle intra-op threads from spin-waiting: needed when several sessions
    take turns on one CPU (a benchmark), where a spinning idle session slows the one timed."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise RuntimeModelError(f"model file not found: {path}")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # ORT's provider-load errors are reported below, by name
    if threads:
        options.intra_op_num_threads = threads
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(str(path), options, providers=resolve_providers(provider, notes))
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
        if isinstance(exc, RuntimeModelError):
            raise
        raise RuntimeModelError(f"cannot load {path}: {str(exc).splitlines()[0][:300]}") from None
    used = session.get_providers()
    if provider != "auto" and PROVIDERS[provider] not in used:
        raise RuntimeModelError(f"provider {PROVIDERS[provider]} could not be loaded (session uses {used}); "
                                "check the CUDA/cuDNN/TensorRT installation or use --provider auto")
    props = session.get_modelmeta().custom_metadata_map
    try:
        info = ModelInfo.from_props(props, tuple(o.name for o in session.get_outputs()), str(path))
        check_against_graph(info, session, str(path))
    except MetadataError as exc:
        raise RuntimeModelError(str(exc)) from None
    log.info("%s: providers in use %s", path.name, used)
    return session, info


def _static(dim: Any) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


def check_against_graph(info: ModelInfo, session: Any, path: str) -> None:
    """Refuse a model whose metadata contradicts its graph or cannot give a safe verdict: a
    threshold that is not a number in [0, 1], a zero or non-finite std, a mean/std per channel
    that does not match the input's channels, class names that do not match the logits' width,
    an input size that is not the graph's. Fail closed: such a model would pass defective parts."""
    def refuse(what: str) -> None:
        raise MetadataError(f"{path}: refused, {what}; re-export it with `ceod export`")

    if not (np.isfinite(info.threshold) and 0.0 <= info.threshold <= 1.0):
        refuse(f"decision threshold {info.threshold!r} is not a number in [0, 1]")
    mean, std = np.asarray(info.mean, float), np.asarray(info.std, float)
    if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
        refuse(f"normalisation mean {list(info.mean)} / std {list(info.std)} must be finite with std > 0")
    shape = session.get_inputs()[0].shape
    channels = _static(shape[1]) if len(shape) == 4 else None
    if len(shape) != 4:
        refuse(f"input has shape {shape}, expected [N,3,H,W]")
    if len(mean) != (channels or 3) or len(std) != (channels or 3):
        refuse(f"mean/std have {len(mean)}/{len(std)} values for an input of {channels or 3} channels")
    for axis, name in ((2, "height"), (3, "width")):
        if _static(shape[axis]) not in (None, info.input_size):
            refuse(f"metadata input_size {info.input_size} but the graph's input {name} is {shape[axis]}")
    if info.kind == "classifier":
        names = info.class_names
        if len(names) < 2 or len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
            refuse(f"class names {list(names)[:8]} must be two or more distinct names")
        logits = next((o for o in session.get_outputs() if o.name == "logits"), None)
        if logits is None:
            refuse("no 'logits' output")
        width = _static(logits.shape[-1]) if logits.shape else None
        if width is not None and width != len(names):
            refuse(f"{len(names)} class names for {width} logits")


def file_sha256(path: str | Path) -> str:
    import hashlib
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities [N,K] from logits [N,K]."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class OnnxModel:
    """One exported ceod model with its own preprocessing; `run` takes RGB uint8 images."""

    def __init__(self, path: str | Path, provider: str = "auto", threads: int = 0, spin: bool = True) -> None:
        self.path = Path(path)
        self.provider_notes: list[str] = []  # why `auto` skipped a provider
        self.session, self.info = create_session(path, provider, threads, spin, self.provider_notes)
        self.identity = f"{self.path.name}@{file_sha256(self.path)[:12]}"  # file name @ content hash
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_type = np.float16 if "float16" in inp.type else np.float32

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def prepare(self, images: list[np.ndarray]) -> np.ndarray:
        for im in images:
            if im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8:
                raise RuntimeModelError(f"expected RGB uint8 images [H,W,3], got {im.dtype} {im.shape}")
        return preprocess(images, self.info.input_size, self.info.mean, self.info.std).astype(self.input_type)

    def run_tensor(self, x: np.ndarray) -> dict[str, np.ndarray]:
        s = self.info.input_size
        if x.ndim != 4 or x.shape[1:] != (3, s, s):
            raise RuntimeModelError(f"input must be [N,3,{s},{s}], got {list(x.shape)}")
        outs = self.session.run(None, {self.input_name: x.astype(self.input_type, copy=False)})
        return {name: np.asarray(o, dtype=np.float32) for name, o in zip(self.info.outputs, outs)}

    def run(self, images: list[np.ndarray]) -> dict[str, np.ndarray]:
        return self.run_tensor(self.prepare(images))


def open_segmenter(path: str | Path, provider: str, flag: str, threads: int = 0) -> OnnxModel:
    """The exported segmenter given by `flag`, refused in one line if the file is another kind of model."""
    model = OnnxModel(path, provider, threads=threads)
    if model.info.kind != "segmenter":
        raise CeodError(f"{flag} {path} is a {model.info.kind} model; give the exported segmenter")
    return model


def classify(model: OnnxModel, outputs: dict[str, np.ndarray], threshold: float | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """Scores and verdicts (class indices into the model's class names).

    ok/def models: the score is P(def), the verdict def where it reaches the model's (or an
    overriding) threshold. K-class models: the verdict is the argmax, the score its probability."""
    probs = softmax(outputs["logits"])
    classes = model.info.class_names
    verdicts = decide(probs, classes, model.info.threshold if threshold is None else threshold)
    scores = probs[:, 1] if is_anomaly(classes) else probs[np.arange(len(probs)), verdicts]
    return scores, verdicts
