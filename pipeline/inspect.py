"""`ceod inspect`: the line runtime. Sources -> bounded decode queue -> batched ONNX inference -> log.

Imports numpy, OpenCV and onnxruntime only (never torch). Every input gets exactly one record;
a bad input gets an error record and the run goes on.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ceod.contracts.classes import ANOMALY_CLASSES
from ceod.contracts.errors import CeodError
from ceod.data.imageio import resize_image
from ceod.contracts.metrics import percentiles_ms
from ceod.export.runtime import OnnxModel, classify
from ceod.pipeline.records import LogWriteError, RecordLog
from ceod.pipeline.sources import Item, check_source, decode_item, iter_source

__all__ = ["EmptySourceError", "Inspector", "RecordLog", "Summary", "check_source", "format_summary"]


@dataclass
class Summary:
    records: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)  # class name -> records with that verdict
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    providers: list[str] = field(default_factory=list)
    interrupted: str | None = None  # the signal that stopped the run (SIGINT, SIGTERM)
    overlay_failures: int = 0
    taken: int = 0  # inputs taken from the source: each gets exactly one record
    skipped: int = 0  # taken but not judged (interrupted, or the source failed)
    failure: str | None = None
    drift_alarms: int = 0

    def as_dict(self) -> dict[str, Any]:
        seconds = time.perf_counter() - self.started
        return {"records": self.records, **{k: self.verdicts.get(k, 0) for k in ANOMALY_CLASSES},
                "verdicts": dict(self.verdicts), "errors": self.errors,
                **percentiles_ms(self.latencies), "seconds": round(seconds, 3),
                "throughput_per_s": self.records / seconds if seconds > 0 else 0.0,
                "providers": self.providers, "interrupted": self.interrupted,
                "overlay_failures": self.overlay_failures, "taken": self.taken, "skipped": self.skipped,
                "failure": self.failure, "drift_alarms": self.drift_alarms}


class EmptySourceError(CeodError):
    """The source yielded no input: a typo in a line's configuration must not look like an idle line."""

    exit_code = 1


def _print_rate(summary: "Summary") -> float:
    """The live rate on stderr (one line, rewritten); returns when it was printed."""
    rate = summary.records / (time.perf_counter() - summary.started)
    print(f"\r{summary.records} inspected, {summary.errors} errors, {rate:.1f}/s", end="", file=sys.stderr, flush=True)
    return time.perf_counter()


class _Intake:
    """The source side of a run: a reader thread takes inputs (at most `queue_size` ahead) and
    hands them to `decoders` decoding threads; the inspecting thread takes batches of the oldest
    with `next_batch` and gives their slots back with `release`. Every input taken is either
    released after its records are written or returned by `close` to be recorded as skipped."""

    def __init__(self, source: str, stdin, summary: Summary, queue_size: int, decoders: int) -> None:
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor
        self.source, self.stdin, self.summary = source, stdin, summary
        self.lock = threading.Lock()
        self.wake = threading.Condition(self.lock)
        self.taken: deque = deque()  # Futures of Items, in input order, taken and not yet recorded
        self.closed = self.done = False
        self.error: BaseException | None = None
        self.slots = threading.Semaphore(queue_size)
        self.stop = threading.Event()
        self.pool = ThreadPoolExecutor(max_workers=decoders, thread_name_prefix="ceod-decode")

    def start(self) -> None:
        threading.Thread(target=self._read, daemon=True, name="ceod-read").start()

    def _read(self) -> None:
        try:
            inputs = iter_source(self.source, self.stdin)
            while not self.stop.is_set():
                if not self.slots.acquire(timeout=0.1):
                    continue
                try:
                    sid, payload = next(inputs)
                except StopIteration:
                    break
                t0 = time.perf_counter()
                with self.lock:
                    if self.closed:  # taken after the run closed: not ours to record
                        break
                    future = self.pool.submit(decode_item, sid, payload, t0)
                    future.source_id = sid  # for its record if it is never decoded
                    self.taken.append(future)
                    self.summary.taken += 1
                    self.wake.notify_all()
        except BaseException as exc:  # noqa: BLE001 - reported by the run, never lost
            with self.lock:
                self.error = exc
        finally:
            with self.lock:
                self.done = True
                self.wake.notify_all()

    def next_batch(self, batch: int, max_wait_ms: float, received: list[int]) -> list | None:
        """The oldest taken inputs, up to `batch`, waiting at most `max_wait_ms` for more after the
        first; None once the source is exhausted or a signal came."""
        with self.lock:
            while not self.taken and not self.done and not received:
                self.wake.wait(0.1)
            if received or not self.taken:
                return None
            count, deadline = 1, time.perf_counter() + max_wait_ms / 1000
            while count < batch and not received:
                if len(self.taken) > count:
                    count = min(len(self.taken), batch)
                    continue
                remaining = deadline - time.perf_counter()
                if self.done or remaining <= 0:
                    break
                self.wake.wait(remaining)
            return [self.taken[k] for k in range(count)]

    def release(self, count: int) -> None:
        """The oldest `count` inputs are recorded: their queue slots go back to the reader."""
        with self.lock:
            for _ in range(count):
                self.taken.popleft()
                self.slots.release()

    def close(self) -> tuple[list, BaseException | None]:
        """Stop reading; the inputs taken and not recorded, and the reader's error (or None)."""
        self.stop.set()
        with self.lock:
            self.closed = True
            rest = list(self.taken)
            self.taken.clear()
        self.pool.shutdown(wait=False, cancel_futures=True)
        return rest, self.error


