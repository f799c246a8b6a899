"""The drift watch's reference profile, measured at export: the exported classifier (through
onnxruntime, as the line runs it) on the run's own validation rows, read from disk at full size
as the line reads its frames."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ceod.contracts.model import class_names
from ceod.data.manifest import dataset_root, read_manifest
from ceod.data.splits import train_val
from ceod.contracts.errors import CeodError
from ceod.export.runtime import OnnxModel, classify
from ceod.export.watch import backs_a_verdict, build_profile, to_props
from ceod.data.imageio import ImageDecodeError, read_image, read_mask


def reference_profile(payload: dict[str, Any], model_path: Path, data: str | Path | None,
                      segmenter: str | Path | None, limit: int) -> tuple[dict[str, str], dict[str, Any]]:
    """Metadata entries (key without the ceod. prefix -> value) and a short summary for the report."""
    meta, cfg = payload["meta"], payload["config"]
    root = dataset_root(data, meta, "the reference profile needs the validation images")
    manifest = read_manifest(root, cfg.get("split_column", "split"), skip_bad=True,
                             classes=list(class_names(meta)), train_split=cfg.get("train_split", "train"))
    _, rows = train_val(manifest, cfg.get("train_split", "train"), cfg.get("val_split", "val"),
                        float(cfg.get("val_fraction", 0.15)), None, int(meta.get("seed", 0)))
    if segmenter is None:
        rows = [r for r in rows if r.aoi is not None]
    if len(rows) > limit:
        rows = [rows[i] for i in sorted(np.random.default_rng(0).permutation(len(rows))[:limit])]
    model = OnnxModel(model_path, provider="cpu")
    seg = OnnxModel(segmenter, provider="cpu") if segmenter else None
    if seg is not None and seg.info.kind != "segmenter":
        raise CeodError(f"--segmenter {segmenter} is a {seg.info.kind} model; give the exported segmenter")

    def frames() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for row in rows:
            try:
                image = read_image(row.image)
                aoi = seg.run([image])["aoi_logits"][0, 0] > 0 if seg else read_mask(row.aoi) > 0
            except (ImageDecodeError, OSError):
                continue
            yield image, aoi

    def outputs(images: list[np.ndarray]) -> dict[str, np.ndarray]:
        raw = model.run(images)
        scores, verdicts = classify(model, raw)
        out = {"score": scores, "judged": backs_a_verdict(model.info.class_names, verdicts)}
        if "heatmap" in raw:
            out["heatmap"] = raw["heatmap"][:, 0]
        if "features" in raw:
            out["features"] = raw["features"]
        return out

    source = f"segmenter {Path(segmenter).name}" if segmenter else "manifest AOI masks"
    profile, block = build_profile(outputs, frames(), source, model.info.input_size)
    summary = {"images": profile["images"], "aoi_source": source, "statistics": sorted(profile["statistics"])}
    return to_props(profile, block), summary
