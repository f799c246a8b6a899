"""The CEOD loss (DESIGN §4): cross-entropy + w * mean_b distance(Grad-CAM_b, AOI_b).

    overlap         1 - sum(H*M) / (min(sum H, sum M) + eps)    soft Szymkiewicz-Simpson (paper)
    outside_mass    sum(H*(1-M)) / (sum H + eps)
    signed_outside  sum(|S|*(1-M)) / (sum |S| + eps)            on the signed map S (before ReLU)

H = ReLU(S) / max, S the signed Grad-CAM of the target class upsampled to the mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from classifier.config import LossConfig
from classifier.gradcam import class_weights, normalise, signed_cam, upsample


def distance(signed: torch.Tensor, mask: torch.Tensor, kind: str, eps: float) -> torch.Tensor:
    """Per-image distance [N] between a signed map [N,H,W] (mask resolution) and a {0,1} mask."""
    if kind == "signed_outside":
        mag = signed.abs()
        return (mag * (1 - mask)).sum((1, 2)) / (mag.sum((1, 2)) + eps)
    h = normalise(signed, eps)
    if kind == "outside_mass":
        return (h * (1 - mask)).sum((1, 2)) / (h.sum((1, 2)) + eps)
    inter = (h * mask).sum((1, 2))
    return 1 - inter / (torch.minimum(h.sum((1, 2)), mask.sum((1, 2))) + eps)


@dataclass
class LossOutput:
    total: torch.Tensor
    ce: torch.Tensor
    term: torch.Tensor  # the mean distance (detached value is what gets logged)
    weight: float


class CEODLoss(nn.Module):
    """Callable as loss(model, logits, features, masks [N,1,H,W], labels, epoch)."""

    def __init__(self, cfg: LossConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def weight_at(self, epoch: int) -> float:
        if self.cfg.kind == "ce":
            return 0.0
        if self.cfg.warmup_epochs <= 0:
            return self.cfg.weight
        return self.cfg.weight * min(1.0, (epoch + 1) / (self.cfg.warmup_epochs + 1))

    def targets(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """[N,K] class weights for the map: which class's Grad-CAM the term looks at."""
        n, k = logits.shape
        t = self.cfg.target
        if t == "contrast":  # evidence for the true class against the other one
            return class_weights(None, labels.float() * 2 - 1, k, n, logits.device)
        classes = {"label": labels, "def": torch.ones_like(labels),
                   "predicted": logits.detach().argmax(1)}[t]
        return class_weights(classes, None, k, n, logits.device)

    def term(self, model: nn.Module, logits: torch.Tensor, features: torch.Tensor,
             masks: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean distance over the images that get the term (0 if none)."""
        cam = signed_cam(model, logits, features, self.targets(logits, labels), self.cfg.gradcam)
        cam = upsample(cam, masks.shape[-2:])
        d = distance(cam, masks[:, 0], self.cfg.distance, self.cfg.eps)
        keep = labels == 1 if self.cfg.apply_to == "def" else torch.ones_like(labels, dtype=torch.bool)
        if not keep.any():
            return d.sum() * 0.0
        return d[keep].mean()

    def forward(self, model: nn.Module, logits: torch.Tensor, features: torch.Tensor,
                masks: torch.Tensor, labels: torch.Tensor, epoch: int = 0) -> LossOutput:
        ce = F.cross_entropy(logits, labels)
        w = self.weight_at(epoch)
        if self.cfg.kind == "ce":
            with torch.no_grad():  # logged for comparison, free on the fast path
                term = self.term(model, logits, features, masks, labels) if self._fast(model) else ce * 0
            return LossOutput(ce, ce, term, 0.0)
        term = self.term(model, logits, features, masks, labels)
        return LossOutput(ce + w * term, ce, term, w)

    def _fast(self, model: nn.Module) -> bool:
        from classifier.gradcam import unwrap
        return unwrap(model).has_linear_head and self.cfg.gradcam != "general"
