"""`ceod inspect`: the line runtime. Sources -> bounded decode queue -> batched ONNX inference -> log.

Imports numpy, OpenCV and onnxruntime only (never torch). Every input gets exactly one record;
a bad input gets an error record and the run goes on.
"""

from __future__ import annotations

import csv
import glob
import json
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from ceod.classes import ANOMALY_CLASSES
from ceod.errors import CeodError
from ceod.imageio import ImageDecodeError, decode_image, read_file
from ceod.metrics import percentiles_ms
from ceod.export.runtime import OnnxModel, classify

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm"}
_END = object()


@dataclass
class Item:
    source: str
    image: np.ndarray | None
    error: str | None
    t0: float  # when decoding started (latency counts from here)


@dataclass
class Summary:
    records: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)  # class name -> records with that verdict
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    providers: list[str] = field(default_factory=list)
    interrupted: bool = False

    def as_dict(self) -> dict[str, Any]:
        seconds = time.perf_counter() - self.started
        return {"records": self.records, **{k: self.verdicts.get(k, 0) for k in ANOMALY_CLASSES},
                "verdicts": dict(self.verdicts), "errors": self.errors,
                **percentiles_ms(self.latencies), "seconds": round(seconds, 3),
                "throughput_per_s": self.records / seconds if seconds > 0 else 0.0,
                "providers": self.providers, "interrupted": self.interrupted}


# ---------------------------------------------------------------- sources

def iter_source(src: str, stdin=None) -> Iterator[tuple[str, Any]]:
    """(source id, payload): payload is bytes for files, an ndarray for frames, or an Exception."""
    if src == "-":
        for line in (stdin or sys.stdin):
            path = line.strip()
            if path:
                yield path, _read_bytes(path)
        return
    if src.startswith("camera:"):
        yield from _frames(int(src.split(":", 1)[1]), f"camera{src.split(':', 1)[1]}")
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


def check_source(src: str) -> None:
    """Fail before any model loads when --source names a path that is not there."""
    if src == "-" or src.startswith("camera:") or any(c in src for c in "*?[") or Path(src).exists():
        return
    raise FileNotFoundError(f"--source {src}: not a folder, file, video, glob, camera:N or '-'")


def _folder(folder: Path) -> Iterator[tuple[str, Any]]:
    """Every file under a folder, sorted, hidden files left out."""
    for f in sorted(x for x in folder.rglob("*") if x.is_file() and not x.name.startswith(".")):
        yield str(f), _read_bytes(f)


def _read_bytes(path) -> Any:
    try:
        return read_file(path)
    except ImageDecodeError as exc:
        return exc


def _frames(device, name: str) -> Iterator[tuple[str, Any]]:
    cap = cv2.VideoCapture(device)
    if not cap.isOpened():
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


def _decode(payload: Any) -> np.ndarray:
    if isinstance(payload, Exception):
        raise payload
    if isinstance(payload, np.ndarray):  # a BGR video frame
        return cv2.cvtColor(payload, cv2.COLOR_BGR2RGB)
    return decode_image(payload)


# ---------------------------------------------------------------- log

class EmptySourceError(CeodError):
    """The source yielded no input: a typo in a line's configuration must not look like an idle line."""

    exit_code = 1


class RecordLog:
    """JSON lines or CSV, flushed after every batch so a crash or Ctrl-C loses nothing written.
    `-` writes JSON lines to stdout (the records are all stdout carries); None writes nothing."""

    FIELDS = ["time", "source", "verdict", "score", "latency_ms", "status", "reason", "model"]

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path and str(path) != "-" else None
        self.fh = None
        self.csv = None
        if str(path) == "-":
            self.fh = sys.stdout
        elif self.path:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.fh = self.path.open("w", newline="")
            except OSError as exc:
                raise CeodError(f"cannot write the log {self.path}: {exc.strerror}; choose a writable --log") from None
            self.csv = csv.DictWriter(self.fh, self.FIELDS) if self.path.suffix == ".csv" else None
            if self.csv:
                self.csv.writeheader()

    def write(self, record: dict[str, Any]) -> None:
        if self.fh is None:
            return
        if self.csv:
            self.csv.writerow(record)
        else:
            self.fh.write(json.dumps(record) + "\n")

    def flush(self) -> None:
        if self.fh:
            self.fh.flush()

    def close(self) -> None:
        if self.fh and self.fh is not sys.stdout:
            self.fh.close()


