"""The CEOD term's registries: distances (how far a class map sits outside the AOI) and targets
(whose maps the term reads). The config validates its names against these, and the loss calls
them; neither imports the other through this module, so the classifier package has no circle.
A new distance is a function with `@register_distance("name")` here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch

from ceod.classifier.gradcam import class_weights, normalise

if TYPE_CHECKING:  # annotations only: the config imports this module to validate names
    from ceod.classifier.config import LossConfig


# name -> fn(signed map [N,H,W], mask [N,H,W], eps, detach_denominator, cells of the map) -> distance [N]
Distance = Callable[[torch.Tensor, torch.Tensor, float, bool, int], torch.Tensor]
DISTANCES: dict[str, Distance] = {}


def register_distance(name: str) -> Callable[[Distance], Distance]:
    """Add a distance to the registry: `loss.distance: NAME` then selects it."""
    def add(fn: Distance) -> Distance:
        DISTANCES[name] = fn
        return fn
    return add


@register_distance("overlap")
def _overlap(signed: torch.Tensor, mask: torch.Tensor, eps: float, detach: bool, cells: int) -> torch.Tensor:
    h = normalise(signed, eps)
    total = h.sum((1, 2))
    denominator = torch.minimum(total.detach() if detach else total, mask.sum((1, 2)))
    return 1 - (h * mask).sum((1, 2)) / (denominator + eps)


@register_distance("outside_mass")
def _outside_mass(signed: torch.Tensor, mask: torch.Tensor, eps: float, detach: bool, cells: int) -> torch.Tensor:
    h = normalise(signed, eps)
    total = h.sum((1, 2))
    return (h * (1 - mask)).sum((1, 2)) / ((total.detach() if detach else total) + eps)


@register_distance("signed_outside")
def _signed_outside(signed: torch.Tensor, mask: torch.Tensor, eps: float, detach: bool, cells: int) -> torch.Tensor:
    mag = signed.abs()
    total = mag.sum((1, 2))
    return (mag * (1 - mask)).sum((1, 2)) / ((total.detach() if detach else total) + eps)


@register_distance("outside_evidence")
def _outside_evidence(signed: torch.Tensor, mask: torch.Tensor, eps: float, detach: bool, cells: int) -> torch.Tensor:
    # the map is the logit split over its cells, resampled to the mask: the mean over pixels times
    # the cell count is the sum over cells, in logit units
    return (signed.abs() * (1 - mask)).mean((1, 2)) * cells


def distance(signed: torch.Tensor, mask: torch.Tensor, kind: str, eps: float,
             detach_denominator: bool = False, cells: int | None = None) -> torch.Tensor:
    """Per-image distance [N] between a signed map [N,H,W] (mask resolution) and a {0,1} mask;
    `cells`: how many cells the map had before it was resampled (default: as many as pixels)."""
    if kind not in DISTANCES:
        raise ValueError(f"loss.distance {kind!r}: choose from {sorted(DISTANCES)}")
    return DISTANCES[kind](signed, mask, eps, detach_denominator, cells or signed[0].numel())


# name -> fn(loss config, logits [N,K], labels [N]) -> the [N,K] class weights of each map the term reads
Target = Callable[["LossConfig", torch.Tensor, torch.Tensor], list[torch.Tensor]]
TARGETS: dict[str, Target] = {}
ANOMALY_ONLY_TARGETS = {"def", "contrast"}  # need the ok/def class pair


def register_target(name: str) -> Callable[[Target], Target]:
    """Add a target to the registry: `loss.target: NAME` then selects it."""
    def add(fn: Target) -> Target:
        TARGETS[name] = fn
        return fn
    return add


def _one_class(classes: torch.Tensor, logits: torch.Tensor) -> list[torch.Tensor]:
    n, k = logits.shape
    return [class_weights(classes, None, k, n, logits.device)]


@register_target("label")
def _label(cfg: LossConfig, logits: torch.Tensor, labels: torch.Tensor) -> list[torch.Tensor]:
    return _one_class(labels, logits)


@register_target("def")
def _def(cfg: LossConfig, logits: torch.Tensor, labels: torch.Tensor) -> list[torch.Tensor]:
    return _one_class(torch.ones_like(labels), logits)


@register_target("predicted")
def _predicted(cfg: LossConfig, logits: torch.Tensor, labels: torch.Tensor) -> list[torch.Tensor]:
    return _one_class(logits.detach().argmax(1), logits)


@register_target("contrast")
def _contrast(cfg: LossConfig, logits: torch.Tensor, labels: torch.Tensor) -> list[torch.Tensor]:
    """Evidence for the true class against the other one (ok/def only)."""
    n, k = logits.shape
    return [class_weights(None, labels.float() * 2 - 1, k, n, logits.device)]


@register_target("all")
def _all(cfg: LossConfig, logits: torch.Tensor, labels: torch.Tensor) -> list[torch.Tensor]:
    """Every class's map: no class may read the outside."""
    n, k = logits.shape
    return [class_weights(torch.full_like(labels, c), None, k, n, logits.device) for c in range(k)]


@register_target("sampled")
def _sampled(cfg: LossConfig, logits: torch.Tensor, labels: torch.Tensor) -> list[torch.Tensor]:
    """An unbiased sample of the other classes' maps each step, at a few maps' cost."""
    n, k = logits.shape
    others = [(labels + torch.randint(1, k, labels.shape, device=labels.device)) % k
              for _ in range(min(cfg.sampled_classes, k - 1))]
    return [class_weights(c, None, k, n, logits.device) for c in (labels, *others)]
