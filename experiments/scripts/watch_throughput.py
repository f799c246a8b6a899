"""The drift watch's throughput cost: one stream inspected without the watch, again without it
(the control), and with it at three settings, interleaved in rotated order over several rounds.

    python experiments/scripts/watch_throughput.py --model ceod.onnx --segmenter segmenter.onnx \
        --frames streams/none_test_shift --provider cuda --out docs/experiments/watch/throughput-cuda.json

`watch_bench.py` runs it on the CPU as part of the bench. Needs the base install only (no torch).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from ceod.pipeline.inspect import Inspector
from ceod.pipeline.watch import DEFAULT_BUDGET

# the throughput comparison: the same stream inspected with each setting in turn, round by round
# ("off, again" is the control: its ratio to "off" is what the machine's own noise makes of no change)
THROUGHPUT = {"off": None, "off, again": None, "every-frame statistics only": {"watch_budget": 1e-6},
              f"default (budget {DEFAULT_BUDGET * 100:g} %)": {"watch_budget": DEFAULT_BUDGET},
              "budget 5 % (the default before results 12.6)": {"watch_budget": 0.05}}

def inspect(model: Path, segmenter: Path | None, folder: Path, out: Path, provider: str = "cpu", **watch: float) -> dict:
    """One `ceod inspect` run of a stream folder (batch 1, as fast as it goes), with the watch
    where a segmenter is given: throughput, latency, drift records and the watch's sampling."""
    inspector = Inspector(model, provider, watch=segmenter, **watch)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "log.jsonl"
    start = time.perf_counter()
    summary = inspector.run(str(folder / "frames"), log, batch=1, live=False,
                            watch_report=(out / "watch") if segmenter else None)
    seconds = time.perf_counter() - start
    if summary.interrupted:  # the inspector stops cleanly on SIGINT/SIGTERM; the bench stops with it
        raise SystemExit(f"stopped by {summary.interrupted} during {folder}")
    drift = [json.loads(line) for line in log.read_text().splitlines() if '"drift"' in line]
    latency = {k: round(v, 3) for k, v in summary.as_dict().items() if k in ("p50_ms", "p95_ms", "p99_ms")}
    result = {"frames": summary.records, "seconds": round(seconds, 3),
              "throughput_per_s": round(summary.records / seconds, 2), **latency,
              "providers": summary.providers, "drift": drift}
    if segmenter:
        result["sampling"] = json.loads((out / "watch" / "watch.json").read_text())["sampling"]
    return result


def throughput(models: dict[str, Path], folder: Path, work: Path, rounds: int, provider: str = "cpu") -> dict:
    """Each THROUGHPUT setting in turn, round after round (so a slow spell of the machine hits
    all of them), the order rotated by one each round (so no setting always runs first), then
    per setting the median throughput, its ratio to the median without the watch, and the
    median of the rounds' latency percentiles."""
    runs: dict[str, list[dict]] = {name: [] for name in THROUGHPUT}
    names = list(THROUGHPUT)
    for k in range(rounds):
        for name in names[k % len(names):] + names[:k % len(names)]:
            setting = THROUGHPUT[name]
            r = inspect(models["ceod"], None if setting is None else models["segmenter"], folder,
                        work / f"{k}-{names.index(name)}", provider, **(setting or {}))
            runs[name].append(r)
            print(f"round {k}: {name} {r['throughput_per_s']} /s", file=sys.stderr, flush=True)
    base = statistics.median(r["throughput_per_s"] for r in runs["off"])
    out = {}
    for name, rs in runs.items():
        median = statistics.median(r["throughput_per_s"] for r in rs)
        out[name] = {"per_s": [r["throughput_per_s"] for r in rs], "median_per_s": round(median, 1),
                     "ratio": round(median / base, 3),
                     **{q: round(statistics.median(r[q] for r in rs), 3) for q in ("p50_ms", "p95_ms", "p99_ms")}}
        if "sampling" in rs[0]:
            out[name]["watch_busy_share"] = round(statistics.median(r["sampling"]["watch_busy_share"] for r in rs), 4)
            out[name]["sampled_per_round"] = [r["sampling"]["sampled"] for r in rs]
    return {"frames": runs["off"][0]["frames"], "rounds": rounds, "provider": runs["off"][0]["providers"][0],
            "settings": out}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, required=True, help="an exported classifier with a reference profile")
    p.add_argument("--segmenter", type=Path, required=True, help="the exported segmenter for --watch")
    p.add_argument("--frames", type=Path, required=True, help="a `ceod synth stream` folder (its frames/)")
    p.add_argument("--provider", default="cpu", help="cpu, cuda, tensorrt or auto")
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--work", type=Path, default=Path("runs/watch-throughput"), help="logs of every run")
    p.add_argument("--out", type=Path, required=True, help="the figures as JSON")
    a = p.parse_args()
    result = throughput({"ceod": a.model, "segmenter": a.segmenter}, a.frames, a.work, a.rounds, a.provider)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1))
    for name, r in result["settings"].items():
        print(f"{name}: {r['median_per_s']} /s, ratio {r['ratio']}, p50/p95/p99 {r['p50_ms']}/{r['p95_ms']}/"
              f"{r['p99_ms']} ms, watch busy {r.get('watch_busy_share', '-')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
