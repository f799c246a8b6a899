"""A model whose metadata would judge parts wrongly is refused at load; a
non-finite score is an error record, never a verdict; every record names the model that judged."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest

from ceod.export.runtime import OnnxModel, RuntimeModelError
from ceod.pipeline.inspect import Inspector


def _with_props(src, dst, **changes) -> str:
    proto = onnx.load(str(src))
    props = {p.key: p.value for p in proto.metadata_props}
    for key, value in changes.items():
        props[f"ceod.{key}"] = value if isinstance(value, str) else json.dumps(value)
    del proto.metadata_props[:]
    for k, v in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(proto, str(dst))
    return str(dst)


@pytest.mark.parametrize("change, message", [
    ({"threshold": "NaN"}, "threshold nan is not a number in \\[0, 1\\]"),
    ({"threshold": "Infinity"}, "threshold inf is not a number in \\[0, 1\\]"),
    ({"threshold": -5}, "threshold -5.0 is not a number in \\[0, 1\\]"),
    ({"std": [0, 0, 0]}, "std > 0"),
    ({"mean": [0.5, 0.5]}, "mean/std have 2/3 values for an input of 3 channels"),
    ({"class_names": ["ok", "def", "dent"]}, "3 class names for 2 logits"),
    ({"class_names": []}, "two or more distinct names"),
    ({"input_size": 32}, "input_size 32 but the graph's input height is 64"),
    ({"class_names": "[" * 50_000 + "]" * 50_000}, "over 65536 characters"),
    ({"class_names": "[" * 30_000 + "]" * 30_000}, "nested too deeply"),
])
def test_bad_metadata_is_refused_at_load(exported, tmp_path, change, message):
    bad = _with_props(exported["classifier"], tmp_path / "bad.onnx", **change)
    with pytest.raises(RuntimeModelError, match=message):
        OnnxModel(bad, "cpu")


def test_bad_metadata_through_the_cli_is_one_line_exit_2(exported, tmp_path, tiny_dataset):
    bad = _with_props(exported["classifier"], tmp_path / "bad.onnx", threshold="NaN")
    r = subprocess.run([sys.executable, "-m", "ceod.pipeline.cli", "inspect", "--model", bad,
                        "--source", str(tiny_dataset / "images")], capture_output=True, text=True)
    assert r.returncode == 2 and r.stdout == "" and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "refused" in r.stderr and "Traceback" not in r.stderr


def test_a_non_finite_score_is_an_error_never_a_verdict(exported, tmp_path, tiny_dataset):
    import glob
    inspector = Inspector(exported["classifier"], "cpu")
    inspector.model.info = inspector.model.info.__class__(**{**inspector.model.info.__dict__,
                                                              "mean": (np.nan, np.nan, np.nan)})
    pattern = str(tiny_dataset / "images" / "test" / "*" / "*.png")
    log = tmp_path / "v.jsonl"
    summary = inspector.run(pattern, log, None, 4, live=False)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(records) == len(glob.glob(pattern)) == summary.records
    assert all(r["status"] == "error" and r["reason"] == "non-finite score" and r["verdict"] is None
               for r in records)


def test_every_record_names_the_model_that_judged(exported, tmp_path, tiny_dataset):
    import hashlib
    log = tmp_path / "v.csv"
    Inspector(exported["classifier"], "cpu").run(str(tiny_dataset / "images" / "test"), log, None, 8, live=False)
    digest = hashlib.sha256(exported["classifier"].read_bytes()).hexdigest()[:12]
    import csv
    rows = list(csv.DictReader(log.open()))
    assert rows and {r["model"] for r in rows} == {f"classifier.onnx@{digest}"}
