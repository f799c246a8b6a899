"""`ceod predict-aoi`: an AOI mask for every image, into a new dataset."""

from __future__ import annotations

import argparse

from ceod.pipeline.commands.common import data_args


def register(sub: argparse._SubParsersAction) -> None:
    pa = sub.add_parser("predict-aoi", help="predict an AOI mask for every image into a new dataset")
    pa.add_argument("--model", required=True, help="a segmenter run folder (its best.pt) or a .pt file")
    pa.add_argument("--data", required=True, help="the dataset whose images get masks (never written to)")
    pa.add_argument("--out", required=True, help="new dataset folder: manifest, masks, and a link to the images")
    data_args(pa, filters=False, split_help="manifest column holding the split (default split)")
    pa.set_defaults(handler=run)


def run(a: argparse.Namespace) -> int:
    from ceod.segmenter.predict import predict_dataset
    result = predict_dataset(a.model, a.data, a.out, a.split_column or "split", a.skip_bad)
    print(f"wrote {result['rows']} predicted AOI masks; dataset {result['out']}")
    return 0
