"""Exactly one record per input taken, promptly: a partial batch waits at
most --max-wait-ms; SIGINT / SIGTERM at any moment leave one record per input taken (judged, or
`skipped` with reason `interrupted`), none twice, valid JSON lines, and exit 130 / 143."""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import sys
import time



def _paths(tiny_dataset) -> list[str]:
    return [str(p) for p in sorted((tiny_dataset / "images").rglob("*.png"))]


def _start(exported, log, *extra):
    return subprocess.Popen([sys.executable, "-m", "ceod.pipeline.cli", "inspect", "--model", str(exported["classifier"]),
                             "--source", "-", "--log", str(log), "--quiet", *extra],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_each_record_arrives_within_half_a_second_of_its_input(exported, tiny_dataset, tmp_path):
    log = tmp_path / "v.jsonl"
    proc = _start(exported, log, "--batch", "8")
    time.sleep(3)  # the model loads
    delays = []
    for path in _paths(tiny_dataset)[:4]:
        sent = time.perf_counter()
        proc.stdin.write(path + "\n")
        proc.stdin.flush()
        while path not in log.read_text():
            assert time.perf_counter() - sent < 5, "no record after 5 s"
            time.sleep(0.01)
        delays.append(time.perf_counter() - sent)
        time.sleep(1.0)  # one path a second, as a line hands them over
    proc.stdin.close()
    assert proc.wait(timeout=60) == 0
    assert max(delays) < 0.5, delays


def _interrupted_run(exported, paths, log, sig, delay):
    proc = _start(exported, log, "--batch", "4")
    try:
        proc.stdin.write("".join(p + "\n" for p in paths))
        proc.stdin.flush()
    except BrokenPipeError:
        pass
    time.sleep(delay)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    return proc.returncode, stderr


def test_signals_at_random_moments_leave_one_record_per_input_taken(exported, tiny_dataset, tmp_path):
    paths = _paths(tiny_dataset) * 10  # each file ten times: longer than any signal delay
    rng = random.Random(0)
    trials = [(signal.SIGINT if k % 2 else signal.SIGTERM, rng.uniform(1.5, 5.0)) for k in range(20)]
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=4) as pool:  # four runs at a time: the suite stays short
        outcomes = list(pool.map(lambda kt: _interrupted_run(exported, paths, tmp_path / f"v{kt[0]}.jsonl", *kt[1]),
                                 enumerate(trials)))
    seen_interrupted = 0
    for k, ((sig, _), (code, stderr)) in enumerate(zip(trials, outcomes)):
        log = tmp_path / f"v{k}.jsonl"
        lines = log.read_text().splitlines() if log.exists() else []
        records = [json.loads(line) for line in lines]  # valid JSON lines, or this raises
        assert "Traceback" not in stderr, stderr
        if code == 0:  # finished before the signal came
            assert len(records) == len(paths)
            continue
        assert code == (130 if sig == signal.SIGINT else 143), (code, stderr)
        seen_interrupted += 1
        summary = re.search(r"(\d+) records:.*?(\d+) inputs taken, (\d+) skipped", stderr)
        taken = int(summary.group(2)) if summary else len(records)
        assert len(records) == taken, (len(records), stderr)
        # inputs are taken in order: the records are exactly the first `taken` paths, each once
        assert [r["source"] for r in records] == paths[:taken]
        assert all(r["status"] in ("ok", "error") or (r["status"] == "skipped" and r["reason"] == "interrupted")
                   for r in records)
        assert f"interrupted by {signal.Signals(sig).name}" in stderr
    assert seen_interrupted >= 10  # the signals really came mid-run


def test_a_failing_source_records_what_it_took_and_exits_1(exported, tiny_dataset, tmp_path):
    """A line that is not UTF-8 under a strict locale fails the reader: what it took before keeps
    its records, and the run ends in one line, exit 1."""
    import os
    log = tmp_path / "v.jsonl"
    good = _paths(tiny_dataset)[:3]
    proc = subprocess.Popen([sys.executable, "-m", "ceod.pipeline.cli", "inspect", "--model", str(exported["classifier"]),
                             "--source", "-", "--log", str(log), "--quiet"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONIOENCODING": "utf-8:strict", "LC_ALL": "C.UTF-8"})
    proc.stdin.write(("\n".join(good) + "\n").encode())
    proc.stdin.flush()
    deadline = time.time() + 30
    while (not log.exists() or len(log.read_text().splitlines()) < 3) and time.time() < deadline:
        time.sleep(0.05)
    proc.stdin.write(b"\xff\xfe not utf-8\n")
    proc.stdin.close()
    stderr = proc.stderr.read()
    assert proc.wait(timeout=60) == 1, stderr.decode()
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["source"] for r in records] == good and b"the source failed: UnicodeDecodeError" in stderr
    assert b"Traceback" not in stderr
