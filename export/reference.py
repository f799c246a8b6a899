"""The drift watch's reference profile, measured at export: the exported classifier (through
onnxruntime, as the line runs it) on the run's own validation rows, and the statistics of the
image alone on those and a sample of its training rows, read from disk at full size as the line
reads its frames."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from ceod.contracts.model import class_names
from ceod.data.manifest import dataset_root, read_manifest
from ceod.data.splits import train_val
from ceod.export.runtime import OnnxModel, classify, open_segmenter
from ceod.export.watch import backs_a_verdict, build_profile, profile_summary, to_props
from ceod.data.imageio import ImageDecodeError, read_image, read_mask


def at_prevalence(rows: list, like: list, seed: int) -> list:
    """A seeded subset of `rows` whose class mix is that of `like` (the training rows, the data's
    best estimate of the line's): the score and feature references then describe the line's mix,
    not a validation carve's, which a family-grouped carve can skew (casting: 81 % defects against
    58 % in training and test). Unchanged where a training class is missing from `rows`."""
    want = Counter(r.label for r in like)
    have = Counter(r.label for r in rows)
    if not want or any(have[c] == 0 for c in want):
        return rows
    scale = min(have[c] / want[c] for c in want)
    rng = np.random.default_rng(seed)
    keep = set()
    for c in want:
        members = [i for i, r in enumerate(rows) if r.label == c]
        keep.update(members[i] for i in rng.permutation(len(members))[:max(1, round(scale * want[c]))])
    return [r for i, r in enumerate(rows) if i in keep]


def read_frames(items: Iterable[tuple[str | Path, str | Path | None]], segmenter: OnnxModel | None
                ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(RGB image, AOI) for each (image path, mask path): the AOI from the segmenter where one is
    given, else from the mask file; unreadable files are skipped."""
    for image_path, mask_path in items:
        try:
            image = read_image(image_path)
            aoi = segmenter.run([image])["aoi_logits"][0, 0] > 0 if segmenter else read_mask(mask_path) > 0
        except (ImageDecodeError, OSError):
            continue
        yield image, aoi


def model_outputs(model: OnnxModel) -> Callable[[list[np.ndarray]], dict[str, np.ndarray]]:
    """What build_profile reads of a model: scores, which verdicts the heatmap backs, heatmap and
    features where the model exports them."""
    def outputs(images: list[np.ndarray]) -> dict[str, np.ndarray]:
        raw = model.run(images)
        scores, verdicts = classify(model, raw)
        out = {"score": scores, "judged": backs_a_verdict(model.info.class_names, verdicts)}
        if "heatmap" in raw:
            out["heatmap"] = raw["heatmap"][:, 0]
        if "features" in raw:
            out["features"] = raw["features"]
        return out
    return outputs


def reference_rows(held_out: list, trained: list, with_segmenter: bool) -> tuple[list, list]:
    """The held-out and training rows the profile can read (without a segmenter, those whose AOI
    mask the manifest gives), the held-out ones then thinned to the training mix: the mix is that
    of the rows actually read."""
    if not with_segmenter:
        held_out, usable_trained = [r for r in held_out if r.aoi is not None], [r for r in trained if r.aoi is not None]
    else:
        usable_trained = trained
    return at_prevalence(held_out, trained, seed=2), usable_trained


def reference_profile(payload: dict[str, Any], model_path: Path, data: str | Path | None,
                      segmenter: str | Path | None, limit: int) -> tuple[dict[str, str], dict[str, Any]]:
    """Metadata entries (key without the ceod. prefix -> value) and a short summary for the report."""
    meta, cfg = payload["meta"], payload["config"]
    root = dataset_root(data, meta, "the reference profile needs the validation images")
    manifest = read_manifest(root, cfg.get("split_column", "split"), skip_bad=True,
                             classes=list(class_names(meta)), train_split=cfg.get("train_split", "train"))
    trained, held_out = train_val(manifest, cfg.get("train_split", "train"), cfg.get("val_split", "val"),
                                  float(cfg.get("val_fraction", 0.15)), None, int(meta.get("seed", 0)))

    held_out, trained = reference_rows(held_out, trained, with_segmenter=segmenter is not None)

    def sample(rows: list, seed: int) -> list:
        if len(rows) > limit:
            rows = [rows[i] for i in sorted(np.random.default_rng(seed).permutation(len(rows))[:limit])]
        return rows

    model = OnnxModel(model_path, provider="cpu")
    seg = open_segmenter(segmenter, "cpu", "--segmenter") if segmenter else None

    source = f"segmenter {Path(segmenter).name}" if segmenter else "manifest AOI masks"
    # the image statistics' reference spans every family the run knows (training rows too); the
    # model's statistics read the held-out rows only
    profile, block = build_profile(model_outputs(model), read_frames([(r.image, r.aoi) for r in sample(held_out, 0)], seg),
                                   source, model.info.input_size,
                                   scene_frames=read_frames([(r.image, r.aoi) for r in sample(trained, 1)], seg))
    return to_props(profile, block), profile_summary(profile, model.info.outputs)
