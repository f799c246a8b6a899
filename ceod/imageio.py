"""Image decoding and the one preprocessing function shared by training and the line runtime."""

from __future__ import annotations

import os
import struct
from pathlib import Path

# Refuse images whose decoded size would exceed this many pixels (decompression bombs);
# OpenCV reads this variable once, so it is set before cv2 is imported anywhere in ceod.
MAX_PIXELS = 64_000_000
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_PIXELS))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from ceod.errors import CeodError  # noqa: E402


class ImageDecodeError(CeodError, ValueError):
    """An input file is not a usable image; the message says why."""


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Normalise grayscale / BGR / BGRA / 16-bit / float decodes to 3-channel RGB uint8."""
    if image is None or image.size == 0:
        raise ImageDecodeError("empty image")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype in (np.float32, np.float64):
        image = np.clip(image * (255.0 if image.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ImageDecodeError(f"unsupported pixel type {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.ndim == 3 and image.shape[2] == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2RGB)
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    raise ImageDecodeError(f"unsupported image shape {image.shape}")


def decode_image(data: bytes) -> np.ndarray:
    """Decode encoded image bytes to RGB uint8, refusing empty, corrupt and oversized files."""
    if len(data) == 0:
        raise ImageDecodeError("zero-byte file")
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        if width * height > MAX_PIXELS:
            raise ImageDecodeError(f"image declares {width}x{height} pixels (limit {MAX_PIXELS})")
    if data[:2] == b"\xff\xd8" and data.rstrip(b"\x00\r\n ")[-2:] != b"\xff\xd9":
        # OpenCV decodes a cut-off JPEG into a half-grey picture with only a warning.
        raise ImageDecodeError("truncated JPEG (no end-of-image marker)")
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImageDecodeError("not a decodable image (corrupt, truncated, unsupported format or too large)")
    return to_rgb_uint8(image)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB uint8 [H,W,3]."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageDecodeError(f"cannot read {path}: {exc.strerror}") from None
    return decode_image(data)


def read_mask(path: str | Path) -> np.ndarray:
    """Read a single-channel mask as uint8 {0,1} (>0 means inside)."""
    path = Path(path)
    data = np.fromfile(str(path), dtype=np.uint8) if path.is_file() else None
    if data is None or data.size == 0:
        raise ImageDecodeError(f"cannot read mask {path}")
    mask = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise ImageDecodeError(f"mask {path} is not a decodable image")
    if mask.ndim == 3:
        mask = mask.max(axis=2)
    return (mask > 0).astype(np.uint8)


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Resize to size x size the way both training and the runtime do (area for shrinking)."""
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image
    interp = cv2.INTER_AREA if min(h, w) > size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interp)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Resize a {0,1} mask with nearest neighbour so it stays binary."""
    if mask.shape[:2] == (size, size):
        return mask
    return cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST)


def normalize(images: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """RGB uint8 [N,H,W,3] (already at model size) -> float32 NCHW, (x/255 - mean) / std."""
    x = images.astype(np.float32) / 255.0
    x -= np.asarray(mean, dtype=np.float32)
    x /= np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def preprocess(images: list[np.ndarray], size: int, mean: tuple[float, ...],
               std: tuple[float, ...]) -> np.ndarray:
    """The model input for a list of RGB uint8 images: resize, scale, normalise, NCHW."""
    batch = np.stack([resize_image(im, size) for im in images])
    return normalize(batch, mean, std)
