"""Training the anomaly classifier with CE or CEOD."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from ceod import CLASS_NAMES, __version__
from ceod.config import to_dict
from ceod.dataset import LoadedSplit, Sample, fingerprint, load_split, read_manifest, train_val
from ceod.distributed import DistContext
from ceod.metrics import binary_metrics, calibrate_threshold, nanmean
from ceod.torchdata import SplitDataset
from ceod.training import FitSpec, ensure_writable, fit, seed_everything, write_json
from ceod.transforms import build_augment
from classifier.config import ClassifierConfig
from classifier.inference import aoi_attention, predict
from classifier.loss import CEODLoss
from classifier.model import build_classifier

# (samples, size) -> AOI masks [N,S,S] uint8 {0,1}: where masks come from when not the manifest.
MaskSource = Callable[[list[Sample], int], np.ndarray]


def loss_name(cfg: ClassifierConfig) -> str:
    loss = cfg.loss
    if loss.kind == "ce":
        return "ce"
    return f"ceod(w={loss.weight:g},target={loss.target},distance={loss.distance},apply_to={loss.apply_to})"


def load_train_val(cfg: ClassifierConfig, data: str | Path, seed: int, skip_bad: bool = False,
                   filters: dict[str, str] | None = None, max_train_images: int | None = None,
                   progress: bool = True) -> tuple[LoadedSplit, LoadedSplit]:
    manifest = read_manifest(data, cfg.split_column, skip_bad=skip_bad)
    train_rows, val_rows = train_val(manifest, cfg.train_split, cfg.val_split, cfg.val_fraction, filters, seed,
                                     cfg.max_val_images)
    if max_train_images:
        order = np.random.default_rng(seed).permutation(len(train_rows))[:max_train_images]
        train_rows = [train_rows[i] for i in sorted(order)]
    root = Path(data)
    return (load_split(train_rows, cfg.input_size, skip_bad, root, progress, "loading train"),
            load_split(val_rows, cfg.input_size, skip_bad, root, progress, "loading val"))


def train_classifier(cfg: ClassifierConfig, data: str | Path, out: str | Path, seed: int = 0,
                     mask_source: MaskSource | None = None, mask_label: str = "gt",
                     skip_bad: bool = False, filters: dict[str, str] | None = None,
                     max_train_images: int | None = None, resume: str | Path | None = None,
                     force_resume: bool = False, ctx: DistContext | None = None,
                     progress: bool = True, on_epoch_end=None) -> dict[str, Any]:
    """Train, keep the best checkpoint by validation AUROC, calibrate the threshold, write metrics."""
    ctx = ctx or DistContext()
    out = ensure_writable(out)
    seed_everything(seed)
    train, val = load_train_val(cfg, data, seed, skip_bad, filters, max_train_images, progress and ctx.is_main)
    masks = mask_source(train.samples, cfg.input_size) if mask_source else train.aoi
    val_masks = mask_source(val.samples, cfg.input_size) if mask_source else val.aoi
    augment = build_augment(cfg.augment)
    dataset = SplitDataset(train, tuple(cfg.mean), tuple(cfg.std), augment, masks)
    generator = torch.Generator().manual_seed(seed)
    sampler = (DistributedSampler(dataset, ctx.world_size, ctx.rank, shuffle=True, seed=seed, drop_last=True)
               if ctx.enabled else RandomSampler(dataset, generator=generator))
    batch = min(cfg.train.batch_size, len(dataset))
    loader = DataLoader(dataset, batch_size=batch, sampler=sampler, drop_last=True, num_workers=0)
    if ctx.enabled:
        loader.generator = None
    else:
        loader.generator = generator
    model = build_classifier(cfg.model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=cfg.train.lr, total_steps=max(cfg.train.epochs * len(loader), 1), pct_start=0.15)
    criterion = CEODLoss(cfg.loss)

    def step(model, batch, epoch):
        x, m, y, _ = batch
        x, m, y = x.to(ctx.device), m.to(ctx.device), y.to(ctx.device)
        logits, feats = model(x, return_features=True)
        res = criterion(model, logits, feats, m, y, epoch)
        return res.total, {"loss": res.total.item(), "ce": res.ce.item(), "aoi_term": res.term.item()}

    state: dict[str, Any] = {}

    def validate(model) -> dict[str, float]:
        probs, cams = predict(model, val.images, cfg.mean, cfg.std, with_cam=True)
        threshold = calibrate_threshold(probs, val.labels, cfg.threshold.mode, cfg.threshold.target_recall)
        m = binary_metrics(probs, val.labels, threshold)
        state["threshold"] = threshold
        return {"val_auroc": m["auroc"], "val_balanced_accuracy": m["balanced_accuracy"],
                "val_f1": m["f1"], "val_aoi_attention": nanmean(aoi_attention(cams, val_masks))}

    fp = fingerprint(train.samples)

    def meta(val_metrics: dict[str, float]) -> dict[str, Any]:
        return {"model_kind": "classifier", "input_size": cfg.input_size, "colour_order": "RGB",
                "mean": list(cfg.mean), "std": list(cfg.std), "class_names": list(CLASS_NAMES),
                "threshold": float(state.get("threshold", 0.5)), "training_loss": loss_name(cfg),
                "backbone": cfg.model.backbone, "head": cfg.model.head, "aoi_source": mask_label,
                "package_version": __version__, "data_fingerprint": fp, "seed": seed,
                "data_path": str(Path(data).resolve()), "split_column": cfg.split_column,
                "train_split": cfg.train_split}

    spec = FitSpec("classifier", model, optimizer, scheduler, loader, cfg.train.epochs, seed, step, validate,
                   "val_auroc", out, to_dict(cfg), meta, augment, resume, force_resume, ctx, progress,
                   on_epoch_end)
    result = fit(spec)
    if ctx.is_main:
        best = next(h for h in result["history"] if h["epoch"] == result["best_epoch"]) if result["best_epoch"] >= 0 else {}
        summary = {"kind": "classifier", "loss": loss_name(cfg), "seed": seed, "aoi_source": mask_label,
                   "best_epoch": result["best_epoch"], "best": best, "train_seconds": result["seconds"],
                   "step_ms_median": result["step_ms_median"],
                   "train_images": len(train), "val_images": len(val), "data_fingerprint": fp,
                   "config": to_dict(cfg)}
        write_json(out / "metrics.json", summary)
        return summary
    return {}
