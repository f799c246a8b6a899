"""CE vs CEOD variants over several seeds, evaluated on every test split with the audit.

One entry point (`ceod experiment`); finished runs are reused, so an interrupted experiment
continues where it stopped. Writes results.json and a markdown table per dataset.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ceod.config import apply_overrides, from_dict, load_config, to_dict
from ceod.dataset import load_split, read_manifest
from classifier.config import ClassifierConfig
from classifier.evaluate import audit, evaluate
from classifier.inference import load_classifier
from classifier.train import train_classifier

VARIANTS: dict[str, dict[str, Any]] = {
    "ce": {"loss.kind": "ce"},
    "ceod-paper": {"loss.kind": "ceod", "loss.target": "label", "loss.distance": "overlap", "loss.weight": 1.0},
    "ceod-outside": {"loss.kind": "ceod", "loss.target": "label", "loss.distance": "outside_mass", "loss.weight": 1.0},
    "ceod-signed": {"loss.kind": "ceod", "loss.target": "label", "loss.distance": "signed_outside", "loss.weight": 1.0},
    "ceod-contrast": {"loss.kind": "ceod", "loss.target": "contrast", "loss.distance": "signed_outside",
                      "loss.weight": 2.0, "loss.warmup_epochs": 2},
    "ceod-signed-warmup": {"loss.kind": "ceod", "loss.target": "label", "loss.distance": "signed_outside",
                           "loss.weight": 1.0, "loss.warmup_epochs": 3},
    "ceod-contrast-w1": {"loss.kind": "ceod", "loss.target": "contrast", "loss.distance": "signed_outside",
                         "loss.weight": 1.0, "loss.warmup_epochs": 3},
}


@dataclass
class DatasetSpec:
    name: str
    data: Path
    split_column: str
    test_splits: list[str]
    overrides: dict[str, Any] = field(default_factory=dict)
    max_train_images: int | None = None


def presets(out: Path) -> dict[str, DatasetSpec]:
    casting = Path(__file__).resolve().parents[2] / "shared" / "data" / "casting"
    return {
        "synthetic": DatasetSpec("synthetic", out / "data" / "synthetic-small", "split",
                                 ["test", "test_shift", "test_anti"], {"train.epochs": 12}),
        "casting": DatasetSpec("casting", casting, "split_grouped", ["test"],
                               {"train.epochs": 8, "input_size": 128, "max_val_images": 300,
                                "threshold.mode": "balanced"},
                               max_train_images=1200),
    }


def run_one(spec: DatasetSpec, variant: str, seed: int, out: Path, epochs: int | None) -> dict[str, Any]:
    run = out / spec.name / f"{variant}-seed{seed}"
    result_path = run / "result.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    base = to_dict(load_config(ClassifierConfig, None, "classifier.yaml"))
    overrides = {"split_column": spec.split_column, **spec.overrides, **VARIANTS[variant]}
    if epochs:
        overrides["train.epochs"] = epochs
    cfg = from_dict(ClassifierConfig, apply_overrides(base, overrides))
    started = time.perf_counter()
    summary = train_classifier(cfg, spec.data, run, seed, max_train_images=spec.max_train_images, progress=False)
    model, cfg, meta = load_classifier(run)
    manifest = read_manifest(spec.data, spec.split_column)
    result: dict[str, Any] = {"variant": variant, "seed": seed, "train_seconds": summary["train_seconds"],
                              "step_ms_median": summary["step_ms_median"], "splits": {}}
    for split in spec.test_splits:
        data = load_split(manifest.split(split), cfg.input_size, root=spec.data)
        ev = evaluate(model, cfg, meta, data, heatmaps=16 if seed == 0 else 0, heatmap_dir=run / f"eval_{split}")
        au = audit(model, cfg, meta, data, seed=seed)
        result["splits"][split] = {"balanced_accuracy": ev["balanced_accuracy"], "auroc": ev["auroc"],
                                   "aoi_attention": ev["aoi_attention"],
                                   "flip": {k: au[k]["flip_rate"] for k in ("swap", "shift", "grey", "noise")},
                                   "audit_balanced_accuracy": {k: au[k]["balanced_accuracy"]
                                                               for k in ("swap", "shift", "grey", "noise")}}
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    result_path.write_text(json.dumps(result, indent=1))
    print(f"[experiment] {spec.name} {variant} seed {seed}: " + ", ".join(
        f"{s} bacc {r['balanced_accuracy']:.3f} att {r['aoi_attention']:.2f} swap-flip {r['flip']['swap']:.2f}"
        for s, r in result["splits"].items()), flush=True)
    return result


def _ms(values: list[float]) -> str:
    v = np.asarray(values, float)
    return f"{np.nanmean(v):.3f} ± {np.nanstd(v):.3f}"


def summarise(spec: DatasetSpec, results: list[dict[str, Any]]) -> str:
    """A markdown table: mean ± std over seeds of every figure, per variant and test split."""
    lines = [f"### {spec.name} (`{spec.data.name}`, split column `{spec.split_column}`)", ""]
    variants = list(dict.fromkeys(r["variant"] for r in results))
    seeds = sorted({r["seed"] for r in results})
    lines.append(f"Seeds: {seeds}. Mean ± std over seeds. Flip = fraction of decisions that change when the "
                 "outside of the AOI is replaced (swap: another class's background; shift: background grey "
                 "moved to the other class's mean; grey: constant; noise: random).")
    lines.append("")
    for split in spec.test_splits:
        lines += [f"**{split}**", "",
                  "| variant | balanced acc. | AUROC | aoi_attention | flip swap | flip shift | flip grey | flip noise | bal. acc. after swap |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for v in variants:
            rs = [r["splits"][split] for r in results if r["variant"] == v]
            lines.append(f"| {v} | {_ms([r['balanced_accuracy'] for r in rs])} | {_ms([r['auroc'] for r in rs])} | "
                         f"{_ms([r['aoi_attention'] for r in rs])} | "
                         + " | ".join(_ms([r['flip'][k] for r in rs]) for k in ("swap", "shift", "grey", "noise"))
                         + f" | {_ms([r['audit_balanced_accuracy']['swap'] for r in rs])} |")
        lines.append("")
    lines.append("Training cost is not compared here (runs share the machine); `ceod bench` measures CE vs CEOD "
                 "step time interleaved in one process.")
    return "\n".join(lines) + "\n"


def run_experiment(out: Path, datasets: list[str], variants: list[str], seeds: list[int],
                   epochs: int | None = None) -> dict[str, str]:
    specs = presets(out)
    tables = {}
    for name in datasets:
        if name not in specs:
            raise ValueError(f"unknown experiment dataset {name!r}: choose from {list(specs)}")
        spec = specs[name]
        if name == "synthetic" and not (spec.data / "manifest.csv").is_file():
            from ceod.synth import config_for, synthesize
            synthesize(spec.data, config_for("small"), seed=0, progress=False)
        bad = [v for v in variants if v not in VARIANTS]
        if bad:
            raise ValueError(f"unknown variant(s) {bad}: choose from {list(VARIANTS)}")
        results = [run_one(spec, v, s, out, epochs) for s in seeds for v in variants]
        (out / name).mkdir(parents=True, exist_ok=True)
        (out / name / "results.json").write_text(json.dumps(results, indent=1))
        tables[name] = summarise(spec, results)
        (out / name / "results.md").write_text(tables[name])
        print(tables[name])
    return tables
