"""The smp model factory. Encoders are built without weights: nothing is ever downloaded."""

from __future__ import annotations

from torch import nn

from ceod.config import ConfigError
from segmenter.config import SegModelConfig


def build_segmenter(cfg: SegModelConfig) -> nn.Module:
    """An smp model with one output channel (AOI logits)."""
    import segmentation_models_pytorch as smp

    kwargs = dict(encoder_name=cfg.encoder, encoder_weights=None, encoder_depth=cfg.encoder_depth,
                  in_channels=3, classes=1)
    try:
        return smp.create_model(cfg.arch, decoder_channels=cfg.decoder_channels, **kwargs)
    except TypeError:  # architectures without decoder_channels (FPN, DeepLabV3, ...)
        return smp.create_model(cfg.arch, **kwargs)
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"config key 'model': smp cannot build arch={cfg.arch!r} "
                          f"encoder={cfg.encoder!r}: {exc}") from None

