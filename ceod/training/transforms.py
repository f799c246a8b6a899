"""Albumentations pipelines built from YAML lists.

albumentations applies geometric transforms to the image and every mask passed as `masks=`,
and photometric (ImageOnlyTransform) ones to the image only: that is the contract we rely on.
"""

from __future__ import annotations

import os
from typing import Any, Callable

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
VIEW_PARTS = ("swap", "paste", "tone")  # the order a view's parts are applied in


def check_views(views: list[str] | tuple[str, ...], key: str = "loss.consistency_views") -> None:
    """Each view is one of VIEW_PARTS or several joined by '+' (each at most once)."""
    if not views:
        raise ConfigError(f"config key '{key}': at least one view, e.g. {list(COUNTERFACTUALS)}")
    for view in views:
        parts = str(view).split("+")
        if not set(parts) <= set(VIEW_PARTS) or len(set(parts)) != len(parts):
            raise ConfigError(f"config key '{key}': {view!r} is not one of {list(VIEW_PARTS)} or several of "
                              "them joined by '+' (e.g. 'swap+tone')")


def paste_patches(image: np.ndarray, outside: np.ndarray, pick_image: Callable[[], np.ndarray],
                  patches: tuple[int, int] = (2, 5)) -> np.ndarray:
    """`patches` (low, high inclusive) rectangles cut from other training images — their parts,
    defects and fixtures included — pasted where `outside` is True: real content the line showed,
    in places it does not belong, which the decision must ignore. Not the audit's clutter
    renderer (`ceod.data.clutter`), so the audit still shows objects no training view held."""
    h, w = outside.shape
    view = image.copy()
    for _ in range(np.random.randint(patches[0], patches[1] + 1)):
        source = pick_image()
        sh, sw = source.shape[:2]
        ph = min(h, sh, max(4, int(np.random.uniform(0.15, 0.4) * h)))
        pw = min(w, sw, max(4, int(np.random.uniform(0.15, 0.4) * w)))
        sy, sx = np.random.randint(sh - ph + 1), np.random.randint(sw - pw + 1)
        dy, dx = np.random.randint(h - ph + 1), np.random.randint(w - pw + 1)
        patch = source[sy:sy + ph, sx:sx + pw]
        if np.random.random() < 0.5:
            patch = patch[:, ::-1]
        region = outside[dy:dy + ph, dx:dx + pw, None]
        view[dy:dy + ph, dx:dx + pw] = np.where(region, patch, view[dy:dy + ph, dx:dx + pw])
    return view


def outside_counterfactual(image: np.ndarray, aoi: np.ndarray, donor_background: np.ndarray | None,
                           views: tuple[str, ...] | list[str] = COUNTERFACTUALS,
                           pick_image: Callable[[], np.ndarray] | None = None) -> np.ndarray:
    """The image with only the outside of its AOI changed, for the consistency term's second
    view, one of `views` at random: another training image's part-free background (`swap`),
    patches of other training images pasted outside the AOI (`paste`, needs `pick_image`), the
    outside's grey level and contrast moved (`tone`: gain 0.6-1.4, offset -30..30 grey levels),
    or several joined by '+'; drawn from numpy's global generator as the dataset's other draws
    are. Without a donor (a one-image split), `tone` only."""
    kind = views[np.random.randint(len(views))] if donor_background is not None else "tone"
    parts = kind.split("+")
    outside = np.asarray(aoi) == 0
    view = np.where(outside[..., None], donor_background, image) if "swap" in parts else image
    if "paste" in parts:
        if pick_image is None:
            raise ValueError("a 'paste' view needs pick_image, the source of other training images")
        view = paste_patches(view, outside, pick_image)
    view = view.astype(np.float32)
    if "tone" in parts:
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
