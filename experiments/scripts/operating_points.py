"""Issue 28's bench: where the shipped threshold lands on new families, and what fixes it.

Step 1 (torch, resumable): for each variant and casting grouped fold, the run of `ceod experiment`
(`casting-cv` preset: the packaged defaults at 192 px, 3 epochs) is trained or reused, and the
kept model's P(def) and log-odds are written for its own validation carve and its test fold, with
each row's family: OUT/scores/VARIANT-foldK.json.
Step 2 (numpy only, `--analyse`): every threshold rule, fitted on the validation scores only, read
on the test fold; and `ceod calibrate`'s rule fitted on 50 labelled test parts (25 per class,
5 seeded draws) and read on the rest of that fold.

    python experiments/scripts/operating_points.py --casting ../shared/data/casting --out runs/op
    python experiments/scripts/operating_points.py --out runs/op --analyse docs/experiments/operating-point
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def dump_scores(casting: Path, out: Path, variants: list[str], folds: list[int]) -> None:
    from ceod.classifier.inference import load_classifier, predict
    from ceod.contracts.model import class_names
    from ceod.data.loading import load_split
    from ceod.data.manifest import read_manifest
    from ceod.data.splits import train_val
    from ceod.experiments.datasets import make_folds, presets
    from ceod.experiments.runner import run_one

    spec = presets(out, casting)["casting-cv"]
    make_folds(casting, spec.data, spec.folds)
    (out / "scores").mkdir(parents=True, exist_ok=True)
    for fold in folds:
        for variant in variants:
            path = out / "scores" / f"{variant}-fold{fold}.json"
            if path.is_file():
                continue
            result = run_one(spec, variant, fold, out, None)
            run = out / spec.name / f"{variant}-seed{fold}"
            model, cfg, meta = load_classifier(run)
            manifest = read_manifest(spec.data, spec.split_column_for(fold), classes=class_names(meta))
            _, val_rows = train_val(manifest, cfg.train_split, cfg.val_split, cfg.val_fraction, None, fold,
                                    cfg.max_val_images)
            record = {"variant": variant, "fold": fold, "shipped_threshold": meta["threshold"],
                      "train_seconds": result["train_seconds"], "splits": {}}
            for name, rows in (("val", val_rows), ("test", manifest.split("test"))):
                data = load_split(rows, cfg.input_size, root=spec.data, classes=manifest.classes)
                log_probs, _ = predict(model, data.images, cfg.mean, cfg.std, log=True)
                record["splits"][name] = {
                    "p_def": np.exp(log_probs[:, 1]).tolist(),
                    "log_odds": (log_probs[:, 1] - log_probs[:, 0]).tolist(),
                    "label": [int(v) for v in data.labels],
                    "family": [r.extra.get("group") or str(r.image) for r in rows]}
            path.write_text(json.dumps(record))
            print(f"[operating points] {variant} fold {fold}: scores written", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--casting", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--variants", default="ce,default")
    ap.add_argument("--folds", default="0,1,2")
    ap.add_argument("--analyse", type=Path, metavar="DIR", help="write the tables from OUT/scores into DIR")
    a = ap.parse_args()
    if a.analyse:
        from ceod.experiments.operating import write_tables
        write_tables(sorted((a.out / "scores").glob("*.json")), a.analyse)
        return
    if a.casting is None:
        ap.error("--casting PATH is needed to train and score")
    dump_scores(a.casting, a.out, a.variants.split(","), [int(f) for f in a.folds.split(",")])


if __name__ == "__main__":
    main()
