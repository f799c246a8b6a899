"""Albumentations pipelines built from YAML lists.

albumentations applies geometric transforms to the image and every mask passed as `masks=`,
and photometric (ImageOnlyTransform) ones to the image only: that is the contract we rely on.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ceod.config import ConfigError

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def build_augment(spec: list[dict[str, Any]] | None, key: str = "augment"):
    """`[{name: HorizontalFlip, p: 0.5}, ...]` -> A.Compose, or None for an empty list."""
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
