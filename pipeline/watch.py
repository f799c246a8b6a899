"""`ceod inspect --watch SEGMENTER.onnx`: the drift watch beside the line runtime.

The every-frame statistics are measured on the inspecting thread, 32 frames at a time and
vectorised, after those frames' records are written (some 25 microseconds a frame: a second
thread doing it costs more, in GIL hand-overs and in the inference threads it interrupts). The
segmenter runs on sampled frames on the watch's own thread (one intra-op thread, lowest CPU
priority): a frame is offered every `every` frames, only while all the watch's work (the
sampling's CPU time and the every-frame statistics' time together) stays within `budget` of the
wall time, and only if its queue has room. Neither holds a verdict.
Imports numpy, OpenCV and onnxruntime only.
"""

from __future__ import annotations

import html
import json
import queue
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ceod.contracts.errors import CeodError
from ceod.export.runtime import OnnxModel, open_segmenter
from ceod.export.drift import Alarm, Monitor, check_alpha
from ceod.export.watch import BY_NAME, KINDS, QUANTILES, backs_a_verdict, frame_statistics, read_profile, reference_origin, thumbnail

REPORT_FILES = ("watch.json", "watch.html")
FRAME_BATCH = 32  # judged frames whose every-frame statistics are measured together
# Half the throughput loss the watch may cost (5 %): the budget bounds what the watch counts, a
# lower bound of what it costs a saturated CPU (docs/results.md 12.6)
DEFAULT_BUDGET = 0.025


@dataclass(frozen=True)
class WatchSetup:
    """What a watch needs, checked and loaded once (an inspector's runs share it)."""

    segmenter: OnnxModel  # one intra-op thread
    profile: dict[str, Any]
    block: dict[str, Any] | None
    every: int = 10
    budget: float = DEFAULT_BUDGET
    alpha: float = 0.01
    queue_size: int = 4


def prepare_watch(model: OnnxModel, segmenter: str | Path, provider: str, every: int, budget: float | None,
                  alpha: float, queue_size: int = 4) -> WatchSetup:
    """Check the watch's settings, read the model's profile and load the segmenter: everything that
    can refuse the watch does so before the first frame. `budget` None: the default."""
    budget = DEFAULT_BUDGET if budget is None else budget
    if every < 1:
        raise CeodError(f"--watch-every {every}: sample every N >= 1 frames")
    if not (0 < budget <= 1 or budget == float("inf")):  # inf: no budget (the offline replay)
        raise CeodError(f"--watch-budget {budget}: a share of the inspection time in (0, 1]")
    check_alpha(alpha)
    profile, block = read_profile(model.info.raw, str(model.path))
    seg = open_segmenter(segmenter, provider, "--watch", threads=1)
    return WatchSetup(seg, profile, block, every, budget, alpha, queue_size)


