"""Drift watch, part one: the statistics a line frame is measured by, and the reference profile of
them written at export from the validation split (what the line is expected to look like).
Torch-free: numpy and OpenCV.

Statistics and what an alarm on each means (`KINDS`):

- every frame, from the classifier's own outputs: `score` (P(def), or the top class's probability)
  and, where the model was exported with `--features`, `feature_distance` (the whitened distance of
  its pooled features from the reference mean, over the reference's top principal directions);
- every frame, from the image alone: grey level (mean, 10th and 90th percentile) and texture in
  the background region, the part of the frame no reference AOI came near (where that region is
  at least 5 % of the frame; a part that fills the frame leaves it to the sampled statistics),
  and, with `--heatmap`, the share of the heatmap's mass in that region on defect verdicts; and
  where the part sits (the centroid of what departs from the background's grey level), a proxy of
  the AOI's centroid that needs no segmenter;
- on sampled frames, with the segmenter's AOI: the grey level outside the AOI (mean, 10th and 90th
  percentile), its texture (mean |Laplacian|), the AOI's area and centroid, and, where the model
  was exported with `--heatmap`, the share of the heatmap's mass outside the AOI on defect
  verdicts (the heatmap is the defect class's; K-class models: the predicted class's, every frame).

The monitor that tests rolling windows of these statistics against the profile is
`ceod.export.drift`.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import cv2
import numpy as np

from ceod.contracts.classes import is_anomaly
from ceod.contracts.errors import CeodError
from ceod.data.imageio import resize_image

PROFILE_KEY = "reference_profile"  # ceod.<key> in the ONNX metadata
FEATURES_KEY = "reference_features"
PROFILE_VERSION = 1
ANALYSIS_SIZE = 128  # every sampled frame is measured at this size, whatever the camera's
QUANTILES = np.linspace(0.0, 1.0, 41)
DECILES = np.linspace(0.1, 0.9, 9)
FEATURE_DIRECTIONS = 8
MIN_OUTSIDE = 0.01  # outside-AOI statistics need at least this share of the frame
BACKGROUND_SIZE = 32  # the every-frame background statistics are measured at this size
MIN_BACKGROUND = 0.05  # ... where the background region holds at least this share of the frame
REGION_MARGIN = 0.05  # the background region keeps this far (share of the side) from reference AOIs ...
REGION_TOLERANCE = 0.02  # ... in all but this share of the reference frames

KINDS: dict[str, str] = {
    "scene": "the scene changed outside the AOI (the model may still be fine)",
    "evidence": "the model's evidence moved outside the AOI (its verdicts are at risk)",
    "aoi": "the AOI moved or changed size (camera or fixture)",
    "score": "the score distribution shifted (the process or the model)",
    "features": "the classifier's pooled features moved (its input changed in a way it sees)",
}


@dataclass(frozen=True)
class Statistic:
    name: str
    kind: str
    per_frame: bool  # every frame (classifier outputs, background region) or sampled frames (segmenter)
    upward: bool  # only an increase is drift
    window: int  # values in the rolling window
    unit: str
    # the smallest change worth an alarm, in the statistic's units (or relative to the reference
    # mean where `relative`): a shift can be certain and still too small to matter
    min_effect: float
    relative: bool = False
    # a level, not a change: the window mean above it is reported whatever the reference (most of
    # the evidence behind defect verdicts outside the AOI is a model at risk, drifting or not)
    ceiling: float | None = None

    def material(self, reference: dict[str, Any], window: np.ndarray, ks_d: float) -> bool:
        """Large enough to report, in the statistic's own units: the mean moved by min_effect, or
        the distribution moved (KS D >= 0.25) with one of its deciles moved by min_effect."""
        floor = self.min_effect * abs(reference["mean"]) if self.relative else self.min_effect
        if abs(float(np.mean(window)) - reference["mean"]) >= floor:
            return True
        if ks_d < MATERIAL_KS_D:
            return False
        deciles = np.interp(DECILES, QUANTILES, reference["quantiles"])
        return bool(np.max(np.abs(np.quantile(window, DECILES) - deciles)) >= floor)


MATERIAL_KS_D = 0.25
STATISTICS: tuple[Statistic, ...] = (
    Statistic("score", "score", True, False, 200, "probability", 0.05),
    Statistic("feature_distance", "features", True, True, 100, "whitened distance", 0.25, relative=True),
    Statistic("background_grey", "scene", True, False, 100, "grey level / 255", 0.02),
    Statistic("background_grey_p10", "scene", True, False, 100, "grey level / 255", 0.02),
    Statistic("background_grey_p90", "scene", True, False, 100, "grey level / 255", 0.02),
    Statistic("background_texture", "scene", True, False, 100, "mean |Laplacian|", 0.1, relative=True),
    Statistic("outside_grey", "scene", False, False, 32, "grey level / 255", 0.02),
    Statistic("outside_grey_p10", "scene", False, False, 32, "grey level / 255", 0.02),
    Statistic("outside_grey_p90", "scene", False, False, 32, "grey level / 255", 0.02),
    Statistic("outside_texture", "scene", False, False, 32, "mean |Laplacian|", 0.1, relative=True),
    Statistic("aoi_area", "aoi", False, False, 32, "share of the frame", 0.02),
    Statistic("aoi_cx", "aoi", False, False, 32, "share of the width", 0.02),
    Statistic("aoi_cy", "aoi", False, False, 32, "share of the height", 0.02),
    Statistic("evidence_outside", "evidence", False, True, 32, "share of heatmap mass", 0.05, ceiling=0.5),
    Statistic("evidence_background", "evidence", True, True, 100, "share of heatmap mass", 0.05),
    Statistic("part_cx", "aoi", True, False, 100, "share of the width", 0.02),
    Statistic("part_cy", "aoi", True, False, 100, "share of the height", 0.02),
)
BY_NAME = {s.name: s for s in STATISTICS}


class ProfileError(CeodError):
    """The model carries no usable reference profile."""


# ---------------------------------------------------------------- measuring one frame

def _grey(image: np.ndarray, size: int) -> np.ndarray:
    return cv2.cvtColor(cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)


def region_statistics(greys: np.ndarray, regions: np.ndarray, prefix: str) -> dict[str, np.ndarray]:
    """Mean, 10th and 90th percentile and texture (mean |4-neighbour Laplacian|) of grey uint8
    images [B,S,S] inside their regions ([B,S,S] or one [S,S] for all), vectorised over the batch;
    NaN where a region is empty. Values in grey levels / 255."""
    greys = np.asarray(greys)
    regions = np.broadcast_to(np.asarray(regions, bool), greys.shape).reshape(len(greys), -1)
    flat = greys.reshape(len(greys), -1).astype(np.int16)
    count = regions.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(regions, flat, 0).sum(axis=1) / count
        ordered = np.sort(np.where(regions, flat, 1 << 12), axis=1)  # outside the region sorts last
        rows = np.arange(len(greys))
        pick = lambda q: ordered[rows, np.clip(np.ceil(q * count).astype(int) - 1, 0, None)].astype(float)  # noqa: E731
        padded = np.pad(greys.astype(np.int16), ((0, 0), (1, 1), (1, 1)), mode="reflect")
        laplace = np.abs(padded[:, :-2, 1:-1] + padded[:, 2:, 1:-1] + padded[:, 1:-1, :-2] + padded[:, 1:-1, 2:]
                         - 4 * padded[:, 1:-1, 1:-1]).reshape(len(greys), -1)
        texture = np.where(regions, laplace, 0).sum(axis=1) / count
        empty = count == 0
        out = {f"{prefix}_grey": mean, f"{prefix}_grey_p10": pick(0.10), f"{prefix}_grey_p90": pick(0.90),
               f"{prefix}_texture": texture}
    return {k: np.where(empty, np.nan, v / 255.0) for k, v in out.items()}


def thumbnail(image: np.ndarray) -> np.ndarray:
    """A frame at the model's input size as a [BACKGROUND_SIZE]^2 grey thumbnail, nearest-pixel
    (no filtering: some 2 microseconds, and the same on the reference and on the line)."""
    small = cv2.resize(image, (BACKGROUND_SIZE, BACKGROUND_SIZE), interpolation=cv2.INTER_NEAREST)
    return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)


def thumbnail_statistics(thumbs: np.ndarray, region: np.ndarray) -> dict[str, np.ndarray]:
    """Grey level and texture in the background region, the cells reference AOIs hardly ever
    came near (`region`, [BACKGROUND_SIZE]^2 bool), and where the part sits (`part_position`), of
    grey thumbnails [B,S,S]. Some 10 microseconds a frame over a batch: no segmenter needed."""
    return {**region_statistics(thumbs, region, "background"), **part_position(thumbs, region)}


def part_position(thumbs: np.ndarray, region: np.ndarray) -> dict[str, np.ndarray]:
    """Where the part sits, every frame and without the segmenter: the centroid of each cell's
    departure from the background's grey level, beyond the background's own mean departure (its
    texture), in shares of the width and height; NaN where nothing departs. A proxy of the AOI's
    centroid that moves with the camera or the fixture."""
    g = np.asarray(thumbs, np.float32)
    size = g.shape[-1]
    g = g.reshape(len(g), -1)
    inside = np.asarray(region, np.float32).reshape(-1)
    inside /= inside.sum()
    departure = np.abs(g - (g @ inside)[:, None])
    weight = np.maximum(departure - (departure @ inside)[:, None], 0)
    total = weight.sum(axis=1)
    centres = (np.arange(size, dtype=np.float32) + 0.5) / size
    with np.errstate(invalid="ignore", divide="ignore"):
        cx = np.where(total > 0, weight @ np.tile(centres, size) / total, np.nan)
        cy = np.where(total > 0, weight @ np.repeat(centres, size) / total, np.nan)
    return {"part_cx": cx, "part_cy": cy}


def region_cover(region: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A region's (bool mask, any size) share of each cell of a heatmap of `shape`."""
    return cv2.resize(np.asarray(region, np.float32), shape[::-1], interpolation=cv2.INTER_AREA)


