"""`ceod data import` on small hand-made fixtures of every format, broken entries included."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from ceod.data.checks import check_dataset
from ceod.data.manifest import read_manifest
from ceod.data.importers import AnnotationError, ImportOptions, import_dataset


def _image(path: Path, h: int = 40, w: int = 60, value: int = 120) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((h, w), value, np.uint8))
    return path


def _rows(out: Path) -> list[dict]:
    return list(csv.DictReader((out / "manifest.csv").open()))


def _aoi(out: Path, row: dict) -> np.ndarray:
    return cv2.imread(str(out / row["aoi"]), cv2.IMREAD_GRAYSCALE) > 0


def test_imagefolder_with_split_level_and_label_mapping(tmp_path):
    src = tmp_path / "casting_like"
    for split, cls, n in (("train", "ok_front", 3), ("train", "def_front", 2), ("test", "ok_front", 1),
                          ("test", "def_front", 2)):
        for i in range(n):
            _image(src / split / cls / f"{cls}_{i}.jpeg")
    summary = import_dataset(src, tmp_path / "ds", "imagefolder",
                             ImportOptions(labels={"ok_front": "ok", "def_front": "def"}))
    assert summary["rows"] == 8 and summary["with_aoi"] == 0
    assert summary["counts"] == {"train": {"def": 2, "ok": 3}, "test": {"def": 2, "ok": 1}}
    rows = _rows(tmp_path / "ds")
    assert all(r["aoi"] == "" and r["image"].startswith("source/") for r in rows)
    assert (tmp_path / "ds" / "source").is_symlink()  # referenced, never copied
    assert not list((tmp_path / "ds").rglob("*.jpeg")) or all(p.is_relative_to(tmp_path / "ds" / "source")
                                                             for p in (tmp_path / "ds").rglob("*.jpeg"))
    assert check_dataset(tmp_path / "ds", progress=False).ok


def test_mvtec_layout(tmp_path):
    src = tmp_path / "bottle"
    for i in range(3):
        _image(src / "train" / "good" / f"{i:03d}.png")
    _image(src / "test" / "good" / "000.png")
    _image(src / "test" / "crack" / "000.png")
    _image(src / "ground_truth" / "crack" / "000_mask.png", value=255)
    _image(src / "test" / "scratch" / "000.png")
    with pytest.raises(AnnotationError, match=r"scratch/000.png: no ground-truth mask ground_truth/scratch/000_mask.png"):
        import_dataset(src, tmp_path / "a", "mvtec")
    _image(src / "ground_truth" / "scratch" / "000_mask.png", value=255)
    import_dataset(src, tmp_path / "b", "mvtec")
    rows = _rows(tmp_path / "b")
    assert [(r["split"], r["label"], r["defect_type"], bool(r["defect_mask"])) for r in rows] == [
        ("train", "ok", "good", False)] * 3 + [("test", "def", "crack", True), ("test", "ok", "good", False),
                                              ("test", "def", "scratch", True)]
    assert check_dataset(tmp_path / "b", progress=False).ok
    import_dataset(src, tmp_path / "c", "mvtec", ImportOptions(defect_classes=True))
    assert {r["label"] for r in _rows(tmp_path / "c")} == {"ok", "crack", "scratch"}


def _coco(tmp_path: Path, annotations: list[dict], images: list[dict] | None = None) -> Path:
    folder = tmp_path / "coco"
    _image(folder / "ok" / "a.png")
    _image(folder / "def" / "b.png")
    doc = {"images": images or [{"id": 1, "file_name": "ok/a.png", "width": 60, "height": 40},
                                {"id": 2, "file_name": "def/b.png", "width": 60, "height": 40}],
           "categories": [{"id": 1, "name": "part"}, {"id": 2, "name": "hole"}, {"id": 3, "name": "defect"}],
           "annotations": annotations}
    path = folder / "annotations.json"
    path.write_text(json.dumps(doc))
    return path


def test_coco_polygons_with_a_hole_and_rle(tmp_path):
    from pycocotools import mask as coco_mask
    ring = [{"id": 10, "image_id": 1, "category_id": 1, "segmentation": [[5, 5, 55, 5, 55, 35, 5, 35]]},
            {"id": 11, "image_id": 1, "category_id": 2, "segmentation": [[20, 15, 40, 15, 40, 25, 20, 25]]},
            {"id": 12, "image_id": 1, "category_id": 3, "segmentation": [[50, 30, 52, 30, 52, 32]]}]
    rle_mask = np.zeros((40, 60), np.uint8, order="F")
    rle_mask[10:30, 10:20] = 1
    rle = coco_mask.encode(np.asfortranarray(rle_mask))
    rle["counts"] = rle["counts"].decode()
    ring.append({"id": 13, "image_id": 2, "category_id": 1, "segmentation": rle, "iscrowd": 1})
    path = _coco(tmp_path, ring)
    import_dataset(path, tmp_path / "ds", "coco",
                   ImportOptions(labels={"ok": "ok", "def": "def"}, aoi_categories={"part"}))
    rows = {r["image"]: r for r in _rows(tmp_path / "ds")}
    a = _aoi(tmp_path / "ds", rows["source/ok/a.png"])
    assert a.shape == (40, 60) and a[10, 10] and not a[20, 30]  # the ring's hole stays outside
    assert not a[0, 0]
    b = _aoi(tmp_path / "ds", rows["source/def/b.png"])
    assert b.sum() == rle_mask.sum() and b[20, 15] and not b[20, 25]  # RLE decoded by pycocotools
    assert rows["source/def/b.png"]["label"] == "def"
    assert check_dataset(tmp_path / "ds", progress=False).ok


@pytest.mark.parametrize("broken, match", [
    ({"id": 20, "image_id": 1, "category_id": 9, "segmentation": [[1, 1, 5, 1, 5, 5]]}, "annotation 20 .*unknown category id 9"),
    ({"id": 21, "image_id": 1, "category_id": 1, "segmentation": [[1, 1, 90, 1, 5, 5]]}, "annotation 21 .*out of bounds"),
    ({"id": 22, "image_id": 7, "category_id": 1, "segmentation": [[1, 1, 5, 1, 5, 5]]}, "annotation 22.*image_id 7"),
])
def test_coco_broken_entries_are_named(tmp_path, broken, match):
    path = _coco(tmp_path, [{"id": 1, "image_id": 2, "category_id": 1, "segmentation": [[1, 1, 30, 1, 30, 30]]}, broken])
    opt = ImportOptions(labels={"ok": "ok", "def": "def"})
    with pytest.raises(AnnotationError, match=match):
        import_dataset(path, tmp_path / "ds", "coco", opt)
    opt.skip_bad = True
    summary = import_dataset(path, tmp_path / "ds2", "coco", opt)
    assert summary["skipped"] == 1 and summary["rows"] == (2 if "image_id 7" in match else 1)


def test_coco_missing_image_and_size_mismatch(tmp_path):
    path = _coco(tmp_path, [], images=[{"id": 1, "file_name": "ok/a.png", "width": 64, "height": 40},
                                       {"id": 2, "file_name": "ok/gone.png", "width": 60, "height": 40}])
    with pytest.raises(AnnotationError, match=r"image 1 \(ok/a.png\): annotated size 64x40 differs .* 60x40 \(and 1 more\)"):
        import_dataset(path, tmp_path / "ds", "coco", ImportOptions(labels={"ok": "ok"}))


def test_labelme_polygon_rectangle_hole_and_broken_shape(tmp_path):
    src = tmp_path / "labelme"
    _image(src / "ok" / "p.png")

    def write(name, shapes):
        (src / "ok" / name).write_text(json.dumps({"imagePath": "p.png", "imageHeight": 40, "imageWidth": 60,
                                                   "shapes": shapes}))
    write("p.json", [{"label": "part", "shape_type": "rectangle", "points": [[5, 5], [55, 35]]},
                     {"label": "hole", "shape_type": "polygon", "points": [[20, 15], [40, 15], [40, 25], [20, 25]]}])
    import_dataset(src, tmp_path / "ds", "labelme", ImportOptions(labels={"ok": "ok"}))
    (row,) = _rows(tmp_path / "ds")
    a = _aoi(tmp_path / "ds", row)
    assert a[10, 10] and not a[20, 30] and not a[38, 58]
    assert check_dataset(tmp_path / "ds", progress=False).ok
    write("p.json", [{"label": "part", "shape_type": "line", "points": [[5, 5], [55, 35]]}])
    with pytest.raises(AnnotationError, match=r"p.json shape 0 \(part\): unsupported LabelMe shape 'line'"):
        import_dataset(src, tmp_path / "ds2", "labelme", ImportOptions(labels={"ok": "ok"}))


def test_base_dataset_gets_the_corrected_masks(tmp_path):
    """The loop: a dataset without AOIs + corrected LabelMe files -> the same rows, now with AOIs."""
    src = tmp_path / "folders"
    for cls in ("ok", "def"):
        for i in range(2):
            _image(src / cls / f"{cls}{i}.png")
    import_dataset(src, tmp_path / "base", "imagefolder")
    task = tmp_path / "task"
    task.mkdir()
    (task / "ok0.json").write_text(json.dumps({
        "imagePath": str(Path("..") / "folders" / "ok" / "ok0.png"), "imageHeight": 40, "imageWidth": 60,
        "shapes": [{"label": "aoi", "shape_type": "polygon", "points": [[0, 0], [30, 0], [30, 40], [0, 40]]}]}))
    summary = import_dataset(task, tmp_path / "round1", "labelme",
                             ImportOptions(default_label="ok", base=tmp_path / "base"))
    assert summary["rows"] == 4 and summary["filled"] == 1 and summary["with_aoi"] == 1
    m = read_manifest(tmp_path / "round1")
    assert sum(s.aoi is not None for s in m.samples) == 1
    assert check_dataset(tmp_path / "round1", progress=False).ok


def test_never_overwrites(tmp_path):
    src = tmp_path / "folders"
    _image(src / "ok" / "a.png")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(AnnotationError, match="not empty"):
        import_dataset(src, tmp_path / "taken", "imagefolder")
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"


def test_an_untrusted_base_row_never_writes_outside_out(tmp_path):
    """A base manifest row ../../victim/x.png plus a LabelMe file whose imagePath resolves to it:
    the import used to overwrite lm/victim/x.png with a mask."""
    lm = tmp_path / "lm"
    victim = _image(lm / "victim" / "x.png", value=77)
    before = victim.read_bytes()
    base = lm / "a" / "b" / "base"
    _image(base / "ok" / "y.png")
    with (base / "manifest.csv").open("w", newline="") as fh:
        fh.write("image,aoi,split,label\nok/y.png,,train,ok\n../../../victim/x.png,,train,ok\n")
    (lm / "ann").mkdir()
    (lm / "ann" / "x.json").write_text(json.dumps({
        "imagePath": "../victim/x.png", "imageHeight": 40, "imageWidth": 60,
        "shapes": [{"label": "aoi", "shape_type": "rectangle", "points": [[1, 1], [30, 30]]}]}))
    with pytest.raises(AnnotationError, match="would put its AOI outside the new dataset"):
        import_dataset(lm / "ann", lm / "out", "labelme", ImportOptions(default_label="ok", base=base))
    assert victim.read_bytes() == before
    assert not (lm / "out").exists() and not list(lm.glob(".out.importing-*"))  # nothing half-made
    summary = import_dataset(lm / "ann", lm / "out", "labelme", ImportOptions(default_label="ok", base=base,
                                                                            skip_bad=True))
    assert summary["skipped"] == 1 and victim.read_bytes() == before
    assert not list((lm / "out").rglob("*.png"))  # no AOI written anywhere


@pytest.mark.parametrize("entry, where", [
    ({"id": 30, "image_id": 1, "category_id": 1, "segmentation": [[1, 1, 5, 1, 5]]}, "annotation 30"),  # odd length
    ({"id": 31, "image_id": 1, "category_id": 1, "segmentation": [["a", "b", "c", "d", "e", "f"]]}, "annotation 31"),
    ({"id": 32, "image_id": 1, "category_id": 1, "segmentation": 7}, "annotation 32"),
    ("not a dict", "annotation 1"),
])
def test_malformed_coco_entries_are_named_and_skippable(tmp_path, entry, where):
    path = _coco(tmp_path, [{"id": 1, "image_id": 2, "category_id": 1, "segmentation": [[1, 1, 30, 1, 30, 30]]}, entry])
    opt = ImportOptions(labels={"ok": "ok", "def": "def"})
    with pytest.raises(AnnotationError, match=where):
        import_dataset(path, tmp_path / "ds", "coco", opt)
    assert not (tmp_path / "ds").exists()
    opt.skip_bad = True
    summary = import_dataset(path, tmp_path / "ds", "coco", opt)
    assert summary["skipped"] == 1 and check_dataset(tmp_path / "ds", progress=False).ok


def test_coco_categories_without_name_images_outside_and_duplicates(tmp_path):
    path = _coco(tmp_path, [], images=[{"id": 1, "file_name": "ok/a.png"}, {"id": 2, "file_name": "../elsewhere.png"},
                                       {"id": 3, "file_name": "ok/a.png"}])
    _image(tmp_path / "elsewhere.png")
    doc = json.loads(path.read_text())
    doc["categories"].append({"id": 4})
    path.write_text(json.dumps(doc))
    with pytest.raises(AnnotationError) as err:
        import_dataset(path, tmp_path / "ds", "coco", ImportOptions(labels={"ok": "ok"}))
    assert "category 3: not a category with an id and a name (and 2 more)" in str(err.value)
    summary = import_dataset(path, tmp_path / "ds", "coco", ImportOptions(labels={"ok": "ok"}, skip_bad=True))
    assert summary["rows"] == 1 and summary["skipped"] == 3
    import_dataset(path, tmp_path / "again", "coco", ImportOptions(labels={"ok": "ok"}, skip_bad=True))  # a rerun works


def test_malformed_labelme_files_are_named_and_skippable(tmp_path):
    src = tmp_path / "labelme"
    _image(src / "ok" / "p.png")
    good = {"label": "part", "shape_type": "polygon", "points": [[1, 1], [30, 1], [30, 30]]}
    for name, doc in (("good.json", {"imagePath": "p.png", "shapes": [good]}),
                      ("list_label.json", {"imagePath": "p.png", "shapes": [{**good, "label": ["x"]}]}),
                      ("strings.json", {"imagePath": "p.png", "shapes": [{**good, "points": [["a", "b"]] * 3}]}),
                      ("not_dict.json", {"imagePath": "p.png", "shapes": ["oops"]}),
                      ("path_list.json", {"imagePath": ["p.png"], "shapes": []})):
        (src / "ok" / name).write_text(json.dumps(doc))
    with pytest.raises(AnnotationError, match="and 3 more"):
        import_dataset(src, tmp_path / "ds", "labelme", ImportOptions(labels={"ok": "ok"}))
    summary = import_dataset(src, tmp_path / "ds", "labelme", ImportOptions(labels={"ok": "ok"}, skip_bad=True))
    assert summary["rows"] == 1 and summary["skipped"] == 4


def test_annotated_images_outside_the_base_are_bad_entries(tmp_path):
    src = tmp_path / "folders"
    _image(src / "ok" / "ok0.png")
    import_dataset(src, tmp_path / "base", "imagefolder")
    _image(tmp_path / "stranger.png")
    task = tmp_path / "task"
    task.mkdir()
    (task / "s.json").write_text(json.dumps({"imagePath": "../stranger.png", "shapes": [
        {"label": "aoi", "shape_type": "rectangle", "points": [[0, 0], [10, 10]]}]}))
    with pytest.raises(AnnotationError, match="annotated image is not a row of"):
        import_dataset(task, tmp_path / "r1", "labelme", ImportOptions(default_label="ok", base=tmp_path / "base"))
    summary = import_dataset(task, tmp_path / "r1", "labelme",
                             ImportOptions(default_label="ok", base=tmp_path / "base", skip_bad=True))
    assert summary["skipped"] == 1 and summary["filled"] == 0


def test_an_imagefolder_of_symlinks_imports(tmp_path):
    store = tmp_path / "store"
    for i in range(2):
        _image(store / f"img{i}.png")
    src = tmp_path / "linked"
    for cls, i in (("ok", 0), ("def", 1)):
        (src / cls).mkdir(parents=True)
        (src / cls / f"img{i}.png").symlink_to(store / f"img{i}.png")
    summary = import_dataset(src, tmp_path / "ds", "imagefolder")
    assert summary["rows"] == 2
    assert sorted(r["image"] for r in _rows(tmp_path / "ds")) == ["source/def/img1.png", "source/ok/img0.png"]
    assert check_dataset(tmp_path / "ds", progress=False).ok
