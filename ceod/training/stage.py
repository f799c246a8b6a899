"""The one trainer template both stages use: a trainer describes its stage (how to build the model
and its optimiser from the loaded data, one step, validation, the checkpoint's metadata) and
`train_stage` does the rest the same way for both: the run folder, seeding, loading train and
validation rows, augmentation, the loader, `fit`, and metrics.json."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ceod.contracts.config import to_dict
from ceod.data.loading import LoadedSplit, load_train_val
from ceod.data.manifest import fingerprint
from ceod.training.distributed import DistContext
from ceod.training.loop import FitSpec, ensure_writable, fit, make_loader, seed_everything, write_json
from ceod.training.torchdata import SplitDataset
from ceod.training.transforms import COUNTERFACTUALS, build_augment


@dataclass(kw_only=True)
class StageParts:
    """What a stage builds once its data is loaded."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    # step(model, batch, epoch) -> (loss, {name: float}) for one batch
    step: Callable[[nn.Module, Any, int], tuple[torch.Tensor, dict[str, float]]]
    # validate(model) -> {name: float}; its `monitor` entry chooses the best checkpoint
    validate: Callable[[nn.Module], dict[str, float]]
    monitor: str
    meta: Callable[[dict[str, float]], dict[str, Any]]  # the checkpoint's metadata, from val metrics
    extra_state: Callable[[], dict[str, Any]] | None = None  # trainer state kept in last.pt
    load_extra_state: Callable[[dict[str, Any] | None], None] | None = None
    summary: Callable[[], dict[str, Any]] = dict  # fields metrics.json adds for this stage


@dataclass(kw_only=True)
class Stage:
    """A trainer's description of its stage."""

    kind: str  # "segmenter" | "classifier"
    cfg: Any  # the stage config: input_size, mean, std, augment, train.*, splits
    # build(train, val, loader, data fingerprint) -> the model and how to train it
    build: Callable[[LoadedSplit, LoadedSplit, torch.utils.data.DataLoader, str], StageParts]
    require_aoi: bool = False  # train only on rows with an AOI mask (the segmenter's targets)
    # AOI masks of the training rows when they do not come from the manifest (predicted ones)
    masks: Callable[[LoadedSplit], np.ndarray] | None = None
    background_swap: float = 0.0  # probability of the mask-driven background swap
    counterfactual: bool = False  # batches carry a fifth item: each image with its outside replaced
    views: tuple[str, ...] = COUNTERFACTUALS  # how the outside is replaced (outside_counterfactual)
    check: Callable[[LoadedSplit, LoadedSplit], None] = field(default=lambda train, val: None)


def train_stage(stage: Stage, data: str | Path, out: str | Path, *, seed: int = 0,
                max_train_images: int | None = None, skip_bad: bool = False, filters: dict[str, str] | None = None,
                resume: str | Path | None = None, force_resume: bool = False, ctx: DistContext | None = None,
                progress: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Train a stage and write metrics.json; returns its summary ({} on ranks other than 0). A
    folder that already holds a run is refused unless resumed, or `overwrite` (its owner asks)."""
    ctx = ctx or DistContext()
    cfg = stage.cfg
    out = ensure_writable(out, ctx, continuing=resume is not None or overwrite)
    seed_everything(seed)
    train, val = load_train_val(data, cfg, seed, skip_bad, filters, max_train_images,
                                require_aoi=stage.require_aoi, progress=progress and ctx.is_main)
    stage.check(train, val)
    augment = build_augment(cfg.augment)
    dataset = SplitDataset(train, tuple(cfg.mean), tuple(cfg.std), augment,
                           stage.masks(train) if stage.masks else None, stage.background_swap,
                           stage.counterfactual, stage.views)
    loader = make_loader(dataset, cfg.train.batch_size, seed, ctx)
    fp = fingerprint(train.samples)
    parts = stage.build(train, val, loader, fp)
    result = fit(FitSpec(kind=stage.kind, model=parts.model, optimizer=parts.optimizer, scheduler=parts.scheduler,
                         loader=loader, epochs=cfg.train.epochs, seed=seed, step=parts.step, validate=parts.validate,
                         monitor=parts.monitor, out=out, config=to_dict(cfg), meta=parts.meta, augment=augment,
                         resume=Path(resume) if resume else None, force_resume=force_resume, ctx=ctx,
                         progress=progress, average_last=cfg.train.average_last, extra_state=parts.extra_state,
                         load_extra_state=parts.load_extra_state))
    if not ctx.is_main:
        return {}
    best = next((h for h in result["history"] if h["epoch"] == result["best_epoch"]), {})
    summary = {"kind": stage.kind, "seed": seed, "best_epoch": result["best_epoch"], "best": best,
               "train_seconds": result["seconds"], "step_ms_median": result["step_ms_median"],
               "train_images": len(train), "val_images": len(val), "data_fingerprint": fp,
               **parts.summary(), "config": to_dict(cfg)}
    write_json(out / "metrics.json", summary)
    return summary
