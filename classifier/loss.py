"""The CEOD loss: cross-entropy + w * mean_b distance(Grad-CAM_b, AOI_b).

    overlap         1 - sum(H*M) / (min(sum H, sum M) + eps)    soft Szymkiewicz-Simpson (paper)
    outside_mass    sum(H*(1-M)) / (sum H + eps)
    signed_outside  sum(|S|*(1-M)) / (sum |S| + eps)            on the signed map S (before ReLU)
    outside_evidence sum_cells |S|*(1-M)                        the logit mass read outside, in logits

H = ReLU(S) / max, S the signed Grad-CAM of the target class upsampled to the mask. With
`target: all` the distance is averaged over every class's map, so no class may read the outside.

Two options close the class-blind way down (raising the same evidence in every class map lowers
the distance of each without changing any decision, so cross-entropy never resists it):
`centre` replaces each class map S_c by S_c - mean_k S_k (the common mode removed; for K = 2 the
maps become +-(S_def - S_ok) / 2), and `detach_denominator` treats sum |S| (or sum H) as a
constant, so the term's only gradient removes evidence outside the AOI. `gate: ce` switches the
term on once the running training cross-entropy has fallen below `gate_ce`: the network first
learns the task, then is told where not to look.

`kind: rrr` is the peer from the literature (Ross et al. 2017, "Right for the Right Reasons"):
CE + lambda * mean_b sum_pixels ((1 - M) * d/dx sum_k log p_k)^2, an input-gradient penalty
through autograd.grad(create_graph=True) (a second backward: about twice CE's step).
"""

from __future__ import annotations

from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ceod.classifier.config import LossConfig
from ceod.classifier.distances import (ANOMALY_ONLY_TARGETS, DISTANCES, TARGETS, distance, register_distance,  # noqa: F401
                                       register_target)
from ceod.classifier.gradcam import class_maps, fast_cams, signed_cam, unwrap, upsample


@contextmanager
def frozen_batchnorm_statistics(model: nn.Module):
    """A forward in training mode that leaves BatchNorm's running statistics as they were (an
    extra pass over a few images must not pull them towards that small batch)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(norms, saved):
            m.momentum = momentum


def warmup_share(epoch: int, warmup_epochs: int) -> float:
    """A term's share of its weight in `epoch` (from 0) under `gate: none`: linear, full from
    epoch `warmup_epochs` on (0: full from the start)."""
    return 1.0 if warmup_epochs <= 0 else min(1.0, (epoch + 1) / (warmup_epochs + 1))


class TermGate:
    """The weight of the term, step by step. `gate: none`: the epoch ramp (warmup_epochs).
    `gate: ce`: 0 until the mean training CE of the last gate_window steps is below gate_ce
    (or gate_deadline of the run has passed), then a linear ramp to `weight` over ramp_steps.
    Only the training stream decides: no validation or test data."""

    def __init__(self, cfg: LossConfig, total_steps: int = 0) -> None:
        self.cfg = cfg
        self.total_steps = total_steps
        self.step = 0
        self.opened_at: int | None = None
        self.recent: deque[float] = deque(maxlen=cfg.gate_window)

    def weight(self, epoch: int) -> float:
        cfg = self.cfg
        if cfg.kind == "ce":
            return 0.0
        if cfg.gate == "none":
            return cfg.weight * warmup_share(epoch, cfg.warmup_epochs)
        if self.opened_at is None:
            return 0.0
        return cfg.weight * min(1.0, (self.step - self.opened_at + 1) / (cfg.ramp_steps + 1))

    def observe(self, ce: float) -> bool:
        """Record one training step's CE; True when this step opened the gate."""
        self.recent.append(ce)
        self.step += 1
        if self.cfg.kind == "ce" or self.cfg.gate == "none" or self.opened_at is not None:
            return False
        full = len(self.recent) == self.recent.maxlen
        late = self.total_steps > 0 and self.step >= self.cfg.gate_deadline * self.total_steps
        if (full and sum(self.recent) / len(self.recent) < self.cfg.gate_ce) or late:
            self.opened_at = self.step
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "opened_at": self.opened_at, "recent": list(self.recent)}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if state:
            self.step, self.opened_at = int(state["step"]), state["opened_at"]
            self.recent.extend(state["recent"])


@dataclass
class LossOutput:
    total: torch.Tensor
    ce: torch.Tensor
    term: torch.Tensor  # the mean distance (detached value is what gets logged)
    weight: float
    consistency: torch.Tensor | None = None  # the counterfactual term's value, where it ran


def consistency_term(logits: torch.Tensor, counterfactual_logits: torch.Tensor) -> torch.Tensor:
    """Mean over images of the squared change of the centred logits (z - mean_k z_k) between an
    image and its counterfactual view (same part, another outside): in logit units, so its scale
    does not depend on the backbone; for ok/def, half the squared change of the decision margin."""
    k = len(counterfactual_logits)
    a = logits[:k] - logits[:k].mean(dim=1, keepdim=True)
    b = counterfactual_logits - counterfactual_logits.mean(dim=1, keepdim=True)
    return ((a - b) ** 2).sum(dim=1).mean()


