"""`ceod data check`, `ceod data import` and `ceod data stream`: dataset tools."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ceod.contracts.errors import CeodError
from ceod.pipeline.commands.common import key_values


def register(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("data", help="dataset tools")
    dsub = d.add_subparsers(dest="data_command", required=True)
    dc = dsub.add_parser("check", help="counts, AOI coverage and every bad row; exit 1 on bad rows")
    dc.add_argument("dataset", help="a dataset folder (manifest.csv and the files it names)")
    dc.add_argument("--split-column", default="split", help="manifest column holding the split (e.g. split_grouped)")
    dc.set_defaults(handler=check)
    di = dsub.add_parser("import", help="write a ceod dataset from class folders, MVTec AD, COCO or LabelMe files",
                         description="Images are referenced through a `source` link, never copied; AOI masks are "
                                     "rasterised at each image's own size.")
    di.add_argument("source", help="the folder (imagefolder, mvtec, labelme) or the COCO .json file")
    di.add_argument("out", help="a new folder for the dataset")
    di.add_argument("--from", dest="format", required=True, choices=["imagefolder", "mvtec", "coco", "labelme"],
                    help="the source's format")
    di.add_argument("--label", action="append", metavar="FOLDER=LABEL",
                    help="map a folder (or COCO/LabelMe image folder) name to a label, e.g. ok_front=ok (repeatable)")
    di.add_argument("--split", default="train", help="split of rows whose path names none (train/val/test folders do)")
    di.add_argument("--default-label", help="coco/labelme: label of images whose folder maps to none")
    di.add_argument("--aoi-category", action="append", help="coco/labelme: categories that draw the AOI (default all)")
    di.add_argument("--hole-label", action="append", help="coco/labelme: categories cut out of the AOI (default hole)")
    di.add_argument("--images", help="coco: the folder the file_names are relative to (default: the JSON's folder)")
    di.add_argument("--defect-classes", action="store_true", help="mvtec: each defect type its own class, not def")
    di.add_argument("--base", help="coco/labelme: fill the AOI cells of this dataset's rows (closes the annotation loop)")
    di.add_argument("--skip-bad", action="store_true", help="skip broken entries with a warning and a count")
    di.set_defaults(handler=import_)
    ds = dsub.add_parser("stream", help="a line stream of a dataset's real images that changes at a known frame "
                                        "(the drift watch's bench on real parts)")
    ds.add_argument("dataset", help="a dataset folder (manifest.csv with AOI masks); only read")
    ds.add_argument("out", help="a new folder: frames/, aoi/, stream.csv and change.json (the ground truth)")
    ds.add_argument("--split", default="test", help="the split whose images make the stream")
    ds.add_argument("--split-column", default="split", help="manifest column holding the split (e.g. split_grouped)")
    ds.add_argument("--change", default="none", help="what changes at --at: none, lamp, belt, fixture, camera, dirt, "
                                                      "defect_rate")
    ds.add_argument("--at", type=int, help="the first changed frame (default: half way)")
    ds.add_argument("--frames", type=int, default=1000, help="number of frames")
    ds.add_argument("--seed", type=int, default=0, help="seed of the frame order and the jitter")
    ds.set_defaults(handler=stream)


def stream(a: argparse.Namespace) -> int:
    from ceod.data.stream import stream_from_dataset
    r = stream_from_dataset(a.dataset, a.out, a.split, a.split_column, a.change, a.at, a.frames, a.seed)
    print(f"wrote {r['frames']} frames of split '{r['split']}' to {r['out']}/frames in {r['seconds']} s; change "
          f"{r['change']}" + (f" from frame {r['at']}" if r["at"] is not None else "") + "; ground truth in change.json")
    return 0


def import_(a: argparse.Namespace) -> int:
    from ceod.data.checks import check_dataset
    from ceod.data.importers import ImportOptions, import_dataset
    labels = key_values(a.label, "--label", "FOLDER=LABEL, e.g. ok_front=ok", empty_value=False)
    opt = ImportOptions(labels=labels, split=a.split, default_label=a.default_label,
                        aoi_categories=set(a.aoi_category or []), hole_labels=set(a.hole_label or ["hole"]),
                        images=Path(a.images) if a.images else None, defect_classes=a.defect_classes,
                        skip_bad=a.skip_bad, base=Path(a.base) if a.base else None)
    summary = import_dataset(a.source, a.out, a.format, opt)
    print(f"wrote {summary['out']}: {summary['rows']} rows, {summary['with_aoi']} with an AOI"
          + (f", {summary['filled']} filled from the annotations" if "filled" in summary else "")
          + (f", {summary['skipped']} broken entries skipped" if summary["skipped"] else ""))
    report = check_dataset(a.out, progress=False)
    if not report.ok:
        for b in report.bad[:5]:
            print(f"  {b}", file=sys.stderr)
        raise CeodError(f"the imported dataset fails `ceod data check` ({len(report.bad)} bad rows)")
    for split in sorted(report.counts):
        print(f"  {split}: " + ", ".join(f"{n} {k}" for k, n in report.counts[split].items()))
    return 0


def check(a: argparse.Namespace) -> int:
    from ceod.data.checks import check_dataset
    report = check_dataset(a.dataset, split_column=a.split_column)
    print(f"dataset {a.dataset}: {report.rows} rows, split column '{a.split_column}', "
          f"classes {list(report.classes)}")
    names = list(report.classes)
    width = max(8, *(len(n) + 2 for n in names))
    print(f"{'split':<14}" + "".join(f"{n:>{width}}" for n in names) + f"{'total':>8}")
    tot = {n: 0 for n in names}
    for split in sorted(report.counts):
        c = report.counts[split]
        for n in names:
            tot[n] += c[n]
        print(f"{split:<14}" + "".join(f"{c[n]:>{width}}" for n in names) + f"{sum(c.values()):>8}")
    print(f"{'total':<14}" + "".join(f"{tot[n]:>{width}}" for n in names) + f"{sum(tot.values()):>8}")
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
