import numpy as np
import onnx
import pytest
import torch

from ceod.training.checkpoint import load_checkpoint
from ceod.data.loading import load_split
from ceod.data.manifest import read_manifest
from ceod.export.onnx_export import export_run, parity
from ceod.export.runtime import OnnxModel, RuntimeModelError, create_session

pytestmark = pytest.mark.parity


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
    assert report["failure"].startswith("max abs diff") and "'logits'" in report["failure"]


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


def _planted_run(run, out, plant) -> tuple:
    """A copy of `run` whose checkpoint `plant(payload, model, images)` edited in place: a model
    whose decision on one parity image sits within 1e-7 of changing."""
    import shutil
    from ceod.data.imageio import normalize
    from ceod.export.onnx_export import _parity_images, _torch_model
    from ceod.training.checkpoint import save_checkpoint
    shutil.copytree(run, out)
    payload = load_checkpoint(out)
    model, _ = _torch_model(payload, heatmap=False)
    meta = dict(payload["meta"], model_kind=payload["ceod"]["kind"])
    images = _parity_images(meta, None, 32)  # the images export_run's parity check reads
    x = torch.from_numpy(normalize(images, meta["mean"], meta["std"]))
    plant(payload, model, x)
    save_checkpoint(out / "best.pt", payload["ceod"]["kind"], payload["state_dict"], payload["config"],
                    payload["meta"])
    return images, x


def _onnx_outputs(path, x):
    return OnnxModel(path, provider="cpu").run_tensor(x.numpy())


def test_a_pixel_logit_planted_at_zero_exports_and_a_flip_inside_the_margin_is_not_refused(
        tiny_segmenter_run, tmp_path):
    """The fp32 rule of before (every pixel keeps its sign) refused a correct segmenter on a CPU
    whose sums run in another order; a pixel decided by less than the tolerance is counted, not judged."""
    key = {}

    def plant(payload, model, x):
        with torch.no_grad():
            logits = model(x)
        flat = logits.abs().flatten().argmin()  # the pixel nearest its boundary already
        key["pixel"] = np.unravel_index(int(flat), logits.shape)
        name = [k for k in payload["state_dict"] if k.startswith("segmentation_head") and k.endswith("bias")][0]
        payload["state_dict"][name] = payload["state_dict"][name] - logits[key["pixel"]]
        key["bias"] = name

    images, x = _planted_run(tiny_segmenter_run, tmp_path / "seg", plant)
    payload = load_checkpoint(tmp_path / "seg")
    from ceod.export.onnx_export import _torch_model
    model, _ = _torch_model(payload, heatmap=False)
    with torch.no_grad():
        planted = float(model(x)[key["pixel"]])
    assert abs(planted) < 1e-6  # planted within float rounding of zero
    report = export_run(tmp_path / "seg", tmp_path / "seg.onnx")
    assert report["passed"] and report["within_margin"] >= 1 and report["failure"] is None
    # The other CPU's sum order, made deterministic: move torch's side of that pixel across zero
    # (1e-6, a thousandth of the tolerance) away from where onnxruntime put it.
    got = float(_onnx_outputs(tmp_path / "seg.onnx", x)["aoi_logits"][key["pixel"]])
    target = -5e-7 if got > 0 else 5e-7
    head_bias = dict(model.named_parameters())[key["bias"]]
    with torch.no_grad():
        head_bias += target - float(model(x)[key["pixel"]])
    report = parity(model, tmp_path / "seg.onnx", images, payload["meta"], "segmenter", fp16=False)
    assert report["decision_agreement_all"] < 1.0  # what the old rule judged, and refused
    assert report["passed"] and report["within_margin_flipped"] >= 1 and report["decision_agreement"] == 1.0


def test_a_part_score_planted_at_the_threshold_exports_and_its_flip_is_not_refused(tiny_classifier_run, tmp_path):
    from ceod.export.onnx_export import _torch_model
    from ceod.export.runtime import softmax
    chosen = {}

    def plant(payload, model, x):
        with torch.no_grad():
            score = torch.softmax(model(x), 1)[:, 1].double()
        chosen["i"] = int((score - 0.5).abs().argmin())  # the most sensitive part
        payload["meta"]["threshold"] = float(score[chosen["i"]])  # its score is the threshold

    images, x = _planted_run(tiny_classifier_run, tmp_path / "cls", plant)
    report = export_run(tmp_path / "cls", tmp_path / "cls.onnx", profile=False)
    assert report["passed"] and report["within_margin"] >= 1
    payload = load_checkpoint(tmp_path / "cls")
    model, _ = _torch_model(payload, heatmap=False)
    ort_score = float(softmax(_onnx_outputs(tmp_path / "cls.onnx", x)["logits"].astype(np.float64))[chosen["i"], 1])
    with torch.no_grad():
        model.model.head.fc.bias[1] += 4e-6  # torch's score moves ~1e-6 above onnxruntime's
        torch_score = float(torch.softmax(model(x).double(), 1)[chosen["i"], 1])
    assert 0 < torch_score - ort_score < 1e-5
    meta = dict(payload["meta"], threshold=(torch_score + ort_score) / 2)  # between the two: a flip
    report = parity(model, tmp_path / "cls.onnx", images, meta, "classifier", fp16=False)
    assert report["decision_agreement_all"] < 1.0 and report["within_margin_flipped"] == 1
    assert report["passed"], report["failure"]


def test_the_refusal_names_the_figure_that_failed():
    from ceod.export.onnx_export import _parity_failure
    diff = _parity_failure({"logits": 3e-3, "heatmap": 1e-4}, 1e-3, 1.0, 10, np.array([]))
    assert diff == "max abs diff 3.00e-03 on output 'logits' exceeds the tolerance 1e-03"
    flips = _parity_failure({"logits": 2e-4}, 1e-3, 998 / 1000, 1000, np.array([2e-3, 5e-2]))
    assert "decision agreement 0.998000 on the 1000 decisions" in flips
    assert "2 flipped (reference margins 5.00e-02, 2.00e-03)" in flips
    assert _parity_failure({"logits": 2e-4}, 1e-3, 1.0, 1000, np.array([])) is None
