"""`ceod watch`: the drift watch over a finished run's log, offline (no torch)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    w = sub.add_parser("watch", help="replay a finished run's images through the drift watch (offline): "
                                     "drift records, watch.json and watch.html")
    w.add_argument("--log", required=True, metavar="VERDICTS.jsonl", help="the log of a `ceod inspect` run")
    w.add_argument("--model", required=True, help="the exported classifier that judged the run (its hash is checked)")
    w.add_argument("--segmenter", required=True, metavar="SEGMENTER.onnx", help="the exported segmenter")
    w.add_argument("--out", help="folder for replay.jsonl (verdicts and drift records), watch.json and watch.html "
                                 "(default: beside the log, LOG_replay/)")
    w.add_argument("--watch-every", type=int, default=10, help="measure every Nth frame with the segmenter")
    w.add_argument("--watch-alpha", type=float, default=0.01, help="false-alarm rate per 10,000 frames")
    w.add_argument("--provider", default="auto", help="onnxruntime provider (auto, cpu, cuda, tensorrt)")
    w.add_argument("--batch", type=int, default=8, help="images per classifier call")
    w.set_defaults(handler=run)


def run(a: argparse.Namespace) -> int:
    from ceod.pipeline.replay import replay_watch
    out = Path(a.out) if a.out else Path(a.log).with_name(Path(a.log).stem + "_replay")
    summary = replay_watch(a.log, a.model, a.segmenter, out, a.watch_every, a.watch_alpha, a.provider, a.batch)
    print(f"ceod watch: {summary.records} frames replayed, {summary.drift_alarms} drift alarm(s); "
          f"{out / 'replay.jsonl'}, {out / 'watch.html'}", file=sys.stderr)
    return 0
