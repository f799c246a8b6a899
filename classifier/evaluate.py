"""`ceod evaluate` and `ceod audit`: accuracy figures, AOI attention, and reliance on the background."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ceod.contracts.classes import decide, is_anomaly
from ceod.contracts.model import class_names
from ceod.data.loading import LoadedSplit, load_split
from ceod.data.manifest import read_manifest
from ceod.contracts.errors import CeodError
from ceod.contracts.metrics import classification_metrics, csv_safe, nanmean, operating_points
from ceod.training.transforms import flat_background, swap_background
from ceod.data.clutter import draw_clutter
from ceod.data.overlay import draw_overlay, grid, save_rgb
from ceod.classifier.inference import aoi_attention, load_classifier, predict

REPLACEMENTS = ("swap", "swap_flat", "shift", "grey", "noise", "clutter")
REPLACEMENTS_NOTE = ("swap: another class's background, its part removed by inpainting or, on the synthetic line, "
                     "rendered without it; swap_flat: the same donors with the part filled flat, the first audit; "
                     "shift: background grey moved to the other class's mean; grey: constant; noise: random; "
                     "clutter: cables, labels, glare, bolts and tape never seen in training drawn outside the AOI, "
                     "the same kinds for every class")


def load_eval_split(run: str | Path, data: str | Path, split: str, split_column: str | None = None,
                    skip_bad: bool = False):
    model, cfg, meta = load_classifier(run)
    classes = class_names(meta)
    manifest = read_manifest(data, split_column or cfg.split_column, skip_bad=skip_bad, classes=classes)
    rows = manifest.split(split)
    if not rows:
        raise CeodError(f"split '{split}' has no rows in {data} (column '{manifest.split_column}'; "
                        f"splits present: {manifest.splits})")
    return model, cfg, meta, load_split(rows, cfg.input_size, skip_bad, Path(data), progress=True, classes=classes)



def evaluate(model, cfg, meta: dict, data: LoadedSplit, heatmaps: int = 0,
             heatmap_dir: Path | None = None, predictions: Path | None = None) -> dict[str, Any]:
    """Classification metrics at the calibrated threshold, and aoi_attention (rows with an AOI:
    the mean over images whose Grad-CAM has positive evidence; how many had none is counted).
    `predictions`: a CSV with every image's path, label, score, verdict and attention."""
    classes = class_names(meta)
    log_probs, cams = predict(model, data.images, cfg.mean, cfg.std, with_cam=True, log=True)
    probs = np.exp(log_probs)
    result = classification_metrics(probs, data.labels, classes, meta["threshold"], log_probs)
    pred = decide(probs, classes, meta["threshold"])
    per_image = np.full(len(data), np.nan)
    if data.has_aoi.any():
        per_image[data.has_aoi] = aoi_attention(cams[data.has_aoi], data.aoi[data.has_aoi])
    result["aoi_attention"] = nanmean(per_image)
    result["aoi_attention_empty_maps"] = int((data.has_aoi & ~np.isfinite(per_image)).sum())
    result["n"] = int(len(data))
    if is_anomaly(classes):
        families = [s.extra.get("group") or str(s.image) for s in data.samples]
        result["operating_point"] = operating_points(probs[:, 1], data.labels, meta["threshold"], np.asarray(families))
    if predictions is not None:
        scores = probs[:, 1] if is_anomaly(classes) else probs[np.arange(len(probs)), pred]
        write_predictions(predictions, [
            {"image": str(s.image), "label": classes[data.labels[i]], "score": f"{scores[i]:.6f}",
             "verdict": classes[pred[i]], "correct": int(pred[i] == data.labels[i]),
             "aoi_attention": "" if not np.isfinite(per_image[i]) else f"{per_image[i]:.4f}"}
            for i, s in enumerate(data.samples)])
        result["predictions"] = str(predictions)
    if heatmaps and heatmap_dir is not None:
        rng = np.random.default_rng(0)
        pick = rng.choice(len(data), size=min(heatmaps, len(data)), replace=False)
        tiles = []
        for i in pick:
            verdict, truth = classes[pred[i]], classes[data.labels[i]]
            tiles.append(draw_overlay(data.images[i], data.aoi[i], cams[i],
                                      f"{truth}->{verdict} {probs[i, pred[i]]:.2f}"))
        result["heatmaps"] = str(save_rgb(heatmap_dir / "heatmaps.png", grid(tiles, 8)))
    return result


def write_predictions(path: Path, rows: list[dict[str, Any]]) -> None:
    """One CSV row an image; cells a spreadsheet would run as a formula are quoted as text."""
    import csv
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, list(rows[0]) if rows else ["image"])
        writer.writeheader()
        writer.writerows({k: csv_safe(v) for k, v in row.items()} for row in rows)


