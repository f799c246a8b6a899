"""torch Dataset over an in-memory LoadedSplit, with joint image/mask augmentation."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from ceod.dataset import LoadedSplit
from ceod.imageio import normalize
from ceod.transforms import apply_augment


class SplitDataset(Dataset):
    """Yields (image [3,S,S] float, aoi [1,S,S] float, label, index)."""

    def __init__(self, data: LoadedSplit, mean: tuple[float, ...], std: tuple[float, ...],
                 augment=None, masks: np.ndarray | None = None) -> None:
        self.data, self.mean, self.std, self.augment = data, mean, std, augment
        self.masks = data.aoi if masks is None else masks

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        image, (mask,) = apply_augment(self.augment, self.data.images[i], [self.masks[i]])
        x = torch.from_numpy(normalize(image[None], self.mean, self.std)[0])
        m = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None]
        return x, m, int(self.data.labels[i]), i
