"""`ceod baseline`: the drift watch's reference from the line's own commissioning shift (no torch)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser("baseline", help="rebuild the drift watch's reference from the first frames of an accepted "
                                        "run on the line (writes a new model file; the input is never modified)")
    b.add_argument("--model", required=True, help="the exported classifier that judged the run (its hash is checked)")
    b.add_argument("--segmenter", required=True, metavar="SEGMENTER.onnx", help="the exported segmenter (the AOIs)")
    b.add_argument("--log", required=True, metavar="VERDICTS.jsonl",
                   help="the log of a `ceod inspect` run whose first frames an engineer accepted")
    b.add_argument("--out", required=True, metavar="NEW.onnx", help="the new model file (must not exist)")
    b.add_argument("--frames", type=int, default=256, help="how many of the run's first judged inputs make the reference")
    b.add_argument("--provider", default="cpu", help="onnxruntime provider (cpu, cuda, auto)")
    b.set_defaults(handler=run)


def run(a: argparse.Namespace) -> int:
    from ceod.contracts.errors import CeodError
    from ceod.export.baseline import MIN_FRAMES, baseline_model, provenance_line
    from ceod.export.runtime import OnnxModel, open_segmenter
    from ceod.pipeline.replay import judged_inputs
    if a.frames < MIN_FRAMES:
        raise CeodError(f"--frames {a.frames}: a baseline needs at least {MIN_FRAMES} frames")
    model = OnnxModel(a.model, a.provider)
    sources = judged_inputs(Path(a.log), model, "baseline", limit=a.frames)
    r = baseline_model(model, open_segmenter(a.segmenter, a.provider, "--segmenter"), a.log, sources, a.out)
    print(provenance_line(r))
    print(f"  {'statistic':22s} {'exported mean':>14s} {'line mean':>12s}")
    for name in r.before:
        print(f"  {name:22s} {r.before[name]:14.4g} {r.after[name]:12.4g}")
    print(f"watched: {', '.join(r.summary['statistics'])}")
    print(f"wrote {r.out} (the input model is unchanged); run `ceod inspect --watch` with it")
    return 0
