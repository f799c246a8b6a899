import numpy as np
import pytest
import torch

from ceod.classifier.config import ClsModelConfig, LossConfig
from ceod.classifier.gradcam import fast_cam, general_gradcam, class_weights
from ceod.classifier.loss import CEODLoss, distance
from ceod.classifier.model import build_classifier


def _model(head="gap_linear", seed=0):
    torch.manual_seed(seed)
    return build_classifier(ClsModelConfig(backbone="simple", pretrained=False, width=8, head=head))


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
    loss = CEODLoss(LossConfig(weight=2.0, warmup_epochs=3, gate="none"))
    assert [loss.weight_at(e) for e in range(5)] == [0.5, 1.0, 1.5, 2.0, 2.0]
    assert class_weights(torch.tensor([1]), None, 2, 1, torch.device("cpu")).tolist() == [[0.0, 1.0]]


def test_the_gate_waits_for_training_ce_then_ramps():
    from ceod.classifier.loss import TermGate
    gate = TermGate(LossConfig(weight=2.0, gate="ce", gate_ce=0.3, gate_window=4, ramp_steps=3), total_steps=100)
    opened = [gate.observe(ce) for ce in (1.0, 1.0, 1.0, 1.0)]  # high CE: closed, w = 0
    assert not any(opened) and gate.weight(5) == 0.0
    opened = [gate.observe(ce) for ce in (0.1, 0.1, 0.1, 0.1)]  # window mean 0.325, then 0.1 < 0.3 at the 4th
    assert opened == [False, False, False, True] and gate.opened_at == 8
    weights = []
    for _ in range(5):
        weights.append(gate.weight(0))
        gate.observe(0.1)
    assert weights == [0.5, 1.0, 1.5, 2.0, 2.0]  # a linear ramp over ramp_steps, whatever the epoch
    restored = TermGate(gate.cfg, 100)
    restored.load_state_dict(gate.state_dict())  # resume keeps when it opened
    assert restored.opened_at == 8 and restored.weight(0) == 2.0
    late = TermGate(LossConfig(gate="ce", gate_ce=0.01, gate_deadline=0.5), total_steps=10)
    assert [late.observe(0.69) for _ in range(5)][-1] and late.opened_at == 5  # the deadline opens it
    assert not TermGate(LossConfig(kind="ce", gate="ce"), 10).observe(0.0)  # CE has no term to switch on


@pytest.mark.parametrize("kind", ["overlap", "outside_mass", "signed_outside"])
def test_centred_maps_cannot_be_lowered_by_a_class_blind_change(kind):
    """Evidence added to every class map alike changes no decision; with `centre` it changes no
    term either, while without centring it lowers the signed distance (the stall's minimiser)."""
    model = _model()
    x, masks, labels = _batch()
    logits, feats = model(x, return_features=True)
    centred = CEODLoss(LossConfig(distance=kind, target="all", centre=True))
    plain = CEODLoss(LossConfig(distance=kind, target="all", centre=False))
    head = model.head.fc
    before = {name: loss.term(model, logits, feats, masks, labels).item()
              for name, loss in (("centred", centred), ("plain", plain))}
    with torch.no_grad():  # the common mode: the same weight row added to every class, inside the AOI
        head.weight += torch.randn(1, head.weight.shape[1]).abs() * 5
    logits2, _ = model(x, return_features=True)
    assert torch.allclose((logits2[:, 1] - logits2[:, 0]), (logits[:, 1] - logits[:, 0]), atol=1e-4)
    after = {name: loss.term(model, logits2, feats, masks, labels).item()
             for name, loss in (("centred", centred), ("plain", plain))}
    assert after["centred"] == pytest.approx(before["centred"], abs=1e-5)
    if kind == "signed_outside":
        assert after["plain"] != pytest.approx(before["plain"], abs=1e-3)


def test_a_detached_denominator_only_pushes_outside_evidence():
    signed = torch.rand(2, 8, 8, requires_grad=True)
    mask = torch.zeros(2, 8, 8)
    mask[:, 2:6, 2:6] = 1
    distance(signed, mask, "signed_outside", 1e-6, detach_denominator=True).sum().backward()
    assert signed.grad[mask == 1].abs().max() == 0  # no gradient inside the AOI
    assert signed.grad[mask == 0].min() > 0  # outside evidence is pushed down
    live = torch.rand(2, 8, 8, requires_grad=True)
    distance(live, mask, "signed_outside", 1e-6).sum().backward()
    assert live.grad[mask == 1].max() < 0  # the live normaliser rewards raising evidence inside


