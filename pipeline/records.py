"""The record log of `ceod inspect`: JSON lines or CSV, one whole line per record, valid up to the
last record written whatever happens to the disk. No torch."""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path
from typing import Any

from ceod.contracts.errors import CeodError
from ceod.contracts.metrics import csv_safe


class LogWriteError(CeodError):
    """The log could not take a record (disk full, device gone): the run stops with exit 1."""

    exit_code = 1


class RecordLog:
    """JSON lines or CSV, flushed after every batch so a crash or Ctrl-C loses nothing written.
    `-` writes JSON lines to stdout (the records are all stdout carries); None writes nothing.

    Each record goes out as one `write` of its whole line on an unbuffered file; if the write
    fails (a full disk) the file is cut back to the end of the last whole line, so the log stays
    valid, and the failure is one LogWriteError naming how many records it holds."""

    FIELDS = ["time", "source", "verdict", "score", "latency_ms", "status", "reason", "model"]

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path and str(path) != "-" else None
        self.stdout = str(path) == "-"
        self.fh = None
        self.csv = self.path is not None and self.path.suffix == ".csv"
        self.written = 0  # records fully in the file
        self.offset = 0  # bytes of whole lines
        if self.path:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.fh = self.path.open("wb", buffering=0)
            except OSError as exc:
                raise CeodError(f"cannot write the log {self.path}: {exc.strerror}; choose a writable --log") from None
            if self.csv:
                self._put(self._csv_line(self.FIELDS))

    @staticmethod
    def _csv_line(cells: list[Any]) -> bytes:
        import io
        buffer = io.StringIO()
        csv.writer(buffer).writerow(cells)
        # a file name that is not UTF-8 (surrogate-escaped by the OS layer) is kept readable, not lost
        return buffer.getvalue().encode("utf-8", errors="backslashreplace")

    def _put(self, line: bytes) -> None:
        try:
            done = self.fh.write(line)
            if done != len(line):
                raise OSError(28, "short write (disk full?)")
        except OSError as exc:
            try:
                os.ftruncate(self.fh.fileno(), self.offset)
            except OSError:
                pass
            raise LogWriteError(f"cannot write the log {self.path} ({exc.strerror or exc}) after "
                                f"{self.written} records; the log is valid up to there") from None
        self.offset += len(line)

    def write(self, record: dict[str, Any]) -> None:
        if self.stdout:
            sys.stdout.write(json.dumps(record) + "\n")
        elif self.fh is not None:
            self._put(self._csv_line([csv_safe(record.get(k)) for k in self.FIELDS]) if self.csv
                      else (json.dumps(record) + "\n").encode())
        self.written += 1

    def flush(self) -> None:
        if self.stdout:
            sys.stdout.flush()

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
