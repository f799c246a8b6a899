"""torch Dataset over an in-memory LoadedSplit, with joint image/mask augmentation."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from ceod.data.loading import LoadedSplit
from ceod.data.imageio import normalize
from ceod.training.transforms import (COUNTERFACTUALS, apply_augment, clean_background, outside_counterfactual,
                                     swap_background)


class SplitDataset(Dataset):
    """Yields (image [3,S,S] float, aoi [1,S,S] float, label, index), and with `counterfactual`
    a fifth item: the augmented image with the outside of its AOI replaced
    (`outside_counterfactual`, one of `views`; a random other training image's part-free
    background as donor, random other training images as the source of pasted patches).

    `background_swap` > 0: with that probability an image keeps its AOI and takes the outside of
    a random other training image (mask-driven background augmentation, zero inference cost),
    whose part is removed first: its rendered part-free background where the data has one, else
    inpainted once and kept (a donor is drawn many times over the epochs).
    Draws use numpy's global generator, which the training loop reseeds every epoch."""

    def __init__(self, data: LoadedSplit, mean: tuple[float, ...], std: tuple[float, ...],
                 augment=None, masks: np.ndarray | None = None, background_swap: float = 0.0,
                 counterfactual: bool = False, views: tuple[str, ...] | list[str] = COUNTERFACTUALS) -> None:
        self.data, self.mean, self.std, self.augment = data, mean, std, augment
        self.masks = data.aoi if masks is None else masks
        self.background_swap = background_swap
        self.counterfactual, self.views = counterfactual, tuple(views)
        self._clean: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.data)

    def _other(self, i: int) -> int:
        """A random training row other than i."""
        return (i + np.random.randint(1, len(self.data))) % len(self.data)

    def _background(self, j: int) -> np.ndarray:
        if self.data.backgrounds is not None:
            return self.data.backgrounds[j]
        if j not in self._clean:
            self._clean[j] = clean_background(self.data.images[j], self.masks[j])
        return self._clean[j]

    def __getitem__(self, i: int):
        image = self.data.images[i]
        if self.background_swap and len(self.data) > 1 and np.random.random() < self.background_swap:
            j = self._other(i)
            image = swap_background(image, self.masks[i], self.data.images[j], self.masks[j], self._background(j))
        image, (mask,) = apply_augment(self.augment, image, [self.masks[i]])
        x = torch.from_numpy(normalize(image[None], self.mean, self.std)[0])
        m = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None]
        if not self.counterfactual:
            return x, m, int(self.data.labels[i]), i
        donor = None
        if len(self.data) > 1:
            donor = self._background(self._other(i))
        view = outside_counterfactual(image, mask, donor, self.views, lambda: self.data.images[self._other(i)])
        return x, m, int(self.data.labels[i]), i, torch.from_numpy(normalize(view[None], self.mean, self.std)[0])
