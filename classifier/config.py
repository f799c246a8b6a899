"""The classifier's config schema (configs/classifier.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ceod.config import ConfigError
from ceod.schema import DataConfig, TrainConfig


@dataclass
class ClsModelConfig:
    backbone: Literal["simple", "resnet18", "efficientnet_b0"] = "simple"
    width: int = 32
    pretrained: bool = False
    head: Literal["gap_linear", "mlp"] = "gap_linear"
    norm: Literal["batch", "group"] = "batch"  # simple CNN only; group is per-sample (exact under DDP)


@dataclass
class LossConfig:
    kind: Literal["ce", "ceod"] = "ceod"
    weight: float = 1.0
    target: Literal["label", "def", "predicted", "contrast"] = "label"
    apply_to: Literal["all", "def"] = "all"
    distance: Literal["overlap", "outside_mass", "signed_outside"] = "overlap"
    eps: float = 1e-6
    warmup_epochs: int = 0
    gradcam: Literal["auto", "fast", "general"] = "auto"

    def validate(self) -> None:
        if self.weight < 0 or self.eps <= 0 or self.warmup_epochs < 0:
            raise ConfigError("config keys 'loss.weight' >= 0, 'loss.eps' > 0, 'loss.warmup_epochs' >= 0")


@dataclass
class ThresholdConfig:
    mode: Literal["f1", "recall", "balanced"] = "f1"
    target_recall: float = 0.95


@dataclass
class ClassifierConfig(DataConfig):
    model: ClsModelConfig = field(default_factory=ClsModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    threshold: ThresholdConfig = field(default_factory=ThresholdConfig)
    augment: list[dict[str, Any]] = field(default_factory=list)
