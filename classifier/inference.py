"""Loading a trained classifier and running it (probabilities and Grad-CAMs) on images in memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ceod.training.checkpoint import load_checkpoint, load_model
from ceod.contracts.model import class_names
from ceod.data.imageio import normalize
from ceod.classifier.config import ClassifierConfig
from ceod.classifier.gradcam import class_weights, signed_cam, upsample
from ceod.classifier.model import AnomalyClassifier, build_classifier


def load_classifier(run: str | Path | None, payload: dict[str, Any] | None = None
                    ) -> tuple[AnomalyClassifier, ClassifierConfig, dict[str, Any]]:
    """Model (eval mode), its config and checkpoint metadata from a run folder or .pt file (or
    from a checkpoint already loaded with ceod.training.checkpoint.load_checkpoint)."""
    payload = payload if payload is not None else load_checkpoint(run, "classifier")
    classes = class_names(payload["meta"])
    size = int(payload["config"].get("input_size", 128))
    return load_model(run, "classifier", ClassifierConfig,
                      lambda m: build_classifier(m, len(classes), size), payload)


def predict(model: AnomalyClassifier, images: np.ndarray, mean, std, batch_size: int = 64,
            with_cam: bool = False, cam_class: str = "predicted", log: bool = False
            ) -> tuple[np.ndarray, np.ndarray | None]:
    """Class probabilities [N,K] (log-probabilities with `log`: they rank confident images that
    float32 softmax ties at 1.0) and, optionally, ReLU'd Grad-CAMs [N,S,S] of the predicted (or
    'def') class."""
    was_training = model.training
    model.eval()
    probs, cams = [], []
    size = images.shape[1:3]
    try:
        for i in range(0, len(images), batch_size):
            x = torch.from_numpy(normalize(images[i:i + batch_size], mean, std))
            with torch.set_grad_enabled(with_cam and not model.has_linear_head):
                logits, feats = model(x, return_features=True)
                probs.append((torch.log_softmax(logits, 1) if log else torch.softmax(logits, 1)).detach().numpy())
                if with_cam:
                    classes = logits.argmax(1) if cam_class == "predicted" else torch.ones(len(x), dtype=torch.long)
                    w = class_weights(classes, None, logits.shape[1], len(x), x.device)
                    cam = torch.relu(upsample(signed_cam(model, logits, feats, w), size))
                    cams.append(cam.detach().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(probs), (np.concatenate(cams) if with_cam else None)


def aoi_attention(cams: np.ndarray, masks: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """Per image, the fraction of the (ReLU'd) Grad-CAM mass inside the AOI; nan for a zero map."""
    total = cams.reshape(len(cams), -1).sum(1)
    inside = (cams * (masks > 0)).reshape(len(cams), -1).sum(1)
    return np.where(total > eps, inside / np.maximum(total, eps), np.nan)