# ---------------------------------------------------------------- the run

class Inspector:
    """Holds the sessions; `run` consumes a source and writes records.

    Latency of a record counts from the start of its decode to its verdict, so it includes any
    time spent waiting in the queue behind a backlog (what a line system experiences).
    """

    def __init__(self, model: str | Path, provider: str = "auto", threshold: float | None = None,
                 segmenter: str | Path | None = None, threads: int = 0, watch: str | Path | None = None,
                 watch_every: int = 10, watch_budget: float | None = None, watch_alpha: float = 0.01,
                 watch_queue: int = 4) -> None:
        self.model = OnnxModel(model, provider, threads)
        if self.model.info.kind != "classifier":
            raise CeodError(f"{model} is a {self.model.info.kind} model; --model takes a classifier")
        if threshold is not None and not (np.isfinite(threshold) and 0.0 <= threshold <= 1.0):
            raise CeodError(f"--threshold {threshold}: a number in [0, 1]")
        self.threshold = self.model.info.threshold if threshold is None else threshold
        self.model_id = self.model.identity  # which model judged each part, in every record
        self.segmenter = OnnxModel(segmenter, provider, threads) if segmenter else None
        self.watch_setup = None
        if watch:
            from ceod.pipeline.watch import prepare_watch
            self.watch_setup = prepare_watch(self.model, watch, provider, watch_every, watch_budget, watch_alpha,
                                             watch_queue)
        self.watcher = None  # the drift watch of the current run

    def infer(self, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Scores, verdicts (class indices) and heatmaps (or None) for RGB uint8 images."""
        scores, verdicts, outputs, _ = self._infer(images)
        return scores, verdicts, outputs.get("heatmap")

    def _infer(self, images: list[np.ndarray]
               ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], list[np.ndarray] | None]:
        """Scores, verdicts, every model output and, with the watch on, the images at model size
        (the model's own resize, kept for the watch's every-frame statistics)."""
        small = None
        if self.watcher is not None:
            small = [resize_image(im, self.model.info.input_size) for im in images]
        x = self.model.prepare(images if small is None else small)
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
        return scores, verdicts, outputs, small

    def run(self, source: str, log_path: str | Path | None = None, overlays: str | Path | None = None,
            batch: int = 1, live: bool = True, stdin=None, queue_size: int = 64,
            decoders: int = 2, max_wait_ms: float = 50.0, watch_report: str | Path | None = None) -> Summary:
        """Inspect every input of `source`; exactly one record per input taken from it.

        A reader thread takes inputs (at most `queue_size` ahead) and hands them to `decoders`
        decoding threads; this thread forms a batch from the oldest inputs, waiting at most
        `max_wait_ms` for more to arrive, and writes the records in input order. SIGINT and
        SIGTERM (where this runs on the main thread) finish the batch in hand, once; every input
        taken but not judged then gets a `skipped` record (reason `interrupted`), and the
        summary says which signal came (the CLI exits 130 / 143). A failing reader is handled
        the same way (reason `source failed`; the CLI exits 1).

        With the drift watch on (`watch=` at construction), alarms go into the same log as
        `drift` records and to stderr, and `watch_report` gets watch.json and watch.html."""
        report_dir = self._start_watch(watch_report)
        log = RecordLog(log_path)
        summary = Summary(providers=self.model.providers)
        overlay_dir = Path(overlays) if overlays else None
        if overlay_dir:
            overlay_dir.mkdir(parents=True, exist_ok=True)
        intake = _Intake(source, stdin, summary, queue_size, decoders)
        received: list[int] = []
        restore = self._catch_signals(received, intake.stop, intake.wake)
        intake.start()
        last_print = time.perf_counter()
        try:
            while (futures := intake.next_batch(batch, max_wait_ms, received)) is not None:
                items = [f.result() for f in futures]
                self._process(items, log, summary, overlay_dir)  # a batch in hand is finished, once
                intake.release(len(futures))
                if live and time.perf_counter() - last_print > 2.0:
                    last_print = _print_rate(summary)
        finally:
            rest, error = intake.close()
            reason = "interrupted" if received else (
                f"source failed: {type(error).__name__}: {str(error)[:120]}" if error else "not judged")
            self._skip(rest, reason, log, summary)
            restore()
            self._finish_watch(log, summary, report_dir)
            log.flush()
            log.close()
            if live and summary.records:
                print("", file=sys.stderr)
        if received:
            summary.interrupted = signal.Signals(received[0]).name
        elif isinstance(error, CeodError):
            raise error
        elif error is not None:
            summary.failure = f"the source failed: {type(error).__name__}: {str(error)[:200]}"
        if summary.records == 0 and not summary.interrupted and summary.failure is None:
            raise EmptySourceError(f"--source {source}: no input (no file, frame or path matched); check the "
                                   "folder, pattern or camera")
        return summary

    def _start_watch(self, watch_report: str | Path | None) -> Path | None:
        """A fresh drift watch for this run (where the inspector has one); the report folder,
        refused now if it holds files the watch did not write."""
        if self.watch_setup is None:
            return None
        from ceod.pipeline.watch import Watcher, check_report_folder
        report_dir = Path(watch_report) if watch_report else None
        if report_dir is not None:
            check_report_folder(report_dir)
        self.watcher = Watcher(self.model, self.watch_setup)
        return report_dir

    def _finish_watch(self, log: RecordLog, summary: Summary, report_dir: Path | None) -> None:
        """The watch's last frames and samples measured, its alarms logged, its report written."""
        if self.watcher is None:
            return
        self.watcher.close()
        try:
            self._drift(log, summary)
        except LogWriteError:
            pass  # the run is already failing on this log; the alarms are in the report
        if report_dir is not None:
            from ceod.pipeline.watch import write_report
            write_report(report_dir, self.watcher)

    @staticmethod
    def _catch_signals(received: list[int], stop: threading.Event, wake: threading.Condition):
        """SIGINT / SIGTERM set a flag the run loop reads between batches (never mid-record);
        returns a function that puts the previous handlers back. Only the main thread can."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def handler(signum, _frame) -> None:
            received.append(signum)
            stop.set()

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}

        def restore() -> None:
            for sig, old in previous.items():
                signal.signal(sig, old)
        return restore

    def _skip(self, futures: list, reason: str, log: RecordLog, summary: Summary) -> None:
        """A `skipped` record for every input taken but not judged."""
        stamp = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        for future in futures:
            item = future.result() if future.done() and not future.cancelled() else None
            sid = item.source if item is not None else future.source_id
            log.write({"time": stamp, "source": sid, "verdict": None, "score": None, "latency_ms": None,
                       "status": "skipped", "reason": reason, "model": self.model_id})
            summary.records += 1
            summary.skipped += 1

    def _process(self, items: list[Item], log: RecordLog, summary: Summary, overlay_dir: Path | None) -> None:
        good = [it for it in items if it.image is not None]
        results: dict[int, tuple[float, int, np.ndarray | None, np.ndarray | None, np.ndarray | None]] = {}
        names = self.model.info.class_names
        failure: str | None = None
        if good:
            try:
                scores, verdicts, outputs, small = self._infer([it.image for it in good])
                heatmaps, features = outputs.get("heatmap"), outputs.get("features")
                for k, it in enumerate(good):
                    results[id(it)] = (float(scores[k]), int(verdicts[k]),
                                       None if heatmaps is None else heatmaps[k, 0],
                                       None if features is None else features[k],
                                       None if small is None else small[k])
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
                score, verdict, heat, feats, small = results[id(it)]
                record = {"time": stamp, "source": it.source, "verdict": names[verdict],
                          "score": round(score, 6), "latency_ms": round(latency, 3), "status": "ok", "reason": "",
                          "model": self.model_id}
                summary.verdicts[names[verdict]] = summary.verdicts.get(names[verdict], 0) + 1
                summary.latencies.append(latency / 1000)
                if overlay_dir is not None and not self._overlay(overlay_dir, summary.records, it, record, heat):
                    summary.overlay_failures += 1
                if self.watcher is not None:
                    self.watcher.frame(summary.records, it.source, it.image, small, score, verdict, heat, feats)
            else:
                record = {"time": stamp, "source": it.source, "verdict": None, "score": None,
                          "latency_ms": round(latency, 3), "status": "error", "reason": it.error or failure,
                          "model": self.model_id}
                summary.errors += 1
            summary.records += 1
            log.write(record)
        log.flush()
        if self.watcher is not None:
            self.watcher.records_written()
            self._drift(log, summary)
            log.flush()

    def _drift(self, log: RecordLog, summary: Summary) -> None:
        """The watch's new alarms: a `drift` record each in the log, and one line on stderr."""
        if not self.watcher.pending:  # read without the lock: a late alarm waits for the next batch
            return
        from ceod.pipeline.watch import announce, drift_record
        stamp = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        for alarm in self.watcher.drain():
            announce(alarm)
            log.write(drift_record(alarm, self.model_id, stamp))
            summary.drift_alarms += 1

    def _overlay(self, folder: Path, index: int, item: Item, record: dict, heat: np.ndarray | None) -> bool:
        """Write one overlay; False (counted in the summary) when the file could not be written."""
        from ceod.data.overlay import draw_overlay, save_rgb
        s = self.model.info.input_size
        small = cv2.resize(item.image, (s, s), interpolation=cv2.INTER_AREA)
        text = f"{record['verdict']} {record['score']:.2f}"
        try:
            save_rgb(folder / f"{index:06d}_{record['verdict']}.png",
                     draw_overlay(small, None, heat, text, colour=(255, 40, 40)))
        except (OSError, CeodError, cv2.error):
            return False
        return True


def format_summary(s: dict[str, Any]) -> str:
    counts = ", ".join(f"{n} {name}" for name, n in sorted(s["verdicts"].items())) or "no verdicts"
    return (f"{s['records']} records: {counts}, {s['errors']} errors; latency p50 "
            f"{s['p50_ms']:.2f} ms, p95 {s['p95_ms']:.2f} ms, p99 {s['p99_ms']:.2f} ms; "
            f"{s['throughput_per_s']:.1f} images/s; providers {s['providers']}"
            + (f"; {s['taken']} inputs taken, {s['skipped']} skipped" if s.get("skipped") else "")
            + (f"; {s['drift_alarms']} drift alarm(s)" if s.get("drift_alarms") else "")
            + (f"; interrupted by {s['interrupted']}" if s["interrupted"] else "")
            + (f"; {s['overlay_failures']} overlays NOT written" if s.get("overlay_failures") else ""))
