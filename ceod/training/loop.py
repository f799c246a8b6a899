"""The training loop both trainers share: epochs, progress, NaN guard, best/last checkpoints,
resume, DDP, history and curves. Trainers supply a step and a validation function (through
`ceod.training.stage`)."""

from __future__ import annotations

import json
import math
import os
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ceod.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ceod.contracts.errors import CeodError
from ceod.training.distributed import DistContext, all_reduce_mean, barrier, gather_indices


class TrainingDiverged(CeodError, RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


RUN_FILES = ("best.pt", "last.pt", "metrics.json")  # what makes a folder a run


def ensure_writable(folder: str | Path, ctx: DistContext | None = None, continuing: bool = True) -> Path:
    """Fail at start, not after an hour of training, when the run folder cannot be written, or
    (`continuing` False: a new run) when it already holds a run, which training would overwrite.
    Under torchrun only rank 0 creates and probes it (the others wait at a barrier): two ranks
    probing one folder race on the probe file."""
    folder = Path(folder)
    if ctx is None or ctx.is_main:
        held = [name for name in RUN_FILES if (folder / name).exists()]
        if held and not continuing:
            raise CeodError(f"--out {folder} already holds a run ({held[0]}); pass --resume {folder} to "
                            "continue it, or choose a new --out (nothing was overwritten)")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / f".write-test-{os.getpid()}"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise PermissionError(f"cannot write to output folder {folder}: {exc.strerror}; "
                                  "choose a writable --out") from None
    if ctx is not None:
        barrier(ctx)
    return folder


def make_loader(dataset: torch.utils.data.Dataset, batch_size: int, seed: int,
                ctx: DistContext) -> torch.utils.data.DataLoader:
    """Shuffled, last partial batch dropped; sharded by DistributedSampler under DDP. The shuffle
    generator is reseeded from (seed, epoch) by `fit`, so resumed runs replay the same order."""
    from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

    generator = torch.Generator().manual_seed(seed)
    sampler = (DistributedSampler(dataset, ctx.world_size, ctx.rank, shuffle=True, seed=seed, drop_last=True)
               if ctx.enabled else RandomSampler(dataset, generator=generator))
    loader = DataLoader(dataset, batch_size=min(batch_size, len(dataset)), sampler=sampler, drop_last=True,
                        num_workers=0)
    loader.generator = None if ctx.enabled else generator
    return loader


@dataclass(kw_only=True)
class FitSpec:
    """What `fit` trains (built by `ceod.training.stage.train_stage` from a trainer's stage)."""

    kind: str  # "segmenter" | "classifier"
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loader: torch.utils.data.DataLoader
    epochs: int
    seed: int
    # step(model, batch, epoch) -> (loss, {name: float}) for one batch
    step: Callable[[nn.Module, Any, int], tuple[torch.Tensor, dict[str, float]]]
    # validate(model) -> {name: float}; its `monitor` entry chooses the best checkpoint
    validate: Callable[[nn.Module], dict[str, float]]
    monitor: str
    out: Path
    config: dict[str, Any]
    meta: Callable[[dict[str, float]], dict[str, Any]]  # metadata for the checkpoint, from val metrics
    augment: Any = None
    resume: Path | None = None
    force_resume: bool = False
    ctx: DistContext = field(default_factory=DistContext)
    progress: bool = True
    # > 0: the model kept is the mean of the weights after each of the last `average_last`
    # epochs (BatchNorm statistics recomputed on the training data), not the best validation epoch
    average_last: int = 0
    # state the trainer keeps outside the model (e.g. when the loss term switched on), saved in
    # last.pt and handed back on resume
    extra_state: Callable[[], dict[str, Any]] | None = None
    load_extra_state: Callable[[dict[str, Any] | None], None] | None = None


def adamw(train: Any, backbone: nn.Module, head: nn.Module) -> torch.optim.AdamW:
    """AdamW with the backbone (the pretrained part) at train.backbone_lr_scale of the head's
    rate; frozen parameters left out."""
    groups = [{"params": [p for p in part.parameters() if p.requires_grad], "lr": train.lr * scale}
              for part, scale in ((backbone, train.backbone_lr_scale), (head, 1.0))]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=train.lr, weight_decay=train.weight_decay)


