"""Labels beyond ok/def: class inference, metrics against scikit-learn, and a K-class model
trained, exported and inspected end to end on DecoyMNIST digits."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ceod.contracts.classes import ANOMALY_CLASSES, decide, infer_classes
from ceod.data.manifest import DatasetError, read_manifest
from ceod.contracts.metrics import classification_metrics, multiclass_metrics


def test_infer_classes_keeps_ok_def_and_sorts_the_rest():
    assert infer_classes(["ok", "def", "ok"]) == ANOMALY_CLASSES
    assert infer_classes(["ok"]) == ANOMALY_CLASSES
    # ok and def both present: a third label is a typo, not a class
    assert infer_classes(["ok", "def", "dfe"]) == ANOMALY_CLASSES
    assert infer_classes(["scratch", "ok", "dent"]) == ("dent", "ok", "scratch")


def test_decide_threshold_for_ok_def_argmax_otherwise():
    probs = np.array([[0.7, 0.3], [0.4, 0.6]])
    assert decide(probs, ("ok", "def"), 0.25).tolist() == [1, 1]
    assert decide(probs, ("a", "b"), 0.25).tolist() == [0, 1]  # not ok/def: argmax, threshold unused


def _dataset(root: Path, labels: list[tuple[str, str]]) -> Path:
    import cv2
    (root / "images").mkdir(parents=True)
    rows = []
    for i, (split, label) in enumerate(labels):
        cv2.imwrite(str(root / "images" / f"{i}.png"), np.full((16, 16), i * 10 % 255, np.uint8))
        rows.append({"image": f"images/{i}.png", "aoi": "", "split": split, "label": label})
    with (root / "manifest.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


def test_manifest_classes_from_training_split_and_typos_are_bad_rows(tmp_path):
    ds = _dataset(tmp_path / "ds", [("train", "scratch"), ("train", "ok"), ("train", "dent"),
                                    ("test", "dent"), ("test", "dnet")])
    with pytest.raises(DatasetError, match=r"manifest row 5: .*label 'dnet' is not one of \['dent', 'ok', 'scratch'\]"):
        read_manifest(ds)
    m = read_manifest(ds, skip_bad=True)
    assert m.classes == ("dent", "ok", "scratch")
    assert [s.label for s in m.samples] == [2, 1, 0, 0]
    # an explicit order (the config's `classes`, or a model's) fixes the indices
    m = read_manifest(ds, skip_bad=True, classes=["ok", "scratch", "dent"])
    assert [s.label for s in m.samples] == [1, 0, 2, 2]


def test_multiclass_metrics_agree_with_scikit_learn():
    from sklearn.metrics import balanced_accuracy_score, confusion_matrix, f1_score, recall_score, roc_auc_score
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 300)
    logits = rng.normal(size=(300, 4)) + 1.5 * np.eye(4)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    pred = probs.argmax(1)
    m = multiclass_metrics(probs, labels, ["a", "b", "c", "d"])
    assert m["accuracy"] == pytest.approx((pred == labels).mean())
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(labels, pred))
    assert m["macro_f1"] == pytest.approx(f1_score(labels, pred, average="macro"))
    assert list(m["per_class_recall"].values()) == pytest.approx(list(recall_score(labels, pred, average=None)))
    assert m["confusion"] == confusion_matrix(labels, pred).tolist()
    assert m["auroc"] == pytest.approx(roc_auc_score(labels, probs, multi_class="ovr", average="macro"))
    # ok/def keeps the binary figures at the threshold
    binary = classification_metrics(probs[:, :2] / probs[:, :2].sum(1, keepdims=True), labels % 2, ("ok", "def"), 0.5)
    assert "f1" in binary and "per_class_recall" not in binary


def _ceod(*args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "ceod.pipeline.cli", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError(r.stdout + r.stderr)
    return r


def test_k_class_model_trains_exports_and_inspects(decoy_mnist, tmp_path):
    import onnx
    config = tmp_path / "digits.yaml"
    config.write_text(
        "input_size: 28\naugment: []\nmodel: {backbone: simple, pretrained: false, downsample: 1, width: 8, head: flatten_linear}\n"
        "loss: {kind: ceod, target: all, distance: signed_outside}\ntrain: {epochs: 3, batch_size: 32, lr: 0.003}\n")
    run = tmp_path / "run"
    _ceod("train-classifier", "--data", str(decoy_mnist), "--out", str(run), "--config", str(config),
          "--max-train-images", "1000")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["class_names"] == [str(d) for d in range(10)]
    ev = json.loads(_ceod("evaluate", "--model", str(run), "--data", str(decoy_mnist), "--split", "test_clean").stdout)
    assert {"accuracy", "macro_f1", "per_class_recall"} <= set(ev) and len(ev["confusion"]) == 10
    assert ev["accuracy"] > 0.3  # 1,000 digits, three epochs: far above chance (0.1)
    audit = json.loads(_ceod("audit", "--model", str(run), "--data", str(decoy_mnist), "--split", "test").stdout)
    assert 0.0 <= audit["swap"]["flip_rate"] <= 1.0 and "macro_f1" in audit["swap"]
    model = tmp_path / "digits.onnx"
    _ceod("export", "--model", str(run), "--out", str(model), "--heatmap", "--parity-images", "8")
    props = {p.key: p.value for p in onnx.load(str(model)).metadata_props}
    assert json.loads(props["ceod.class_names"]) == [str(d) for d in range(10)]
    log = tmp_path / "verdicts.jsonl"
    _ceod("inspect", "--model", str(model), "--source", str(decoy_mnist / "images" / "test_clean"),
          "--log", str(log), "--batch", "8", "--quiet")
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(records) == 1000 and {r["verdict"] for r in records} <= {str(d) for d in range(10)}
    truth = {r["image"].split("/")[-1]: r["label"] for r in csv.DictReader((decoy_mnist / "manifest.csv").open())
             if r["split"] == "test_clean"}
    agree = np.mean([r["verdict"] == truth[Path(r["source"]).name] for r in records])
    assert agree == pytest.approx(ev["accuracy"], abs=0.01)  # the ONNX line verdicts are the model's