class Watcher:
    def __init__(self, model: OnnxModel, setup: WatchSetup) -> None:
        self.segmenter = setup.segmenter
        self.classes = model.info.class_names
        self.monitor = Monitor(setup.profile, setup.block, setup.alpha, sample_every=setup.every)
        self.unwatched = [f"{name}: the model has no {output} output (export it with --{output})"
                          for name, output in (("evidence_outside and evidence_background", "heatmap"),
                                               ("feature_distance", "features"))
                          if output not in model.info.outputs]
        self.every, self.budget = setup.every, setup.budget
        self.lock = threading.Lock()
        self.pending: list[Alarm] = []
        self.handed: deque = deque()  # judged frames not measured yet
        self.jobs: queue.Queue = queue.Queue(maxsize=setup.queue_size)
        self.started = time.perf_counter()
        self.busy = 0.0  # the sampling's CPU time
        self.frames_busy = 0.0  # the every-frame statistics' time; with busy, what the budget bounds
        self.offered = self.sampled = self.over_budget = self.queue_full = self.errors = 0
        self.last_error: str | None = None
        self.thread = threading.Thread(target=self._work, daemon=True, name="ceod-watch")
        self.thread.start()

    def frame(self, index: int, source: str, image: np.ndarray, small: np.ndarray, score: float, verdict: int,
              heatmap: np.ndarray | None, features: np.ndarray | None) -> None:
        """One judged frame (`image` as decoded, `small` at the model's input size), measured with
        the next batch; every `every`th also offered for sampling. The heatmap counts as evidence
        only where it backs the verdict (`backs_a_verdict`). Only the frame's 1 KB thumbnail is kept,
        made now while `small` is in the CPU's cache, not a batch of model-size frames read again
        later; its time counts in the budget."""
        t0 = time.perf_counter()
        self.handed.append((index, source, None if small is None else thumbnail(small), score, verdict, heatmap,
                            features))
        self.frames_busy += time.perf_counter() - t0
        if index % self.every:
            return
        self.offered += 1
        if self.busy + self.frames_busy > self.budget * (time.perf_counter() - self.started):
            self.over_budget += 1
            return
        if heatmap is not None and not backs_a_verdict(self.classes, [verdict])[0]:
            heatmap = None
        try:
            self.jobs.put_nowait((index, source, image, heatmap))
        except queue.Full:
            self.queue_full += 1

    def _work(self) -> None:
        _lowest_priority()
        while True:
            job = self.jobs.get()
            if job is None:
                return
            self._sample(job)

    def records_written(self) -> None:
        """Called once a batch's records are written: measure the frames judged so far when a
        batch of them has gathered."""
        if len(self.handed) >= FRAME_BATCH:
            self.measure_frames()

    def measure_frames(self) -> None:
        """The every-frame statistics of the frames judged since the last call, as one batch."""
        batch = [self.handed.popleft() for _ in range(len(self.handed))]
        if not batch:
            return
        t0 = time.perf_counter()
        index, source, thumbs, score, verdict, heatmap, features = zip(*batch)
        backed = backs_a_verdict(self.classes, verdict)
        try:
            self._raise(self.monitor.observe_frames(
                np.array(index), list(source), np.array(score),
                None if features[0] is None else np.stack(features),
                None if thumbs[0] is None else np.stack(thumbs),
                [h if b else None for h, b in zip(heatmap, backed)]))
        except Exception as exc:  # noqa: BLE001 - the watch never stops the inspection
            self._failed(exc)
        self.frames_busy += time.perf_counter() - t0

    def _sample(self, job: tuple) -> None:
        t0 = time.thread_time()  # CPU time: at nice 19 the thread's wall time includes its waits
        index, source, image, heatmap = job
        try:
            aoi = self.segmenter.run([image])["aoi_logits"][0, 0] > 0
            values = frame_statistics(image, aoi, heatmap)
            self._raise(self.monitor.observe_sample(index, source, values))
            self.sampled += 1
        except Exception as exc:  # noqa: BLE001 - the watch never stops the inspection
            self._failed(exc)
        self.busy += time.thread_time() - t0

    def _raise(self, alarms: list[Alarm]) -> None:
        with self.lock:
            self.pending += alarms

    def _failed(self, exc: Exception) -> None:
        """Counted and reported in watch.json; the inspection goes on."""
        self.errors += 1
        self.last_error = f"{type(exc).__name__}: {str(exc)[:200]}"

    def drain(self) -> list[Alarm]:
        """Alarms raised since the last call (for the log and stderr)."""
        with self.lock:
            alarms, self.pending = self.pending, []
        return alarms

    def close(self, timeout: float = 60.0) -> None:
        """Measure every frame judged and every sample queued, then stop the thread."""
        self.measure_frames()
        self.jobs.put(None)
        self.thread.join(timeout)

    def report(self) -> dict[str, Any]:
        seconds = time.perf_counter() - self.started
        with self.lock:
            monitor = self.monitor.report()
        return {**monitor, "sampling": {
            "every": self.every, "budget": self.budget, "offered": self.offered, "sampled": self.sampled,
            "skipped_over_budget": self.over_budget, "skipped_queue_full": self.queue_full, "errors": self.errors,
            "last_error": self.last_error, "sampling_busy_seconds": round(self.busy, 3),
            "every_frame_statistics_seconds": round(self.frames_busy, 3),
            "watch_busy_share": round((self.busy + self.frames_busy) / seconds, 4) if seconds > 0 else None,
            "watch_seconds": round(seconds, 3),
            "segmenter": self.segmenter.identity, "segmenter_providers": self.segmenter.providers},
            "not_watched": self.unwatched}


