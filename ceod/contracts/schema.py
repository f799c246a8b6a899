"""Config pieces both trainers share (data selection and the optimiser)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ceod.contracts.config import ConfigError


@dataclass
class TrainConfig:
    epochs: int = 12
    batch_size: int = 32
    lr: float = 0.002
    weight_decay: float = 0.0001
    # 0: keep the epoch with the best validation score; k > 0: keep the mean of the last k
    # epochs' weights (for validation sets too small or too noisy to pick an epoch by)
    # epochs, or all of them in a run shorter than k
    average_last: int = 0
    # the pretrained part's learning rate (classifier backbone, segmenter encoder) as a fraction
    # of lr: a new head learns fast while ImageNet features move slowly
    backbone_lr_scale: float = 1.0

    def validate(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ConfigError("config keys 'train.epochs', 'train.batch_size' must be >= 1 and 'train.lr' > 0")
        if self.average_last < 0:
            raise ConfigError(f"config key 'train.average_last': 0 (keep the best validation epoch) or the "
                              f"number of last epochs to average, got {self.average_last}")
        if not 0 < self.backbone_lr_scale <= 1:
            raise ConfigError(f"config key 'train.backbone_lr_scale': in (0, 1], got {self.backbone_lr_scale}")


@dataclass
class DataConfig:
    """Fields every stage config starts with: input geometry, normalisation, splits."""

    input_size: int = 128
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    split_column: str = "split"
    train_split: str = "train"
    val_split: str = "val"
    val_fraction: float = 0.15
    max_val_images: int = 0  # 0 = all; a seeded subset keeps per-epoch validation cheap on big sets

    def validate(self) -> None:
        if not 16 <= self.input_size <= 2048 or self.input_size % 4:
            raise ConfigError("config key 'input_size': must be a multiple of 4 between 16 and 2048")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError("config keys 'mean'/'std': three values each, std > 0")
        if not 0 < self.val_fraction < 1:
            raise ConfigError("config key 'val_fraction': must lie in (0, 1)")
