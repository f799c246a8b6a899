"""suggest-annotations ranks unannotated images and writes a task that imports back (the loop)."""

from __future__ import annotations

import csv
import json
import shutil

import cv2
import pytest

from ceod.data.checks import check_dataset
from ceod.data.manifest import read_manifest
from ceod.data.importers import ImportOptions, import_dataset
from ceod.segmenter.suggest import suggest_annotations


@pytest.fixture()
def partly_annotated(tiny_dataset, tmp_path):
    """The tiny line with the AOI cell cleared on every second training row."""
    ds = tmp_path / "partly"
    shutil.copytree(tiny_dataset, ds)
    rows = list(csv.DictReader((ds / "manifest.csv").open()))
    cleared = 0
    for i, r in enumerate(rows):
        if r["split"] == "train" and i % 2:
            r["aoi"] = ""
            cleared += 1
    with (ds / "manifest.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return ds, cleared


def test_suggest_then_import_back_closes_the_loop(tiny_segmenter_run, partly_annotated, tmp_path):
    ds, cleared = partly_annotated
    result = suggest_annotations(tiny_segmenter_run, ds, 5, tmp_path / "task")
    assert result["candidates"] == cleared and result["suggested"] == 5
    ranking = list(csv.DictReader(open(result["list"])))
    scores = [float(r["uncertainty"]) for r in ranking]
    assert scores == sorted(scores, reverse=True)
    coco = json.loads((tmp_path / "task" / "coco.json").read_text())
    assert len(coco["images"]) == 5 and {c["name"] for c in coco["categories"]} == {"aoi", "hole"}
    assert all((ds / im["file_name"]).is_file() for im in coco["images"])
    # a user corrects nothing and imports the LabelMe files back onto the dataset
    summary = import_dataset(tmp_path / "task" / "labelme", tmp_path / "round1", "labelme",
                             ImportOptions(base=ds))
    assert summary["filled"] == 5
    before = sum(s.aoi is not None for s in read_manifest(ds).samples)
    after = read_manifest(tmp_path / "round1")
    assert sum(s.aoi is not None for s in after.samples) == before + 5
    assert check_dataset(tmp_path / "round1", progress=False).ok
    # the COCO task imports back too, and its masks are the LabelMe ones (same polygons)
    import_dataset(tmp_path / "task" / "coco.json", tmp_path / "round1b", "coco",
                   ImportOptions(base=ds, images=ds))
    a = {s.image.resolve(): s.aoi for s in after.samples if s.aoi is not None}
    b = {s.image.resolve(): s.aoi for s in read_manifest(tmp_path / "round1b").samples if s.aoi is not None}
    assert a.keys() == b.keys()
    for image in a:
        ma, mb = cv2.imread(str(a[image]), 0) > 0, cv2.imread(str(b[image]), 0) > 0
        assert (ma == mb).mean() > 0.99


def test_suggest_refuses_a_used_folder_and_a_fully_annotated_split(tiny_segmenter_run, tiny_dataset, tmp_path):
    from ceod.contracts.errors import CeodError
    with pytest.raises(CeodError, match="no image without an AOI"):
        suggest_annotations(tiny_segmenter_run, tiny_dataset, 5, tmp_path / "t")
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("mine")
    with pytest.raises(CeodError, match="not empty"):
        suggest_annotations(tiny_segmenter_run, tiny_dataset, 5, tmp_path / "used")
    assert (tmp_path / "used" / "x").read_text() == "mine"
