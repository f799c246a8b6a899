"""Image decoding and the one preprocessing function shared by training and the line runtime."""

from __future__ import annotations

import os
import struct
from pathlib import Path

# Refuse images whose decoded size would exceed this many pixels (decompression bombs), and
# files larger than MAX_FILE_BYTES before reading them. The pixel limit is enforced from the
# header each format declares (`check_declared_size`), whatever the import order; OpenCV's own
# limit (an environment variable it reads once, at import) is set too where ceod imports cv2 first.
MAX_PIXELS = 64_000_000
MAX_FILE_BYTES = 256 * 2**20
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_PIXELS))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from ceod.contracts.errors import CeodError  # noqa: E402


class ImageDecodeError(CeodError, ValueError):
    """An input file is not a usable image; the message says why."""


def declared_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) as the file's header declares it, without decoding: PNG, JPEG, BMP, TIFF,
    WebP, GIF and more (the `imagesize` library reads headers only); None where it cannot tell."""
    import io

    import imagesize
    try:
        width, height = imagesize.get(io.BytesIO(data), exif_rotation=False)
    except Exception:  # noqa: BLE001 - a header it cannot parse: OpenCV decides below
        return None
    return (int(width), int(height)) if width >= 0 and height >= 0 else None


def check_declared_size(data: bytes) -> None:
    size = declared_size(data)
    if size is not None and size[0] * size[1] > MAX_PIXELS:
        raise ImageDecodeError(f"image declares {size[0]}x{size[1]} pixels (limit {MAX_PIXELS})")


def _imdecode(data: bytes) -> np.ndarray | None:
    """cv2.imdecode behind the guards: size from the header first, OpenCV's errors as ours."""
    if len(data) > MAX_FILE_BYTES:
        raise ImageDecodeError(f"file of {len(data)} bytes is over the {MAX_FILE_BYTES}-byte limit")
    check_declared_size(data)
    try:
        return cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise ImageDecodeError(f"OpenCV refused the image: {str(exc).strip().splitlines()[-1][:200]}") from None


def read_file(path: str | Path, what: str = "image") -> bytes:
    """A file's bytes, refusing one over MAX_FILE_BYTES before reading it."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ImageDecodeError(f"{what} {path} has {size} bytes, over the {MAX_FILE_BYTES}-byte limit")
        return path.read_bytes()
    except OSError as exc:
        raise ImageDecodeError(f"cannot read {what} {path}: {exc.strerror}") from None


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
    image = _imdecode(data)
    if image is None:
        raise ImageDecodeError("not a decodable image (corrupt, truncated, unsupported format or too large)")
    return to_rgb_uint8(image)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB uint8 [H,W,3] (size, header and decode guarded)."""
    return decode_image(read_file(path))


def read_mask(path: str | Path) -> np.ndarray:
    """Read a single-channel mask as uint8 {0,1} (>0 means inside)."""
    path = Path(path)
    data = read_file(path, "mask") if path.is_file() else b""
    if not data:
        raise ImageDecodeError(f"cannot read mask {path}")
    mask = _imdecode(data)
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
