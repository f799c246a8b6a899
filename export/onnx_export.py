"""`ceod export`: a run's best checkpoint -> ONNX with ceod metadata, checked against torch."""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ceod.training.checkpoint import load_checkpoint
from ceod.data.loading import load_split
from ceod.data.manifest import dataset_root, read_manifest
from ceod.contracts.errors import CeodError
from ceod.contracts.classes import decide, is_anomaly
from ceod.data.imageio import normalize
from ceod.contracts.model import class_names, to_onnx_props
from ceod.export.runtime import OnnxModel, softmax

FP32_TOL = 1e-3  # max abs logit difference; also the margin within which a decision is not judged
FP16_TOL = 5e-2


class ExportParityError(CeodError):
    """onnxruntime disagrees with torch beyond the tolerance: the file is not written."""


class ClassifierGraph(nn.Module):
    """image -> logits [N,K] (+ heatmap [N,1,h,w], ReLU'd fast-path CAM: of the def class for ok/def
    models, of the predicted class for K-class models) (+ features [N,C], the pooled last feature
    map the drift watch summarises)."""

    def __init__(self, model: nn.Module, heatmap: bool, anomaly: bool = True, features: bool = False) -> None:
        super().__init__()
        self.model, self.heatmap, self.anomaly, self.features = model, heatmap, anomaly, features

    @property
    def output_names(self) -> list[str]:
        return ["logits"] + (["heatmap"] if self.heatmap else []) + (["features"] if self.features else [])

    def forward(self, image: torch.Tensor):
        from ceod.classifier.gradcam import fast_cam
        logits, feats = self.model(image, return_features=True)
        if not (self.heatmap or self.features):
            return logits
        outputs = [logits]
        if self.heatmap:
            if self.anomaly:
                weights = torch.zeros_like(logits)
                weights[:, 1] = 1
            else:  # one-hot of the argmax, written with ops every exporter knows
                weights = (logits == logits.max(dim=1, keepdim=True).values).to(logits.dtype)
            outputs.append(torch.relu(fast_cam(self.model, feats, weights))[:, None])
        if self.features:
            outputs.append(feats.mean(dim=(2, 3)))
        return tuple(outputs)


def _torch_model(payload: dict[str, Any], heatmap: bool, features: bool = False) -> tuple[nn.Module, list[str]]:
    """The model through its own package's loader (the one evaluation uses), wrapped for export."""
    kind = payload["ceod"]["kind"]
    if kind == "classifier":
        from ceod.classifier.inference import load_classifier
        model, cfg, meta = load_classifier(None, payload)
        if heatmap and not model.has_linear_head:
            raise CeodError("--heatmap needs a linear head (gap_linear or flatten_linear: the fast CAM path)")
        graph = ClassifierGraph(model.eval(), heatmap, is_anomaly(class_names(meta)), features).eval()
        return graph, graph.output_names
    if heatmap or features:
        raise CeodError("--heatmap and --features are classifier outputs; a segmenter exports its AOI logits only")
    from ceod.segmenter.predict import load_segmenter
    model, _, _ = load_segmenter(None, payload)
    return model.eval(), ["aoi_logits"]


def _to_onnx(model: nn.Module, example: torch.Tensor, path: Path, outputs: list[str],
             legacy: bool = False) -> str:
    """Dynamo exporter (the default) with a dynamic batch; the TorchScript one as a fallback, and
    for fp16 (onnxruntime's float16 converter breaks value names in dynamo graphs)."""
    try:
        if legacy:
            raise RuntimeError("legacy exporter requested")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (example,), str(path), input_names=["image"], output_names=outputs,
                              dynamic_shapes={"image": {0: torch.export.Dim("batch", min=1, max=4096)}},
                              dynamo=True, verbose=False)
        return "dynamo"
    except Exception as exc:  # noqa: BLE001
        if not legacy:
            print(f"dynamo export failed ({type(exc).__name__}); using the TorchScript exporter")
        torch.onnx.export(model, (example,), str(path), input_names=["image"], output_names=outputs,
                          dynamic_axes={n: {0: "batch"} for n in ["image", *outputs]}, dynamo=False,
                          opset_version=18)
        return "torchscript"


def _parity_images(meta: dict[str, Any], data: str | Path | None, n: int) -> np.ndarray:
    """Real images of the training data (at model size), or a clear error where none is found."""
    root = dataset_root(data, meta, "the parity check needs real images")
    manifest = read_manifest(root, meta.get("split_column", "split"), collect_only=True,
                             classes=meta.get("class_names") if meta.get("model_kind") == "classifier" else None)
    rows = manifest.split(meta.get("train_split", "train")) or manifest.samples
    pick = np.random.default_rng(0).permutation(len(rows))[:n]
    return load_split([rows[i] for i in sorted(pick)], int(meta["input_size"]), skip_bad=True, root=root).images


