"""`ceod suggest-annotations`: the images the segmenter is least sure of, pre-annotated."""

from __future__ import annotations

import argparse

from ceod.pipeline.commands.common import filters


def register(sub: argparse._SubParsersAction) -> None:
    sa = sub.add_parser("suggest-annotations", help="rank unannotated images by segmenter uncertainty; write a "
                                                    "COCO / LabelMe task pre-filled with the predicted AOI")
    sa.add_argument("--model", required=True, help="a segmenter run folder")
    sa.add_argument("--data", required=True, help="dataset whose rows without an AOI are the candidates")
    sa.add_argument("--n", type=int, default=20, help="how many images to suggest")
    sa.add_argument("--out", required=True, help="a new folder for coco.json, labelme/ and suggestions.csv")
    sa.add_argument("--split", default="train", help="split to draw candidates from")
    sa.add_argument("--split-column", help="manifest column holding the split (default: the segmenter's)")
    sa.add_argument("--filter", action="append", help="COLUMN=VALUE, keep matching rows (repeatable)")
    sa.set_defaults(handler=run)


def run(a: argparse.Namespace) -> int:
    from ceod.segmenter.suggest import suggest_annotations
    result = suggest_annotations(a.model, a.data, a.n, a.out, a.split, a.split_column, filters(a.filter))
    print(f"{result['suggested']} of {result['candidates']} images without an AOI suggested; pre-annotations: "
          f"{result['coco']} (COCO) and {result['labelme']}/ (LabelMe); ranking {result['list']}. After correcting, "
          f"`ceod data import {result['labelme']} NEW --from labelme --base {a.data}` brings them back.")
    return 0