def make_optimizer(train: Any, backbone: nn.Module, head: nn.Module, total_steps: int
                   ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """`adamw` + one-cycle over `total_steps`, each group peaking at its own rate."""
    optimizer = adamw(train, backbone, head)
    groups = optimizer.param_groups
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=[g["lr"] for g in groups], total_steps=max(total_steps, 1), pct_start=0.15)
    return optimizer, scheduler


class WeightAverage:
    """The running mean of a model's floating-point parameters over the last epochs (stochastic
    weight averaging's estimator, without its cyclic schedule). A choice of checkpoint by a noisy
    validation score can land on a lucky or unlucky epoch; the mean of the annealed last epochs
    does not depend on validation at all."""

    def __init__(self) -> None:
        self.count = 0
        self.sums: dict[str, torch.Tensor] = {}

    def add(self, model: nn.Module) -> None:
        for name, p in model.named_parameters():
            value = p.detach().cpu().to(torch.float64)
            self.sums[name] = self.sums[name] + value if name in self.sums else value.clone()
        self.count += 1

    def state(self) -> dict[str, Any]:
        return {"count": self.count, "sums": self.sums}

    def load(self, state: dict[str, Any] | None) -> None:
        if state:
            self.count, self.sums = int(state["count"]), dict(state["sums"])

    def apply(self, model: nn.Module, loader: torch.utils.data.DataLoader, device: torch.device) -> None:
        """Load the mean weights, then recompute BatchNorm running statistics in one pass over
        `loader` (torch.optim.swa_utils.update_bn): the averaged weights need their own."""
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_((self.sums[name] / self.count).to(p.dtype))
        torch.optim.swa_utils.update_bn(loader, model, device)


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return (seed * 1_000_003 + epoch * 101 + rank) % 2**31


def _restore(spec: FitSpec, model: nn.Module, average: WeightAverage | None = None
             ) -> tuple[int, list[dict], float]:
    """Load `last.pt` of a run to continue it; refuse a different config or dataset unless forced."""
    path = Path(spec.resume) / "last.pt" if Path(spec.resume).is_dir() else Path(spec.resume)
    payload = load_checkpoint(path, spec.kind)
    state = payload.get("train_state")
    if state is None:
        raise CheckpointError(f"{path} has no training state to resume from")
    changed = config_changes(payload["config"], spec.config)
    if changed and not spec.force_resume:
        raise CheckpointError(f"cannot resume {path}: config differs in {changed}; pass --force to resume anyway")
    if changed:
        warnings.warn(f"resuming {path} with a changed config ({changed}) because of --force")
    old_fp, new_fp = payload["meta"].get("data_fingerprint"), spec.meta({}).get("data_fingerprint")
    if old_fp != new_fp:
        if not spec.force_resume:
            raise CheckpointError(f"cannot resume {path}: dataset fingerprint {old_fp} != {new_fp} "
                                  "(other files, labels or splits); pass --force to resume anyway")
        warnings.warn(f"resuming {path} on different data because of --force: "
                      f"checkpoint fingerprint {old_fp}, this data {new_fp}")
    model.load_state_dict(payload["state_dict"])
    spec.optimizer.load_state_dict(state["optimizer"])
    if average is not None:
        average.load(state.get("average"))
    if spec.load_extra_state is not None:
        spec.load_extra_state(state.get("extra"))
    start = int(state["epoch"]) + 1
    if payload["config"].get("train", {}).get("epochs") == spec.config.get("train", {}).get("epochs"):
        spec.scheduler.load_state_dict(state["scheduler"])
    else:  # a longer or shorter run: the new schedule, advanced to where training stopped
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(start * len(spec.loader)):
                spec.scheduler.step()
    return start, list(state["history"]), float(state["best"])


