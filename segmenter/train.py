"""Training the AOI segmenter: Dice + BCE (smp.losses), AdamW, cosine schedule, best by val IoU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ceod.contracts.metrics import iou_dice
from ceod.contracts.model import model_metadata
from ceod.data.loading import LoadedSplit
from ceod.segmenter.config import SegmenterConfig
from ceod.segmenter.model import build_segmenter, freeze_unused
from ceod.segmenter.predict import predict_masks
from ceod.training.distributed import DistContext
from ceod.training.loop import adamw
from ceod.training.stage import Stage, StageParts, train_stage


def segmenter_stage(cfg: SegmenterConfig, data: str | Path, seed: int, ctx: DistContext) -> Stage:
    """The segmenter's stage: trained on rows with an AOI mask."""
    import segmentation_models_pytorch as smp

    def build(train: LoadedSplit, val: LoadedSplit, loader, fp: str) -> StageParts:
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

        def meta(_: dict[str, float]) -> dict[str, Any]:
            return model_metadata("segmenter", input_size=cfg.input_size, mean=cfg.mean, std=cfg.std,
                                  class_names=["outside", "aoi"], threshold=cfg.postprocess.threshold,
                                  training_loss="dice+bce", data_fingerprint=fp,
                                  arch=cfg.model.arch, encoder=cfg.model.encoder, seed=seed, train_images=len(train),
                                  data_path=str(Path(data).resolve()), split_column=cfg.split_column,
                                  train_split=cfg.train_split)

        return StageParts(model=model, optimizer=optimizer, scheduler=scheduler, step=step, validate=validate,
                          monitor="val_iou", meta=meta)

    return Stage(kind="segmenter", cfg=cfg, build=build, require_aoi=True)


def train_segmenter(cfg: SegmenterConfig, data: str | Path, out: str | Path, seed: int = 0,
                    max_train_images: int | None = None, skip_bad: bool = False,
                    filters: dict[str, str] | None = None, resume: str | Path | None = None,
                    force_resume: bool = False, ctx: DistContext | None = None,
                    progress: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Train on rows with an AOI mask; `max_train_images` keeps a seeded subset (few annotations).
    A folder that already holds a run is refused unless resumed, or `overwrite` (its owner asks)."""
    ctx = ctx or DistContext()
    return train_stage(segmenter_stage(cfg, data, seed, ctx), data, out, seed=seed, max_train_images=max_train_images,
                       skip_bad=skip_bad, filters=filters, resume=resume, force_resume=force_resume, ctx=ctx,
                       progress=progress, overwrite=overwrite)
