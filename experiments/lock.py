"""A run claimed by one process among several sharing an output folder."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path


def _live_owner(lock: Path) -> int | None:
    """The pid holding this claim while it lives (0 while its creator is still writing it), None
    when there is no claim or its process is gone."""
    try:
        owner = int(lock.read_text() or 0)
        os.kill(owner, 0)
    except (ValueError, ProcessLookupError, FileNotFoundError):
        return None
    except PermissionError:
        pass
    return owner


def claimed_elsewhere(run: Path) -> bool:
    """Whether another live process holds this run's claim (so this one can train something else first)."""
    owner = _live_owner(run / ".running")
    return owner is not None and owner != os.getpid()


@contextlib.contextmanager
def claim(run: Path, result_path: Path, poll_seconds: float = 5.0):
    """Several `ceod experiment` processes may share an output folder (one per core): a run is
    trained by whoever creates its `.running` file; the others wait for its result. A claim
    whose process is gone (killed session) is taken over."""
    run.mkdir(parents=True, exist_ok=True)
    lock = run / ".running"
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            break
        except FileExistsError:
            if result_path.is_file():
                yield
                return
            if _live_owner(lock) is None:
                lock.unlink(missing_ok=True)  # stale: its process is gone
                continue
            time.sleep(poll_seconds)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
