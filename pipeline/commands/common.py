"""Flags several commands share, and the small parsers behind them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ceod.contracts.errors import CeodError


def training_args(p: argparse.ArgumentParser, stage: str) -> None:
    p.add_argument("--config", help=f"YAML layered over the packaged configs/{stage}.yaml (only the keys it sets change)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override one config key, e.g. train.lr=0.001 (repeatable; applied last)")
    p.add_argument("--epochs", type=int, help="overrides train.epochs")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, data order, augmentation and validation carve")
    p.add_argument("--input-size", type=int, help="overrides input_size (pixels, square)")
    p.add_argument("--resume", help="a run folder (its last.pt) to continue; a changed epoch count is fine")
    p.add_argument("--force", action="store_true",
                   help="resume despite a changed config or dataset (warns with what changed)")


def data_args(p: argparse.ArgumentParser, filters: bool = True,
              split_help: str = "manifest column holding the split (e.g. split_grouped)") -> None:
    p.add_argument("--split-column", help=split_help)
    if filters:
        p.add_argument("--filter", action="append", help="COLUMN=VALUE, keep matching rows (repeatable)")
    p.add_argument("--skip-bad", action="store_true", help="skip bad rows with a warning and a count")


def key_values(items: list[str] | None, flag: str, example: str, empty_value: bool = True) -> dict[str, str]:
    """Repeated `FLAG KEY=VALUE` options -> {KEY: VALUE}, with a one-line error naming the flag."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key or not (value or empty_value):
            raise CeodError(f"{flag} {item}: expected {example}")
        out[key] = value
    return out


def filters(items: list[str] | None) -> dict[str, str]:
    return key_values(items, "--filter", "COLUMN=VALUE, e.g. aoi_status=ok")


def print_json(data: dict[str, Any], path: Path | None = None) -> None:
    """Strict JSON (no NaN or Infinity, which are not JSON): a figure that does not exist is null."""
    from ceod.contracts.metrics import strict_json
    text = json.dumps(strict_json(data), indent=2, default=float, allow_nan=False)
    print(text)
    if path is not None:
        path.write_text(text)


def run_folder(model: str) -> Path:
    """Where a command writes next to a model: the run folder, or the folder of a .pt file."""
    return Path(model) if Path(model).is_dir() else Path(model).parent
