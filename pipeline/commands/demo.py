"""`ceod demo`: the whole pipeline on the synthetic line, ending in report.md."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    dm = sub.add_parser("demo", help="the whole pipeline on the synthetic line, with report.md")
    dm.add_argument("--out", default="runs/demo", help="a new or empty folder, or one an earlier demo made")
    dm.add_argument("--quick", action="store_true", help="a smaller line and shorter training (< 3 min)")
    dm.add_argument("--seed", type=int, default=0, help="seed of the line and of the first classifier pair "
                    "(the full demo trains a second pair with seed + 1)")
    dm.add_argument("--variant", help="the classifier trained against CE: a variant that learns from the AOI "
                    "(default: configs/classifier.yaml as it ships; see configs/variants.yaml, e.g. ceod-paper, "
                    "ce-cf)")
    dm.set_defaults(handler=run)


def run(a: argparse.Namespace) -> int:
    from ceod.pipeline.demo import run_demo
    run_demo(a.out, a.quick, a.seed, a.variant)
    return 0
