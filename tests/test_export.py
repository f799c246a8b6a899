import numpy as np
import onnx
import pytest
import torch

from ceod.training.checkpoint import load_checkpoint
from ceod.data.loading import load_split
from ceod.data.manifest import read_manifest
from ceod.export.onnx_export import export_run, parity
from ceod.export.runtime import OnnxModel, RuntimeModelError, create_session


@pytest.mark.parametrize("kind", ["classifier", "segmenter"])
def test_export_parity_passes(exported, kind):
    r = exported["reports"][kind]
    assert r["passed"] and r["max_abs_diff"] <= 1e-3 and r["decision_agreement"] == 1.0
    assert r["images"] > 0


def test_metadata_round_trip(exported, tiny_classifier_run):
    meta = load_checkpoint(tiny_classifier_run)["meta"]
    model = OnnxModel(exported["classifier"], provider="cpu")
    info = model.info
    assert info.kind == "classifier" and info.input_size == meta["input_size"] == 64
    assert info.mean == tuple(meta["mean"]) and info.std == tuple(meta["std"])
    assert info.threshold == pytest.approx(meta["threshold"]) and info.class_names == ("ok", "def")
    assert info.colour_order == "RGB" and info.training_loss.startswith("ceod(")
    assert info.data_fingerprint == meta["data_fingerprint"] and info.package_version
    assert info.outputs == ("logits", "heatmap")
    props = {p.key for p in onnx.load(str(exported["classifier"])).metadata_props}
    assert {"ceod.model_kind", "ceod.threshold", "ceod.mean", "ceod.data_fingerprint"} <= props


def test_dynamic_batch_and_heatmap(exported, tiny_dataset):
    model = OnnxModel(exported["classifier"], provider="cpu")
    images = load_split(read_manifest(tiny_dataset).split("test"), 64).images
    for n in (1, 5):
        out = model.run(list(images[:n]))
        assert out["logits"].shape == (n, 2) and out["heatmap"].shape[:2] == (n, 1)
        assert (out["heatmap"] >= 0).all()
    seg = OnnxModel(exported["segmenter"], provider="cpu")
    assert seg.run(list(images[:3]))["aoi_logits"].shape == (3, 1, 64, 64)


def test_runtime_errors_are_clear(exported, tmp_path):
    model = OnnxModel(exported["classifier"], provider="cpu")
    with pytest.raises(RuntimeModelError, match=r"input must be \[N,3,64,64\]"):
        model.run_tensor(np.zeros((1, 3, 32, 32), np.float32))
    with pytest.raises(RuntimeModelError, match="RGB uint8"):
        model.prepare([np.zeros((10, 10), np.uint8)])
    proto = onnx.load(str(exported["classifier"]))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "bare.onnx"))
    with pytest.raises(RuntimeModelError, match="no ceod metadata"):
        create_session(tmp_path / "bare.onnx", "cpu")
    with pytest.raises(RuntimeModelError, match="not found"):
        create_session(tmp_path / "missing.onnx", "cpu")


def test_named_provider_that_cannot_load_fails(exported):
    import onnxruntime as ort
    if "CUDAExecutionProvider" in ort.get_available_providers():
        try:
            s, _ = create_session(exported["classifier"], "cuda")
        except RuntimeModelError as exc:
            assert "could not be loaded" in str(exc) or "cannot load" in str(exc)
        else:  # a machine with a working GPU
            assert "CUDAExecutionProvider" in s.get_providers()
    _, info = create_session(exported["classifier"], "auto")  # auto always ends on something
    assert info.kind == "classifier"


def test_parity_detects_a_mismatch(exported, tiny_classifier_run, tiny_dataset):
    from ceod.export.onnx_export import _torch_model
    payload = load_checkpoint(tiny_classifier_run)
    model, _ = _torch_model(payload, heatmap=True)
    with torch.no_grad():
        model.model.head.fc.bias += 1.0  # torch side now differs from the exported file
    images = load_split(read_manifest(tiny_dataset).split("train")[:8], 64).images
    report = parity(model, exported["classifier"], images, payload["meta"], "classifier", fp16=False)
    assert not report["passed"] and report["max_abs_diff"] > 0.5


def test_fp16_export(tiny_classifier_run, tmp_path):
    report = export_run(tiny_classifier_run, tmp_path / "c16.onnx", fp16=True)
    assert report["passed"] and report["precision"] == "fp16" and report["max_abs_diff"] <= 5e-2
    assert OnnxModel(tmp_path / "c16.onnx", provider="cpu").info.raw["ceod.precision"] == '"fp16"'


def test_parity_gate_covers_the_heatmap(exported, tiny_classifier_run, tiny_dataset):
    from ceod.export.onnx_export import _torch_model
    payload = load_checkpoint(tiny_classifier_run)
    model, outputs = _torch_model(payload, heatmap=True)
    assert outputs == ["logits", "heatmap"]
    images = load_split(read_manifest(tiny_dataset).split("train")[:8], 64).images
    good = parity(model, exported["classifier"], images, payload["meta"], "classifier", fp16=False)
    assert good["passed"] and set(good["max_abs_diff_per_output"]) == {"logits", "heatmap"}
    forward = model.forward
    model.forward = lambda x: (forward(x)[0], forward(x)[1] + 0.01)  # logits intact, heatmap off
    bad = parity(model, exported["classifier"], images, payload["meta"], "classifier", fp16=False)
    assert bad["max_abs_diff_per_output"]["logits"] < 1e-3 <= bad["max_abs_diff_per_output"]["heatmap"]
    assert not bad["passed"]
