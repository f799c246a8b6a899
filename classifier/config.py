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
    head: Literal["gap_linear", "flatten_linear", "mlp"] = "gap_linear"
    norm: Literal["batch", "group"] = "batch"  # simple CNN only; group is per-sample (exact under DDP)
    downsample: int = 3  # simple CNN only: stride-2 stages, so the Grad-CAM map is input / 2**downsample

    def validate(self) -> None:
        if not 1 <= self.downsample <= 3:
            raise ConfigError("config key 'model.downsample': 1, 2 or 3 stride-2 stages (simple backbone)")


@dataclass
class LossConfig:
    kind: Literal["ce", "ceod", "rrr"] = "ceod"
    weight: float = 1.0  # w of CEOD; lambda of RRR
    target: Literal["label", "def", "predicted", "contrast", "all", "sampled"] = "all"
    sampled_classes: int = 2  # target sampled: the true class's map + this many random other classes' maps
    apply_to: Literal["all", "def"] = "all"
    distance: Literal["overlap", "outside_mass", "signed_outside"] = "signed_outside"
    eps: float = 1e-6
    warmup_epochs: int = 3
    gradcam: Literal["auto", "fast", "general"] = "auto"

    def validate(self) -> None:
        if self.sampled_classes < 1:
            raise ConfigError("config key 'loss.sampled_classes': at least 1")
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
    classes: list[str] = field(default_factory=list)  # [] = from the training labels (ok/def by default)

    def validate(self) -> None:
        super().validate()
        if self.loss.gradcam == "fast" and self.model.head == "mlp":
            raise ConfigError("config key 'loss.gradcam': fast needs a linear head (model.head gap_linear or "
                              "flatten_linear); use gradcam: general or auto with head: mlp")
        if self.model.backbone != "simple":
            ignored = [k for k, default in (("width", 32), ("norm", "batch"), ("downsample", 3))
                       if getattr(self.model, k) != default]
            if ignored:
                raise ConfigError(f"config key 'model.{ignored[0]}': applies to the simple backbone only "
                                  f"(backbone is {self.model.backbone}); remove it")
        if self.model.backbone == "simple" and self.input_size % 2 ** self.model.downsample:
            raise ConfigError(f"config key 'input_size': must be a multiple of {2 ** self.model.downsample} "
                              f"for model.downsample {self.model.downsample}")
        if len(set(self.classes)) != len(self.classes) or len(self.classes) == 1:
            raise ConfigError("config key 'classes': at least two distinct names (or [] to infer them)")
