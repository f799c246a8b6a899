"""Albumentations pipelines built from YAML lists.

albumentations applies geometric transforms to the image and every mask passed as `masks=`,
and photometric (ImageOnlyTransform) ones to the image only: that is the contract we rely on.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ceod.contracts.config import ConfigError

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


# ceod's own entry: it needs the AOI masks and other training images, so the dataset applies it
BACKGROUND_SWAP = "BackgroundSwap"


def background_swap_probability(spec: list[dict[str, Any]] | None, key: str = "augment") -> float:
    """p of a `{name: BackgroundSwap, p: ...}` entry (0 when absent): with that probability a
    training image keeps its AOI and takes the outside of another training image, whose own
    part is removed first (see `clean_background`), so no second part or defect leaks in."""
    entries = [item for item in spec or [] if isinstance(item, dict) and item.get("name") == BACKGROUND_SWAP]
    if not entries:
        return 0.0
    p = entries[-1].get("p", 0.5)
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
        raise ConfigError(f"config key '{key}': {BACKGROUND_SWAP} p must lie in [0, 1], got {p!r}")
    return float(p)


def clean_background(image: np.ndarray, aoi: np.ndarray, margin: int = 2) -> np.ndarray:
    """The image with its part removed: the AOI (grown by `margin` px, so the dark rim goes too)
    filled by OpenCV's Telea inpainting from the surrounding background. A flat fill would leave
    a part-shaped silhouette next to every pasted AOI, which a model can read as a cue of its own."""
    import cv2

    hole = cv2.dilate((aoi > 0).astype(np.uint8), np.ones((3, 3), np.uint8), iterations=margin)
    if hole.all():  # nothing to inpaint from: a flat mean is all there is
        return np.full_like(image, int(image.mean()))
    return cv2.inpaint(np.ascontiguousarray(image), hole, 3, cv2.INPAINT_TELEA)


def flat_background(image: np.ndarray, aoi: np.ndarray) -> np.ndarray:
    """The image with its AOI filled by its mean outside colour (the audit's first, cruder
    swap: kept so old and new flip rates can be compared)."""
    out = aoi == 0
    fill = image[out].mean(0) if out.any() else image.reshape(-1, image.shape[-1]).mean(0)
    return np.where(out[..., None], image, fill.astype(image.dtype))


def swap_background(image: np.ndarray, aoi: np.ndarray, donor: np.ndarray, donor_aoi: np.ndarray,
                    donor_background: np.ndarray | None = None) -> np.ndarray:
    """image's AOI on the donor's outside. The donor's part is removed by `donor_background` when
    the dataset has it (the synthetic line renders each image's background without its part),
    else by inpainting (`clean_background`)."""
    background = donor_background if donor_background is not None else clean_background(donor, donor_aoi)
    return np.where(aoi[..., None] > 0, image, background).astype(image.dtype)


COUNTERFACTUALS = ("swap", "tone", "swap+tone")


def outside_counterfactual(image: np.ndarray, aoi: np.ndarray, donor_background: np.ndarray | None) -> np.ndarray:
    """The image with only the outside of its AOI changed, for the consistency term's second
    view: another training image's part-free background (`swap`), the outside's grey level and
    contrast moved (`tone`: gain 0.6-1.4, offset -30..30 grey levels), or both; drawn from numpy's
    global generator as the dataset's other draws are. Without a donor, `tone` only."""
    kind = COUNTERFACTUALS[np.random.randint(len(COUNTERFACTUALS))] if donor_background is not None else "tone"
    outside = np.asarray(aoi) == 0
    view = np.where(outside[..., None], donor_background, image) if "swap" in kind else image
    view = view.astype(np.float32)
    if "tone" in kind:
        gain, offset = np.random.uniform(0.6, 1.4), np.random.uniform(-30, 30)
        view[outside] = view[outside] * gain + offset
    return np.clip(np.rint(view), 0, 255).astype(np.uint8)


def build_augment(spec: list[dict[str, Any]] | None, key: str = "augment"):
    """`[{name: HorizontalFlip, p: 0.5}, ...]` -> A.Compose, or None for an empty list.
    `BackgroundSwap` entries are left to the dataset (see background_swap_probability)."""
    background_swap_probability(spec, key)
    spec = [item for item in spec or [] if not (isinstance(item, dict) and item.get("name") == BACKGROUND_SWAP)]
    if not spec:
        return None
    import albumentations as A

    transforms = []
    for i, item in enumerate(spec):
        if not isinstance(item, dict) or "name" not in item:
            raise ConfigError(f"config key '{key}[{i}]': each entry needs 'name' (an albumentations transform)")
        params = {k: v for k, v in item.items() if k != "name"}
        cls = getattr(A, item["name"], None)
        if cls is None or not isinstance(cls, type):
            raise ConfigError(f"config key '{key}[{i}].name': albumentations has no transform {item['name']!r}")
        try:
            transforms.append(cls(**params))
        except Exception as exc:  # albumentations validates params with pydantic
            raise ConfigError(f"config key '{key}[{i}]': bad parameters for {item['name']}: {exc}") from None
    return A.Compose(transforms)


def apply_augment(augment, image: np.ndarray, masks: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Augment image and masks together (geometric moves both, photometric the image only)."""
    if augment is None:
        return image, masks
    out = augment(image=image, masks=masks)
    return out["image"], list(out["masks"])
