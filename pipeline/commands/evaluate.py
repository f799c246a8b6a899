"""`ceod evaluate` and `ceod audit`: a classifier's figures on one split, as JSON."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ceod.pipeline.commands.common import data_args, print_json, run_folder


def register(sub: argparse._SubParsersAction) -> None:
    for name, helptext in (("evaluate", "accuracy, AUROC, confusion, aoi_attention, heatmaps"),
                           ("audit", "decision flips when the outside of the AOI is replaced")):
        e = sub.add_parser(name, help=helptext)
        e.add_argument("--model", required=True, help="a classifier run folder or .pt file")
        e.add_argument("--data", required=True, help="dataset folder (manifest.csv)")
        e.add_argument("--split", default="test", help="split to evaluate")
        data_args(e, filters=False, split_help="manifest column holding the split (default: the model's)")
        if name == "evaluate":
            e.add_argument("--heatmaps", type=int, default=0, help="write this many Grad-CAM overlays")
            e.add_argument("--predictions", metavar="FILE.csv",
                           help="every image's path, label, score, verdict, correct and aoi_attention")
            e.set_defaults(handler=evaluate)
        else:
            e.add_argument("--seed", type=int, default=0, help="seed of the replacement draws")
            e.set_defaults(handler=audit)


def evaluate(a: argparse.Namespace) -> int:
    from ceod.classifier.evaluate import evaluate as evaluate_split, load_eval_split
    model, cfg, meta, data = load_eval_split(a.model, a.data, a.split, a.split_column, a.skip_bad)
    run = run_folder(a.model)
    result = evaluate_split(model, cfg, meta, data, a.heatmaps, run / f"eval_{a.split}",
                            Path(a.predictions) if a.predictions else None)
    print_json(result, run / f"eval_{a.split}.json")
    if "operating_point" in result:
        from ceod.contracts.metrics import format_operating_points
        print(format_operating_points(result["operating_point"]), file=sys.stderr)
    return 0


def audit(a: argparse.Namespace) -> int:
    from ceod.classifier.evaluate import audit as audit_split, load_eval_split
    model, cfg, meta, data = load_eval_split(a.model, a.data, a.split, a.split_column, a.skip_bad)
    run = run_folder(a.model)
    print_json(audit_split(model, cfg, meta, data, a.seed, run / f"audit_{a.split}.png"), run / f"audit_{a.split}.json")
    return 0
