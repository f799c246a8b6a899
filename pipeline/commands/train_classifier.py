"""`ceod train-classifier`: the anomaly classifier with CE, CEOD or RRR."""

from __future__ import annotations

import argparse
from pathlib import Path

from ceod.pipeline.commands.common import data_args, filters, training_args


def register(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("train-classifier", help="train the anomaly classifier with CE or CEOD")
    t.add_argument("--data", required=True, help="dataset folder (manifest.csv)")
    t.add_argument("--out", required=True, help="run folder (checkpoints, metrics.json, curves.png)")
    t.add_argument("--loss", choices=["ce", "ceod", "rrr"], help="overrides loss.kind of the config")
    t.add_argument("--masks", default="gt", help="where AOI masks come from: gt (the manifest's), a segmenter "
                                                 "run folder (predicted, cached in OUT/cache), or a dataset made by predict-aoi")
    training_args(t, "classifier")
    data_args(t)
    t.add_argument("--max-train-images", type=int, help="train on a seeded subset of the training rows")
    t.set_defaults(handler=run)


def run(a: argparse.Namespace) -> int:
    from ceod.classifier.config import ClassifierConfig
    from ceod.classifier.train import train_classifier
    from ceod.contracts.config import load_config, parse_sets
    from ceod.pipeline.masks import mask_source
    from ceod.training.distributed import distributed_run
    cfg = load_config(ClassifierConfig, a.config, "classifier.yaml", {
        "loss.kind": a.loss, "train.epochs": a.epochs, "split_column": a.split_column, "input_size": a.input_size,
        **parse_sets(a.set)})
    with distributed_run() as ctx:
        label, source = mask_source(a.masks, Path(a.out) / "cache")
        summary = train_classifier(cfg, a.data, a.out, seed=a.seed, mask_source=source, mask_label=label,
                                   skip_bad=a.skip_bad, filters=filters(a.filter), max_train_images=a.max_train_images,
                                   resume=a.resume, force_resume=a.force, ctx=ctx)
    if summary:
        best = summary["best"]
        kept = (f"kept the mean of the last {best['averaged_epochs']} epochs' weights" if "averaged_epochs" in best
                else f"best epoch {summary['best_epoch'] + 1}")
        print(f"{kept}: val AUROC {best.get('val_auroc', float('nan')):.4f}, "
              f"aoi_attention {best.get('val_aoi_attention', float('nan')):.3f}; "
              f"{summary['train_seconds']:.0f} s; checkpoint {a.out}/best.pt")
    return 0
