import hashlib

import numpy as np
import pytest

from ceod.data.loading import load_split
from ceod.data.manifest import read_manifest
from ceod.data.synth import SPLITS, config_for, synthesize


def _digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    cfg = config_for("tiny")
    a = synthesize(tmp_path / "a", cfg, seed=3, progress=False)
    b = synthesize(tmp_path / "b", cfg, seed=3, progress=False)
    synthesize(tmp_path / "c", cfg, seed=4, progress=False)
    assert a["images"] == b["images"] == 128
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_refuses_to_overwrite(tmp_path, tiny_dataset):
    with pytest.raises(FileExistsError):
        synthesize(tiny_dataset, config_for("tiny"), seed=0, progress=False)


def test_distractor_label_correlations_hold(tmp_path):
    n = 600
    cfg = config_for("tiny", overrides={"size": 32, "counts": {s: n for s in SPLITS}})
    synthesize(tmp_path / "ds", cfg, seed=0, progress=False)
    m = read_manifest(tmp_path / "ds")
    tol = 0.07  # ~3 standard errors at n=300 per label

    def rate(split, label):
        rows = [s for s in m.split(split) if s.label == label]
        return np.mean([int(s.extra["distractor"]) for s in rows])

    for split in ("train", "val", "test"):
        assert abs(rate(split, 1) - 0.9) < tol and abs(rate(split, 0) - 0.1) < tol
    assert abs(rate("test_shift", 1) - 0.5) < 1.5 * tol and abs(rate("test_shift", 0) - 0.5) < 1.5 * tol
    assert abs(rate("test_anti", 1) - 0.1) < tol and abs(rate("test_anti", 0) - 0.9) < tol
    labels = np.array([s.label for s in m.samples])
    assert abs(labels.mean() - 0.5) < 0.05


def test_defects_inside_aoi_and_only_on_def(tiny_dataset):
    m = read_manifest(tiny_dataset)
    for s in m.samples:
        assert (s.defect_mask is not None) == (s.label == 1)
    data = load_split(m.samples, 64)
    inside = ((data.defects > 0) & (data.aoi > 0)).sum() / max((data.defects > 0).sum(), 1)
    assert inside > 0.99
