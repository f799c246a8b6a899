import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ceod.data.loading import load_split
from ceod.data.manifest import read_manifest
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
    def no_nan(token):
        raise AssertionError(f"{token} is not JSON")
    result = json.loads(r.stdout, parse_constant=no_nan)  # strict JSON: NaN or Infinity fail here
    # null (not NaN) when every Grad-CAM is all zero (a barely trained model), and how many were
    att = result["aoi_attention"]
    assert result["n"] == 16 and (att is None or 0 <= att <= 1)
    assert 0 <= result["aoi_attention_empty_maps"] <= 16 and (att is not None or result["aoi_attention_empty_maps"] == 16)
    assert sum(map(sum, result["confusion"])) == 16
    assert (cls_run / "eval_test_anti" / "heatmaps.png").is_file()
    op = result["operating_point"]  # the line's terms, with the defect count where a rate is n/a
    assert op["shipped"]["defects"] + op["shipped"]["ok_parts"] == 16
    assert op["at_escape"]["0.01"]["available"] is False and "needed" in op["at_escape"]["0.01"]["note"]
    assert "escapes" in r.stderr and "false rejects" in r.stderr
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


def test_evaluate_writes_every_prediction(cls_run, tiny_dataset, tmp_path):
    import csv
    import shutil
    ds = tmp_path / "ds"
    shutil.copytree(tiny_dataset, ds)
    rows = list(csv.DictReader((ds / "manifest.csv").open()))
    victim = next(r for r in rows if r["split"] == "test")
    new_name = str(Path(victim["image"]).parent / "=HYPERLINK(1).png")
    (ds / victim["image"]).rename(ds / new_name)
    victim["image"] = new_name
    with (ds / "manifest.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "pred.csv"
    _ceod("evaluate", "--model", str(cls_run), "--data", str(ds), "--split", "test", "--predictions", str(out))
    table = list(csv.DictReader(out.open()))
    n_test = sum(r["split"] == "test" for r in rows)
    assert len(table) == n_test and set(table[0]) == {"image", "label", "score", "verdict", "correct", "aoi_attention"}
    assert all(r["label"] in ("ok", "def") and r["verdict"] in ("ok", "def") and 0 <= float(r["score"]) <= 1
               for r in table)
    # a file name a spreadsheet would run as a formula is written as text (paths are absolute here,
    # so the check is on the cell as a whole: it must not start with '=')
    assert not any(r["image"].startswith("=") for r in table)
    assert any(r["image"].endswith("=HYPERLINK(1).png") for r in table)


def test_csv_cells_that_a_spreadsheet_would_run_are_text():
    from ceod.contracts.metrics import csv_safe
    assert [csv_safe(v) for v in ("=HYPERLINK(1)", "+1", "-2", "@SUM(A1)", "ok", 0.5)] == [
        "'=HYPERLINK(1)", "'+1", "'-2", "'@SUM(A1)", "ok", 0.5]
