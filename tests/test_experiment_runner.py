"""`ceod experiment`'s bookkeeping: which fold a seed runs, and processes sharing one folder (a run
claimed by a live process is left to it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ceod.contracts.errors import CeodError
from ceod.experiments.datasets import presets
from ceod.experiments.lock import claim, claimed_elsewhere


def test_a_seed_beyond_the_folds_is_a_second_run_of_a_fold(tmp_path: Path) -> None:
    spec = presets(tmp_path, tmp_path)["casting-cv"]
    assert [spec.split_column_for(s) for s in (0, 1, 2, 3, 5)] == ["fold0", "fold1", "fold2", "fold0", "fold2"]
    with pytest.raises(CeodError, match="seed s runs fold s mod 3"):
        spec.split_column_for(-1)
    assert presets(tmp_path)["synthetic"].split_column_for(7) == "split"  # not a k-fold preset: its own column


def test_a_live_claim_of_another_process_is_seen_and_a_stale_or_own_one_is_not(tmp_path: Path) -> None:
    run = tmp_path / "ce-seed0"
    assert not claimed_elsewhere(run)  # nothing claimed yet
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run.mkdir()
        (run / ".running").write_text(str(other.pid))
        assert claimed_elsewhere(run)
    finally:
        other.kill()
        other.wait()
    assert not claimed_elsewhere(run)  # its process is gone: the claim is stale
    (run / ".running").unlink()
    with claim(run, run / "result.json"):
        assert (run / ".running").read_text() == str(os.getpid())
        assert not claimed_elsewhere(run)  # this process's own claim
    assert not (run / ".running").exists()
