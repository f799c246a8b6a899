"""The CEOD loss (DESIGN §4): cross-entropy + w * mean_b distance(Grad-CAM_b, AOI_b).

    overlap         1 - sum(H*M) / (min(sum H, sum M) + eps)    soft Szymkiewicz-Simpson (paper)
    outside_mass    sum(H*(1-M)) / (sum H + eps)
    signed_outside  sum(|S|*(1-M)) / (sum |S| + eps)            on the signed map S (before ReLU)

H = ReLU(S) / max, S the signed Grad-CAM of the target class upsampled to the mask. With
`target: all` the distance is averaged over every class's map, so no class may read the outside.

`kind: rrr` is the peer from the literature (Ross et al. 2017, "Right for the Right Reasons"):
CE + lambda * mean_b sum_pixels ((1 - M) * d/dx sum_k log p_k)^2, an input-gradient penalty
through autograd.grad(create_graph=True) (a second backward: about twice CE's step).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ceod.classifier.config import LossConfig
from ceod.classifier.gradcam import class_weights, fast_cams, normalise, signed_cam, unwrap, upsample


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

    @property
    def needs_input_grad(self) -> bool:
        """RRR differentiates the log-probabilities with respect to the input image."""
        return self.cfg.kind == "rrr"

    def targets(self, logits: torch.Tensor, labels: torch.Tensor) -> list[torch.Tensor]:
        """[N,K] class weights per map the term looks at: one map, or one per class (`all`)."""
        n, k = logits.shape
        t = self.cfg.target
        if t == "contrast":  # evidence for the true class against the other one (ok/def only)
            return [class_weights(None, labels.float() * 2 - 1, k, n, logits.device)]
        if t == "all":
            return [class_weights(torch.full_like(labels, c), None, k, n, logits.device) for c in range(k)]
        if t == "sampled":  # an unbiased sample of the other classes' maps each step, at a few maps' cost
            others = [(labels + torch.randint(1, k, labels.shape, device=labels.device)) % k
                      for _ in range(min(self.cfg.sampled_classes, k - 1))]
            return [class_weights(c, None, k, n, logits.device) for c in (labels, *others)]
        classes = {"label": labels, "def": torch.ones_like(labels),
                   "predicted": logits.detach().argmax(1)}[t]
        return [class_weights(classes, None, k, n, logits.device)]

    def term(self, model: nn.Module, logits: torch.Tensor, features: torch.Tensor,
             masks: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean distance over the images that get the term (0 if none), averaged over the maps."""
        keep = labels == 1 if self.cfg.apply_to == "def" else torch.ones_like(labels, dtype=torch.bool)
        if not keep.any():
            return logits.sum() * 0.0
        targets = self.targets(logits, labels)
        if self._fast(model):  # forward-only maps (1.02x CE's step for one map, 1.24x for all ten: docs/results.md §8)
            weights = torch.stack(targets)  # [M,N,K]
            cams = fast_cams(model, features, weights)
        else:
            cams = torch.stack([signed_cam(model, logits, features, w, self.cfg.gradcam) for w in targets])
        m, n = cams.shape[:2]
        cams = upsample(cams.flatten(0, 1), masks.shape[-2:])  # [M*N,H,W]
        d = distance(cams, masks[:, 0].repeat(m, 1, 1), self.cfg.distance, self.cfg.eps).view(m, n)
        return d[:, keep].mean()

    def input_gradient_term(self, logits: torch.Tensor, inputs: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """RRR: mean over images of sum_pixels ((1 - M) * d sum_k log p_k / dx)^2 (Ross et al. 2017)."""
        log_p = F.log_softmax(logits, dim=1).sum()
        grads = torch.autograd.grad(log_p, inputs, create_graph=True)[0]
        outside = 1 - masks  # [N,1,H,W] broadcasts over the colour channels
        return ((outside * grads) ** 2).sum(dim=(1, 2, 3)).mean()

    def forward(self, model: nn.Module, logits: torch.Tensor, features: torch.Tensor,
                masks: torch.Tensor, labels: torch.Tensor, epoch: int = 0,
                inputs: torch.Tensor | None = None) -> LossOutput:
        ce = F.cross_entropy(logits, labels)
        w = self.weight_at(epoch)
        if self.cfg.kind == "rrr":
            if inputs is None or not inputs.requires_grad:
                raise ValueError("loss.kind rrr needs the input batch with requires_grad=True")
            term = self.input_gradient_term(logits, inputs, masks)
            return LossOutput(ce + w * term, ce, term, w)
        if self.cfg.kind == "ce":
            with torch.no_grad():  # logged for comparison, free on the fast path
                term = self.term(model, logits, features, masks, labels) if self._fast(model) else ce * 0
            return LossOutput(ce, ce, term, 0.0)
        term = self.term(model, logits, features, masks, labels)
        return LossOutput(ce + w * term, ce, term, w)

    def _fast(self, model: nn.Module) -> bool:
        return unwrap(model).has_linear_head and self.cfg.gradcam != "general"
