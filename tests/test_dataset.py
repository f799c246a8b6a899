import csv
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from ceod.data.manifest import DatasetError, read_manifest
from ceod.data.checks import check_dataset
from ceod.data.loading import load_split
from ceod.data.imageio import read_image


def _copy(tiny: Path, tmp: Path) -> Path:
    dst = tmp / "ds"
    shutil.copytree(tiny, dst)
    return dst


def _rows(ds: Path) -> list[dict]:
    with (ds / "manifest.csv").open() as fh:
        return list(csv.DictReader(fh))


def _write(ds: Path, rows: list[dict]) -> None:
    with (ds / "manifest.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_reads_all_rows(tiny_dataset):
    m = read_manifest(tiny_dataset)
    assert len(m.samples) == 128 and not m.bad
    assert set(m.splits) == {"train", "val", "test", "test_shift", "test_anti"}


def test_missing_column_is_named(tmp_path, tiny_dataset):
    ds = _copy(tiny_dataset, tmp_path)
    rows = [{k: v for k, v in r.items() if k != "label"} for r in _rows(ds)]
    _write(ds, rows)
    with pytest.raises(DatasetError, match="missing column.*label"):
        read_manifest(ds)


@pytest.mark.parametrize("kind, match", [
    ("missing_file", "does not exist"),
    ("bad_label", "label 'broken'"),
    ("escape", "escapes the dataset folder"),
])
def test_cheap_bad_rows_name_row_and_file(tmp_path, tiny_dataset, kind, match):
    ds = _copy(tiny_dataset, tmp_path)
    rows = _rows(ds)
    if kind == "missing_file":
        rows[3]["image"] = "images/nope.png"
    elif kind == "bad_label":
        rows[3]["label"] = "broken"
    else:
        rows[3]["aoi"] = "../../etc/passwd"
    _write(ds, rows)
    with pytest.raises(DatasetError, match=f"manifest row 4: .*{match}"):
        read_manifest(ds)
    skipped = read_manifest(ds, skip_bad=True)
    assert len(skipped.samples) == len(rows) - 1 and len(skipped.bad) == 1


@pytest.mark.parametrize("kind, match", [
    ("unreadable", "not a decodable image"),
    ("zero_bytes", "zero-byte"),
    ("mask_size", "mask size 10x10 differs"),
])
def test_decode_bad_rows(tmp_path, tiny_dataset, kind, match):
    ds = _copy(tiny_dataset, tmp_path)
    rows = _rows(ds)
    target = ds / rows[5]["image"]
    if kind == "unreadable":
        target.write_bytes(b"this is not an image" * 10)
    elif kind == "zero_bytes":
        target.write_bytes(b"")
    else:
        cv2.imwrite(str(ds / rows[5]["aoi"]), np.zeros((10, 10), np.uint8))
    m = read_manifest(ds)
    with pytest.raises(DatasetError, match=f"manifest row 6: .*{match}"):
        load_split(m.samples, 32)
    loaded = load_split(m.samples, 32, skip_bad=True)
    assert len(loaded) == len(rows) - 1
    report = check_dataset(ds, progress=False)
    assert [b.row for b in report.bad] == [6] and not report.ok


@pytest.mark.parametrize("make", ["gray", "rgba", "u16"])
def test_images_normalised_to_rgb_uint8(tmp_path, make):
    base = np.random.default_rng(0).integers(0, 255, (20, 30), dtype=np.uint8)
    img = {"gray": base, "rgba": np.dstack([base] * 3 + [np.full_like(base, 255)]),
           "u16": base.astype(np.uint16) * 257}[make]
    path = tmp_path / f"x_{make}.png"
    cv2.imwrite(str(path), img)
    out = read_image(path)
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    assert np.array_equal(out[..., 0], base)


def test_loaded_split_shapes(tiny_dataset):
    m = read_manifest(tiny_dataset)
    data = load_split(m.split("train"), 32)
    assert data.images.shape == (64, 32, 32, 3)
    assert set(np.unique(data.aoi)) <= {0, 1} and data.has_aoi.all()
    # defect masks lie inside the AOI
    assert ((data.defects > 0) & (data.aoi == 0)).sum() <= 0.02 * (data.defects > 0).sum() + 1


def test_casting_counts_match_its_readme(casting):
    report = check_dataset(casting, progress=False)
    assert report.ok
    assert report.counts == {"train": {"ok": 2875, "def": 3758}, "test": {"ok": 198, "def": 453}}
    grouped = read_manifest(casting, split_column="split_grouped")
    assert sum(s.split == "test" for s in grouped.samples) == 1084


def _manifest_copy(tiny_dataset, tmp_path):
    import shutil
    ds = tmp_path / "ds"
    shutil.copytree(tiny_dataset, ds)
    return ds


def test_a_byte_order_mark_is_accepted(tiny_dataset, tmp_path):
    from ceod.data.manifest import read_manifest
    ds = _manifest_copy(tiny_dataset, tmp_path)
    text = (ds / "manifest.csv").read_text()
    (ds / "manifest.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())  # as Excel saves "CSV UTF-8"
    assert len(read_manifest(ds).samples) == len(read_manifest(tiny_dataset).samples)


@pytest.mark.parametrize("payload, message", [
    (b"\xff\xfe\xfa not utf-8\n", "not UTF-8 text"),
    (b"x" * 200_000 + b",,train,ok\n", "line \\d+: field larger than field limit"),
])
def test_unreadable_manifests_are_one_line(tiny_dataset, tmp_path, payload, message):
    from ceod.data.manifest import DatasetError, read_manifest
    ds = _manifest_copy(tiny_dataset, tmp_path)
    with (ds / "manifest.csv").open("ab") as fh:
        fh.write(payload)
    with pytest.raises(DatasetError, match=message):
        read_manifest(ds)


def test_one_image_in_two_splits_names_both_rows(tiny_dataset, tmp_path):
    import csv
    from ceod.data.manifest import DatasetError, read_manifest
    ds = _manifest_copy(tiny_dataset, tmp_path)
    rows = list(csv.DictReader((ds / "manifest.csv").open()))
    train_row = next(i for i, r in enumerate(rows, 1) if r["split"] == "train")
    rows.append({**rows[train_row - 1], "split": "test"})
    with (ds / "manifest.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(DatasetError, match=f"split 'train' at row {train_row} and in split 'test' here: leakage"):
        read_manifest(ds)
    kept = read_manifest(ds, skip_bad=True)
    assert len(kept.samples) == len(rows) - 1


def test_derived_datasets_keep_every_column(tiny_dataset, tiny_segmenter_run, tmp_path):
    """predict-aoi, the grouped folds and the active-learning subsets write datasets derived from
    another one: every column of the source survives, and every path still reaches its file."""
    from ceod.experiments.datasets import make_folds
    from ceod.data.manifest import derive_dataset, read_rows
    from ceod.experiments.active import _write_subset
    from ceod.segmenter.predict import predict_dataset
    source = read_rows(tiny_dataset)
    grouped = tmp_path / "grouped"
    derive_dataset(grouped, tiny_dataset, [{**r, "group": str(i // 2)} for i, r in enumerate(source)])
    predict_dataset(tiny_segmenter_run, tiny_dataset, tmp_path / "pred")
    make_folds(grouped, tmp_path / "folds", k=2)
    _write_subset(tiny_dataset, tmp_path / "subset", {0, 1, 2}, [3, 4], source)
    by_image = {r["image"]: r for r in source}
    for folder, extra in ((grouped, {"group"}), (tmp_path / "pred", set()), (tmp_path / "folds", {"group", "fold0", "fold1"}),
                          (tmp_path / "subset", set())):
        rows = read_rows(folder)
        assert set(rows[0]) == set(source[0]) | extra, folder
        for row in rows:
            original = by_image[row["image"].split("source/", 1)[-1].removeprefix("source/")]
            for column in ("defect_mask", "background"):
                assert bool(row[column]) == bool(original[column]), (folder, column)
                if row[column]:
                    assert (folder / row[column]).is_file(), (folder, row[column])
            assert row["shape"] == original["shape"] and row["distractor"] == original["distractor"]
        assert all((folder / r["image"]).is_file() for r in rows)