class CEODLoss(nn.Module):
    """Callable as loss(model, logits, features, masks [N,1,H,W], labels, epoch)."""

    def __init__(self, cfg: LossConfig, total_steps: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        self.gate = TermGate(cfg, total_steps)

    def weight_at(self, epoch: int) -> float:
        return self.gate.weight(epoch)

    @property
    def needs_input_grad(self) -> bool:
        """RRR differentiates the log-probabilities with respect to the input image."""
        return self.cfg.kind == "rrr"

    def targets(self, logits: torch.Tensor, labels: torch.Tensor) -> list[torch.Tensor]:
        """[N,K] class weights per map the term looks at: one map, or one per class (`all`)."""
        return TARGETS[self.cfg.target](self.cfg, logits, labels)

    def term(self, model: nn.Module, logits: torch.Tensor, features: torch.Tensor,
             masks: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean distance over the images that get the term (0 if none), averaged over the maps."""
        keep = labels == 1 if self.cfg.apply_to == "def" else torch.ones_like(labels, dtype=torch.bool)
        if not keep.any():
            return logits.sum() * 0.0
        weights = torch.stack(self.targets(logits, labels))  # [M,N,K]
        if self.cfg.centre:  # every map is a mix of class maps: centre those, then mix
            k = logits.shape[1]
            if self._fast(model):
                per_class = class_maps(model, features)  # [K,N,h,w]
            else:
                eye = torch.eye(k, device=logits.device).expand(len(logits), k, k)
                per_class = torch.stack([signed_cam(model, logits, features, eye[:, c], self.cfg.gradcam)
                                         for c in range(k)])
            cams = torch.einsum("mnk,knhw->mnhw", weights, per_class - per_class.mean(0, keepdim=True))
        elif self._fast(model):  # forward-only maps (1.02x CE's step for one map, 1.24x for all ten)
            cams = fast_cams(model, features, weights)
        else:
            cams = torch.stack([signed_cam(model, logits, features, w, self.cfg.gradcam) for w in weights])
        m, n = cams.shape[:2]
        cells = cams.shape[-2] * cams.shape[-1]
        cams = upsample(cams.flatten(0, 1), masks.shape[-2:])  # [M*N,H,W]
        d = distance(cams, masks[:, 0].repeat(m, 1, 1), self.cfg.distance, self.cfg.eps,
                     self.cfg.detach_denominator, cells).view(m, n)
        return d[:, keep].mean()

    def input_gradient_term(self, logits: torch.Tensor, inputs: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """RRR: mean over images of sum_pixels ((1 - M) * d sum_k log p_k / dx)^2 (Ross et al. 2017)."""
        log_p = F.log_softmax(logits, dim=1).sum()
        grads = torch.autograd.grad(log_p, inputs, create_graph=True)[0]
        outside = 1 - masks  # [N,1,H,W] broadcasts over the colour channels
        return ((outside * grads) ** 2).sum(dim=(1, 2, 3)).mean()

    def consistency_ramp(self, epoch: int) -> float:
        """The consistency term's share of its weight at this epoch: the warmup_epochs ramp."""
        return warmup_share(epoch, self.cfg.warmup_epochs)

    def forward(self, model: nn.Module, logits: torch.Tensor, features: torch.Tensor,
                masks: torch.Tensor, labels: torch.Tensor, epoch: int = 0,
                inputs: torch.Tensor | None = None, counterfactual_logits: torch.Tensor | None = None) -> LossOutput:
        out = self._forward(model, logits, features, masks, labels, epoch, inputs)
        if counterfactual_logits is None or self.cfg.consistency_weight <= 0:
            return out
        c = consistency_term(logits, counterfactual_logits)
        out.total = out.total + self.cfg.consistency_weight * self.consistency_ramp(epoch) * c
        out.consistency = c
        return out

    def _forward(self, model: nn.Module, logits: torch.Tensor, features: torch.Tensor,
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
        total = ce + w * term
        if self.cfg.input_grad_weight > 0 and inputs is not None and w > 0:
            # RRR on a few images of the batch: the input-gradient penalty reaches what a cell
            # inside the AOI reads through its receptive field, at a fraction of RRR's cost
            if hasattr(model, "module"):
                raise ValueError("loss.input_grad_weight: a second forward per step is not supported "
                                 "under torchrun (DDP); train on one process or set it to 0")
            k = min(self.cfg.input_grad_images, len(inputs))
            sub = inputs[:k].detach().requires_grad_(True)
            with frozen_batchnorm_statistics(model):
                sub_logits = model(sub)
            rrr = self.input_gradient_term(sub_logits, sub, masks[:k])
            total = total + self.cfg.input_grad_weight * (w / max(self.cfg.weight, 1e-12)) * rrr
        return LossOutput(total, ce, term, w)

    def _fast(self, model: nn.Module) -> bool:
        return unwrap(model).has_linear_head and self.cfg.gradcam != "general"
