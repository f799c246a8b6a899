"""`ceod inspect`: the line runtime (no torch). stdout carries only records (JSON lines, unless
--log names a file); everything else goes to stderr."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ceod.contracts.errors import CeodError


def register(sub: argparse._SubParsersAction) -> None:
    ins = sub.add_parser("inspect", help="line inspection with the ONNX classifier (no torch)")
    ins.add_argument("--model", required=True, help="classifier.onnx made by ceod export")
    ins.add_argument("--source", required=True, help="folder, glob, video file, camera:N, or - (paths on stdin)")
    ins.add_argument("--log", help="FILE.jsonl or FILE.csv: one record per input; '-' or none: JSON lines on stdout")
    ins.add_argument("--overlays", help="folder for verdict overlays (with the heatmap where exported)")
    ins.add_argument("--batch", type=int, default=1, help="largest batch formed from already decoded inputs")
    ins.add_argument("--max-wait-ms", type=float, default=50.0,
                     help="how long a partial batch waits for more inputs before it runs (a record is never "
                          "held longer for want of a full batch)")
    ins.add_argument("--threshold", type=float, help="override the threshold stored in the model")
    ins.add_argument("--provider", default="auto", choices=["auto", "tensorrt", "cuda", "cpu"],
                     help="auto: TensorRT, then CUDA, then CPU, skipping what cannot load; a named one must load")
    ins.add_argument("--segmenter", help="segmenter.onnx: run the two-stage alternative")
    ins.add_argument("--summary-json", help="also write the summary as JSON")
    ins.add_argument("--watch", metavar="SEGMENTER.onnx",
                     help="drift watch: compare the line with the model's reference profile (score, features, "
                          "and on sampled frames the segmenter's AOI and what lies outside it); alarms are "
                          "`drift` records in the log and a line on stderr")
    ins.add_argument("--watch-every", type=int, default=10, help="offer every Nth frame to the watch's segmenter")
    ins.add_argument("--watch-budget", type=float, default=None,
                     help="most of the wall time the watch may take, every-frame statistics and sampled "
                          "segmenter together (a sample is skipped beyond it; default 2.5 %%: half the 5 %% "
                          "throughput loss a saturated CPU may give the watch, docs/results.md 12.6)")
    ins.add_argument("--watch-alpha", type=float, default=0.01,
                     help="false alarms allowed per 10,000 in-distribution frames (Bonferroni over every test)")
    ins.add_argument("--watch-report", metavar="FOLDER",
                     help="where watch.json and watch.html go (default: beside the log, LOG_watch/)")
    ins.add_argument("--quiet", action="store_true", help="no live rate")
    ins.set_defaults(handler=run)


def run(a: argparse.Namespace) -> int:
    from ceod.pipeline.inspect import Inspector, check_source, format_summary
    check_source(a.source)
    if a.summary_json:  # found out now, not after a shift of inspection
        target = Path(a.summary_json)
        if target.is_dir() or not os.access(target.parent, os.W_OK):
            raise CeodError(f"--summary-json {target}: not a writable file path")
    report = None
    if a.watch:
        report = Path(a.watch_report) if a.watch_report else (
            Path(a.log).with_name(Path(a.log).stem + "_watch") if a.log not in (None, "-") else Path("ceod-watch"))
    elif a.watch_report:
        raise CeodError("--watch-report needs --watch SEGMENTER.onnx")
    inspector = Inspector(a.model, a.provider, a.threshold, a.segmenter, watch=a.watch, watch_every=a.watch_every,
                          watch_budget=a.watch_budget, watch_alpha=a.watch_alpha)
    used = inspector.model.providers
    why = f" ({'; '.join(inspector.model.provider_notes)})" if inspector.model.provider_notes else ""
    print(f"ceod inspect: {a.model} on {used[0]}{why}; threshold {inspector.threshold:.4f}, batch {a.batch}",
          file=sys.stderr)
    summary = inspector.run(a.source, a.log or "-", a.overlays, a.batch, live=not a.quiet and a.log not in (None, "-"),
                            max_wait_ms=a.max_wait_ms, watch_report=report)
    print(format_summary(summary.as_dict()), file=sys.stderr)
    if report is not None:
        print(f"ceod inspect: drift watch report {report / 'watch.html'}", file=sys.stderr)
    if a.summary_json:
        Path(a.summary_json).write_text(json.dumps(summary.as_dict(), indent=2))
    if summary.interrupted:  # every input taken has its record: a clean stop, by the signal's code
        return 130 if summary.interrupted == "SIGINT" else 143
    if summary.failure:
        print(f"ceod inspect: error: {summary.failure}; every input taken has a record", file=sys.stderr)
        return 1
    if summary.overlay_failures:
        print(f"ceod inspect: error: {summary.overlay_failures} overlay(s) could not be written "
              f"(to {a.overlays}); the verdicts are all in the log", file=sys.stderr)
        return 1
    return 0
