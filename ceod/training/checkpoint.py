"""Checkpoints: one dict, written atomically, read with weights_only=True, checked for kind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from ceod import __version__
from ceod.contracts.errors import CeodError

FORMAT = 1


class CheckpointError(CeodError, ValueError):
    """A checkpoint is missing, corrupt, or not a ceod checkpoint of the expected kind."""


def save_checkpoint(path: str | Path, kind: str, state_dict: dict[str, torch.Tensor],
                    config: dict[str, Any], meta: dict[str, Any],
                    train_state: dict[str, Any] | None = None) -> Path:
    """Write via a temp file in the same folder and rename, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"ceod": {"format": FORMAT, "kind": kind, "version": __version__},
               "state_dict": state_dict, "config": config, "meta": meta}
    if train_state is not None:
        payload["train_state"] = train_state
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, kind: str | None = None) -> dict[str, Any]:
    """Load a checkpoint safely (no pickled code) and check it is a ceod `kind` checkpoint."""
    path = Path(path)
    if path.is_dir():
        path = path / "best.pt"
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: pass a run folder made by ceod training")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path} is not a readable checkpoint (corrupt, truncated or unsafe): "
                              f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from None
    header = payload.get("ceod") if isinstance(payload, dict) else None
    if not isinstance(header, dict) or "kind" not in header:
        raise CheckpointError(f"{path} is not a ceod checkpoint (no 'ceod' header); "
                              "train with `ceod train-segmenter` / `ceod train-classifier`")
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{path} has checkpoint format {header.get('format')}, this ceod reads {FORMAT}")
    if kind is not None and header["kind"] != kind:
        raise CheckpointError(f"{path} is a {header['kind']} checkpoint, expected a {kind} checkpoint")
    return payload


def load_model(run: str | Path, kind: str, schema: type, build,
               payload: dict[str, Any] | None = None) -> tuple[torch.nn.Module, Any, dict[str, Any]]:
    """(model in eval mode, its config as `schema`, checkpoint metadata) from a run or .pt file
    (or from its already loaded `payload`)."""
    from ceod.contracts.config import from_dict

    payload = payload if payload is not None else load_checkpoint(run, kind)
    cfg = from_dict(schema, payload["config"])
    model = build(cfg.model)
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, cfg, payload["meta"]
