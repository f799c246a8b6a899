import json
import subprocess
import sys

import numpy as np
import pytest

from ceod.dataset import load_split, read_manifest
from ceod.classifier.evaluate import REPLACEMENTS, replace_outside


def _ceod(*args, check=True):
    r = subprocess.run([sys.executable, "-m", "ceod.pipeline.cli", *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError(r.stdout + r.stderr)
    return r


@pytest.fixture(scope="module")
def cls_run(tiny_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("cls") / "run"
    _ceod("train-classifier", "--data", str(tiny_dataset), "--out", str(out), "--loss", "ceod",
          "--epochs", "2", "--input-size", "64")
    return out


def test_train_writes_checkpoint_metrics_curves(cls_run):
    metrics = json.loads((cls_run / "metrics.json").read_text())
    # the packaged default keeps the mean of the last epochs' weights: its row is epoch = epochs
    assert metrics["loss"].startswith("ceod(") and metrics["best_epoch"] == 2
    assert metrics["config"]["model"]["backbone"] == "efficientnet_lite0" and metrics["config"]["model"]["pretrained"]
    hist = json.loads((cls_run / "history.json").read_text())
    assert {"train_ce", "train_aoi_term", "val_auroc", "val_aoi_attention"} <= set(hist[0])
    assert (cls_run / "best.pt").is_file() and (cls_run / "curves.png").is_file()


def test_evaluate_and_audit_cli(cls_run, tiny_dataset):
    r = _ceod("evaluate", "--model", str(cls_run), "--data", str(tiny_dataset), "--split", "test_anti",
              "--heatmaps", "4")
    result = json.loads(r.stdout)
    # nan is the honest value when every Grad-CAM is all zero (a barely trained model)
    att = result["aoi_attention"]
    assert result["n"] == 16 and (np.isnan(att) or 0 <= att <= 1)
    assert sum(map(sum, result["confusion"])) == 16
    assert (cls_run / "eval_test_anti" / "heatmaps.png").is_file()
    r = _ceod("audit", "--model", str(cls_run), "--data", str(tiny_dataset), "--split", "test")
    audit = json.loads(r.stdout)
    for how in REPLACEMENTS:
        assert 0 <= audit[how]["flip_rate"] <= 1


def test_replacements_touch_only_the_outside(tiny_dataset):
    data = load_split(read_manifest(tiny_dataset).split("test"), 64)
    inside = data.aoi > 0
    for how in REPLACEMENTS:
        out = replace_outside(data, how, seed=0)
        assert np.array_equal(out[inside], data.images[inside]), how
        assert not np.array_equal(out[~inside], data.images[~inside]), how


def test_bad_input_gives_clear_error(tmp_path):
    r = _ceod("train-classifier", "--data", str(tmp_path), "--out", str(tmp_path / "o"), check=False)
    assert r.returncode == 2 and "manifest.csv not found" in r.stderr and "Traceback" not in r.stderr
    r = _ceod("evaluate", "--model", str(tmp_path / "nothing"), "--data", str(tmp_path), check=False)
    assert r.returncode == 2 and "no checkpoint" in r.stderr


def test_cli_synth_and_check(tmp_path):
    _ceod("synth", str(tmp_path / "s"), "--preset", "tiny", "--seed", "1")
    r = _ceod("data", "check", str(tmp_path / "s"))
    assert "no bad rows" in r.stdout and "total" in r.stdout
    (tmp_path / "s" / "images" / "train" / "ok").iterdir().__next__().write_bytes(b"")
    r = _ceod("data", "check", str(tmp_path / "s"), check=False)
    assert r.returncode == 1 and "zero-byte" in r.stdout
