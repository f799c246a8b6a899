import pytest
import torch

from ceod.classifier.config import ClsModelConfig, LossConfig
from ceod.classifier.gradcam import fast_cam, general_gradcam, class_weights
from ceod.classifier.loss import CEODLoss, distance
from ceod.classifier.model import build_classifier


def _model(head="gap_linear", seed=0):
    torch.manual_seed(seed)
    return build_classifier(ClsModelConfig(backbone="simple", width=8, head=head))


def _batch(n=6, s=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, s, s, generator=g)
    masks = torch.zeros(n, 1, s, s)
    masks[:, :, 8:24, 8:24] = 1
    labels = torch.tensor([0, 1] * (n // 2))
    return x, masks, labels


@pytest.mark.parametrize("target", ["label", "contrast", "all", "sampled"])
def test_fast_path_equals_general_path(target):
    model = _model()
    model.train()
    x, masks, labels = _batch()
    logits, feats = model(x, return_features=True)
    loss = CEODLoss(LossConfig(target=target))
    for w in loss.targets(logits, labels):
        fast = fast_cam(model, feats, w)
        general = general_gradcam(logits, feats, w)
        assert fast.shape == general.shape == (6, 4, 4)
        assert torch.allclose(fast, general, atol=1e-5), (fast - general).abs().max()
        assert fast.abs().max() > 1e-4  # not trivially equal


@pytest.mark.parametrize("distance_kind", ["overlap", "outside_mass", "signed_outside"])
@pytest.mark.parametrize("path", ["fast", "general"])
def test_term_sends_gradients_into_the_backbone(distance_kind, path):
    model = _model()
    x, masks, labels = _batch()
    logits, feats = model(x, return_features=True)
    loss = CEODLoss(LossConfig(distance=distance_kind, gradcam=path))
    term = loss.term(model, logits, feats, masks, labels)
    term.backward()
    first_conv = model.features[0][0].weight.grad
    assert first_conv is not None and first_conv.abs().sum() > 0


def test_general_path_on_a_non_linear_head():
    model = _model(head="mlp")
    x, masks, labels = _batch()
    logits, feats = model(x, return_features=True)
    loss = CEODLoss(LossConfig(gradcam="auto"))
    out = loss(model, logits, feats, masks, labels)
    out.total.backward()
    assert torch.isfinite(out.total) and out.term > 0
    assert model.head.proj.weight.grad.abs().sum() > 0 and model.features[0][0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="fast needs a linear head"):
        CEODLoss(LossConfig(gradcam="fast")).term(model, logits, feats, masks, labels)


def test_model_stays_in_training_mode():
    model = _model()
    model.train()
    x, masks, labels = _batch()
    for path in ("fast", "general"):
        logits, feats = model(x, return_features=True)
        CEODLoss(LossConfig(gradcam=path))(model, logits, feats, masks, labels).total.backward()
        assert model.training and all(m.training for m in model.modules())


@pytest.mark.parametrize("kind", ["overlap", "outside_mass", "signed_outside"])
def test_finite_for_zero_map_and_empty_mask(kind):
    zero_map = torch.zeros(2, 8, 8, requires_grad=True)
    full = torch.ones(2, 8, 8)
    empty = torch.zeros(2, 8, 8)
    for cam, mask in ((zero_map, full), (torch.randn(2, 8, 8), empty), (zero_map, empty)):
        d = distance(cam, mask, kind, 1e-6)
        assert torch.isfinite(d).all()


def test_distance_orders_maps_sensibly():
    mask = torch.zeros(1, 8, 8)
    mask[:, 2:6, 2:6] = 1
    inside = mask.clone() * 3
    outside = (1 - mask) * 3
    for kind in ("overlap", "outside_mass", "signed_outside"):
        assert distance(inside, mask, kind, 1e-6) < 0.01
        assert distance(outside, mask, kind, 1e-6) > 0.99
    # negative evidence outside the AOI is invisible to overlap but not to signed_outside
    neg_outside = inside - (1 - mask) * 3
    assert distance(neg_outside, mask, "overlap", 1e-6) < 0.01
    assert distance(neg_outside, mask, "signed_outside", 1e-6) > 0.5


def test_apply_to_def_and_warmup():
    model = _model()
    x, masks, labels = _batch()
    logits, feats = model(x, return_features=True)
    ok_only = torch.zeros_like(labels)
    term = CEODLoss(LossConfig(apply_to="def")).term(model, logits, feats, masks, ok_only)
    assert term.item() == 0.0
    loss = CEODLoss(LossConfig(weight=2.0, warmup_epochs=3))
    assert [loss.weight_at(e) for e in range(5)] == [0.5, 1.0, 1.5, 2.0, 2.0]
    assert class_weights(torch.tensor([1]), None, 2, 1, torch.device("cpu")).tolist() == [[0.0, 1.0]]