def heat_shares(heatmaps: np.ndarray, cover: np.ndarray) -> np.ndarray:
    """The share of each heatmap's (ReLU'd) mass [N,h,w] that lies in `cover` (`region_cover`);
    NaN for an all-zero map."""
    heat = np.clip(np.asarray(heatmaps, np.float32), 0, None)
    totals = heat.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 1e-12, (heat * cover).sum(axis=(1, 2)) / totals, np.nan)


def _analysis_view(image: np.ndarray, aoi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A frame and its AOI (bool or 0/1, any size) at ANALYSIS_SIZE: grey uint8 and bool."""
    s = ANALYSIS_SIZE
    inside = cv2.resize(np.asarray(aoi, np.uint8), (s, s), interpolation=cv2.INTER_NEAREST) > 0
    return _grey(image, s), inside


def frame_statistics(image: np.ndarray, aoi: np.ndarray, heatmap: np.ndarray | None) -> dict[str, float]:
    """The sampled-frame statistics of one RGB uint8 frame, its AOI (bool or 0/1, any size) and,
    where the model exports one, its heatmap [h,w]. NaN where a statistic does not exist (no
    outside region, an empty AOI, an all-zero heatmap)."""
    return _view_statistics(*_analysis_view(image, aoi), heatmap)


def _view_statistics(grey: np.ndarray, inside: np.ndarray, heatmap: np.ndarray | None) -> dict[str, float]:
    s = ANALYSIS_SIZE
    # the part's edge and its shadow are not background: leave a margin around the AOI
    outside = cv2.erode((~inside).astype(np.uint8), np.ones((3, 3), np.uint8), iterations=2) > 0
    nan = float("nan")
    out = dict.fromkeys((st.name for st in STATISTICS if not st.per_frame), nan)
    if outside.mean() >= MIN_OUTSIDE:
        out.update({k: float(v[0]) for k, v in region_statistics(grey[None], outside[None], "outside").items()})
    area = float(inside.mean())
    out["aoi_area"] = area
    if area > 0:
        ys, xs = np.nonzero(inside)
        out["aoi_cx"], out["aoi_cy"] = float(xs.mean() + 0.5) / s, float(ys.mean() + 0.5) / s
    if heatmap is not None:
        out["evidence_outside"] = float(heat_shares(heatmap[None], region_cover(~inside, heatmap.shape))[0])
    return out


def backs_a_verdict(class_names: tuple[str, ...], verdicts: np.ndarray) -> np.ndarray:
    """Which frames' heatmaps speak for their verdict: the defect verdicts of an ok/def model
    (its heatmap is the defect class's), every frame of a K-class one (the predicted class's)."""
    if not is_anomaly(class_names):
        return np.ones(len(verdicts), bool)
    return np.asarray(verdicts) == 1


# ---------------------------------------------------------------- the reference profile

def _summary(values: Iterable[float]) -> dict[str, Any] | None:
    v = np.asarray([x for x in values if np.isfinite(x)], np.float64)
    if len(v) < 10:
        return None
    return {"n": int(len(v)), "mean": float(v.mean()), "std": float(max(v.std(ddof=1), 1e-9)),
            "quantiles": [round(float(q), 6) for q in np.quantile(v, QUANTILES)]}


def _pack(array: np.ndarray) -> str:
    return base64.b64encode(np.asarray(array, np.float16).tobytes()).decode()


def _unpack(text: str, shape: tuple[int, ...]) -> np.ndarray:
    array = np.frombuffer(base64.b64decode(text), np.float16).astype(np.float32)
    if array.size != math.prod(shape) or not np.isfinite(array).all():
        raise ProfileError("the reference profile's feature block is damaged; re-export the model")
    return array.reshape(shape)


def feature_whitening(features: np.ndarray, directions: int = FEATURE_DIRECTIONS
                      ) -> tuple[dict[str, Any], np.ndarray]:
    """The reference's top principal directions of the pooled features, scaled to unit variance
    (stored as float16); returns the block and the reference's own distances."""
    f = np.asarray(features, np.float64)
    mean = f.mean(axis=0)
    _, sing, vt = np.linalg.svd(f - mean, full_matrices=False)
    k = int(min(directions, len(sing), f.shape[1]))
    scale = sing[:k] / math.sqrt(max(len(f) - 1, 1))
    keep = scale > 1e-6 * max(scale.max(), 1e-12)
    w = (vt[:k][keep] / scale[keep, None]).astype(np.float32)
    block = {"dims": int(f.shape[1]), "directions": int(w.shape[0]), "mean": _pack(mean), "whiten": _pack(w)}
    return block, feature_distance(f, mean.astype(np.float32), w)


def feature_distance(features: np.ndarray, mean: np.ndarray, whiten: np.ndarray) -> np.ndarray:
    z = (np.asarray(features, np.float32) - mean) @ whiten.T
    return np.sqrt((z ** 2).mean(axis=1))


def build_profile(classify: Callable[[list[np.ndarray]], dict[str, np.ndarray]],
                  frames: Iterable[tuple[np.ndarray, np.ndarray]], aoi_source: str, input_size: int,
                  batch: int = 16, scene_frames: Iterable[tuple[np.ndarray, np.ndarray]] = (),
                  whitening: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The reference profile from held-out frames (RGB uint8 image, AOI mask) and a function that
    returns the classifier's outputs (`score`, optionally `heatmap` [N,h,w], `features` [N,C] and
    `judged` [N] bool: the frames whose heatmap backs a defect verdict) for a list of images, and
    the model's input size (the every-frame statistics read the frame at that size, as the line
    resizes it). `scene_frames` (frames the model may have trained on) add to the statistics of
    the image alone and to the background region, never to the model's. `whitening` (a block as
    read_profile returns it) measures the feature distances with it instead of fitting one from
    these frames. Returns the profile and the feature block fitted here (None without features
    or with `whitening`)."""
    values: dict[str, list[float]] = {s.name: [] for s in STATISTICS}
    features: list[np.ndarray] = []
    histogram = np.zeros(16, np.float64)
    pending: list[tuple[np.ndarray, np.ndarray]] = []
    thumbnails: list[np.ndarray] = []
    heatmaps: list[np.ndarray] = []
    near_aoi = np.zeros((BACKGROUND_SIZE, BACKGROUND_SIZE), np.float64)  # frames whose AOI came within the margin
    margin = np.ones((2 * int(REGION_MARGIN * BACKGROUND_SIZE) + 1,) * 2, np.uint8)

    def flush(held_out: bool) -> None:
        heat, judged = None, np.zeros(len(pending), bool)
        if held_out:
            outputs = classify([im for im, _ in pending])
            values["score"].extend(float(v) for v in outputs["score"])
            if "features" in outputs:
                features.extend(np.asarray(outputs["features"], np.float32))
            heat = outputs.get("heatmap")
            judged = outputs.get("judged", np.ones(len(pending), bool))
        for k, (image, aoi) in enumerate(pending):
            evidence = heat[k] if heat is not None and judged[k] else None
            grey, inside = _analysis_view(image, aoi)
            for name, v in _view_statistics(grey, inside, evidence).items():
                if held_out or BY_NAME[name].kind != "evidence":
                    values[name].append(v)
            if evidence is not None:
                heatmaps.append(evidence)
            histogram[:] += np.bincount(grey[~inside] // 16, minlength=16)[:16]
            small = cv2.resize(np.asarray(aoi, np.uint8), (BACKGROUND_SIZE,) * 2, interpolation=cv2.INTER_NEAREST)
            near_aoi[:] += cv2.dilate(small, margin) > 0
            thumbnails.append(thumbnail(resize_image(image, input_size)))
        pending.clear()

    scene_images = 0
    for source, held_out in ((scene_frames, False), (frames, True)):
        for frame in source:
            pending.append(frame)
            if len(pending) == batch:
                flush(held_out)
        if pending:
            flush(held_out)
        if not held_out:
            scene_images = len(thumbnails)
    if len(values["score"]) < 30:
        raise ProfileError(f"the reference profile needs at least 30 held-out images, found {len(values['score'])}")
    region = near_aoi <= REGION_TOLERANCE * len(thumbnails)
    if region.mean() >= MIN_BACKGROUND:
        for name, v in thumbnail_statistics(np.stack(thumbnails), region).items():
            values[name] = [float(x) for x in v]
        if heatmaps:
            shares = heat_shares(np.stack(heatmaps), region_cover(region, heatmaps[0].shape))
            values["evidence_background"] = [float(x) for x in shares]
    block = None
    if whitening is not None and features:
        distances = feature_distance(np.stack(features), whitening["mean"], whitening["whiten"])
        values["feature_distance"] = [float(d) for d in distances]
    elif len(features) >= 30:
        block, distances = feature_whitening(np.stack(features))
        values["feature_distance"] = [float(d) for d in distances]
    stats = {name: summary for name, summary in ((n, _summary(v)) for n, v in values.items()) if summary}
    profile = {"version": PROFILE_VERSION, "images": len(values["score"]), "scene_images": scene_images,
               "aoi_source": aoi_source,
               "analysis_size": ANALYSIS_SIZE, "statistics": stats,
               "background_region": {"size": BACKGROUND_SIZE, "share": round(float(region.mean()), 4),
                                     "cells": base64.b64encode(np.packbits(region).tobytes()).decode()},
               "outside_histogram": [round(float(h), 6) for h in histogram / max(histogram.sum(), 1.0)]}
    return profile, block


REGION_STATISTICS = ("background_grey", "background_grey_p10", "background_grey_p90", "background_texture",
                     "part_cx", "part_cy", "evidence_background")  # read in the background region


def unwatched(profile: dict[str, Any], outputs: tuple[str, ...]) -> dict[str, str]:
    """Each statistic the profile cannot watch, with why, for a model with these ONNX outputs."""
    share = profile["background_region"]["share"]
    reasons = {}
    for st in STATISTICS:
        if st.name in profile["statistics"]:
            continue
        if st.name == "feature_distance" and "features" not in outputs:
            reasons[st.name] = "exported without --features"
        elif st.kind == "evidence" and "heatmap" not in outputs:
            reasons[st.name] = "exported without --heatmap"
        elif st.name in REGION_STATISTICS and share < MIN_BACKGROUND:
            reasons[st.name] = (f"the background region (the cells no reference AOI came within {REGION_MARGIN:.0%} "
                                f"of) is {share:.1%} of the frame, under {MIN_BACKGROUND:.0%}")
        elif st.name.startswith("outside_"):
            reasons[st.name] = f"under {MIN_OUTSIDE:.0%} of the frame lies outside the AOI on most reference images"
        else:
            reasons[st.name] = "fewer than 10 reference values"
    return reasons


def blind_spots(reasons: dict[str, str]) -> str | None:
    """A warning for the line engineer where the data, not an export option, leaves statistics
    unwatched, naming them, why, and what still watches the scene and the part's position."""
    data_caused: dict[str, list[str]] = {}
    for name, why in reasons.items():
        if not why.startswith("exported without"):
            data_caused.setdefault(why, []).append(name)
    if not data_caused:
        return None
    missing = "; ".join(f"{', '.join(names)} ({why})" for why, names in data_caused.items())
    scene = [st.name for st in STATISTICS if st.kind == "scene" and st.name not in reasons]
    position = [st.name for st in STATISTICS if st.kind == "aoi" and st.name not in reasons]
    return (f"the drift watch cannot watch {missing}. Scene changes are watched by: "
            f"{', '.join(scene) or 'nothing'}; the part's position and size by: {', '.join(position) or 'nothing'}")


