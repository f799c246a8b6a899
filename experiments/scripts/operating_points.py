"""Issue 28's bench: where the shipped threshold lands on new families, and what fixes it.

Step 1 (torch, resumable): for each variant and casting grouped fold, the run of `ceod experiment`
(`casting-cv` preset: the packaged defaults at 192 px, 3 epochs) is trained or reused, and the
kept model's P(def) and log-odds are written for its own validation carve and its test fold, with
each row's family: OUT/scores/VARIANT-foldK.json.
Step 1b (torch, resumable, `--cross-fit`; results 13.4): for each variant and outer fold, the
fold's training families split into 3 family-disjoint inner folds, the same recipe trained on two
and scoring the third: one out-of-fold score per training row, OUT/scores-xfit/VARIANT-foldK.json.
Step 2 (numpy only, `--analyse`): every threshold rule, fitted on the validation scores only, read
on the test fold; and `ceod calibrate`'s rule fitted on 50 labelled test parts (25 per class,
5 seeded draws) and read on the rest of that fold.

    python experiments/scripts/operating_points.py --casting ../shared/data/casting --out runs/op
    python experiments/scripts/operating_points.py --casting ../shared/data/casting --out runs/op \
        --cross-fit --variants ce --folds 0
    python experiments/scripts/operating_points.py --out runs/op --analyse docs/experiments/operating-point
    python experiments/scripts/operating_points.py --out docs/experiments/operating-point \
        --also docs/experiments/consistency-screen/operating-point/scores \
        --calibrate-floor docs/experiments/calibrate-floor [--confirm runs/op2/scores]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def _scores(run: Path, spec, seed: int, splits: tuple[str, ...]) -> tuple[dict, dict[str, dict]]:
    """A finished run's P(def), log-odds, label and family on its validation carve ("val") and/or
    its test split ("test"); seed: the run's (its fold, seed mod k, and its carve's draw)."""
    from ceod.classifier.inference import load_classifier, predict
    from ceod.contracts.model import class_names
    from ceod.data.loading import load_split
    from ceod.data.manifest import read_manifest
    from ceod.data.splits import train_val

    model, cfg, meta = load_classifier(run)
    manifest = read_manifest(spec.data, spec.split_column_for(seed), classes=class_names(meta))
    rows_of = {"test": lambda: manifest.split("test"),
               "val": lambda: train_val(manifest, cfg.train_split, cfg.val_split, cfg.val_fraction, None, seed,
                                        cfg.max_val_images)[1]}
    out = {}
    for name in splits:
        rows = rows_of[name]()
        data = load_split(rows, cfg.input_size, root=spec.data, classes=manifest.classes)
        log_probs, _ = predict(model, data.images, cfg.mean, cfg.std, log=True)
        out[name] = {"p_def": np.exp(log_probs[:, 1]).tolist(),
                     "log_odds": (log_probs[:, 1] - log_probs[:, 0]).tolist(),
                     "label": [int(v) for v in data.labels],
                     "family": [r.extra.get("group") or str(r.image) for r in rows]}
    return meta, out


def dump_scores(casting: Path, out: Path, variants: list[str], seeds: list[int]) -> None:
    """Seed s is fold s mod 3 (seeds 0-2 the folds, 3-5 a second run of each: results 14.12)."""
    from ceod.experiments.datasets import make_folds, presets
    from ceod.experiments.runner import run_one

    spec = presets(out, casting)["casting-cv"]
    make_folds(casting, spec.data, spec.folds)
    (out / "scores").mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        fold = seed % spec.folds
        for variant in variants:
            name = f"{variant}-fold{fold}" + (f"-seed{seed}" if seed != fold else "")
            path = out / "scores" / f"{name}.json"
            if path.is_file():
                continue
            result = run_one(spec, variant, seed, out, None)
            meta, splits = _scores(out / spec.name / f"{variant}-seed{seed}", spec, seed, ("val", "test"))
            path.write_text(json.dumps({"variant": variant, "fold": fold, "seed": seed,
                                        "shipped_threshold": meta["threshold"],
                                        "train_seconds": result["train_seconds"], "splits": splits}))
            print(f"[operating points] {name}: scores written", flush=True)


def dump_cross_fitted(casting: Path, out: Path, variants: list[str], folds: list[int], k: int = 3,
                      order: list[int] | None = None) -> None:
    """Results 13.4: out-of-fold scores of every training row of each outer fold, from k inner runs
    of the same recipe on family-disjoint parts of that fold's training families. `order`: the
    inner runs in the order this process trains them (two processes, two orders: both train)."""
    from dataclasses import replace

    from ceod.experiments.datasets import make_folds, presets
    from ceod.experiments.runner import run_one

    outer = presets(out, casting)["casting-cv"]
    make_folds(casting, outer.data, outer.folds)
    (out / "scores-xfit").mkdir(parents=True, exist_ok=True)
    for fold in folds:
        inner = replace(outer, name=f"{outer.name}-xfit{fold}", data=out / "data" / f"casting-xfit{fold}", folds=k,
                        audit_max=200)  # the inner runs are for their scores; a small audit keeps them cheap
        make_folds(outer.data, inner.data, k, seed=0, within=outer.split_column_for(fold))
        for variant in variants:
            path = out / "scores-xfit" / f"{variant}-fold{fold}.json"
            if path.is_file():
                continue
            results = {part: run_one(inner, variant, part, out, None) for part in order or range(k)}
            seconds = [results[part]["train_seconds"] for part in range(k)]
            parts = [_scores(out / inner.name / f"{variant}-seed{part}", inner, part, ("test",))[1]["test"]
                     for part in range(k)]
            oof = {key: [v for p in parts for v in p[key]] for key in parts[0]}
            path.write_text(json.dumps({"variant": variant, "fold": fold, "inner_folds": k,
                                        "inner_train_seconds": seconds, "splits": {"oof": oof}}))
            print(f"[operating points] {variant} fold {fold}: out-of-fold scores written", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--casting", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--variants", default="ce,default")
    ap.add_argument("--folds", default="0,1,2", help="the casting-cv seeds to score: seed s runs fold s mod 3 "
                    "(3-5: the second runs of results 14.12)")
    ap.add_argument("--cross-fit", action="store_true", help="results 13.4: out-of-fold scores of every training "
                    "row from 3 inner runs per fold (OUT/scores-xfit)")
    ap.add_argument("--inner-order", default="0,1,2", help="with --cross-fit: the order this process trains the "
                    "inner runs in (a second process with another order shares the work)")
    ap.add_argument("--analyse", type=Path, metavar="DIR", help="write the tables from OUT/scores into DIR "
                    "(and, where OUT/scores-xfit has them, the thresholds fitted on out-of-fold scores)")
    ap.add_argument("--calibrate-floor", type=Path, metavar="DIR", help="results 13.7: choose `ceod calibrate`'s "
                    "quantile floor on the validation carves of OUT/scores (and of --also DIRs), tables into DIR")
    ap.add_argument("--also", type=Path, nargs="*", default=[], metavar="SCORES", help="with --calibrate-floor: more "
                    "score folders the choice reads")
    ap.add_argument("--confirm", type=Path, metavar="SCORES", help="with --calibrate-floor: score folder of runs "
                    "scored after the rule, read on test only")
    a = ap.parse_args()
    if a.calibrate_floor:
        from ceod.experiments.operating import write_floor_tables
        chosen_on = [f for d in [a.out / "scores", *a.also] for f in sorted(d.glob("*.json"))]
        write_floor_tables(chosen_on, a.calibrate_floor, sorted(a.confirm.glob("*.json")) if a.confirm else [])
        return
    if a.analyse:
        from ceod.experiments.operating import write_tables
        write_tables(sorted((a.out / "scores").glob("*.json")), a.analyse,
                     sorted((a.out / "scores-xfit").glob("*.json")))
        return
    if a.casting is None:
        ap.error("--casting PATH is needed to train and score")
    variants, folds = a.variants.split(","), [int(f) for f in a.folds.split(",")]
    if a.cross_fit:
        dump_cross_fitted(a.casting, a.out, variants, folds, order=[int(p) for p in a.inner_order.split(",")])
    else:
        dump_scores(a.casting, a.out, variants, folds)


if __name__ == "__main__":
    main()