def config_changes(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ, except `train.epochs` (a longer run resumes as it is)."""
    changed = []
    for key in sorted(set(old) | set(new)):
        dotted = f"{prefix}{key}"
        if dotted == "train.epochs":
            continue
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changed += config_changes(a, b, f"{dotted}.")
        elif a != b:
            changed.append(dotted)
    return changed


def fit(spec: FitSpec) -> dict[str, Any]:
    """Train for spec.epochs; returns {"history", "best", "best_epoch", "seconds", "step_ms_median"}."""
    ctx = spec.ctx
    raw = spec.model.to(ctx.device)
    start_epoch, history, best = 0, [], -math.inf
    average_last = min(spec.average_last, spec.epochs)
    average = WeightAverage() if average_last > 0 else None
    if spec.resume:
        start_epoch, history, best = _restore(spec, raw, average)
    model, raw = _distributed(raw, ctx)
    best_epoch = max((h["epoch"] for h in history if h.get(spec.monitor) == best), default=-1)
    started = time.perf_counter()
    step_seconds: list[float] = []
    shards: dict[int, list[list[int]]] = {}
    for epoch in range(start_epoch, spec.epochs):
        epoch_start = time.perf_counter()
        shards.update(_start_epoch(spec, epoch))
        train_logs = _train_epoch(spec, model, epoch, step_seconds)
        if average is not None and epoch >= spec.epochs - average_last:
            average.add(raw)
        val = spec.validate(raw)
        history.append({"epoch": epoch, **train_logs, **val,
                        "epoch_seconds": round(time.perf_counter() - epoch_start, 2),
                        "lr": spec.scheduler.get_last_lr()[0]})
        improved = average is None and val[spec.monitor] >= best  # a tie goes to the later epoch
        if improved:
            best, best_epoch = val[spec.monitor], epoch
        if ctx.is_main:
            _save_epoch(spec, raw, val, history, best, improved, average, shards)
        barrier(ctx)
    if average is not None and average.count and best_epoch < spec.epochs:
        best, best_epoch = _keep_average(spec, raw, average, history), spec.epochs
    return {"history": history, "best": best, "best_epoch": best_epoch,
            "seconds": round(time.perf_counter() - started, 2),
            "step_ms_median": float(np.median(step_seconds) * 1000) if step_seconds else None}


def _distributed(raw: nn.Module, ctx: DistContext) -> tuple[nn.Module, nn.Module]:
    """(the model as trained, the model as saved): wrapped in DDP under torchrun (SyncBN on GPUs)."""
    if not ctx.enabled:
        return raw, raw
    if ctx.device.type == "cuda":  # one BatchNorm statistic over all ranks (SyncBN is GPU-only)
        raw = nn.SyncBatchNorm.convert_sync_batchnorm(raw)
    ddp = nn.parallel.DistributedDataParallel(raw, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
    return ddp, raw


def _start_epoch(spec: FitSpec, epoch: int) -> dict[int, list[list[int]]]:
    """Seed every generator from (seed, epoch, rank), so a resumed run replays the same epoch
    exactly; returns which rows each rank trains on this epoch under DDP (for shards.json)."""
    ctx = spec.ctx
    seed = _epoch_seed(spec.seed, epoch, ctx.rank)
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    if spec.augment is not None and hasattr(spec.augment, "set_random_seed"):
        spec.augment.set_random_seed(seed)
    sampler = spec.loader.sampler
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    generator = getattr(spec.loader, "generator", None)
    if generator is not None:
        generator.manual_seed(seed)
    if not ctx.enabled:
        return {}
    return {epoch: gather_indices(list(iter(sampler))[:len(spec.loader) * spec.loader.batch_size], ctx)}


def _train_epoch(spec: FitSpec, model: nn.Module, epoch: int, step_seconds: list[float]) -> dict[str, float]:
    """One pass over the loader; the mean of each logged quantity (over ranks too)."""
    from ceod.progress import progress_bar
    model.train()
    sums: dict[str, float] = {}
    count = 0
    first_step = epoch * len(spec.loader)
    batches = progress_bar(spec.loader, total=len(spec.loader), desc=f"epoch {epoch + 1}/{spec.epochs}",
                           disable=not (spec.progress and spec.ctx.is_main))
    for batch in batches:
        step_start = time.perf_counter()
        loss, logs = spec.step(model, batch, epoch)
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"loss is {loss.item()} at epoch {epoch + 1}, step {first_step + count} "
                f"(logs {logs}); the last good checkpoint is kept in {spec.out}. "
                "Lower the learning rate or the loss term's weight.")
        spec.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        spec.optimizer.step()
        spec.scheduler.step()
        step_seconds.append(time.perf_counter() - step_start)
        for k, v in logs.items():
            sums[k] = sums.get(k, 0.0) + v
        count += 1
    return all_reduce_mean({f"train_{k}": v / max(count, 1) for k, v in sums.items()}, spec.ctx)


def _save_epoch(spec: FitSpec, raw: nn.Module, val: dict[str, float], history: list[dict], best: float,
                improved: bool, average: WeightAverage | None, shards: dict[int, list[list[int]]]) -> None:
    """best.pt (when improved), last.pt with everything a resume needs, history, shards, one line."""
    state = {k: v.detach().cpu() for k, v in raw.state_dict().items()}
    meta = spec.meta(val)
    if improved:
        save_checkpoint(spec.out / "best.pt", spec.kind, state, spec.config, meta)
    save_checkpoint(spec.out / "last.pt", spec.kind, state, spec.config, meta, train_state={
        "optimizer": spec.optimizer.state_dict(), "scheduler": spec.scheduler.state_dict(),
        "epoch": history[-1]["epoch"], "history": history, "best": best,
        **({"average": average.state()} if average is not None else {}),
        **({"extra": spec.extra_state()} if spec.extra_state is not None else {})})
    write_history(spec.out, history, spec.monitor)
    if shards:
        write_json(spec.out / "shards.json", {"world_size": spec.ctx.world_size, "epochs": {
            str(e): {str(r): idx for r, idx in enumerate(per_rank)} for e, per_rank in shards.items()}})
    summary = " ".join(f"{k}={v:.4f}" for k, v in history[-1].items() if isinstance(v, float) and k not in ("lr",))
    print(f"[{spec.kind}] epoch {history[-1]['epoch'] + 1}/{spec.epochs} {summary}", flush=True)


def _keep_average(spec: FitSpec, raw: nn.Module, average: WeightAverage, history: list[dict]) -> float:
    """Replace the trained weights by the average of the last epochs, validate it (the threshold
    is calibrated on it) and save it as best.pt; its history row has epoch = spec.epochs."""
    started = time.perf_counter()
    average.apply(raw, spec.loader, spec.ctx.device)
    val = spec.validate(raw)
    history.append({"epoch": spec.epochs, "averaged_epochs": average.count, **val,
                    "epoch_seconds": round(time.perf_counter() - started, 2)})
    if spec.ctx.is_main:
        state = {k: v.detach().cpu() for k, v in raw.state_dict().items()}
        save_checkpoint(spec.out / "best.pt", spec.kind, state, spec.config, spec.meta(val))
        write_history(spec.out, history, spec.monitor)
        print(f"[{spec.kind}] kept the mean of the last {average.count} epochs' weights: "
              + " ".join(f"{k}={v:.4f}" for k, v in val.items() if isinstance(v, float)), flush=True)
    barrier(spec.ctx)
    return float(val[spec.monitor])


def write_history(out: Path, history: list[dict], monitor: str) -> None:
    """history.json and curves.png (one panel per logged quantity family)."""
    (out / "history.json").write_text(json.dumps(history, indent=1))
    try:
        plot_curves(history, out / "curves.png", monitor)
    except Exception as exc:  # a plot must never kill a training run
        print(f"warning: could not draw curves: {exc}")


def plot_curves(history: list[dict], path: Path, monitor: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in history[0] if k not in ("epoch", "epoch_seconds", "lr")
            and isinstance(history[0][k], (int, float))]
    losses = [k for k in keys if k.startswith("train_")]
    metrics = [k for k in keys if not k.startswith("train_")]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    epochs = [h["epoch"] + 1 for h in history]
    for ax, group, title in ((axes[0], losses, "training loss terms"), (axes[1], metrics, "validation")):
        for k in group:
            ax.plot(epochs, [h.get(k, float("nan")) for h in history], marker="o", ms=3,
                    label=k, lw=2.5 if k == monitor else 1.2)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if group:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_json(path: Path, data: dict) -> None:
    """Write JSON atomically (temp + rename)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=float))
    os.replace(tmp, path)
