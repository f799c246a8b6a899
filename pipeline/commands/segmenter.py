"""`ceod train-segmenter` and `ceod evaluate-segmenter`: the AOI segmenter."""

from __future__ import annotations

import argparse

from ceod.pipeline.commands.common import data_args, filters, print_json, run_folder, training_args


def register(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser("train-segmenter", help="train the AOI segmenter (smp)")
    g.add_argument("--data", required=True, help="dataset folder; rows with an AOI mask are the targets")
    g.add_argument("--out", required=True, help="run folder (checkpoints, metrics.json, curves.png)")
    training_args(g, "segmenter")
    g.add_argument("--max-train-images", type=int, help="train on a seeded subset of the annotated images")
    data_args(g)
    g.set_defaults(handler=train)
    es = sub.add_parser("evaluate-segmenter", help="IoU/Dice, worst five, overlays")
    es.add_argument("--model", required=True, help="a segmenter run folder or .pt file")
    es.add_argument("--data", required=True, help="dataset with annotated AOI masks")
    es.add_argument("--split", default="test", help="split to evaluate (rows with an AOI)")
    data_args(es)
    es.set_defaults(handler=evaluate)


def train(a: argparse.Namespace) -> int:
    from ceod.contracts.config import load_config, parse_sets
    from ceod.segmenter.config import SegmenterConfig
    from ceod.segmenter.train import train_segmenter
    from ceod.training.distributed import distributed_run
    cfg = load_config(SegmenterConfig, a.config, "segmenter.yaml", {
        "train.epochs": a.epochs, "split_column": a.split_column, "input_size": a.input_size, **parse_sets(a.set)})
    with distributed_run() as ctx:
        summary = train_segmenter(cfg, a.data, a.out, seed=a.seed, max_train_images=a.max_train_images,
                                  skip_bad=a.skip_bad, filters=filters(a.filter), resume=a.resume,
                                  force_resume=a.force, ctx=ctx)
    if summary:
        print(f"best epoch {summary['best_epoch'] + 1}: val IoU {summary['best'].get('val_iou', float('nan')):.4f}; "
              f"{summary['train_images']} training images, {summary['train_seconds']:.0f} s; {a.out}/best.pt")
    return 0


def evaluate(a: argparse.Namespace) -> int:
    from ceod.segmenter.evaluate import evaluate_segmenter
    run = run_folder(a.model)
    result = evaluate_segmenter(a.model, a.data, a.split, a.split_column, filters(a.filter), a.skip_bad, run)
    print_json(result, run / f"eval_segmenter_{a.split}.json")
    return 0
