"""Processes sharing one `ceod experiment` folder: a run claimed by a live process is left to it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ceod.experiments.lock import claim, claimed_elsewhere


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