def export_run(run: str | Path, out: str | Path, heatmap: bool = False, fp16: bool = False,
               data: str | Path | None = None, parity_images: int = 32, features: bool = False,
               profile: bool = True, segmenter: str | Path | None = None,
               profile_images: int = 400) -> dict[str, Any]:
    """Export, write metadata, onnx.checker, then parity vs torch; the file appears only if it passes.
    A classifier also gets the drift watch's reference profile (`profile`), measured with
    onnxruntime on up to `profile_images` images of its validation split, with the AOI from
    `segmenter` (an exported segmenter: what the line will see) or else the manifest's masks."""
    import onnx

    payload = load_checkpoint(run)
    kind = payload["ceod"]["kind"]
    meta = dict(payload["meta"])
    meta["model_kind"] = kind
    meta["precision"] = "fp16" if fp16 else "fp32"
    model, outputs = _torch_model(payload, heatmap, features)
    size = int(meta["input_size"])
    images = _parity_images(meta, data, parity_images)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        raw = Path(tmp) / "raw.onnx"
        exporter = _to_onnx(model, torch.zeros(2, 3, size, size), raw, outputs, legacy=fp16)
        proto = onnx.load(str(raw), load_external_data=True)
        if fp16:
            from onnxruntime.transformers.float16 import convert_float_to_float16
            proto = _toposort(convert_float_to_float16(proto, keep_io_types=True))
        del proto.metadata_props[:]
        for k, v in to_onnx_props(meta).items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = k, v
        onnx.checker.check_model(proto)
        staged = Path(tmp) / "model.onnx"
        onnx.save(proto, str(staged))
        report = parity(model, staged, images, meta, kind, fp16)
        report.update({"exporter": exporter, "kind": kind, "outputs": outputs, "file": str(out)})
        if not report["passed"]:
            raise ExportParityError(f"parity failed: {report['failure']}; {out} not written")
        if kind == "classifier" and profile:
            from ceod.export.reference import reference_profile
            from ceod.export.watch import ProfileError
            try:
                props, report["profile"] = reference_profile(payload, staged, data, segmenter, profile_images)
            except ProfileError as exc:  # too few validation images: the model works, unwatched
                props, report["profile_skipped"] = {}, str(exc)
            for k, v in props.items():
                entry = proto.metadata_props.add()
                entry.key, entry.value = f"ceod.{k}", v
            onnx.save(proto, str(staged))
        report["bytes"] = staged.stat().st_size
        os.replace(staged, out)
    return report


def _toposort(proto):
    """Reorder graph nodes so each comes after its inputs' producers (the fp16 converter appends
    the input Cast nodes at the end, which onnx.checker rejects)."""
    graph = proto.graph
    ready = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        progressed = False
        for node in list(pending):
            if all(i in ready for i in node.input):
                ordered.append(node)
                ready.update(node.output)
                pending.remove(node)
                progressed = True
        if not progressed:
            raise CeodError("fp16 conversion produced a graph with a cycle or a missing input")
    del graph.node[:]
    graph.node.extend(ordered)
    return proto


def decision_margins(outputs: np.ndarray, meta: dict[str, Any], kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Decisions and how far the reference sits from changing each one, flattened: a part's
    P(def) from the threshold (ok/def), its top-two probability gap (K classes), a pixel's
    |logit| from 0 (segmenter). A decision closer than the tolerance is set by the order of
    floating-point sums, which follows the CPU's kernels, not by the model."""
    if kind == "classifier":
        probs = softmax(outputs)
        t = float(meta["threshold"])
        decisions = decide(probs, class_names(meta), t)
        if is_anomaly(class_names(meta)):
            return decisions, np.abs(probs[:, 1] - t)
        top2 = np.sort(probs, axis=1)[:, -2:]
        return decisions, top2[:, 1] - top2[:, 0]
    return (outputs > 0).ravel(), np.abs(outputs).ravel()


def _parity_failure(diffs: dict[str, float], tol: float, agreement: float, decided: int,
                    flipped_margins: np.ndarray) -> str | None:
    """The figure that failed, said in one line, or None."""
    over = {k: v for k, v in diffs.items() if v > tol}
    if over:
        worst = max(over, key=over.get)
        return f"max abs diff {over[worst]:.2e} on output '{worst}' exceeds the tolerance {tol:.0e}"
    if len(flipped_margins):
        shown = ", ".join(f"{m:.2e}" for m in np.sort(flipped_margins)[::-1][:5])
        return (f"decision agreement {agreement:.6f} on the {decided} decisions the reference makes by more "
                f"than {tol:.0e}: {len(flipped_margins)} flipped (reference margins {shown})")
    return None


@torch.no_grad()
def parity(model: nn.Module, path: Path, images: np.ndarray, meta: dict[str, Any], kind: str,
           fp16: bool) -> dict[str, Any]:
    """onnxruntime (CPU) vs torch on the same preprocessed real images: every output (logits and,
    where exported, the heatmap) within tolerance, and the same decisions."""
    ort_model = OnnxModel(path, provider="cpu")
    x = normalize(images, meta["mean"], meta["std"])
    ref = model(torch.from_numpy(x))
    ref = [r.numpy() for r in ref] if isinstance(ref, tuple) else [ref.numpy()]
    got = ort_model.run_tensor(x)
    names = ort_model.info.outputs
    diffs = {name: float(np.abs(r - got[name]).max()) for name, r in zip(names, ref)}
    tol = FP16_TOL if fp16 else FP32_TOL
    first = "logits" if kind == "classifier" else "aoi_logits"
    want, margin = decision_margins(ref[0], meta, kind)
    have, _ = decision_margins(got[first], meta, kind)
    decided = margin > tol
    flipped = want != have
    agreement = float((~flipped[decided]).mean()) if decided.any() else 1.0
    failure = _parity_failure(diffs, tol, agreement, int(decided.sum()), margin[decided & flipped])
    return {"max_abs_diff": max(diffs.values()), "max_abs_diff_per_output": diffs,
            "decision_agreement": agreement, "decisions": int(margin.size), "decided": int(decided.sum()),
            "within_margin": int((~decided).sum()), "within_margin_flipped": int((flipped & ~decided).sum()),
            "decision_agreement_all": float((~flipped).mean()),
            "tolerance": tol, "images": int(len(images)), "passed": failure is None, "failure": failure,
            "precision": "fp16" if fp16 else "fp32"}
