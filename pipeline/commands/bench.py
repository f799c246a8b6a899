"""`ceod bench`: latency of CEOD vs the plain CNN vs segmenter + classifier, and training cost."""

from __future__ import annotations

import argparse
from pathlib import Path

from ceod.contracts.errors import CeodError


def register(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser("bench", help="latency: CEOD vs plain CNN vs segmenter+classifier; training cost")
    b.add_argument("--classifier", help="the CEOD classifier (ONNX)")
    b.add_argument("--plain", help="the plain CNN (CE) with the same architecture (ONNX)")
    b.add_argument("--segmenter", help="segmenter ONNX for the two-stage alternative")
    b.add_argument("--batch", default="1,8,32", help="comma-separated batch sizes")
    b.add_argument("--provider", default="auto", choices=["auto", "tensorrt", "cuda", "cpu"],
                   help="onnxruntime execution provider (the one in use is reported)")
    b.add_argument("--out", default="runs/bench", help="folder for bench.json, bench.md and bench.png")
    b.add_argument("--iters", type=int, default=50, help="timed runs per model and batch size")
    b.add_argument("--warmup", type=int, default=5, help="untimed runs first (provider set-up, caches)")
    b.add_argument("--torch-model", help="the CEOD run folder, for torch eager vs onnxruntime")
    b.add_argument("--images", help="folder of images for end-to-end inspection throughput")
    b.add_argument("--no-training", action="store_true", help="skip the training step-time comparison")
    b.add_argument("--training-only", action="store_true",
                   help="only the training step time of CE, CEOD (fast, all classes, general) and RRR")
    b.add_argument("--train-preset", default="default", choices=["default", "decoy-mnist"],
                   help="model/data shape for the training step: configs/classifier.yaml or the DecoyMNIST CNN")
    b.add_argument("--train-iters", type=int, default=8, help="timed training steps per loss (interleaved)")
    b.add_argument("--train-size", type=int, help="with --training-only: the input size of the training step "
                   "(default: the preset's; the casting runs train at 192)")
    b.set_defaults(handler=run)


def run(a: argparse.Namespace) -> int:
    from ceod.pipeline.bench import run_bench
    batches = [int(b) for b in a.batch.split(",")]
    if not a.training_only and not (a.classifier and a.plain):
        raise CeodError("bench: give --classifier and --plain (ONNX files), or --training-only")
    if a.training_only and a.no_training:
        raise CeodError("bench: --training-only and --no-training leave nothing to measure")
    if a.train_size is not None and (not a.training_only or a.train_size < 32):
        raise CeodError("bench: --train-size needs --training-only (with --classifier the models' own size is "
                        "used) and at least 32 px")
    run_bench(None if a.training_only else a.classifier, a.plain, a.segmenter, batches, a.provider, Path(a.out),
              iters=a.iters, warmup=a.warmup, torch_run=a.torch_model, images=a.images, train_cost=not a.no_training,
              train_preset=a.train_preset, train_iters=a.train_iters, train_size=a.train_size)
    print((Path(a.out) / "bench.md").read_text())
    return 0
