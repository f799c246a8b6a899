"""`ceod calibrate`: a new threshold for an exported model from parts checked on the line (no torch)."""

from __future__ import annotations

import argparse

from ceod.contracts.metrics import THRESHOLD_MODES


def register(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("calibrate", help="re-fit an exported model's verdict threshold on labelled line parts "
                                         "(writes a new model file; no retraining, no torch)")
    c.add_argument("--model", required=True, help="the exported ok/def classifier (.onnx); never modified")
    c.add_argument("--labels", required=True, metavar="FILE.csv",
                   help="parts a person checked: a header 'path,label', label ok or def; relative paths from the "
                        "CSV's folder")
    c.add_argument("--out", required=True, metavar="NEW.onnx", help="the new model file (must not exist)")
    c.add_argument("--mode", choices=THRESHOLD_MODES,
                   help="threshold rule (default: the rule the model's threshold was fitted with)")
    c.add_argument("--target-escape", type=float, default=0.01, help="mode escape: share of defects that may pass")
    c.add_argument("--target-recall", type=float, default=0.95, help="mode recall: share of defects to catch")
    c.add_argument("--provider", default="cpu", help="onnxruntime provider that scores the parts (cpu, cuda, auto)")
    c.set_defaults(handler=run)


def run(a: argparse.Namespace) -> int:
    from ceod.contracts.errors import CeodError
    from ceod.export.calibrate import calibrate_model
    for flag, value in (("--target-escape", a.target_escape), ("--target-recall", a.target_recall)):
        if not 0.0 < value < 1.0:
            raise CeodError(f"{flag} {value}: a share strictly between 0 and 1")
    r = calibrate_model(a.model, a.labels, a.out, a.mode, a.target_recall, a.target_escape, a.provider)
    p = r.provenance
    print(f"calibrated on {p['parts']['ok']} ok and {p['parts']['def']} def parts, mode {p['mode']}"
          + (f" (target {p['target']:g})" if p["target"] is not None else ""))
    for name, t, point in (("before", r.threshold_before, r.before), ("after", r.threshold_after, r.after)):
        print(f"  {name:6s} threshold {t:.6g}: escapes {point['escapes']}/{point['defects']} "
              f"({100 * point['escape_rate']:.2f} %), false rejects {point['false_rejects']}/{point['ok_parts']} "
              f"({100 * point['false_reject_rate']:.2f} %), balanced accuracy {point['balanced_accuracy']:.4f}")
    print(f"wrote {r.out} (the input model is unchanged); figures are on the labelled parts themselves")
    return 0
