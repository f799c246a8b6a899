"""Differentiable Grad-CAM, kept inside the autograd graph so it can sit in a loss.

Two paths that agree (tested):
- fast: for a GAP + linear head, Grad-CAM = CAM / (h*w): sum_k W[c,k] A_k, forward-only;
- general: alpha = mean_hw d score_c / d A via autograd.grad(create_graph=True), any head.
Both return the *signed* evidence map (before ReLU), [N,h,w].
Never calls loss.backward(create_graph=True) (breaks under DDP) nor switches to eval mode.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn



def unwrap(model: nn.Module) -> nn.Module:
    """The classifier inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if hasattr(model, "module") else model


def class_weights(classes: torch.Tensor | None, sign: torch.Tensor | None, n_classes: int,
                  n: int, device: torch.device) -> torch.Tensor:
    """Per-sample weights over classes [N,K]: one-hot for a class, or sign*(e_def - e_ok) for contrast."""
    if sign is not None:
        w = torch.zeros(n, n_classes, device=device)
        w[:, 1], w[:, 0] = sign, -sign
        return w
    return F.one_hot(classes, n_classes).float()


def fast_cam(model: nn.Module, features: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Signed class map of a linear head, forward-only: each position's exact share of the
    weighted logit (bias aside). GAP + linear: (sum_c weights[c] W[c]) . A / (h*w), which is its
    Grad-CAM. Flatten + linear: sum_k W[c,k,h,w] A_k(h,w), the logit split over positions."""
    return fast_cams(model, features, weights[None])[0]


def class_maps(model: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """Every class's signed map [K,N,h,w]: the exact per-position share of each logit (bias aside)."""
    head = unwrap(model).head
    n, c, h, w = features.shape
    if hasattr(head, "map_size"):  # flatten + linear: a weight per (class, channel, position)
        weight = head.fc.weight.view(-1, c, h * w).permute(2, 0, 1).contiguous()  # [hw,K,C]
        maps = torch.bmm(weight, features.flatten(2).permute(2, 1, 0).contiguous())  # [hw,K,N], one GEMM a position
        return maps.permute(1, 2, 0).reshape(-1, n, h, w)
    return torch.einsum("kc,nchw->knhw", head.fc.weight, features) / (h * w)


def fast_cams(model: nn.Module, features: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """fast_cam for M weightings at once: weights [M,N,K] -> signed maps [M,N,h,w]."""
    head = unwrap(model).head
    if len(weights) <= 4 and hasattr(head, "map_size"):  # a few maps an image: weigh the positions directly
        n, c, h, w = features.shape
        one_hot = bool(((weights == 0) | (weights == 1)).all() and (weights.sum(-1) == 1).all())
        rows = [head.fc.weight[wm.argmax(-1)] if one_hot else wm @ head.fc.weight for wm in weights]  # [N,C*h*w]
        return torch.stack([(r.view(n, c, h, w) * features).sum(1) for r in rows])
    return torch.einsum("mnk,knhw->mnhw", weights, class_maps(model, features))


def general_gradcam(logits: torch.Tensor, features: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Signed Grad-CAM for any head: d(score)/dA with create_graph=True, pooled per channel."""
    score = (logits * weights).sum()
    grads = torch.autograd.grad(score, features, create_graph=True)[0]
    alpha = grads.mean(dim=(2, 3), keepdim=True)
    return (alpha * features).sum(dim=1)


def signed_cam(model: nn.Module, logits: torch.Tensor, features: torch.Tensor, weights: torch.Tensor,
               path: str = "auto") -> torch.Tensor:
    """Pick the path: fast where the head is GAP + linear (unless forced), general otherwise."""
    if path == "fast" and not unwrap(model).has_linear_head:
        raise ValueError("gradcam: fast needs a linear head (gap_linear or flatten_linear); use general or auto")
    if path == "fast" or (path == "auto" and unwrap(model).has_linear_head):
        return fast_cam(model, features, weights)
    return general_gradcam(logits, features, weights)


def normalise(cam: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """ReLU then divide by the per-image max: a map in [0,1] (all-zero stays zero)."""
    h = torch.relu(cam)
    return h / (h.amax(dim=(1, 2), keepdim=True) + eps)


def upsample(cam: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[N,h,w] -> [N,H,W], bilinear."""
    return F.interpolate(cam[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