def test_input_gradient_on_a_subset_adds_rrr_and_leaves_batchnorm_alone():
    model = _model()
    x, masks, labels = _batch()
    logits, feats = model(x, return_features=True)
    plain = CEODLoss(LossConfig(gate="none", warmup_epochs=0))
    mixed = CEODLoss(LossConfig(gate="none", warmup_epochs=0, input_grad_weight=3.0, input_grad_images=2))
    stats = [m.running_mean.clone() for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    base = plain(model, logits, feats, masks, labels, inputs=x)
    out = mixed(model, logits, feats, masks, labels, inputs=x)
    after = [m.running_mean for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(torch.equal(a, b) for a, b in zip(stats, after))  # the extra pass moved no statistic
    sub = x[:2].clone().requires_grad_(True)
    expected = CEODLoss(LossConfig(kind="rrr")).input_gradient_term(model(sub), sub, masks[:2])
    assert out.total.item() == pytest.approx(base.total.item() + 3.0 * expected.item(), rel=1e-4)
    out.total.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_registries_drive_the_config_and_name_the_known_entries():
    """A distance or target is its function plus one registry line: the config accepts it with no
    other change, and an unknown name is a one-line error listing the known ones."""
    from ceod.classifier.loss import DISTANCES, register_distance
    from ceod.contracts.config import ConfigError
    from tests.conftest import tiny_classifier_config
    for key, known in (("loss.distance", "outside_evidence"), ("loss.target", "sampled"),
                       ("model.backbone", "efficientnet_lite0")):
        with pytest.raises(ConfigError, match=rf"'{key}': 'nope' is not one of \[.*'{known}'"):
            tiny_classifier_config(**{key: "nope"})

    @register_distance("everything_outside")
    def _everything(signed, mask, eps, detach, cells):
        return signed.abs().sum((1, 2)) * 0 + 1.0

    try:
        cfg = tiny_classifier_config(**{"loss.distance": "everything_outside"})
        model = build_classifier(cfg.model, 2, cfg.input_size)
        x = torch.randn(4, 3, cfg.input_size, cfg.input_size)
        logits, feats = model(x, return_features=True)
        out = CEODLoss(cfg.loss)(model, logits, feats, torch.ones(4, 1, 64, 64), torch.tensor([0, 1, 0, 1]), epoch=9)
        assert out.term.item() == pytest.approx(1.0)
    finally:
        DISTANCES.pop("everything_outside")


def test_consistency_term_reads_only_what_the_outside_changed_in_the_decision():
    from ceod.classifier.loss import consistency_term
    z = torch.tensor([[2.0, -1.0], [0.5, 0.3], [1.0, 1.0]])
    assert consistency_term(z, z[:2]).item() == 0.0
    assert consistency_term(z, z[:2] + 5.0).item() == pytest.approx(0.0, abs=1e-6)  # a common shift decides nothing
    moved = z[:2] + torch.tensor([[1.0, -1.0], [0.0, 0.0]])  # the margin of image 0 moves by 2
    assert consistency_term(z, moved).item() == pytest.approx((1.0 ** 2 + 1.0 ** 2) / 2)
    with_term = CEODLoss(LossConfig(kind="ce", consistency_weight=2.0, warmup_epochs=0))
    model = _model()
    x, masks, labels = _batch()
    logits, feats = model(x, return_features=True)
    out = with_term(model, logits, feats, masks, labels, counterfactual_logits=logits[:2].detach() + torch.tensor([1.0, -1.0]))
    assert out.consistency is not None and out.total.item() > out.ce.item()
    assert with_term.consistency_ramp(0) == 1.0
    ramped = CEODLoss(LossConfig(kind="ce", consistency_weight=2.0, warmup_epochs=3))
    assert ramped.consistency_ramp(0) == pytest.approx(0.25) and ramped.consistency_ramp(5) == 1.0


def test_counterfactual_view_changes_the_outside_only_and_training_logs_the_term(tiny_dataset, tmp_path, caplog):
    import json

    from ceod.classifier.train import train_classifier
    from ceod.data.loading import load_split
    from ceod.data.manifest import read_manifest
    from ceod.training.torchdata import SplitDataset
    from ceod.training.transforms import outside_counterfactual
    from tests.conftest import tiny_classifier_config
    data = load_split(read_manifest(tiny_dataset).split("train")[:8], 64, root=tiny_dataset)
    np.random.seed(0)
    for i in range(8):
        view = outside_counterfactual(data.images[i], data.aoi[i], data.backgrounds[(i + 1) % 8])
        inside = data.aoi[i] > 0
        assert np.array_equal(view[inside], data.images[i][inside])
        assert np.abs(view.astype(int) - data.images[i])[~inside].mean() > 1
    ds = SplitDataset(data, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), None, counterfactual=True)
    x, m, _, _, view = ds[0]
    assert torch.equal(x[:, m[0] > 0], view[:, m[0] > 0]) and not torch.equal(x, view)
    # the term alone (no AOI term) on data where two training rows lack their AOI: those views
    # change nothing, and training says so rather than silently constraining fewer images
    import csv
    import shutil
    data_dir = tmp_path / "ds"
    shutil.copytree(tiny_dataset, data_dir)
    with open(data_dir / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in [r for r in rows if r["split"] == "train"][:2]:
        row["aoi"] = ""
    with open(data_dir / "manifest.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    cfg = tiny_classifier_config(**{"train.epochs": 1, "loss.kind": "ce", "loss.consistency_weight": 1.0,
                                    "loss.consistency_images": 4})
    with caplog.at_level("WARNING"):
        summary = train_classifier(cfg, data_dir, tmp_path / "run", seed=0, progress=False)
    assert any(r.message.startswith("2 of ") and "the consistency term read(s) them as all-AOI" in r.message
               for r in caplog.records)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history[0]["train_consistency"] >= 0 and "consistency(w=1" in summary["loss"]


def _never() -> np.ndarray:
    raise AssertionError("the default views paste nothing, so they never ask for another image")


def test_paste_views_bring_other_images_content_outside_the_aoi_only(tiny_dataset):
    """A `paste` view holds pixels of other training images outside the AOI and none inside;
    the default views never paste; a view name outside swap/paste/tone is refused by its key."""
    from ceod.contracts.config import ConfigError
    from ceod.data.loading import load_split
    from ceod.data.manifest import read_manifest
    from ceod.training.torchdata import SplitDataset
    from ceod.training.transforms import outside_counterfactual
    from tests.conftest import tiny_classifier_config
    data = load_split(read_manifest(tiny_dataset).split("train")[:8], 64, root=tiny_dataset)
    np.random.seed(0)
    grey = np.full_like(data.images[0], 128)  # a source no training image equals: its pixels are traceable
    for i in range(8):
        view = outside_counterfactual(data.images[i], data.aoi[i], data.backgrounds[(i + 1) % 8],
                                      views=("paste",), pick_image=lambda: grey)
        inside = data.aoi[i] > 0
        assert np.array_equal(view[inside], data.images[i][inside])
        pasted = np.all(view == 128, axis=-1) & ~np.all(data.images[i] == 128, axis=-1)
        assert pasted.any() and not pasted[inside].any()
        outside_counterfactual(data.images[i], data.aoi[i], data.backgrounds[(i + 1) % 8], pick_image=_never)
    ds = SplitDataset(data, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), None, counterfactual=True, views=("paste",))
    x, m, _, _, view = ds[0]
    assert torch.equal(x[:, m[0] > 0], view[:, m[0] > 0]) and not torch.equal(x, view)
    assert tiny_classifier_config(**{"loss.consistency_views": ["swap+paste", "tone"]}).loss.consistency_views
    for bad in (["swap", "blur"], ["swap+swap"], []):
        with pytest.raises(ConfigError, match="'loss.consistency_views'"):
            tiny_classifier_config(**{"loss.consistency_views": bad})


@pytest.mark.parametrize("head", ["gap_linear", "mlp"])
def test_two_view_forward_keeps_grad_cam_differentiable_on_every_head(head):
    model = _model(head)
    model.train()
    x, masks, labels = _batch()
    logits, feats, views = model(torch.cat([x, x[:2].flip(-1)]), views=2)
    assert logits.shape == (6, 2) and views.shape == (2, 2) and len(feats) == 6
    loss = CEODLoss(LossConfig(kind="ceod", gradcam="auto", warmup_epochs=0, consistency_weight=1.0))
    out = loss(model, logits, feats, masks, labels, counterfactual_logits=views)
    out.total.backward()
    assert out.consistency is not None and out.term.item() > 0
    assert all(p.grad is not None for p in model.head.parameters())
