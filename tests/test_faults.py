"""Fault suite: generated bad inputs for the dataset layer and `ceod inspect`. Every case must end
in a clear error (naming the row) or an error record - never a crash, never a silent skip."""

import csv
import io
import json
import shutil

import cv2
import numpy as np
import pytest

from ceod.data.manifest import DatasetError, read_manifest
from ceod.data.checks import check_dataset
from ceod.data.loading import load_split
from ceod.pipeline.inspect import Inspector


def bad_image_bytes(rng: np.random.Generator, good_png: bytes, good_jpg: bytes, tmp) -> list[tuple[str, bytes]]:
    """(kind, bytes) cases; each is not a usable image."""
    cases = [("zero_bytes", b"")]
    for n in (1, 7, 100, 5000):
        cases.append((f"random_{n}", rng.bytes(n)))
    for frac in (0.1, 0.5, 0.9):
        cases.append((f"truncated_png_{frac}", good_png[: int(len(good_png) * frac)]))
        cases.append((f"truncated_jpg_{frac}", good_jpg[: int(len(good_jpg) * frac)]))
    for w, h in ((100000, 100000), (2**31 - 1, 2), (9000, 9000)):
        png = bytearray(good_png)
        png[16:24] = w.to_bytes(4, "big") + h.to_bytes(4, "big")
        cases.append((f"huge_{w}x{h}", bytes(png)))
    bad_layout = bytearray(good_png)
    bad_layout[25] = 5  # IHDR colour type 5 does not exist (channel layout)
    cases.append(("invalid_colour_type", bytes(bad_layout)))
    bad_depth = bytearray(good_png)
    bad_depth[24] = 7  # bit depth 7 does not exist
    cases.append(("invalid_bit_depth", bytes(bad_depth)))
    cases.append(("text", b"hello, not an image\n" * 20))
    cases.append(("png_header_only", good_png[:33]))
    corrupt = bytearray(good_png)
    corrupt[60:200] = rng.bytes(140)
    cases.append(("png_corrupt_body", bytes(corrupt)))
    return cases


@pytest.fixture(scope="module")
def goods(tiny_dataset, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("goods")
    src = sorted((tiny_dataset / "images" / "train").rglob("*.png"))[0]
    png = src.read_bytes()
    ok, jpg = cv2.imencode(".jpg", cv2.imread(str(src)))
    return png, jpg.tobytes(), tmp


def test_dataset_layer_fuzz(tiny_dataset, tmp_path, goods):
    png, jpg, tmp = goods
    rng = np.random.default_rng(7)
    ds = tmp_path / "ds"
    shutil.copytree(tiny_dataset, ds)
    with (ds / "manifest.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    expected_bad = {}
    k = 0
    for kind, data in bad_image_bytes(rng, png, jpg, tmp):
        (ds / f"bad_{k}.img").write_bytes(data)
        rows[k]["image"] = f"bad_{k}.img"
        expected_bad[k + 1] = kind
        k += 1
    for kind in ("aoi_wrong_size", "aoi_random_bytes", "escape_dotdot", "escape_absolute", "missing",
                 "label_blank", "label_other", "aoi_missing"):
        r = rows[k]
        if kind == "aoi_wrong_size":
            cv2.imwrite(str(ds / f"aoi_{k}.png"), np.zeros((7, 9), np.uint8))
            r["aoi"] = f"aoi_{k}.png"
        elif kind == "aoi_random_bytes":
            (ds / f"aoi_{k}.png").write_bytes(rng.bytes(300))
            r["aoi"] = f"aoi_{k}.png"
        elif kind == "escape_dotdot":
            r["image"] = "../../../../etc/hostname"
        elif kind == "escape_absolute":
            r["aoi"] = "/etc/hostname"
        elif kind == "missing":
            r["image"] = "images/none.png"
        elif kind == "label_blank":
            r["label"] = ""
        elif kind == "label_other":
            r["label"] = "DEF"
        else:
            r["aoi"] = "aoi/none.png"
        expected_bad[k + 1] = kind
        k += 1
    with (ds / "manifest.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)

    report = check_dataset(ds, progress=False)
    found = {b.row: b for b in report.bad}
    silent = sorted(set(expected_bad) - set(found))
    unexpected = sorted(set(found) - set(expected_bad))
    good_rows = sum(c["ok"] + c["def"] for c in report.counts.values())
    print(f"dataset fuzz: {len(expected_bad)} bad cases, {len(found)} reported, silent skips {len(silent)}, "
          f"false alarms {len(unexpected)}, good rows kept {good_rows}/{len(rows) - len(expected_bad)}")
    assert not silent and not unexpected
    assert good_rows == len(rows) - len(expected_bad)  # nothing dropped silently
    for row, bad in found.items():
        assert f"manifest row {row}:" in str(bad) and bad.reason
    # the training path: raises naming a row, or skips with a count when asked
    with pytest.raises(DatasetError, match=r"manifest row \d+"):
        read_manifest(ds)
    m = read_manifest(ds, skip_bad=True)
    with pytest.raises(DatasetError, match=r"manifest row \d+: .*--skip-bad"):
        load_split(m.samples, 32, root=ds)
    assert len(load_split(m.samples, 32, skip_bad=True, root=ds)) == good_rows


def test_inspect_fuzz(exported, tmp_path, goods):
    png, jpg, tmp = goods
    rng = np.random.default_rng(11)
    folder = tmp_path / "in"
    folder.mkdir()
    cases = bad_image_bytes(rng, png, jpg, tmp)
    for i, (kind, data) in enumerate(cases):
        (folder / f"{i:03d}_{kind}.png").write_bytes(data)
    (folder / "999_good.png").write_bytes(png)
    log = tmp_path / "fuzz.jsonl"
    summary = Inspector(exported["classifier"], "cpu").run(str(folder), log, None, 4, live=False)
    records = {json.loads(line)["source"].rsplit("/", 1)[-1]: json.loads(line) for line in log.read_text().splitlines()}
    errors = [r for r in records.values() if r["status"] == "error"]
    print(f"inspect fuzz: {len(cases)} bad cases, {len(errors)} error records, "
          f"{len(cases) - len(errors)} silently accepted, 0 crashes")
    assert len(records) == len(cases) + 1 == summary.records
    assert all(r["reason"] for r in errors) and len(errors) == len(cases)
    assert records["999_good.png"]["status"] == "ok"


def test_ten_thousand_inputs_five_percent_bad(exported, tmp_path, goods):
    png, jpg, tmp = goods
    good = [tmp_path / f"g{i}.png" for i in range(4)]
    for p in good:
        p.write_bytes(png)
    bad = tmp_path / "bad.png"
    bad.write_bytes(png[:50])
    n, bad_every = 10_000, 20
    paths = [str(bad if i % bad_every == 0 else good[i % 4]) for i in range(n)]
    log = tmp_path / "big.csv"
    summary = Inspector(exported["classifier"], "cpu").run("-", log, None, 16, live=False,
                                                           stdin=io.StringIO("\n".join(paths)))
    with log.open() as fh:
        records = list(csv.DictReader(fh))
    print(f"inspect 10k: {len(records)} records, {summary.errors} errors, "
          f"{summary.as_dict()['throughput_per_s']:.0f} images/s")
    assert len(records) == n == summary.records
    assert summary.errors == n // bad_every == sum(r["status"] == "error" for r in records)
    assert [r["source"] for r in records] == paths  # one record per input, in input order