def reference_origin(profile: dict[str, Any]) -> str:
    """Where a profile's reference frames came from, in words: the export's validation images or
    the line's own frames of a `ceod baseline` (a report must not call line frames validation)."""
    if "baseline" in profile:
        return f"{profile['images']} line frames of {profile['baseline']['log']} (ceod baseline)"
    return f"{profile['images']} validation images"


def profile_summary(profile: dict[str, Any], outputs: tuple[str, ...]) -> dict[str, Any]:
    """What a profile watches and cannot watch (with why), for the export report and benches."""
    missing = unwatched(profile, outputs)
    return {"images": profile["images"], "origin": reference_origin(profile),
            "scene_images": profile.get("scene_images", 0),
            "aoi_source": profile["aoi_source"], "statistics": sorted(profile["statistics"]),
            "background_share": profile["background_region"]["share"], "unwatched": missing,
            "warning": blind_spots(missing)}


def to_props(profile: dict[str, Any], block: dict[str, Any] | None) -> dict[str, str]:
    props = {PROFILE_KEY: json.dumps(profile)}
    if block is not None:
        props[FEATURES_KEY] = json.dumps(block)
    return props


def read_profile(raw: dict[str, str], path: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The profile stored in a model's metadata (ceod.reference_profile), checked."""
    text = raw.get(f"ceod.{PROFILE_KEY}")
    if text is None:
        raise ProfileError(f"{path} carries no reference profile: re-export it with `ceod export` "
                           "(it writes the profile from the validation split)")
    try:
        profile = json.loads(text)
        block = json.loads(raw[f"ceod.{FEATURES_KEY}"]) if f"ceod.{FEATURES_KEY}" in raw else None
        if profile.get("version") != PROFILE_VERSION:
            raise ProfileError(f"{path}: reference profile version {profile.get('version')}, this ceod reads "
                               f"{PROFILE_VERSION}; re-export the model")
        for name, summary in profile["statistics"].items():
            if name not in BY_NAME or len(summary["quantiles"]) != len(QUANTILES) or summary["n"] < 10 \
                    or not (np.isfinite(summary["mean"]) and summary["std"] > 0):
                raise ProfileError(f"{path}: reference statistic {name!r} is malformed; re-export the model")
        cells = profile["background_region"]
        bits = np.unpackbits(np.frombuffer(base64.b64decode(cells["cells"]), np.uint8))
        size = int(cells["size"])
        if size != BACKGROUND_SIZE or len(bits) < size * size:
            raise ProfileError(f"{path}: the reference profile's background region is damaged; re-export the model")
        profile["background_region"] = {**cells, "mask": bits[:size * size].reshape(size, size).astype(bool)}
        if block is not None:
            block = {**block, "mean": _unpack(block["mean"], (block["dims"],)),
                     "whiten": _unpack(block["whiten"], (block["directions"], block["dims"]))}
    except (ValueError, KeyError, TypeError) as exc:
        raise ProfileError(f"{path}: the reference profile cannot be read ({exc}); re-export the model") from None
    return profile, block