def replace_outside(data: LoadedSplit, how: str, seed: int = 0) -> np.ndarray:
    """Images whose outside-AOI pixels are replaced; the inside is untouched.

    swap:  the background of an image of the other class with its part removed: the rendered
           part-free scene where the dataset has one (synthetic line), else the part inpainted
           (`ceod.training.transforms.clean_background`);
    swap_flat: the same donors, their part filled with their mean background colour (the first
           audit: a flat part-shaped silhouette borders the AOI; kept to compare old and new);
    shift: the background's grey level moved to the mean background level of another class
           (the other one for ok/def; a random other class among K);
    grey:  a constant, the split's mean background colour;
    noise: uniform random pixels;
    clutter: 3-6 objects no training image showed (cables, labels, glare, bolts, tape; the same
           kinds for every class) drawn outside the AOI (`ceod.data.clutter`).
    """
    rng = np.random.default_rng(seed)
    if how == "clutter":
        return np.stack([draw_clutter(image, aoi, rng) for image, aoi in zip(data.images, data.aoi)])
    images = data.images.astype(np.float32)
    inside = data.aoi[..., None] > 0
    outside = ~inside
    bg_mean = np.array([images[i][outside[i, ..., 0]].mean(0) if outside[i].any() else images[i].mean((0, 1))
                        for i in range(len(images))])  # [N,3]
    n = len(images)
    if how == "noise":
        fill = rng.integers(0, 256, images.shape).astype(np.float32)
    elif how == "grey":
        fill = np.broadcast_to(bg_mean.mean(0), images.shape)
    elif how == "shift":
        present = np.unique(data.labels)
        class_mean = {c: bg_mean[data.labels == c].mean(0) for c in present}
        target = np.stack([class_mean[_other(rng, present, c)] for c in data.labels])
        fill = images + (target - bg_mean)[:, None, None, :]
    elif how in ("swap", "swap_flat"):
        partner = np.empty(n, dtype=np.int64)
        for i in range(n):
            other = np.flatnonzero(data.labels != data.labels[i])
            partner[i] = rng.choice(other) if len(other) else rng.integers(n)
        if how == "swap_flat":
            return np.stack([swap_background(data.images[i], data.aoi[i], data.images[j], data.aoi[j],
                                             flat_background(data.images[j], data.aoi[j]))
                             for i, j in enumerate(partner)])
        backgrounds = data.backgrounds
        return np.stack([swap_background(data.images[i], data.aoi[i], data.images[j], data.aoi[j],
                                         None if backgrounds is None else backgrounds[j])
                         for i, j in enumerate(partner)])
    else:
        raise ValueError(f"unknown replacement {how!r}; choose from {REPLACEMENTS}")
    return np.clip(np.where(inside, images, fill), 0, 255).astype(np.uint8)


def _other(rng: np.random.Generator, present: np.ndarray, c: int) -> int:
    """A class other than c among those present (c itself when it is the only one)."""
    others = present[present != c]
    return int(rng.choice(others)) if len(others) else int(c)


def audit(model, cfg, meta: dict, data: LoadedSplit, seed: int = 0,
          picture: Path | None = None) -> dict[str, Any]:
    """Per replacement: decision flip rate, accuracy and balanced accuracy after replacing."""
    if not data.has_aoi.all():
        raise CeodError("audit needs an AOI mask on every row; run `ceod predict-aoi` first or pick a split "
                        "whose rows all have one")
    threshold = meta["threshold"]
    classes = class_names(meta)
    base, _ = predict(model, data.images, cfg.mean, cfg.std)
    base_pred = decide(base, classes, threshold)
    result: dict[str, Any] = {"threshold": threshold, "n": int(len(data)),
                              "original": classification_metrics(base, data.labels, classes, threshold)}
    tiles = []
    for how in REPLACEMENTS:
        images = replace_outside(data, how, seed)
        probs, _ = predict(model, images, cfg.mean, cfg.std)
        m = classification_metrics(probs, data.labels, classes, threshold)
        m["flip_rate"] = float((decide(probs, classes, threshold) != base_pred).mean())
        result[how] = m
        tiles += [draw_overlay(images[i], data.aoi[i], text=how) for i in range(min(4, len(images)))]
    if picture is not None:
        result["picture"] = str(save_rgb(picture, grid(tiles, 4)))
    return result


def audit_subset(data: LoadedSplit, seed: int, audit_max: int) -> LoadedSplit:
    """The seeded subset of at most `audit_max` images the audit reads (0: all of them)."""
    if not audit_max or len(data) <= audit_max:
        return data
    return data.subset(sorted(np.random.default_rng(seed).permutation(len(data))[:audit_max]))


def evaluate_splits(model, cfg, meta: dict, splits: dict[str, LoadedSplit], seed: int = 0, audit_max: int = 0,
                    heatmaps: int = 0, heatmap_dir: Path | None = None) -> dict[str, dict[str, Any]]:
    """Every test split's figures: accuracy, balanced accuracy (and at the best threshold, never
    used to decide), AUROC, F1, aoi_attention, and the audit's flip rate and balanced accuracy per
    replacement (on a seeded subset of at most `audit_max` images where set; 0: all). Heatmap
    overlays, where asked, go to heatmap_dir/eval_<split>."""
    figures = {}
    for split, data in splits.items():
        ev = evaluate(model, cfg, meta, data, heatmaps, None if heatmap_dir is None else heatmap_dir / f"eval_{split}")
        au = audit(model, cfg, meta, audit_subset(data, seed, audit_max), seed=seed)
        figures[split] = {**{k: ev.get(k) for k in ("balanced_accuracy", "balanced_accuracy_best_threshold",
                                                      "accuracy", "auroc", "f1", "aoi_attention")},
                          **({"operating_point": ev["operating_point"]} if "operating_point" in ev else {}),
                          "flip": {k: au[k]["flip_rate"] for k in REPLACEMENTS},
                          "audit_balanced_accuracy": {k: au[k]["balanced_accuracy"] for k in REPLACEMENTS}}
    return figures