def _lowest_priority() -> None:
    """Run this thread at the lowest CPU priority (nice 19, Linux: per thread), so the watch takes
    idle cycles and the inspecting threads win every contest for a core."""
    import os
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):  # not Linux, or not allowed: the budget still bounds the watch
        pass


def drift_record(alarm: Alarm, model_id: str, stamp: str) -> dict[str, Any]:
    """The log record of an alarm: status `drift`, with what moved, by how much, since which frame."""
    return {"time": stamp, "source": alarm.source, "verdict": None, "score": None, "latency_ms": None,
            "status": "drift", "reason": alarm.message(BY_NAME[alarm.statistic].unit), "model": model_id,
            "kind": alarm.kind, "statistic": alarm.statistic, "frame": alarm.frame, "since_frame": alarm.since_frame,
            "reference_mean": round(alarm.reference_mean, 6), "window_mean": round(alarm.window_mean, 6),
            "shift_sigma": round(alarm.shift_sigma, 3), "ks_d": _finite(alarm.ks_d, 4), "p_value": _finite(alarm.p_value),
            "ceiling": alarm.ceiling}


def _finite(value: float, digits: int | None = None) -> float | None:
    """JSON has no NaN: a figure that does not apply (a ceiling alarm's p) is null."""
    if not np.isfinite(value):
        return None
    return round(value, digits) if digits is not None else value


def announce(alarm: Alarm) -> None:
    print(f"\nceod inspect: DRIFT at frame {alarm.frame}: {alarm.message(BY_NAME[alarm.statistic].unit)}",
          file=sys.stderr, flush=True)


def check_report_folder(folder: Path) -> None:
    """Refuse a report folder that holds files this command did not write (never overwritten)."""
    if folder.exists() and not folder.is_dir():
        raise CeodError(f"--watch-report {folder}: exists and is not a folder")
    if folder.is_dir():
        foreign = sorted(p.name for p in folder.iterdir() if p.name not in REPORT_FILES)
        if foreign:
            raise CeodError(f"--watch-report {folder}: holds {foreign[:3]} which `ceod inspect` did not write; "
                            "choose an empty or new folder")


def write_report(folder: Path, watcher: Watcher) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    report = watcher.report()
    from ceod.contracts.metrics import strict_json
    (folder / "watch.json").write_text(json.dumps(strict_json(report), indent=1, default=float, allow_nan=False))
    page = folder / "watch.html"
    page.write_text(render_html(report, watcher.monitor))
    return page


# ---------------------------------------------------------------- the picture (SVG, no plotting library
# in the base install)

