"""Shared fixtures: datasets are made by the synthetic line, never downloaded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

CASTING = Path(__file__).resolve().parents[2] / "shared" / "data" / "casting"


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    from ceod.synth import config_for, synthesize
    out = tmp_path_factory.mktemp("tiny") / "ds"
    synthesize(out, config_for("tiny"), seed=0, progress=False)
    return out


@pytest.fixture(scope="session")
def casting() -> Path:
    if not (CASTING / "manifest.csv").is_file():
        pytest.skip("../shared/data/casting is not present")
    return CASTING
