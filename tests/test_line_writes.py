"""Write failures are loud and never corrupt the log; every source form either yields its
inputs or fails in one line. Full disks are real: a file-size limit
(RLIMIT_FSIZE) makes the kernel refuse writes past it, as a full disk does."""

from __future__ import annotations

import csv
import io
import json
import os
import resource
import signal
import subprocess
import sys

import cv2
import pytest

from ceod.pipeline.inspect import Inspector


def _limited(limit: int):
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails (EFBIG) instead of killing us
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


def _ceod(*args, limit: int | None = None, **kwargs):
    return subprocess.run([sys.executable, "-m", "ceod.pipeline.cli", *args], capture_output=True, text=True,
                          preexec_fn=_limited(limit) if limit else None, **kwargs)


def test_a_full_disk_stops_the_log_in_one_line_and_leaves_it_valid(exported, tiny_dataset, tmp_path):
    log = tmp_path / "v.jsonl"
    r = _ceod("inspect", "--model", str(exported["classifier"]), "--source", str(tiny_dataset / "images"),
              "--log", str(log), "--quiet", limit=3000)
    assert r.returncode == 1, r.stderr
    errors = [line for line in r.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "Traceback" not in r.stderr and "the log is valid up to there" in errors[0]
    lines = log.read_bytes().split(b"\n")
    assert lines[-1] == b"" and all(json.loads(line) for line in lines[:-1])  # whole lines only
    assert f"after {len(lines) - 1} records" in errors[0]


def test_overlays_that_cannot_be_written_are_counted_and_fail_the_run(exported, tiny_dataset, tmp_path):
    r = _ceod("inspect", "--model", str(exported["classifier"]), "--source", str(tiny_dataset / "images" / "test"),
              "--overlays", str(tmp_path / "ov"), "--quiet", limit=200)  # records go to stdout (a pipe)
    n = len(r.stdout.splitlines())
    assert r.returncode == 1 and n > 0
    assert f"{n} overlays NOT written" in r.stderr and f"{n} overlay(s) could not be written" in r.stderr


def test_a_closed_pipe_is_a_quiet_exit(exported, tiny_dataset):
    proc = subprocess.Popen([sys.executable, "-m", "ceod.pipeline.cli", "inspect", "--model", str(exported["classifier"]),
                             "--source", str(tiny_dataset / "images")], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()  # as `| head -1` does
    stderr = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert json.loads(first)["source"] and "Traceback" not in stderr and "BrokenPipe" not in stderr
    assert proc.returncode in (0, 141)


def test_summary_json_into_a_folder_is_refused_at_start(exported, tiny_dataset, tmp_path):
    r = _ceod("inspect", "--model", str(exported["classifier"]), "--source", str(tiny_dataset / "images"),
              "--summary-json", str(tmp_path))
    assert r.returncode == 2 and r.stdout == "" and "--summary-json" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("source, message", [("camera:abc", "camera:N with N a device number"),
                                             ("camera:7", "no camera opens at that number")])
def test_camera_mistakes_are_one_line(exported, source, message):
    r = _ceod("inspect", "--model", str(exported["classifier"]), "--source", source)
    errors = [line for line in r.stderr.splitlines() if "error" in line.lower() or "warn" in line.lower()]
    assert r.returncode == 2 and len(errors) == 1 and message in errors[0], r.stderr
    assert "Traceback" not in r.stderr


def test_csv_log_escapes_formulas_and_keeps_non_utf8_names(exported, tiny_dataset, tmp_path, monkeypatch):
    png = next((tiny_dataset / "images" / "test").rglob("*.png")).read_bytes()
    (tmp_path / "=HYPERLINK(1).png").write_bytes(png)
    os.makedirs(tmp_path / "raw", exist_ok=True)
    with open(os.path.join(os.fsencode(tmp_path / "raw"), b"bad\xff.png"), "wb") as fh:
        fh.write(png)
    monkeypatch.chdir(tmp_path)
    log = tmp_path / "v.csv"
    summary = Inspector(exported["classifier"], "cpu").run("-", log, None, 2, live=False,
                                                           stdin=io.StringIO("=HYPERLINK(1).png\n"))
    rows = list(csv.DictReader(log.open()))
    assert summary.records == 1 and rows[0]["source"] == "'=HYPERLINK(1).png" and rows[0]["status"] == "ok"
    log2 = tmp_path / "w.csv"
    summary = Inspector(exported["classifier"], "cpu").run(str(tmp_path / "raw"), log2, None, 2, live=False)
    rows = list(csv.DictReader(log2.open(encoding="utf-8")))
    assert summary.records == 1 and rows[0]["source"].endswith("bad\\udcff.png") and rows[0]["status"] == "ok"


def test_linked_subfolders_are_walked_once(exported, tiny_dataset, tmp_path):
    images = sorted((tiny_dataset / "images" / "test").rglob("*.png"))[:4]
    line, other = tmp_path / "line", tmp_path / "other"
    line.mkdir()
    other.mkdir()
    cv2.imwrite(str(line / "a.png"), cv2.imread(str(images[0])))
    for i, src in enumerate(images[1:]):
        cv2.imwrite(str(other / f"b{i}.png"), cv2.imread(str(src)))
    (line / "belt2").symlink_to(other, target_is_directory=True)
    (line / "loop").symlink_to(line, target_is_directory=True)  # a link back up: walked once, not forever
    log = tmp_path / "v.jsonl"
    summary = Inspector(exported["classifier"], "cpu").run(str(line), log, None, 4, live=False)
    sources = [json.loads(x)["source"] for x in log.read_text().splitlines()]
    assert summary.records == 4 and len(set(sources)) == 4
    assert sum("belt2" in s for s in sources) == 3
