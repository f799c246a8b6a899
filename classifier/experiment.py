"""CE vs CEOD variants over several seeds, evaluated on every test split with the audit.

One entry point (`ceod experiment`); finished runs are reused, so an interrupted experiment
continues where it stopped. Writes results.json and a markdown table per dataset.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ceod.contracts.config import apply_overrides, from_dict, load_config, to_dict
from ceod.data.loading import load_split
from ceod.data.manifest import read_manifest
from ceod.contracts.model import class_names
from ceod.contracts.errors import CeodError
from ceod.training.transforms import BACKGROUND_SWAP
from ceod.classifier.config import ClassifierConfig
from ceod.classifier.evaluate import REPLACEMENTS, audit, evaluate
from ceod.classifier.inference import load_classifier
from ceod.classifier.train import train_classifier

# The loss keys of the forms before the centred, gated default: stated in full so that a changed
# packaged default does not change what these variants train.
_UNGATED = {"loss.kind": "ceod", "loss.centre": False, "loss.detach_denominator": False, "loss.gate": "none"}
_GATED = {"loss.gate": "ce"}

VARIANTS: dict[str, dict[str, Any]] = {
    # the packaged configs/classifier.yaml as it ships, loss and augment list included
    "default": {},
    "ce": {"loss.kind": "ce"},
    "ceod-paper": {**_UNGATED, "loss.target": "label", "loss.distance": "overlap", "loss.weight": 1.0, "loss.warmup_epochs": 0},
    "ceod-outside": {**_UNGATED, "loss.target": "label", "loss.distance": "outside_mass", "loss.weight": 1.0, "loss.warmup_epochs": 0},
    "ceod-signed": {**_UNGATED, "loss.target": "label", "loss.distance": "signed_outside", "loss.weight": 1.0, "loss.warmup_epochs": 0},
    "ceod-contrast": {**_UNGATED, "loss.target": "contrast", "loss.distance": "signed_outside",
                      "loss.weight": 2.0, "loss.warmup_epochs": 2},
    "ceod-signed-warmup": {**_UNGATED, "loss.target": "label", "loss.distance": "signed_outside",
                           "loss.weight": 1.0, "loss.warmup_epochs": 3},
    "ceod-contrast-w1": {**_UNGATED, "loss.target": "contrast", "loss.distance": "signed_outside",
                         "loss.weight": 1.0, "loss.warmup_epochs": 3},
    # K classes: every class's map must stay inside the AOI, so no class may read the outside
    "ceod-signed-all": {**_UNGATED, "loss.target": "all", "loss.distance": "signed_outside",
                        "loss.weight": 1.0, "loss.warmup_epochs": 3},
    # every class's map in expectation, at the cost of three: the true class + 2 random others a step
    "ceod-signed-sampled": {**_UNGATED, "loss.target": "sampled", "loss.distance": "signed_outside",
                            "loss.weight": 1.0, "loss.warmup_epochs": 3, "loss.sampled_classes": 2},
    "ceod-paper-all": {**_UNGATED, "loss.target": "all", "loss.distance": "overlap", "loss.weight": 1.0, "loss.warmup_epochs": 0},
    # the candidates for a default that cannot win without the decision: the signed all-class term
    # with the common mode removed and a constant normaliser (from the first epochs, or gated on
    # the training CE), and the old term behind the same gate
    "ceod-centred": {**_UNGATED, "loss.target": "all", "loss.distance": "signed_outside", "loss.weight": 1.0,
                     "loss.warmup_epochs": 3, "loss.centre": True, "loss.detach_denominator": True},
    "ceod-gated": {**_UNGATED, **_GATED, "loss.target": "all", "loss.distance": "signed_outside", "loss.weight": 1.0},
    "ceod-centred-gated": {**_UNGATED, **_GATED, "loss.target": "all", "loss.distance": "signed_outside",
                           "loss.weight": 1.0, "loss.centre": True, "loss.detach_denominator": True},
    "ceod-evidence-gated": {**_UNGATED, **_GATED, "loss.target": "all", "loss.distance": "outside_evidence",
                            "loss.weight": 1.0, "loss.centre": True},
    "ceod-evidence": {**_UNGATED, "loss.target": "all", "loss.distance": "outside_evidence",
                      "loss.weight": 1.0, "loss.centre": True, "loss.warmup_epochs": 3},
    # Ross et al. 2017: the input-gradient penalty (lambda = loss.weight)
    "rrr": {"loss.kind": "rrr", "loss.weight": 10.0, "loss.warmup_epochs": 0, "loss.gate": "none"},
    # mask-driven background augmentation: the AOI pasted on another training image's outside
    # (`augment+` appends to the dataset's augment list instead of replacing it)
    "ce-bgswap": {"loss.kind": "ce", "augment+": [{"name": "BackgroundSwap", "p": 0.5}]},
    "ceod-signed-all-bgswap": {**_UNGATED, "loss.target": "all", "loss.distance": "signed_outside",
                               "loss.weight": 1.0, "loss.warmup_epochs": 3,
                               "augment+": [{"name": "BackgroundSwap", "p": 0.5}]},
    "default-bgswap": {"augment+": [{"name": "BackgroundSwap", "p": 0.5}]},
    # the receptive-field leak: a map twice as fine (dilated last stages, same weights)
    "default-os16": {"model.output_stride": 16},
    "ce-os16": {"loss.kind": "ce", "model.output_stride": 16},
    # ... and an input-gradient (RRR) penalty on 4 images of each batch beside the default term;
    # its strength (`default-rrr4@LAMBDA`) is loss.input_grad_weight
    "default-rrr4": {"loss.input_grad_images": 4},
    # the backbone before pretrained weights: the simple CNN from scratch, ImageNet normalisation
    "ce-simple": {"loss.kind": "ce", "model.backbone": "simple", "model.pretrained": False,
                  "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "train.lr": 0.002},
    # the ceiling: CE trained and validated on the same digits without the decoy
    "ce-clean": {"loss.kind": "ce", "train_split": "train_clean", "val_split": "val_clean"},
}
STRENGTH_KEY = "loss.weight"
STRENGTH_KEYS = {"default-rrr4": "loss.input_grad_weight"}  # families whose strength is another key
APPEND_AUGMENT = "augment+"


def resolve(base: dict[str, Any], overrides: dict[str, Any], keep_background_swap: bool = False
            ) -> dict[str, Any]:
    """Dotted overrides on a config dict; `augment+` entries go after the augment list the other
    layers left (so a BackgroundSwap variant keeps the dataset's flips, or their absence). A
    BackgroundSwap already in that list is dropped unless `keep_background_swap`: every variant
    but `default` states its own, so `ce` stays the plain CNN whatever the packaged default."""
    overrides = dict(overrides)
    extra = overrides.pop(APPEND_AUGMENT, [])
    data = apply_overrides(copy.deepcopy(base), overrides)  # base is not touched: callers reuse it
    kept = [a for a in data.get("augment") or []
            if keep_background_swap or not (isinstance(a, dict) and a.get("name") == BACKGROUND_SWAP)]
    data["augment"] = [*kept, *extra]
    return data


def variant_overrides(name: str) -> dict[str, Any]:
    """`rrr` or `rrr@100`: a variant, optionally at another strength (loss.weight = w or lambda)."""
    base, _, strength = name.partition("@")
    if base not in VARIANTS:
        raise CeodError(f"unknown variant {base!r}: choose from {list(VARIANTS)} (optionally NAME@STRENGTH)")
    over = dict(VARIANTS[base])
    if strength:
        try:
            over[STRENGTH_KEYS.get(base, STRENGTH_KEY)] = float(strength)
        except ValueError:
            raise CeodError(f"variant {name!r}: the strength after @ must be a number") from None
    return over


@dataclass
class DatasetSpec:
    name: str
    data: Path
    split_column: str
    test_splits: list[str]
    overrides: dict[str, Any] = field(default_factory=dict)
    max_train_images: int | None = None
    # grouped cross-validation: "seed" k trains on the other folds and tests on fold k
    # (split column fold{k}); the folds are made by `make_folds`
    folds: int = 0
    # the audit (5 replacements, a forward pass each) runs on a seeded subset of at most this many
    # test images per split (0: all); accuracy is always measured on the whole split
    audit_max: int = 0

    def split_column_for(self, seed: int) -> str:
        if not self.folds:
            return self.split_column
        if not 0 <= seed < self.folds:
            raise CeodError(f"{self.name} is {self.folds}-fold cross-validation: seeds are the folds 0..{self.folds - 1}")
        return f"fold{seed}"


# DecoyMNIST: 28 px digits, a simple CNN at stride 2 (14x14 Grad-CAM map: the 4x4 patch covers
# 2x2 whole cells), no augmentation (flips and rotations change digits), K = 10.
DECOY_OVERRIDES: dict[str, Any] = {
    "input_size": 28, "mean": [0.13, 0.13, 0.13], "std": [0.31, 0.31, 0.31], "augment": [],
    "model.backbone": "simple", "model.pretrained": False, "model.downsample": 1, "model.width": 16, "model.head": "flatten_linear", "train.epochs": 8, "train.batch_size": 64, "train.lr": 0.003}

# DecoyMNIST at 112 px on the default pretrained backbone: no augmentation (flips change digits).
DECOY_112_OVERRIDES: dict[str, Any] = {"input_size": 112, "augment": [], "train.epochs": 3, "train.average_last": 2}


# Casting grouped cross-validation: 192 px keeps the smallest defects (pinholes) 2.3x larger than
# 128 px does. The pretrained backbone fine-tunes in 3 epochs of a fold's ~4,200 images.
# Validation: 15 % of each fold's training families, not capped; the kept model is the mean of the
# last 2 epochs' weights, so no checkpoint is picked by a noisy validation score (the threshold
# still comes from validation).
CASTING_CV_OVERRIDES: dict[str, Any] = {
    "input_size": 192, "train.epochs": 3, "train.average_last": 2, "val_fraction": 0.15,
    "threshold.mode": "balanced", "train_split": "train", "val_split": "val"}


def make_folds(source: Path, out: Path, k: int = 3, seed: int = 0) -> Path:
    """A derived dataset (manifest only; images reached through OUT/source) with every column of
    the source plus fold0..fold{k-1} = train | test: every family (`group`) in one test fold,
    label mix kept per fold (sklearn's StratifiedGroupKFold). Rows whose AOI was flagged are left out."""
    from sklearn.model_selection import StratifiedGroupKFold

    from ceod.data.manifest import derive_dataset, read_rows

    if (out / "manifest.csv").is_file():
        return out
    rows = [r for r in read_rows(source) if r.get("aoi_status", "ok") == "ok"]
    if not rows or "group" not in rows[0]:
        raise CeodError(f"{source}/manifest.csv needs a 'group' column (one id per family of near-copies) "
                        "for grouped cross-validation")
    labels = [r["label"] for r in rows]
    groups = [r["group"] for r in rows]
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    test_fold = np.empty(len(rows), dtype=np.int64)
    for fold, (_, test_index) in enumerate(splitter.split(np.zeros(len(rows)), labels, groups)):
        test_fold[test_index] = fold
    # written atomically: workers may race to make the folds
    derive_dataset(out, source, [{**r, **{f"fold{f}": "test" if f == fold else "train" for f in range(k)}}
                                 for r, fold in zip(rows, test_fold)])
    return out


def presets(out: Path, casting: Path | None = None) -> dict[str, DatasetSpec]:
    return {
        "decoy-mnist": DatasetSpec("decoy-mnist", out / "data" / "decoy-mnist", "split",
                                   ["test", "test_shift", "test_anti", "test_clean"], dict(DECOY_OVERRIDES)),
        "synthetic": DatasetSpec("synthetic", out / "data" / "synthetic-small", "split",
                                 ["test", "test_shift", "test_anti"]),
        # the same digits upsampled for the pretrained backbone: the 4x4 patch becomes 16x16 px,
        # half a stride-32 cell, a quarter of a stride-16 one (how fine a map a small cue needs)
        "decoy-mnist-112": DatasetSpec("decoy-mnist-112", out / "data" / "decoy-mnist", "split",
                                       ["test", "test_shift", "test_anti", "test_clean"], dict(DECOY_112_OVERRIDES)),
        "casting": DatasetSpec("casting", casting or Path("--casting"), "split_grouped", ["test"],
                               {"train.epochs": 8, "input_size": 128, "max_val_images": 300,
                                "threshold.mode": "balanced"},
                               max_train_images=1200),
        "casting-cv": DatasetSpec("casting-cv", out / "data" / "casting-folds", "fold0", ["test"],
                                  dict(CASTING_CV_OVERRIDES), folds=3, audit_max=1000),
    }


def run_one(spec: DatasetSpec, variant: str, seed: int, out: Path, epochs: int | None) -> dict[str, Any]:
    run = out / spec.name / f"{variant}-seed{seed}"
    result_path = run / "result.json"
    if not result_path.is_file():
        with _claim(run, result_path):
            if not result_path.is_file():  # another process may have finished it while we waited
                _train_and_evaluate(spec, variant, seed, run, result_path, epochs)
    result = json.loads(result_path.read_text())
    if "val_audit" not in result:  # results from before the validation audit: add it
        result["val_audit"] = validation_audit(spec, run, seed)
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


@contextlib.contextmanager
def _claim(run: Path, result_path: Path, poll_seconds: float = 5.0):
    """Several `ceod experiment` processes may share an output folder (one per core): a run is
    trained by whoever creates its `.running` file; the others wait for its result. A claim
    whose process is gone (killed session) is taken over."""
    run.mkdir(parents=True, exist_ok=True)
    lock = run / ".running"
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            break
        except FileExistsError:
            if result_path.is_file():
                yield
                return
            try:
                owner = int(lock.read_text() or 0)
                os.kill(owner, 0)
            except (ValueError, ProcessLookupError, FileNotFoundError):
                lock.unlink(missing_ok=True)  # stale: its process is gone
                continue
            except PermissionError:
                pass
            time.sleep(poll_seconds)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


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
                              "val": {k: v for k, v in summary["best"].items() if k.startswith("val_")},
                              "splits": {}}
    loaded = {split: load_split(manifest.split(split), cfg.input_size, root=spec.data, classes=manifest.classes)
              for split in spec.test_splits}
    for split, data in loaded.items():
        ev = evaluate(model, cfg, meta, data, heatmaps=16 if seed == 0 else 0, heatmap_dir=run / f"eval_{split}")
        audited = data
        if spec.audit_max and len(data) > spec.audit_max:
            audited = data.subset(sorted(np.random.default_rng(seed).permutation(len(data))[:spec.audit_max]))
        au = audit(model, cfg, meta, audited, seed=seed)
        result["splits"][split] = {"balanced_accuracy": ev["balanced_accuracy"], "auroc": ev["auroc"],
                                   "balanced_accuracy_best_threshold": ev.get("balanced_accuracy_best_threshold"),
                                   "accuracy": ev["accuracy"],
                                   "aoi_attention": ev["aoi_attention"],
                                   "flip": {k: au[k]["flip_rate"] for k in REPLACEMENTS},
                                   "audit_balanced_accuracy": {k: au[k]["balanced_accuracy"]
                                                               for k in REPLACEMENTS}}
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
    if cfg.loss.kind == "ce":  # the other loss keys do nothing under CE: a changed default there is no change
        old, new = {**old, "loss": {"kind": "ce"}}, {**new, "loss": {"kind": "ce"}}
    return summary if (run / "best.pt").is_file() and old == new else None


def _ms(values: list[float]) -> str:
    v = np.asarray(values, float)
    return f"{np.nanmean(v):.3f} ± {np.nanstd(v):.3f}"


def summarise(spec: DatasetSpec, results: list[dict[str, Any]], choices: dict[str, Any] | None = None,
              tolerance: float = 0.01) -> str:
    """Markdown: an accuracy overview across test splits, the strength choices, and per split
    every figure (mean ± std over seeds)."""
    lines = [f"### {spec.name} (`{spec.data.name}`, split column `{spec.split_column}`)", ""]
    variants = list(dict.fromkeys(r["variant"] for r in results))
    seeds = sorted({r["seed"] for r in results})
    first = spec.test_splits[0]
    lines += ["Accuracy per test split and the decision flip rate on "
              f"`{first}` when the outside of the AOI is swapped (mean ± std over seeds {seeds}):", "",
              "| variant | " + " | ".join(spec.test_splits) + f" | flip swap ({first}) | step ms (median, shared CPU) |",
              "|---|" + "---|" * (len(spec.test_splits) + 2)]
    for v in variants:
        rv = [r for r in results if r["variant"] == v]
        lines.append(f"| {v} | " + " | ".join(_ms([r["splits"][sp].get("accuracy", float("nan")) for r in rv])
                                              for sp in spec.test_splits)
                     + f" | {_ms([r['splits'][first]['flip']['swap'] for r in rv])} | "
                     + f"{np.nanmedian([r['step_ms_median'] or np.nan for r in rv]):.0f} |")
    lines.append("")
    for family, c in (choices or {}).items():
        key = [k for k in c["sweep"][0] if k.startswith("val_")][0]
        lines.append(f"Strength of `{family}` (seed {c['seed']}, rule: the largest whose {key} stays within "
                     f"{tolerance:g} of CE's): " + ", ".join(f"{r['strength']:g} → {r[key]:.4f}"
                                                              + ("" if r["within"] else " (out)") for r in c["sweep"])
                     + f"; **chosen {c['chosen']:g}**.")
    if choices:
        lines.append("")
    lines.append(f"Seeds: {seeds}. Mean ± std over seeds. Flip = fraction of decisions that change when the "
                 "outside of the AOI is replaced (swap: another class's background, its part removed by inpainting or, "
                 "on the synthetic line, rendered without it; swap_flat: the same donors with the part filled flat, "
                 "the first audit; shift: background grey "
                 "moved to the other class's mean; grey: constant; noise: random).")
    lines.append("")
    for split in spec.test_splits:
        lines += [f"**{split}**", "",
                  "| variant | balanced acc. | AUROC | aoi_attention | flip swap | flip swap_flat (old audit) "
                  "| flip shift | flip grey | flip noise | bal. acc. after swap |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for v in variants:
            rs = [r["splits"][split] for r in results if r["variant"] == v]
            lines.append(f"| {v} | {_ms([r['balanced_accuracy'] for r in rs])} | {_ms([r['auroc'] for r in rs])} | "
                         f"{_ms([r['aoi_attention'] for r in rs])} | "
                         + " | ".join(_ms([r['flip'].get(k, float("nan")) for r in rs]) for k in REPLACEMENTS)
                         + f" | {_ms([r['audit_balanced_accuracy']['swap'] for r in rs])} |")
        lines.append("")
    lines.append("Training cost is not compared here (runs share the machine); `ceod bench` measures CE vs CEOD "
                 "step time interleaved in one process.")
    return "\n".join(lines) + "\n"


def choose_strength(sweep: list[dict[str, Any]], reference: dict[str, Any], tolerance: float = 0.01
                    ) -> tuple[float, list[dict[str, Any]]]:
    """The rule, fixed before any run: the largest strength whose *validation* score (the
    checkpoint's monitor: accuracy for K classes, AUROC for ok/def) stays within `tolerance` of
    CE's at the same seed; the smallest strength when none does. Validation carries the same
    shortcut as training, so no shifted or test data takes part in the choice."""
    key = "val_accuracy" if "val_accuracy" in reference["val"] else "val_auroc"
    floor = reference["val"][key] - tolerance
    rows = [{"strength": float(r["variant"].partition("@")[2]), key: r["val"][key],
             "within": r["val"][key] >= floor} for r in sweep]
    rows.sort(key=lambda r: r["strength"])
    ok = [r["strength"] for r in rows if r["within"]]
    return (max(ok) if ok else rows[0]["strength"]), rows


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
        results = [run_one(spec, v, s, out, epochs) for s in seeds for v in variants]
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
