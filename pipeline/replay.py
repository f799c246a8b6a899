"""`ceod watch`: the drift watch over a finished run, offline. The log's judged inputs are read
again in the order the line saw them and go through the same inspector and watch as
`ceod inspect --watch`, with no CPU budget (nothing competes with a line) and a sampling queue
that never drops a frame, so every `every`th frame is measured. Imports no torch."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ceod.contracts.errors import CeodError
from ceod.export.runtime import OnnxModel
from ceod.pipeline.inspect import Inspector, Summary

REPLAY_LOG = "replay.jsonl"


def read_judged(log: Path) -> tuple[list[str], set[str]]:
    """The sources of every input the run judged (status ok or error), in log order, and the
    model identities that judged them; drift and skipped records are not inputs to replay."""
    if not log.is_file():
        raise CeodError(f"--log {log}: no such file")
    text = log.read_text(encoding="utf-8")
    if log.suffix == ".csv":
        rows = list(csv.DictReader(io.StringIO(text)))
    else:
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    raise CeodError(f"--log {log} line {number}: not a JSON record (a log of ceod inspect is "
                                    ".jsonl or .csv)") from None
    judged = [r for r in rows if r.get("status") in ("ok", "error")]
    if not judged:
        raise CeodError(f"--log {log}: no judged record (status ok or error) to replay")
    return [str(r["source"]) for r in judged], {str(r.get("model")) for r in judged}


def judged_inputs(log: Path, runtime: OnnxModel, action: str, limit: int | None = None) -> list[str]:
    """The log's judged inputs in order (the first `limit`), refused in one line where another
    model file judged them or they are not files here (`action` reads the images again)."""
    sources, judged_by = read_judged(log)
    if judged_by != {runtime.identity}:
        raise CeodError(f"--log {log} was judged by {', '.join(sorted(judged_by))}, not --model {runtime.identity}: "
                        f"{action} with the model file that judged the run")
    sources = sources[:limit]
    missing = [s for s in sources if not Path(s).is_file()]
    if missing:
        raise CeodError(f"{len(missing)} of the log's {len(sources)} inputs are not files here (first: {missing[0]}); "
                        f"{action} reads the images again (camera and video frames cannot be read again)")
    return sources


def replay_watch(log: str | Path, model: str | Path, segmenter: str | Path, out: str | Path,
                 every: int = 10, alpha: float = 0.01, provider: str = "auto", batch: int = 8) -> Summary:
    log, out = Path(log), Path(out)
    sources = judged_inputs(log, OnnxModel(model, provider), "replay")
    if (out / REPLAY_LOG).exists():
        raise CeodError(f"--out {out} already holds {REPLAY_LOG}: choose an empty folder")
    out.mkdir(parents=True, exist_ok=True)
    inspector = Inspector(model, provider, watch=segmenter, watch_every=every, watch_budget=float("inf"), watch_alpha=alpha,
                          watch_queue=len(sources) // every + 2)
    return inspector.run("-", out / REPLAY_LOG, batch=batch, live=False, stdin=io.StringIO("\n".join(sources) + "\n"),
                         watch_report=out)