# ---------------------------------------------------------------- the run

class Inspector:
    """Holds the sessions; `run` consumes a source and writes records.

    Latency of a record counts from the start of its decode to its verdict, so it includes any
    time spent waiting in the queue behind a backlog (what a line system experiences).
    """

    def __init__(self, model: str | Path, provider: str = "auto", threshold: float | None = None,
                 segmenter: str | Path | None = None, threads: int = 0) -> None:
        self.model = OnnxModel(model, provider, threads)
        if self.model.info.kind != "classifier":
            raise CeodError(f"{model} is a {self.model.info.kind} model; --model takes a classifier")
        if threshold is not None and not (np.isfinite(threshold) and 0.0 <= threshold <= 1.0):
            raise CeodError(f"--threshold {threshold}: a number in [0, 1]")
        self.threshold = self.model.info.threshold if threshold is None else threshold
        self.model_id = self.model.identity  # which model judged each part, in every record
        self.segmenter = OnnxModel(segmenter, provider, threads) if segmenter else None

    def infer(self, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Scores, verdicts (class indices) and heatmaps (or None) for RGB uint8 images."""
        x = self.model.prepare(images)
        if self.segmenter is not None:
            # Two-stage alternative: segment, then blank the outside of the AOI (mean colour = 0).
            aoi = self.segmenter.run(images)["aoi_logits"][:, 0] > 0
            s = self.model.info.input_size
            if aoi.shape[-1] != s:
                aoi = np.stack([cv2.resize(m.astype(np.uint8), (s, s), interpolation=cv2.INTER_NEAREST) > 0
                                for m in aoi])
            x = x * aoi[:, None]
        outputs = self.model.run_tensor(x)
        scores, verdicts = classify(self.model, outputs, self.threshold)
        return scores, verdicts, outputs.get("heatmap")

    def run(self, source: str, log_path: str | Path | None = None, overlays: str | Path | None = None,
            batch: int = 1, live: bool = True, stdin=None, queue_size: int = 64,
            decoders: int = 2) -> Summary:
        log = RecordLog(log_path)
        summary = Summary(providers=self.model.providers)
        q: queue.Queue = queue.Queue(maxsize=queue_size)
        stop = threading.Event()
        producer_error: list[BaseException] = []

        def decode(sid: str, payload: Any) -> Item:
            t0 = time.perf_counter()
            try:
                return Item(sid, _decode(payload), None, t0)
            except ImageDecodeError as exc:
                return Item(sid, None, str(exc), t0)
            except Exception as exc:  # noqa: BLE001 - one bad input never ends the run
                return Item(sid, None, f"{type(exc).__name__}: {exc}", t0)

        def put(item: Item) -> bool:
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.2)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            # Decoding runs on `decoders` threads (OpenCV releases the GIL); records keep input order.
            from collections import deque
            from concurrent.futures import ThreadPoolExecutor
            try:
                with ThreadPoolExecutor(max_workers=decoders, thread_name_prefix="ceod-decode") as pool:
                    window: deque = deque()
                    for sid, payload in iter_source(source, stdin):
                        if stop.is_set():
                            break
                        window.append(pool.submit(decode, sid, payload))
                        if len(window) >= 2 * decoders and not put(window.popleft().result()):
                            break
                    while window and not stop.is_set():
                        put(window.popleft().result())
            except BaseException as exc:  # noqa: BLE001
                producer_error.append(exc)
            finally:
                q.put(_END)

        thread = threading.Thread(target=produce, daemon=True, name="ceod-decode")
        thread.start()
        overlay_dir = Path(overlays) if overlays else None
        if overlay_dir:
            overlay_dir.mkdir(parents=True, exist_ok=True)
        last_print = time.perf_counter()
        pending: list[Item] = []
        try:
            done = False
            while not done:
                item = q.get()
                if item is _END:
                    done = True
                else:
                    pending.append(item)
                    # take what is already decoded, up to the batch size, without waiting
                    while len(pending) < batch:
                        try:
                            nxt = q.get_nowait()
                        except queue.Empty:
                            break
                        if nxt is _END:
                            done = True
                            break
                        pending.append(nxt)
                if pending:
                    self._process(pending, log, summary, overlay_dir)
                    pending = []
                if live and time.perf_counter() - last_print > 2.0:
                    rate = summary.records / (time.perf_counter() - summary.started)
                    print(f"\r{summary.records} inspected, {summary.errors} errors, {rate:.1f}/s",
                          end="", file=sys.stderr, flush=True)
                    last_print = time.perf_counter()
        except KeyboardInterrupt:
            summary.interrupted = True
            stop.set()
            if pending:
                self._process(pending, log, summary, overlay_dir)
        finally:
            stop.set()
            log.flush()
            log.close()
            if live and summary.records:
                print("", file=sys.stderr)
        if producer_error and not isinstance(producer_error[0], KeyboardInterrupt):
            raise producer_error[0]
        if summary.records == 0 and not summary.interrupted:
            raise EmptySourceError(f"--source {source}: no input (no file, frame or path matched); check the "
                                   "folder, pattern or camera")
        return summary

    def _process(self, items: list[Item], log: RecordLog, summary: Summary, overlay_dir: Path | None) -> None:
        good = [it for it in items if it.image is not None]
        results: dict[int, tuple[float, int, np.ndarray | None]] = {}
        names = self.model.info.class_names
        failure: str | None = None
        if good:
            try:
                scores, verdicts, heatmaps = self.infer([it.image for it in good])
                for k, it in enumerate(good):
                    results[id(it)] = (float(scores[k]), int(verdicts[k]),
                                       None if heatmaps is None else heatmaps[k, 0])
            except Exception as exc:  # noqa: BLE001 - e.g. an image too large for memory
                failure = f"{type(exc).__name__}: {str(exc)[:200]}"
        now = time.perf_counter()
        stamp = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        for it in items:
            latency = (now - it.t0) * 1000
            if it.image is not None and id(it) in results and not np.isfinite(results[id(it)][0]):
                results.pop(id(it))  # NaN compares false with the threshold: never a verdict
                it.error = "non-finite score"
            if it.image is not None and id(it) in results:
                score, verdict, heat = results[id(it)]
                record = {"time": stamp, "source": it.source, "verdict": names[verdict],
                          "score": round(score, 6), "latency_ms": round(latency, 3), "status": "ok", "reason": "",
                          "model": self.model_id}
                summary.verdicts[names[verdict]] = summary.verdicts.get(names[verdict], 0) + 1
                summary.latencies.append(latency / 1000)
                if overlay_dir is not None:
                    self._overlay(overlay_dir, summary.records, it, record, heat)
            else:
                record = {"time": stamp, "source": it.source, "verdict": None, "score": None,
                          "latency_ms": round(latency, 3), "status": "error", "reason": it.error or failure,
                          "model": self.model_id}
                summary.errors += 1
            summary.records += 1
            log.write(record)
        log.flush()

    def _overlay(self, folder: Path, index: int, item: Item, record: dict, heat: np.ndarray | None) -> None:
        from ceod.overlay import draw_overlay, save_rgb
        s = self.model.info.input_size
        small = cv2.resize(item.image, (s, s), interpolation=cv2.INTER_AREA)
        text = f"{record['verdict']} {record['score']:.2f}"
        save_rgb(folder / f"{index:06d}_{record['verdict']}.png",
                 draw_overlay(small, None, heat, text, colour=(255, 40, 40)))


def format_summary(s: dict[str, Any]) -> str:
    counts = ", ".join(f"{n} {name}" for name, n in sorted(s["verdicts"].items())) or "no verdicts"
    return (f"{s['records']} records: {counts}, {s['errors']} errors; latency p50 "
            f"{s['p50_ms']:.2f} ms, p95 {s['p95_ms']:.2f} ms, p99 {s['p99_ms']:.2f} ms; "
            f"{s['throughput_per_s']:.1f} images/s; providers {s['providers']}"
            + ("; interrupted" if s["interrupted"] else ""))
