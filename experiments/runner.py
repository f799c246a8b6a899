"""`ceod experiment`: CE vs CEOD variants over several seeds, evaluated on every test split with
the audit. Finished runs are reused, so an interrupted experiment continues where it stopped;
several processes may share one output folder (each run is claimed by one of them). Writes
results.json and a markdown table per dataset."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from ceod.classifier.config import ClassifierConfig, resolve, variant_overrides
from ceod.classifier.evaluate import REPLACEMENTS, audit, audit_subset, evaluate, evaluate_splits
from ceod.classifier.inference import load_classifier
from ceod.classifier.train import train_classifier
from ceod.contracts.config import from_dict, load_config, to_dict
from ceod.contracts.errors import CeodError
from ceod.contracts.model import class_names
from ceod.data.loading import load_split
from ceod.data.manifest import read_manifest
from ceod.experiments.datasets import DatasetSpec, make_folds, presets
from ceod.experiments.lock import claim, claimed_elsewhere
from ceod.experiments.report import summarise
from ceod.experiments.strength import choose_strength


def run_one(spec: DatasetSpec, variant: str, seed: int, out: Path, epochs: int | None) -> dict[str, Any]:
    run = out / spec.name / f"{variant}-seed{seed}"
    result_path = run / "result.json"
    if not result_path.is_file():
        with claim(run, result_path):
            if not result_path.is_file():  # another process may have finished it while we waited
                _train_and_evaluate(spec, variant, seed, run, result_path, epochs)
    result = json.loads(result_path.read_text())
    if set(REPLACEMENTS) - set(result.get("val_audit", {})):  # from before the validation audit or a replacement
        result["val_audit"] = validation_audit(spec, run, seed)
        result_path.write_text(json.dumps(result, indent=1))
    if any(set(REPLACEMENTS) - set(r["flip"]) for r in result["splits"].values()):
        result["splits"] = _with_every_replacement(spec, run, seed, result["splits"])
        result_path.write_text(json.dumps(result, indent=1))
    if any("balanced_accuracy_best_threshold" not in r for r in result["splits"].values()):
        result["splits"] = _with_best_threshold(spec, run, seed, result["splits"])
        result_path.write_text(json.dumps(result, indent=1))
    return result


def _with_best_threshold(spec: DatasetSpec, run: Path, seed: int, splits: dict[str, dict]) -> dict[str, dict]:
    """Results from before the best-threshold figure: evaluate the kept model once more."""
    model, cfg, meta = load_classifier(run)
    manifest = read_manifest(spec.data, spec.split_column_for(seed), classes=class_names(meta))
    for split, figures in splits.items():
        data = load_split(manifest.split(split), cfg.input_size, root=spec.data, classes=manifest.classes)
        figures["balanced_accuracy_best_threshold"] = evaluate(model, cfg, meta, data).get(
            "balanced_accuracy_best_threshold")
    return splits


def _with_every_replacement(spec: DatasetSpec, run: Path, seed: int, splits: dict[str, dict]) -> dict[str, dict]:
    """Results from before a replacement joined the audit: audit the kept model again, on the
    same seeded subset `evaluate_splits` audits (the replacements already there come out the same)."""
    model, cfg, meta = load_classifier(run)
    manifest = read_manifest(spec.data, spec.split_column_for(seed), classes=class_names(meta))
    for split, figures in splits.items():
        data = load_split(manifest.split(split), cfg.input_size, root=spec.data, classes=manifest.classes)
        au = audit(model, cfg, meta, audit_subset(data, seed, spec.audit_max), seed=seed)
        figures["flip"] = {k: au[k]["flip_rate"] for k in REPLACEMENTS}
        figures["audit_balanced_accuracy"] = {k: au[k]["balanced_accuracy"] for k in REPLACEMENTS}
    return splits


def validation_audit(spec: DatasetSpec, run: Path, seed: int) -> dict[str, float]:
    """Decision flips per replacement on the run's own validation rows (the same carve training
    used): background reliance measured without any test split, for rules that choose."""
    from ceod.data.splits import train_val
    model, cfg, meta = load_classifier(run)
    manifest = read_manifest(spec.data, spec.split_column_for(seed), classes=class_names(meta))
    _, rows = train_val(manifest, cfg.train_split, cfg.val_split, cfg.val_fraction, None, seed, cfg.max_val_images)
    rows = [r for r in rows if r.aoi is not None]
    if spec.audit_max and len(rows) > spec.audit_max:
        rows = [rows[i] for i in sorted(np.random.default_rng(seed).permutation(len(rows))[:spec.audit_max])]
    data = load_split(rows, cfg.input_size, root=spec.data, classes=manifest.classes)
    return {k: v["flip_rate"] for k, v in audit(model, cfg, meta, data, seed=seed).items() if k in REPLACEMENTS}


def _train_and_evaluate(spec: DatasetSpec, variant: str, seed: int, run: Path, result_path: Path,
                        epochs: int | None) -> dict[str, Any]:
    base = to_dict(load_config(ClassifierConfig, None, "classifier.yaml"))
    overrides = {"split_column": spec.split_column_for(seed), **spec.overrides, **variant_overrides(variant)}
    if epochs:
        overrides["train.epochs"] = epochs
    cfg = from_dict(ClassifierConfig, resolve(base, overrides, keep_background_swap=variant == "default"))
    started = time.perf_counter()
    summary = _finished_training(run, cfg)  # killed during evaluation: evaluate, do not retrain
    if summary is None:
        summary = train_classifier(cfg, spec.data, run, seed, max_train_images=spec.max_train_images,
                                   progress=False, overwrite=True)  # its own folder, under its claim
    model, cfg, meta = load_classifier(run)
    manifest = read_manifest(spec.data, spec.split_column_for(seed), classes=class_names(meta))
    result: dict[str, Any] = {"variant": variant, "seed": seed, "train_seconds": summary["train_seconds"],
                              "step_ms_median": summary["step_ms_median"], "best_epoch": summary["best_epoch"],
                              "val": {k: v for k, v in summary["best"].items() if k.startswith("val_")}}
    loaded = {split: load_split(manifest.split(split), cfg.input_size, root=spec.data, classes=manifest.classes)
              for split in spec.test_splits}
    result["splits"] = evaluate_splits(model, cfg, meta, loaded, seed, spec.audit_max,
                                       heatmaps=16 if seed == 0 else 0, heatmap_dir=run)
    if cfg.train.average_last and (run / "last.pt").is_file():
        # the last epoch's own weights beside the kept average: how much the choice matters
        last_model, _, last_meta = load_classifier(run / "last.pt")
        result["last_epoch"] = {}
        for split, data in loaded.items():
            ev = evaluate(last_model, cfg, last_meta, data)
            result["last_epoch"][split] = {"balanced_accuracy": ev["balanced_accuracy"], "auroc": ev["auroc"]}
    result["val_audit"] = validation_audit(spec, run, seed)
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    result_path.write_text(json.dumps(result, indent=1))
    print(f"[experiment] {spec.name} {variant} seed {seed}: " + ", ".join(
        f"{s} bacc {r['balanced_accuracy']:.3f} att {r['aoi_attention']:.2f} swap-flip {r['flip']['swap']:.2f}"
        for s, r in result["splits"].items()), flush=True)
    return result


def _finished_training(run: Path, cfg: ClassifierConfig) -> dict[str, Any] | None:
    """The training summary of a run whose training finished with this very config, else None."""
    try:
        summary = json.loads((run / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    old, new = summary.get("config") or {}, to_dict(cfg)
    if cfg.loss.kind == "ce":  # the term's keys do nothing under CE: a changed default there is no change
        old, new = ({**c, "loss": {k: v for k, v in (c.get("loss") or {}).items()
                                   if k == "kind" or (k.startswith("consistency_") and c["loss"].get("consistency_weight"))}}
                    for c in (old, new))
    return summary if (run / "best.pt").is_file() and old == new else None


def run_experiment(out: Path, datasets: list[str], variants: list[str], seeds: list[int],
                   epochs: int | None = None, sweeps: dict[str, list[float]] | None = None,
                   casting: Path | None = None, tolerance: float = 0.01) -> dict[str, str]:
    """Fixed variants over every seed; each swept family is first trained at every strength on
    the first seed, its strength chosen by `choose_strength`, then trained on every seed."""
    specs = presets(out, casting)
    for v in [*variants, *(sweeps or {})]:
        variant_overrides(v)  # fail on a typo before any dataset is made or hours of training start
    tables = {}
    for name in datasets:
        if name not in specs:
            raise CeodError(f"unknown experiment dataset {name!r}: choose from {list(specs)}")
        spec = specs[name]
        if name.startswith("casting") and not (casting and (Path(casting) / "manifest.csv").is_file()):
            raise CeodError("the casting preset needs the dataset folder: pass --casting PATH "
                            "(e.g. ../shared/data/casting of a checkout; see its README for the licence)")
        if name == "casting-cv":
            make_folds(Path(casting), spec.data, spec.folds)
        if name == "synthetic" and not (spec.data / "manifest.csv").is_file():
            from ceod.data.synth import config_for, synthesize
            synthesize(spec.data, config_for("small"), seed=0, progress=False)
        if name.startswith("decoy-mnist") and not (spec.data / "manifest.csv").is_file():
            from ceod.data.decoy import synthesize_decoy_mnist
            synthesize_decoy_mnist(spec.data, seed=0, progress=False)
        pairs = [(s, v) for s in seeds for v in variants]
        for s, v in pairs:  # first the runs no other process is training: processes sharing a folder do not queue
            if not claimed_elsewhere(out / spec.name / f"{v}-seed{s}"):
                run_one(spec, v, s, out, epochs)
        results = [run_one(spec, v, s, out, epochs) for s, v in pairs]
        choices = {}
        for family, strengths in (sweeps or {}).items():
            reference = run_one(spec, "ce", seeds[0], out, epochs)
            sweep = [run_one(spec, f"{family}@{w:g}", seeds[0], out, epochs) for w in strengths]
            chosen, rows = choose_strength(sweep, reference, tolerance)
            choices[family] = {"chosen": chosen, "sweep": rows, "seed": seeds[0]}
            print(f"[experiment] {name} {family}: strength {chosen:g} chosen on validation "
                  "(" + ", ".join(f"{r['strength']:g}: {list(r.values())[1]:.4f}" for r in rows) + ")", flush=True)
            results += [run_one(spec, f"{family}@{chosen:g}", s, out, epochs) for s in seeds]
        (out / name).mkdir(parents=True, exist_ok=True)
        (out / name / "results.json").write_text(json.dumps({"results": results, "choices": choices}, indent=1))
        tables[name] = summarise(spec, results, choices, tolerance)
        (out / name / "results.md").write_text(tables[name])
        print(tables[name])
    return tables
