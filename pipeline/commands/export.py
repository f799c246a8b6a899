"""`ceod export`: a run to ONNX with its metadata, checked against torch (and, for a classifier,
the drift watch's reference profile)."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    ex = sub.add_parser("export", help="ONNX export with metadata and a torch-vs-onnxruntime parity check")
    ex.add_argument("--model", required=True, help="a classifier or segmenter run folder")
    ex.add_argument("--out", required=True, help="the .onnx file to write (only written if parity passes)")
    ex.add_argument("--heatmap", action="store_true", help="add the fast-path CAM as a second output")
    ex.add_argument("--fp16", action="store_true", help="half-precision weights (parity tolerance 5e-2)")
    ex.add_argument("--data", help="dataset for the parity images (default: the training data)")
    ex.add_argument("--parity-images", type=int, default=32, help="real images for the torch-vs-onnxruntime check")
    ex.add_argument("--features", action="store_true",
                    help="add the pooled features as an output (the drift watch's feature statistic)")
    ex.add_argument("--segmenter", metavar="SEGMENTER.onnx",
                    help="the exported segmenter the line's watch will run: the reference profile's AOIs come "
                         "from it (default: the manifest's AOI masks)")
    ex.add_argument("--profile-images", type=int, default=400,
                    help="validation images measured for the drift watch's reference profile")
    ex.add_argument("--no-profile", action="store_true", help="write no reference profile (no drift watch)")
    ex.set_defaults(handler=run)


def run(a: argparse.Namespace) -> int:
    from ceod.export.onnx_export import export_run
    report = export_run(a.model, a.out, heatmap=a.heatmap, fp16=a.fp16, data=a.data, parity_images=a.parity_images,
                        features=a.features, profile=not a.no_profile, segmenter=a.segmenter,
                        profile_images=a.profile_images)
    print(f"exported {report['kind']} to {report['file']} ({report['bytes'] / 1e6:.1f} MB, {report['exporter']} exporter, "
          f"{report['precision']}); parity on {report['images']} real images: max abs diff "
          f"{report['max_abs_diff']:.2e} (tolerance {report['tolerance']:.0e}), decision agreement "
          f"{report['decision_agreement']:.6f} on {report['decided']} of {report['decisions']} decisions "
          f"({report['within_margin']} within {report['tolerance']:.0e} of changing, not judged; "
          f"{report['within_margin_flipped']} of them flipped)")
    if "profile" in report:
        p = report["profile"]
        print(f"reference profile for the drift watch: {p['images']} validation images, AOI from {p['aoi_source']}; "
              f"{len(p['statistics'])} statistics; background region {p['background_share']:.1%} of the frame")
        if p.get("warning"):
            print(f"warning: {p['warning']}", file=sys.stderr)
    if "profile_skipped" in report:
        print(f"warning: no reference profile ({report['profile_skipped']}): `ceod inspect --watch` will refuse "
              "this model", file=sys.stderr)
    return 0