def _chart(series: list[tuple[int, float, float]], ref: dict[str, Any], alarms: list[dict], frames: int) -> str:
    w, h, left, pad = 900, 150, 60, 14
    values = np.array([v for _, v, _ in series], float) if series else np.zeros(0)
    q = ref["quantiles"]
    lo_band, hi_band = (float(np.interp(p, QUANTILES, q)) for p in (0.05, 0.95))
    finite = values[np.isfinite(values)]
    lo = min([lo_band, ref["mean"]] + ([float(finite.min())] if len(finite) else []))
    hi = max([hi_band, ref["mean"]] + ([float(finite.max())] if len(finite) else []))
    span = (hi - lo) or 1.0
    lo, hi = lo - 0.05 * span, hi + 0.05 * span
    x = lambda f: left + (w - left - pad) * f / max(frames, 1)  # noqa: E731
    y = lambda v: pad + (h - 2 * pad) * (1 - (v - lo) / (hi - lo))  # noqa: E731
    parts = [f'<svg width="{w}" height="{h}" xmlns="http://www.w3.org/2000/svg" font-size="11">',
             f'<rect x="{left}" y="{y(hi_band):.1f}" width="{w - left - pad}" height="{y(lo_band) - y(hi_band):.1f}" '
             'fill="#e8e8e8"/>',
             f'<line x1="{left}" x2="{w - pad}" y1="{y(ref["mean"]):.1f}" y2="{y(ref["mean"]):.1f}" stroke="#888" '
             'stroke-dasharray="4 3"/>']
    step = max(1, len(series) // 3000)
    parts += [f'<circle cx="{x(f):.1f}" cy="{y(v):.1f}" r="1.3" fill="#9bb"/>'
              for f, v, _ in series[::step] if np.isfinite(v)]
    line = " ".join(f"{x(f):.1f},{y(m):.1f}" for f, _, m in series if np.isfinite(m))
    if line:
        parts.append(f'<polyline points="{line}" fill="none" stroke="#1f5fa8" stroke-width="1.6"/>')
    for a in alarms:
        parts.append(f'<line x1="{x(a["frame"]):.1f}" x2="{x(a["frame"]):.1f}" y1="{pad}" y2="{h - pad}" '
                     'stroke="#d62728" stroke-width="2"/>')
        parts.append(f'<line x1="{x(a["since_frame"]):.1f}" x2="{x(a["since_frame"]):.1f}" y1="{pad}" '
                     f'y2="{h - pad}" stroke="#ff9f1c" stroke-dasharray="3 3"/>')
        parts.append(f'<text x="{x(a["frame"]) + 3:.1f}" y="{pad + 10}" fill="#d62728">{a["kind"]} @ {a["frame"]}</text>')
    parts += [f'<text x="4" y="{y(hi) + 10:.1f}">{hi:.3g}</text>', f'<text x="4" y="{y(lo):.1f}">{lo:.3g}</text>',
              f'<text x="{left}" y="{h - 1}">frame 0</text>',
              f'<text x="{w - pad - 70}" y="{h - 1}">frame {frames}</text></svg>']
    return "".join(parts)


def render_html(report: dict[str, Any], monitor: Monitor) -> str:
    frames = max([f for s in monitor.series.values() for f, _, _ in s[-1:]] + [monitor.frames, 1])
    rows = []
    for name, info in report["statistics"].items():
        alarms = [a for a in report["alarms"] if a["statistic"] == name]
        ref = monitor.profile["statistics"][name]
        title = (f"<h3>{html.escape(name)} <small>({info['kind']}: {html.escape(KINDS[info['kind']])}; "
                 f"{info['unit']}, per {info['per']}, window {info['window']}, alarm at p &lt; "
                 f"{info['alarm_level_p']:.1e})</small></h3>")
        rows.append(title + _chart(monitor.series[name], ref, alarms, frames))
    alarm_list = "".join(f"<li><b>frame {a['frame']}</b> ({html.escape(a['kind'])}): "
                         f"{html.escape(Alarm(**{k: a[k] for k in Alarm.__dataclass_fields__}).message(BY_NAME[a['statistic']].unit))}</li>"
                         for a in report["alarms"]) or "<li>none</li>"
    sampling = report["sampling"]
    return ("<!doctype html><meta charset='utf-8'><title>ceod watch</title>"
            "<body style='font-family:sans-serif;max-width:960px'>"
            f"<h1>ceod watch</h1><p>{report['frames']} frames, {sampling['sampled']} sampled "
            f"(every {sampling['every']}, budget {sampling['budget']:.0%}, busy {sampling['watch_busy_share']}); "
            f"reference: {html.escape(reference_origin(report['profile']))}, AOI from "
            f"{html.escape(report['profile']['aoi_source'])}.</p>"
            f"<p>Grey band: the reference's 5th-95th percentile; dashed: its mean; dots: values; blue: the "
            f"window mean; red: an alarm; orange dashed: where the shift most likely began. {report['test']}.</p>"
            f"<h2>Alarms</h2><ul>{alarm_list}</ul>" + "".join(rows) + "</body>")

