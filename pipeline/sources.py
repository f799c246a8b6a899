"""Where `ceod inspect` takes its inputs: a folder, a glob, a video, a camera or paths on stdin,
each input as (source id, payload), decoded by the guarded image decoder. No torch."""

from __future__ import annotations

import glob
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from ceod.contracts.errors import CeodError
from ceod.data.imageio import ImageDecodeError, decode_image, read_file

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm"}


@dataclass
class Item:
    source: str
    image: np.ndarray | None
    error: str | None
    t0: float  # when decoding started (latency counts from here)


def iter_source(src: str, stdin=None) -> Iterator[tuple[str, Any]]:
    """(source id, payload): payload is bytes for files, an ndarray for frames, or an Exception."""
    if src == "-":
        for line in (stdin or sys.stdin):
            path = line.strip()
            if path:
                yield path, _read_bytes(path)
        return
    if src.startswith("camera:"):
        index = camera_index(src)
        yield from _frames(index, f"camera{index}", camera=True)
        return
    p = Path(src)
    if p.is_dir():
        yield from _folder(p)
        return
    if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES:
        yield from _frames(str(p), p.name)
        return
    if p.is_file():
        yield str(p), _read_bytes(p)
        return
    if any(c in src for c in "*?["):
        for f in sorted(glob.glob(src, recursive=True)):
            if Path(f).is_dir():  # a folder the pattern matched is walked, never skipped silently
                yield from _folder(Path(f))
            elif Path(f).is_file():
                yield f, _read_bytes(f)
        return
    raise FileNotFoundError(f"--source {src}: not a folder, file, video, glob, camera:N or '-'")


def camera_index(src: str) -> int:
    value = src.split(":", 1)[1]
    if not value.isdigit():
        raise CeodError(f"--source {src}: a camera is camera:N with N a device number (camera:0)")
    return int(value)


def check_source(src: str) -> None:
    """Fail before any model loads when --source names a path or camera that is not there."""
    if src.startswith("camera:"):
        camera_index(src)
        return
    if src == "-" or any(c in src for c in "*?[") or Path(src).exists():
        return
    raise FileNotFoundError(f"--source {src}: not a folder, file, video, glob, camera:N or '-'")


def _folder(folder: Path) -> Iterator[tuple[str, Any]]:
    """Every file under a folder, sorted, hidden files left out. Linked subfolders are followed
    (a line's folder is often assembled from links), each real folder once: a link back up the
    tree is not walked again."""
    seen: set[str] = set()
    files: list[str] = []
    for top, dirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        files += [os.path.join(top, n) for n in names if not n.startswith(".") and os.path.isfile(os.path.join(top, n))]
    for f in sorted(files):
        yield f, _read_bytes(f)


def _read_bytes(path) -> Any:
    try:
        return read_file(path)
    except ImageDecodeError as exc:
        return exc


def _frames(device, name: str, camera: bool = False) -> Iterator[tuple[str, Any]]:
    if camera:  # OpenCV prints a warning per backend it tries; the error below says it in one line
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    cap = cv2.VideoCapture(device)
    if not cap.isOpened():
        if camera:  # nothing to inspect at all: a configuration error, not one bad input
            raise CeodError(f"--source camera:{device}: no camera opens at that number")
        yield name, ImageDecodeError("cannot open video/camera")
        return
    index = 0
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            yield f"{name}#{index}", frame
            index += 1
    finally:
        cap.release()


def decode_item(sid: str, payload: Any, t0: float) -> Item:
    """One input decoded, or its error: one bad input never ends the run."""
    try:
        return Item(sid, _decode(payload), None, t0)
    except ImageDecodeError as exc:
        return Item(sid, None, str(exc), t0)
    except Exception as exc:  # noqa: BLE001
        return Item(sid, None, f"{type(exc).__name__}: {exc}", t0)


def _decode(payload: Any) -> np.ndarray:
    if isinstance(payload, Exception):
        raise payload
    if isinstance(payload, np.ndarray):  # a BGR video frame
        return cv2.cvtColor(payload, cv2.COLOR_BGR2RGB)
    return decode_image(payload)
