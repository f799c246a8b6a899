"""The `ceod` command. Every handler imports its stage lazily, so `ceod inspect` never loads torch."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Callable

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from ceod.errors import CeodError  # noqa: E402  (torch-free)

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str):
    def register(fn):
        COMMANDS[name] = fn
        return fn
    return register


# ------------------------------------------------------------------ data

@command("synth")
def _synth(a: argparse.Namespace) -> int:
    from ceod.synth import config_for, synthesize
    cfg = config_for(a.preset, a.config, {"p_distractor_def": a.p_distractor_def,
                                           "p_distractor_ok": a.p_distractor_ok})
    summary = synthesize(a.out, cfg, a.seed, preview=a.preview)
    print(f"wrote {summary['images']} images to {summary['out']} in {summary['seconds']:.1f} s"
          + (f"; preview {summary['preview']}" if "preview" in summary else ""))
    return 0


@command("data-check")
def _data_check(a: argparse.Namespace) -> int:
    from ceod.dataset import check_dataset
    report = check_dataset(a.dataset, split_column=a.split_column)
    print(f"dataset {a.dataset}: {report.rows} rows, split column '{a.split_column}'")
    print(f"{'split':<14}{'ok':>8}{'def':>8}{'total':>8}")
    tot = {"ok": 0, "def": 0}
    for split in sorted(report.counts):
        c = report.counts[split]
        tot["ok"] += c["ok"]
        tot["def"] += c["def"]
        print(f"{split:<14}{c['ok']:>8}{c['def']:>8}{c['ok'] + c['def']:>8}")
    print(f"{'total':<14}{tot['ok']:>8}{tot['def']:>8}{tot['ok'] + tot['def']:>8}")
    if report.aoi_coverage:
        print("AOI coverage (fraction of the frame inside the AOI):")
        for split, c in sorted(report.aoi_coverage.items()):
            print(f"  {split:<12} mean {c['mean']:.3f}  min {c['min']:.3f}  max {c['max']:.3f}  (n={c['n']})")
    if report.bad:
        print(f"{len(report.bad)} bad row(s):")
        for b in report.bad:
            print(f"  {b}")
        return 1
    print("no bad rows")
    return 0


# ------------------------------------------------------------------ parser

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ceod", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", help="write a synthetic inspection-line dataset")
    s.add_argument("out")
    s.add_argument("--preset", default="small", choices=["tiny", "small", "full"])
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--config", help="YAML overriding configs/synth.yaml")
    s.add_argument("--p-distractor-def", type=float, help="P(distractor | def) in train/val/test")
    s.add_argument("--p-distractor-ok", type=float, help="P(distractor | ok) in train/val/test")
    s.add_argument("--preview", action="store_true", help="also write preview.png (contact sheet)")

    d = sub.add_parser("data", help="dataset tools")
    dsub = d.add_subparsers(dest="data_command", required=True)
    dc = dsub.add_parser("check", help="counts, AOI coverage and every bad row; exit 1 on bad rows")
    dc.add_argument("dataset")
    dc.add_argument("--split-column", default="split")

    for register in PARSER_HOOKS:
        register(sub)
    return p


PARSER_HOOKS: list[Callable] = []


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    name = args.command if args.command != "data" else f"data-{args.data_command}"
    try:
        return COMMANDS[name](args)
    except (CeodError, FileExistsError, FileNotFoundError, PermissionError) as exc:
        print(f"ceod {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
