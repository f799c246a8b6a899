"""DecoyMNIST follows Ross et al.'s construction, and RRR's penalty is the one in their paper."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest
import torch

from ceod.data.decoy import PATCH, PER_CLASS, corner_slices, key_grey, load_mnist


def _rows(ds):
    return list(csv.DictReader((ds / "manifest.csv").open()))


def test_split_sizes_and_digits_never_shared(decoy_mnist):
    rows = _rows(decoy_mnist)
    counts = {}
    for r in rows:
        counts[r["split"]] = counts.get(r["split"], 0) + 1
    n = {k: 10 * v for k, v in PER_CLASS.items()}
    assert counts == {"train": n["train"], "val": n["val"], "test": n["test"], "test_shift": n["test"],
                      "test_anti": n["test"], "test_clean": n["test"], "train_clean": n["train"],
                      "val_clean": n["val"]}
    digits = {s: {r["group"] for r in rows if r["split"] == s} for s in counts}
    assert not digits["train"] & digits["val"] and not digits["train"] & digits["test"]
    assert digits["test"] == digits["test_shift"] == digits["test_anti"] == digits["test_clean"]
    assert digits["train"] == digits["train_clean"]


def test_patch_is_keyed_as_ross_and_aoi_is_its_complement(decoy_mnist):
    images, labels = load_mnist()
    rows = _rows(decoy_mnist)
    keyed_to_label = {"train": 0, "val": 0, "test": 0, "test_shift": 0, "test_anti": 0}
    for r in rows[::7]:
        img = cv2.imread(str(decoy_mnist / r["image"]), cv2.IMREAD_GRAYSCALE)
        aoi = cv2.imread(str(decoy_mnist / r["aoi"]), cv2.IMREAD_GRAYSCALE)
        source = images[int(r["group"])]
        assert int(labels[int(r["group"])]) == int(r["label"])
        if r["split"].endswith("_clean"):
            assert np.array_equal(img, source) and (aoi > 0).all()
            continue
        patch = corner_slices(r["corner"])
        assert (img[patch] == key_grey(int(r["key"]))).all()
        outside = aoi == 0
        assert outside.sum() == PATCH * PATCH and outside[patch].all()
        assert np.array_equal(img[~outside], source[~outside])  # the digit is untouched
        keyed_to_label[r["split"]] += int(r["key"] == r["label"])
    total = {s: sum(r["split"] == s for r in rows[::7]) for s in keyed_to_label}
    for split in ("train", "val", "test"):
        assert keyed_to_label[split] == total[split]
    assert keyed_to_label["test_anti"] == 0
    assert 0.03 < keyed_to_label["test_shift"] / total["test_shift"] < 0.2  # random key: ~1 in 10


def test_rrr_term_matches_its_definition_and_trains_the_parameters():
    from ceod.classifier.config import ClsModelConfig, LossConfig
    from ceod.classifier.loss import CEODLoss
    from ceod.classifier.model import build_classifier
    torch.manual_seed(0)
    model = build_classifier(ClsModelConfig(backbone="simple", pretrained=False, width=8, downsample=1, head="flatten_linear"), 10, 28)
    x = torch.randn(4, 3, 28, 28, requires_grad=True)
    masks = torch.ones(4, 1, 28, 28)
    masks[:, :, :4, :4] = 0
    y = torch.tensor([0, 3, 5, 9])
    loss = CEODLoss(LossConfig(kind="rrr", weight=2.0, warmup_epochs=0, gate="none"))
    logits, feats = model(x, return_features=True)
    out = loss(model, logits, feats, masks, y, inputs=x)
    # the definition, written out: mean_b sum_pixels ((1 - M) * d sum_k log p_k / dx)^2
    xr = x.detach().clone().requires_grad_(True)
    g = torch.autograd.grad(torch.log_softmax(model(xr), 1).sum(), xr)[0]
    expected = ((1 - masks) * g).pow(2).sum((1, 2, 3)).mean()
    assert out.term.item() == pytest.approx(expected.item(), rel=1e-5) and expected > 0
    assert out.total.item() == pytest.approx(out.ce.item() + 2.0 * expected.item(), rel=1e-5)
    model.zero_grad()
    out.term.backward()  # the penalty alone reaches the weights (double backward)
    assert model.features[0][0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="requires_grad"):
        loss(model, logits, feats, masks, y, inputs=None)


@pytest.mark.parametrize("head", ["gap_linear", "flatten_linear"])
def test_fast_map_splits_each_logit_exactly_over_positions(head):
    from ceod.classifier.config import ClsModelConfig
    from ceod.classifier.gradcam import class_weights, fast_cam
    from ceod.classifier.model import build_classifier
    torch.manual_seed(0)
    model = build_classifier(ClsModelConfig(backbone="simple", pretrained=False, width=8, downsample=1, head=head), 5, 28).eval()
    logits, feats = model(torch.randn(3, 3, 28, 28), return_features=True)
    for c in range(5):
        cam = fast_cam(model, feats, class_weights(torch.full((3,), c), None, 5, 3, feats.device))
        assert cam.shape == (3, 14, 14)
        assert torch.allclose(cam.sum((1, 2)) + model.head.fc.bias[c], logits[:, c], atol=1e-4)
