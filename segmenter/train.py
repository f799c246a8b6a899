"""Training the AOI segmenter: Dice + BCE (smp.losses), AdamW, cosine schedule, best by val IoU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ceod.contracts.model import model_metadata
from ceod.contracts.config import to_dict
from ceod.data.manifest import fingerprint
from ceod.data.loading import load_train_val
from ceod.training.distributed import DistContext
from ceod.contracts.metrics import iou_dice
from ceod.training.torchdata import SplitDataset
from ceod.training.loop import FitSpec, adamw, ensure_writable, fit, make_loader, seed_everything, write_json
from ceod.training.transforms import build_augment
from ceod.segmenter.config import SegmenterConfig
from ceod.segmenter.model import build_segmenter, freeze_unused
from ceod.segmenter.predict import predict_masks


def train_segmenter(cfg: SegmenterConfig, data: str | Path, out: str | Path, seed: int = 0,
                    max_train_images: int | None = None, skip_bad: bool = False,
                    filters: dict[str, str] | None = None, resume: str | Path | None = None,
                    force_resume: bool = False, ctx: DistContext | None = None,
                    progress: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Train on rows with an AOI mask; `max_train_images` keeps a seeded subset (few annotations).
    A folder that already holds a run is refused unless resumed, or `overwrite` (its owner asks)."""
    import segmentation_models_pytorch as smp

    ctx = ctx or DistContext()
    out = ensure_writable(out, ctx, continuing=resume is not None or overwrite)
    seed_everything(seed)
    train, val = load_train_val(data, cfg, seed, skip_bad, filters, max_train_images, require_aoi=True,
                                progress=progress and ctx.is_main)
    augment = build_augment(cfg.augment)
    dataset = SplitDataset(train, tuple(cfg.mean), tuple(cfg.std), augment)
    loader = make_loader(dataset, cfg.train.batch_size, seed, ctx)
    model = freeze_unused(build_segmenter(cfg.model))
    decoder = torch.nn.ModuleList([m for name, m in model.named_children() if name != "encoder"])
    optimizer = adamw(cfg.train, model.encoder, decoder)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(cfg.train.epochs * len(loader), 1))
    dice = smp.losses.DiceLoss(mode="binary", from_logits=True)
    bce = smp.losses.SoftBCEWithLogitsLoss()

    def step(model, batch, epoch):
        x, m, _, _ = batch
        x, m = x.to(ctx.device), m.to(ctx.device)
        out_logits = model(x)
        d, b = dice(out_logits, m), bce(out_logits, m)
        return d + b, {"loss": (d + b).item(), "dice_loss": d.item(), "bce": b.item()}

    def validate(model) -> dict[str, float]:
        model.eval()
        pred = predict_masks(model, cfg, val.images)
        model.train()
        iou, dsc = iou_dice(pred, val.aoi)
        return {"val_iou": float(iou.mean()), "val_dice": float(dsc.mean())}

    fp = fingerprint(train.samples)

    def meta(_: dict[str, float]) -> dict[str, Any]:
        return model_metadata("segmenter", input_size=cfg.input_size, mean=cfg.mean, std=cfg.std,
                              class_names=["outside", "aoi"], threshold=cfg.postprocess.threshold,
                              training_loss="dice+bce", data_fingerprint=fp,
                              arch=cfg.model.arch, encoder=cfg.model.encoder, seed=seed, train_images=len(train),
                              data_path=str(Path(data).resolve()), split_column=cfg.split_column,
                              train_split=cfg.train_split)

    spec = FitSpec("segmenter", model, optimizer, scheduler, loader, cfg.train.epochs, seed, step, validate,
                   "val_iou", out, to_dict(cfg), meta, augment, resume, force_resume, ctx, progress,
                   average_last=cfg.train.average_last)
    result = fit(spec)
    if not ctx.is_main:
        return {}
    best = next((h for h in result["history"] if h["epoch"] == result["best_epoch"]), {})
    summary = {"kind": "segmenter", "seed": seed, "best_epoch": result["best_epoch"], "best": best,
               "train_seconds": result["seconds"], "step_ms_median": result["step_ms_median"], "train_images": len(train), "val_images": len(val),
               "data_fingerprint": fp, "config": to_dict(cfg)}
    write_json(out / "metrics.json", summary)
    return summary
