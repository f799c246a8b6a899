"""Backbone + head classifiers over K classes (ok/def by default). Pure torch, no training code."""

from __future__ import annotations

import torch
from torch import nn

from ceod.classifier.backbones import BACKBONES, SimpleCNN, TimmFeatures, build_backbone  # noqa: F401
from ceod.classifier.config import ClsModelConfig


class GapLinearHead(nn.Module):
    """Global average pool + linear: Grad-CAM of this head is the plain CAM (fast path)."""

    def __init__(self, channels: int, classes: int = 2) -> None:
        super().__init__()
        self.fc = nn.Linear(channels, classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features.mean(dim=(2, 3)))


class FlattenLinearHead(nn.Module):
    """Flatten + linear over the whole map: position-aware (reads *where* a cue sits, as the
    literature's DecoyMNIST CNNs and MLPs do). Still linear in the features, so the logit
    decomposes exactly over positions and its map needs no second backward (fast path)."""

    def __init__(self, channels: int, map_size: tuple[int, int], classes: int = 2) -> None:
        super().__init__()
        self.map_size = map_size
        self.fc = nn.Linear(channels * map_size[0] * map_size[1], classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features.flatten(1))


class MLPHead(nn.Module):
    """A non-linear head (a 1x1 conv, ReLU, pool, linear): needs the general Grad-CAM path."""

    def __init__(self, channels: int, classes: int = 2, hidden: int = 64) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels, hidden, 1)
        self.fc = nn.Linear(hidden, classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.proj(features)).mean(dim=(2, 3)))


class AnomalyClassifier(nn.Module):
    """features -> head -> logits [N,K]; `forward(x, return_features=True)` also returns the map."""

    def __init__(self, features: nn.Module, channels: int, head: str = "gap_linear", num_classes: int = 2,
                 map_size: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.features = features
        self.num_classes = num_classes
        if head == "gap_linear":
            self.head: nn.Module = GapLinearHead(channels, num_classes)
        elif head == "flatten_linear":
            if map_size is None:
                raise ValueError("head flatten_linear needs the feature map size")
            self.head = FlattenLinearHead(channels, map_size, num_classes)
        else:
            self.head = MLPHead(channels, num_classes)

    @property
    def has_linear_head(self) -> bool:
        """A head linear in the features: its class maps come from one einsum (fast path)."""
        return isinstance(self.head, (GapLinearHead, FlattenLinearHead))

    def forward(self, x: torch.Tensor, return_features: bool = False, views: int = 0):
        """`views=n`: the last n images are second views; returns (logits, features, view_logits) of
        one backbone pass (BatchNorm sees both), the head applied to each part's own slice of the
        map so that the first logits are a function of the returned features (general Grad-CAM)."""
        a = self.features(x)
        if views:
            first = a[:len(a) - views]
            return self.head(first), first, self.head(a[len(a) - views:])
        logits = self.head(a)
        return (logits, a) if return_features else logits


def build_classifier(cfg: ClsModelConfig, num_classes: int = 2, input_size: int = 128) -> AnomalyClassifier:
    features, channels = build_backbone(cfg)
    map_size = None
    if cfg.head == "flatten_linear":  # the map size follows from the input size; measure it once
        with torch.no_grad():
            was = features.training
            features.eval()
            map_size = tuple(features(torch.zeros(1, 3, input_size, input_size)).shape[-2:])
            features.train(was)
    return AnomalyClassifier(features, channels, cfg.head, num_classes, map_size)
