"""One decode guard for every path: the declared size is read from the header
of every format before decoding, with cv2 imported first (OpenCV's own limit then never applies),
files over the size cap are refused unread, and OpenCV's exceptions become ceod's error."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

HUGE = 12000


def _encoded(ext: str) -> bytes:
    image = (np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)
    params = [cv2.IMWRITE_WEBP_QUALITY, 80] if ext == ".webp" else []  # lossy VP8
    ok, buf = cv2.imencode(ext, image, params)
    assert ok
    return bytes(buf)


def _jpeg(data: bytes) -> bytes:
    i = data.index(b"\xff\xc0")  # baseline SOF0: length, precision, height, width
    return data[:i + 5] + struct.pack(">HH", HUGE, HUGE) + data[i + 9:]


def _bmp(data: bytes) -> bytes:
    return data[:18] + struct.pack("<ii", HUGE, HUGE) + data[26:]


def _tiff(data: bytes) -> bytes:
    fmt = "<" if data[:2] == b"II" else ">"
    out = bytearray(data)
    ifd = struct.unpack(fmt + "I", data[4:8])[0]
    for k in range(struct.unpack(fmt + "H", data[ifd:ifd + 2])[0]):
        at = ifd + 2 + 12 * k
        tag, kind = struct.unpack(fmt + "HH", data[at:at + 4])
        if tag in (256, 257):  # ImageWidth, ImageLength
            out[at + 8:at + 12] = struct.pack(fmt + ("HH" if kind == 3 else "I"), *((HUGE, 0) if kind == 3 else (HUGE,)))
    return bytes(out)


def _webp(data: bytes) -> bytes:
    assert data[12:16] == b"VP8 "  # lossy: 14-bit width and height after the frame tag and start code
    return data[:26] + struct.pack("<HH", HUGE, HUGE) + data[30:]


def _png(data: bytes) -> bytes:
    return data[:16] + struct.pack(">II", HUGE, HUGE) + data[24:]


CRAFTED = {".jpg": _jpeg, ".bmp": _bmp, ".tiff": _tiff, ".webp": _webp, ".png": _png}


@pytest.mark.parametrize("ext", sorted(CRAFTED))
def test_a_huge_declared_size_is_refused_with_cv2_imported_first(ext, tmp_path):
    crafted = CRAFTED[ext](_encoded(ext))
    path = tmp_path / f"bomb{ext}"
    path.write_bytes(crafted)
    code = textwrap.dedent(f"""
        import cv2, json  # OpenCV first: its pixel limit is never set from ceod
        from ceod.data.imageio import ImageDecodeError, declared_size, read_image
        size = declared_size(open(r"{path}", "rb").read())
        try:
            read_image(r"{path}")
            print(json.dumps({{"size": size, "error": None}}))
        except ImageDecodeError as exc:
            print(json.dumps({{"size": size, "error": str(exc)}}))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["size"] == [HUGE, HUGE]
    assert out["error"] == f"image declares {HUGE}x{HUGE} pixels (limit 64000000)"


def test_the_unpatched_files_decode():
    from ceod.data.imageio import decode_image, declared_size
    for ext in CRAFTED:
        data = _encoded(ext)
        assert declared_size(data) == (64, 48), ext
        assert decode_image(data).shape == (48, 64, 3), ext


def test_a_file_over_the_cap_is_refused_unread(tmp_path, monkeypatch):
    import ceod.data.imageio as imageio
    path = tmp_path / "big.png"
    path.write_bytes(_encoded(".png"))
    monkeypatch.setattr(imageio, "MAX_FILE_BYTES", 100)  # the cap, not the reader, is what changes
    with pytest.raises(imageio.ImageDecodeError, match="over the 100-byte limit"):
        imageio.read_image(path)
    with pytest.raises(imageio.ImageDecodeError, match="over the 100-byte limit"):
        imageio.read_mask(path)


def test_opencvs_own_refusal_is_an_image_error_not_a_traceback(tmp_path):
    path = tmp_path / "ok.png"
    path.write_bytes(_encoded(".png"))
    code = textwrap.dedent(f"""
        from ceod.data.imageio import ImageDecodeError, read_image
        try:
            read_image(r"{path}")
            print("decoded")
        except ImageDecodeError as exc:
            print("refused:", exc)
    """)
    env = {**__import__("os").environ, "OPENCV_IO_MAX_IMAGE_PIXELS": "100"}  # OpenCV refuses 64x48 itself
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0 and r.stdout.startswith("refused:"), r.stdout + r.stderr


def test_inspect_and_data_check_name_the_bomb(tmp_path, tiny_dataset):
    import csv
    import shutil
    from ceod.data.checks import check_dataset
    ds = tmp_path / "ds"
    shutil.copytree(tiny_dataset, ds)
    rows = list(csv.DictReader((ds / "manifest.csv").open()))
    target = ds / rows[0]["image"]
    target.write_bytes(_jpeg(_encoded(".jpg")))
    report = check_dataset(ds, progress=False)
    assert [b.row for b in report.bad] == [1] and f"declares {HUGE}x{HUGE}" in str(report.bad[0])
