"""Training the anomaly classifier with CE or CEOD."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ceod.contracts.classes import is_anomaly
from ceod.contracts.config import ConfigError
from ceod.contracts.model import model_metadata
from ceod.data.loading import LoadedSplit
from ceod.data.manifest import Sample
from ceod.data.splits import validation_warnings
from ceod.training.distributed import DistContext
from ceod.contracts.metrics import calibrate_threshold, classification_metrics, nanmean, threshold_provenance
from ceod.training.loop import make_optimizer
from ceod.training.stage import Stage, StageParts, train_stage
from ceod.training.transforms import COUNTERFACTUALS, background_swap_probability
from ceod.classifier.config import ClassifierConfig
from ceod.classifier.inference import aoi_attention, predict
from ceod.classifier.loss import ANOMALY_ONLY_TARGETS, CEODLoss
from ceod.classifier.model import build_classifier

log = logging.getLogger(__name__)

# (samples, size) -> AOI masks [N,S,S] uint8 {0,1}: where masks come from when not the manifest.
MaskSource = Callable[[list[Sample], int], np.ndarray]


def loss_name(cfg: ClassifierConfig) -> str:
    loss = cfg.loss
    if loss.kind == "ce":
        name = "ce"
    elif loss.kind == "rrr":
        name = f"rrr(lambda={loss.weight:g})"
    else:
        name = f"ceod(w={loss.weight:g},target={loss.target},distance={loss.distance},apply_to={loss.apply_to})"
    if loss.consistency_weight > 0:
        name += f"+consistency(w={loss.consistency_weight:g},images={loss.consistency_images})"
        if tuple(loss.consistency_views) != COUNTERFACTUALS:
            name += f"[views={','.join(loss.consistency_views)}]"
    return name


def classifier_stage(cfg: ClassifierConfig, data: str | Path, seed: int, ctx: DistContext,
                     mask_source: MaskSource | None = None, mask_label: str = "gt") -> Stage:
    """The classifier's stage: CE, CEOD or RRR on the manifest's AOI masks or `mask_source`'s."""
    found: dict[str, Any] = {}  # what check() learns from the loaded rows

    def check(train: LoadedSplit, val: LoadedSplit) -> None:
        classes = train.classes
        found["val_warnings"] = validation_warnings(val.samples, classes)
        if ctx.is_main:
            for warning in found["val_warnings"]:
                log.warning("%s; %s", warning,
                            f"the kept model is the mean of the last {cfg.train.average_last} epochs' weights"
                            if cfg.train.average_last else
                            "the best-validation epoch may be a lucky one: set train.average_last")
        if not is_anomaly(classes) and (cfg.loss.target in ANOMALY_ONLY_TARGETS or cfg.loss.apply_to == "def"):
            raise ConfigError(f"config keys 'loss.target: {cfg.loss.target}' / 'loss.apply_to: {cfg.loss.apply_to}' "
                              f"need the ok/def classes; this data has {list(classes)}: use target label, "
                              "predicted or all, and apply_to all")
        missing = int((~train.has_aoi).sum())
        terms = cfg.aoi_readers()
        if missing and mask_source is None and terms and ctx.is_main:
            first = next(s for s, has in zip(train.samples, train.has_aoi) if not has)
            log.warning("%d of %d training rows have no AOI mask and no --masks source (first: manifest row %d, %s): "
                        "%s read(s) them as all-AOI: no constraint, nothing outside to swap or replace. "
                        "Pass --masks SEGMENTER_RUN to fill them.",
                        missing, len(train), first.row, first.image.name, " and ".join(terms))

    def build(train: LoadedSplit, val: LoadedSplit, loader, fp: str) -> StageParts:
        classes = train.classes
        anomaly = is_anomaly(classes)
        val_masks = mask_source(val.samples, cfg.input_size) if mask_source else val.aoi
        # channels_last: CPU convolutions run faster in NHWC (docs/results.md: 1.4x the images/s)
        model = build_classifier(cfg.model, len(classes), cfg.input_size).to(memory_format=torch.channels_last)
        total_steps = max(cfg.train.epochs * len(loader), 1)
        optimizer, scheduler = make_optimizer(cfg.train, model.features, model.head, total_steps)
        criterion = CEODLoss(cfg.loss, total_steps)

        def step(model, batch, epoch):
            x, m, y = batch[0], batch[1], batch[2]
            x, m, y = x.to(ctx.device, memory_format=torch.channels_last), m.to(ctx.device), y.to(ctx.device)
            if criterion.needs_input_grad:
                x.requires_grad_(True)
            counterfactual = None
            if len(batch) > 4:  # the consistency term: one forward over both views, BatchNorm sees both
                views = batch[4][:cfg.loss.consistency_images].to(ctx.device, memory_format=torch.channels_last)
                logits, feats, counterfactual = model(torch.cat([x, views]), views=len(views))
            else:
                logits, feats = model(x, return_features=True)
            res = criterion(model, logits, feats, m, y, epoch, inputs=x, counterfactual_logits=counterfactual)
            if criterion.gate.observe(res.ce.item()) and ctx.is_main:
                print(f"[classifier] the {cfg.loss.kind} term switched on at step {criterion.gate.step} "
                      f"(epoch {epoch + 1}); w ramps to {cfg.loss.weight:g} over {cfg.loss.ramp_steps} steps",
                      flush=True)
            logs = {"loss": res.total.item(), "ce": res.ce.item(), "aoi_term": res.term.item(), "aoi_weight": res.weight}
            if res.consistency is not None:
                logs["consistency"] = res.consistency.item()
            return res.total, logs

        state: dict[str, Any] = {}

        def validate(model) -> dict[str, float]:
            log_probs, cams = predict(model, val.images, cfg.mean, cfg.std, with_cam=True, log=True)
            probs = np.exp(log_probs)
            threshold = (calibrate_threshold(probs[:, 1], val.labels, cfg.threshold.mode,
                                             cfg.threshold.target_recall, cfg.threshold.target_escape)
                         if anomaly else 0.5)
            m = classification_metrics(probs, val.labels, classes, threshold, log_probs)
            state["threshold"] = threshold
            if anomaly:
                state["threshold_fit"] = threshold_provenance(
                    cfg.threshold.mode, cfg.threshold.target_recall, cfg.threshold.target_escape,
                    "validation carve", probs[:, 1], val.labels, [s.extra.get("group") or str(s.image)
                                                                  for s in val.samples], threshold)
            # share of validation images whose P(def) ties with another's: saturated scores show here
            ties = 1.0 - len(np.unique(probs[:, 1])) / len(probs) if anomaly else float("nan")
            scores = {"val_auroc": m["auroc"], "val_balanced_accuracy": m["balanced_accuracy"]}
            if anomaly:
                scores["val_tied_scores"] = ties
            scores.update({"val_f1": m["f1"]} if anomaly else {"val_accuracy": m["accuracy"],
                                                               "val_macro_f1": m["macro_f1"]})
            return {**scores, "val_aoi_attention": nanmean(aoi_attention(cams, val_masks))}

        def meta(val_metrics: dict[str, float]) -> dict[str, Any]:
            return model_metadata("classifier", input_size=cfg.input_size, mean=cfg.mean, std=cfg.std,
                                  class_names=list(classes), threshold=float(state.get("threshold", 0.5)),
                                  training_loss=loss_name(cfg), data_fingerprint=fp,
                                  backbone=cfg.model.backbone, head=cfg.model.head, aoi_source=mask_label, seed=seed,
                                  data_path=str(Path(data).resolve()), split_column=cfg.split_column,
                                  train_split=cfg.train_split,
                                  **({"threshold_fit": state["threshold_fit"]} if "threshold_fit" in state else {}))

        def summary() -> dict[str, Any]:
            return {"loss": loss_name(cfg), "aoi_source": mask_label,
                    "term_switched_on_at_step": criterion.gate.opened_at, "steps": total_steps,
                    "val_warnings": found["val_warnings"], "class_names": list(classes)}

        return StageParts(model=model, optimizer=optimizer, scheduler=scheduler, step=step, validate=validate,
                          monitor="val_auroc" if anomaly else "val_accuracy", meta=meta,
                          extra_state=criterion.gate.state_dict, load_extra_state=criterion.gate.load_state_dict,
                          summary=summary)

    return Stage(kind="classifier", cfg=cfg, build=build, check=check,
                 masks=(lambda train: mask_source(train.samples, cfg.input_size)) if mask_source else None,
                 background_swap=background_swap_probability(cfg.augment),
                 counterfactual=cfg.loss.consistency_weight > 0, views=tuple(cfg.loss.consistency_views))


def train_classifier(cfg: ClassifierConfig, data: str | Path, out: str | Path, seed: int = 0,
                     mask_source: MaskSource | None = None, mask_label: str = "gt",
                     skip_bad: bool = False, filters: dict[str, str] | None = None,
                     max_train_images: int | None = None, resume: str | Path | None = None,
                     force_resume: bool = False, ctx: DistContext | None = None,
                     progress: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Train, keep the best checkpoint by validation AUROC (or the mean of the last epochs'
    weights), calibrate the threshold, write metrics. A folder that already holds a run is
    refused unless resumed, or `overwrite` (its owner asks)."""
    ctx = ctx or DistContext()
    return train_stage(classifier_stage(cfg, data, seed, ctx, mask_source, mask_label), data, out, seed=seed,
                       max_train_images=max_train_images, skip_bad=skip_bad, filters=filters, resume=resume,
                       force_resume=force_resume, ctx=ctx, progress=progress, overwrite=overwrite)
