"""The drift watch's bench: false alarms on in-distribution streams, the kind and delay of the
alarm each change raises, CE against CEOD on the same changed streams, the offline watch
(`ceod watch`) replaying the line-rate logs, and the watch's throughput cost at a saturated CPU,
each setting interleaved in one run.

    # the synthetic line: a finished `ceod demo` folder (its plain CE and CEOD runs, segmenter, data)
    python experiments/scripts/watch_bench.py --demo runs/demo --out docs/experiments/watch
    # real parts: runs trained on a dataset's training families, streams from its test families
    python experiments/scripts/watch_bench.py --dataset runs/op/data/casting-folds --split-column fold0 \
        --ce runs/op/casting-cv/ce-seed0 --ceod runs/op/casting-cv/default-seed0 \
        --segmenter runs/watch-casting/segmenter --work runs/watch-casting --out docs/experiments/watch-casting

Resumable: exports, streams and inspected runs already in --work are reused.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Callable

from ceod.export.drift import CHECK_EVERY
from ceod.export.onnx_export import export_run
from ceod.export.runtime import OnnxModel, open_segmenter
from ceod.export.watch import BY_NAME, profile_summary, read_profile
from ceod.experiments.report import write_markdown
from ceod.data.stream import stream_from_dataset
from ceod.data.synth import config_for, synthesize_stream
from ceod.export.baseline import baseline_model
from ceod.pipeline.replay import judged_inputs, replay_watch
from ceod.pipeline.watch import DEFAULT_BUDGET
from watch_throughput import inspect, throughput

# Two ways to run the default sampling (every 10th frame): `line-rate`, where the time budget
# does not bind (a line slower than budget / segmenter time per sample, about 20 frames/s on this
# 2-core CPU) and every offered sample is measured; `saturated`, frames as fast as the CPU takes
# them with the default budget and a 4-sample queue, where the budget thins the samples out.
MODES = {"line-rate": {"watch_every": 10, "watch_budget": 1.0, "watch_queue": 100_000},
         "saturated": {"watch_every": 10, "watch_budget": DEFAULT_BUDGET, "watch_queue": 4}}
# change -> the kind of alarm it should raise
EXPECTED = {"belt": "scene", "lamp": "scene", "fixture": "scene", "camera": "aoi", "defect_rate": "score",
            "dirt": "scene"}


def export_models(runs: dict[str, Path], data: Path, work: Path) -> tuple[dict[str, Path], dict[str, dict]]:
    """The segmenter, then CE and CEOD with the watch's reference profile (AOIs from that
    segmenter, measured on each run's validation rows of `data`); what each profile watches."""
    seg = work / "segmenter.onnx"
    if not seg.exists():
        export_run(runs["segmenter"], seg)
    models, profiles = {"segmenter": seg}, {}
    for name in ("ce", "ceod"):
        path = work / f"{name}.onnx"
        if not path.exists():
            export_run(runs[name], path, heatmap=True, features=True, segmenter=seg, data=data)
        profiles[name] = profile_of(path)
        models[name] = path
    return models, profiles


def profile_of(path: Path) -> dict:
    model = OnnxModel(path, "cpu")
    return profile_summary(read_profile(model.info.raw, str(path))[0], model.info.outputs)


def commission(models: dict[str, Path], work: Path, make_stream: Callable[[Path], None], frames: int
               ) -> tuple[dict[str, Path], dict[str, dict]]:
    """Results 12.3's step: each model run (without the watch) on a commissioning stream of its
    own seed, then `ceod baseline` on the first `frames` of that run; the baselined models and
    what their profiles watch."""
    folder = work / "streams" / "commission"
    if not (folder / "stream.csv").exists():
        make_stream(folder)
    out, profiles = dict(models), {}
    for name in ("ce", "ceod"):
        path = work / f"{name}-baseline{frames}.onnx"
        if not path.exists():
            log_dir = work / "commission" / name
            if not (log_dir / "log.jsonl").exists():
                inspect(models[name], None, folder, log_dir)
            model = OnnxModel(models[name], "cpu")
            sources = judged_inputs(log_dir / "log.jsonl", model, "baseline", limit=frames)
            baseline_model(model, open_segmenter(models["segmenter"], "cpu", "--segmenter"), log_dir / "log.jsonl",
                           sources, path)
        out[name], profiles[name] = path, profile_of(path)
    return out, profiles


def demo_runs(demo: Path) -> dict[str, Path]:
    return {"segmenter": demo / "segmenter", "ce": demo / "plain_ce", "ceod": next(demo.glob("ceod_*[!0-9]"))}


def dataset_streams(work: Path, dataset: Path, split_column: str, frames_id: int, frames_change: int,
                    at: int) -> dict[str, dict]:
    """`ceod data stream` of the dataset's test split: one in-distribution stream, one per change."""
    out = {}
    for change, frames, seed in [("none", frames_id, 101)] + [(c, frames_change, 202) for c in EXPECTED]:
        folder = work / "streams" / change
        if not (folder / "stream.csv").exists():
            stream_from_dataset(dataset, folder, "test", split_column, change, None if change == "none" else at,
                                frames, seed, progress=False)
        out[change] = {"folder": folder, "change": change, "at": None if change == "none" else at}
    return out


def synthetic_streams(work: Path, frames_id: int, frames_change: int, at: int) -> dict[str, dict]:
    cfg = config_for("small")
    out = {}
    for style in ("test", "test_shift"):
        folder = work / "streams" / f"none_{style}"
        if not (folder / "stream.csv").exists():
            synthesize_stream(folder, cfg, seed=101, frames=frames_id, change="none", style=style, progress=False)
        out[f"none_{style}"] = {"folder": folder, "change": "none", "at": None}
    for change in EXPECTED:
        folder = work / "streams" / change
        if not (folder / "stream.csv").exists():
            synthesize_stream(folder, cfg, seed=202, frames=frames_change, change=change, at=at, progress=False)
        out[change] = {"folder": folder, "change": change, "at": at}
    return out


def alarm_summary(drift: list[dict], at: int | None) -> dict:
    """The first change alarm of each kind (a ceiling alarm is a level, counted apart), its delay
    after the change, and each kind's first alarm at or after the change (a kind that already
    alarmed before it would otherwise hide what the change raised); a change alarm before the
    change is a false alarm."""
    changes = [d for d in drift if d.get("ceiling") is None]

    def first_of_each_kind(records: list[dict]) -> dict:
        first: dict[str, dict] = {}
        for d in records:
            first.setdefault(d["kind"], d)
        return {k: {"frame": d["frame"], "since_frame": d["since_frame"], "statistic": d["statistic"],
                    "delay": None if at is None else d["frame"] - at} for k, d in first.items()}

    return {"first_by_kind": first_of_each_kind(changes),
            "after_change_by_kind": {} if at is None else first_of_each_kind([d for d in changes if d["frame"] >= at]),
            "false_alarms": [d for d in changes if at is None or d["frame"] < at],
            "level_alarms": [d for d in drift if d.get("ceiling") is not None]}


def drift_records(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines() if '"drift"' in line]


def replay(model: Path, segmenter: Path, log: Path, out: Path, online: dict, at: int | None) -> dict:
    """`ceod watch` over an online line-rate log, and whether it reproduces the online alarms:
    the same kinds, each first alarm within one test interval (a statistic's tests come every
    CHECK_EVERY frames, a sampled one's at every sample) of the online one."""
    if not (out / "watch.json").exists():
        replay_watch(log, model, segmenter, out, every=MODES["line-rate"]["watch_every"], provider="cpu")
    offline = alarm_summary(drift_records(out / "replay.jsonl"), at)
    same_kinds = set(offline["first_by_kind"]) == set(online["first_by_kind"])
    gaps = {k: abs(v["frame"] - online["first_by_kind"][k]["frame"]) for k, v in offline["first_by_kind"].items()
            if k in online["first_by_kind"]}
    interval = {k: CHECK_EVERY if BY_NAME[v["statistic"]].per_frame else MODES["line-rate"]["watch_every"]
                for k, v in online["first_by_kind"].items()}
    return {"first_by_kind": offline["first_by_kind"], "false_alarms": len(offline["false_alarms"]),
            "level_alarms": len(offline["level_alarms"]), "frame_gaps": gaps,
            "reproduces": same_kinds and all(g <= interval[k] for k, g in gaps.items())}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--demo", type=Path, help="a finished `ceod demo` folder (the synthetic line)")
    source.add_argument("--dataset", type=Path, help="a dataset folder whose test split makes the streams "
                        "(with --split-column, --ce, --ceod, --segmenter)")
    p.add_argument("--split-column", default="split", help="with --dataset: the column holding the split")
    p.add_argument("--ce", type=Path, help="with --dataset: the plain CE run folder")
    p.add_argument("--ceod", type=Path, help="with --dataset: the CEOD run folder")
    p.add_argument("--segmenter", type=Path, help="with --dataset: the segmenter run folder")
    p.add_argument("--work", type=Path, default=Path("runs/watch-bench"), help="exports, streams and logs")
    p.add_argument("--out", type=Path, default=Path("docs/experiments/watch"), help="results.json and results.md")
    p.add_argument("--frames", type=int, default=5000, help="in-distribution frames (the synthetic line: "
                   "half of them in each of two styles)")
    p.add_argument("--change-frames", type=int, default=900)
    p.add_argument("--at", type=int, default=300)
    p.add_argument("--baseline-frames", type=int, default=0, help="results 12.3: baseline each model on this many "
                   "frames of a commissioning stream (seed 303) and watch every stream with the baselined models")
    p.add_argument("--throughput-rounds", type=int, default=12, help="0: skip the throughput comparison "
                   "(`watch_throughput.py` measures it alone, on a quiet machine)")
    a = p.parse_args()
    if a.dataset is not None and None in (a.ce, a.ceod, a.segmenter):
        p.error("--dataset needs --ce, --ceod and --segmenter run folders")
    a.work.mkdir(parents=True, exist_ok=True)
    a.out.mkdir(parents=True, exist_ok=True)
    if a.demo is not None:
        models, profiles = export_models(demo_runs(a.demo), a.demo / "data", a.work)
        data = synthetic_streams(a.work, a.frames // 2, a.change_frames, a.at)
        title, id_stream = "synthetic line", "none_test_shift"

        def make_commission(folder: Path) -> None:
            synthesize_stream(folder, config_for("small"), seed=303, frames=a.baseline_frames, change="none",
                              progress=False)
    else:
        runs = {"ce": a.ce, "ceod": a.ceod, "segmenter": a.segmenter}
        models, profiles = export_models(runs, a.dataset, a.work)
        data = dataset_streams(a.work, a.dataset, a.split_column, a.frames, a.change_frames, a.at)
        title, id_stream = f"{a.dataset.name}, test split of column {a.split_column}", "none"

        def make_commission(folder: Path) -> None:
            stream_from_dataset(a.dataset, folder, "test", a.split_column, "none", None, a.baseline_frames, 303,
                                progress=False)
    logs, replays = a.work / "logs", a.work / "replay"
    if a.baseline_frames:
        models, profiles = commission(models, a.work, make_commission, a.baseline_frames)
        logs, replays = a.work / f"logs-baseline{a.baseline_frames}", a.work / f"replay-baseline{a.baseline_frames}"
        title += f"; models baselined on {a.baseline_frames} commissioning frames (results 12.3)"
    results_path = a.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    results["settings"] = {"title": title, "modes": MODES, "alpha": 0.01, "provider": "CPUExecutionProvider",
                           "in_distribution_frames": a.frames, "change_frames": a.change_frames, "at": a.at,
                           "baseline_frames": a.baseline_frames}
    results["profiles"] = profiles
    # measured first, while nothing else runs (0 rounds: not measured in this run)
    if "throughput" not in results and a.throughput_rounds > 0:
        results["throughput"] = throughput(models, data[id_stream]["folder"], a.work / "throughput",
                                           a.throughput_rounds)
        results_path.write_text(json.dumps(results, indent=1))
    for mode, model, name in itertools.product(MODES, ("ce", "ceod"), data):
        stream, watch = data[name], MODES[mode]
        key = f"{mode}/{model}/{name}"
        log_dir = logs / mode / model / name
        if key in results.get("runs", {}):
            done = results["runs"][key]
            if "after_change_by_kind" not in done and (log_dir / "log.jsonl").exists():
                done.update(alarm_summary(drift_records(log_dir / "log.jsonl"), stream["at"]))
            continue
        r = inspect(models[model], models["segmenter"], stream["folder"], log_dir, **watch)
        r.update({"change": stream["change"], "at": stream["at"], "expected_kind": EXPECTED.get(stream["change"])})
        r.update(alarm_summary(r.pop("drift"), stream["at"]))
        if mode == "line-rate":
            r["offline"] = replay(models[model], models["segmenter"], log_dir / "log.jsonl",
                                  replays / model / name, r, stream["at"])
        results.setdefault("runs", {})[key] = r
        results_path.write_text(json.dumps(results, indent=1))
        print(key, r["first_by_kind"], "false alarms", len(r["false_alarms"]), file=sys.stderr, flush=True)
    results_path.write_text(json.dumps(results, indent=1))
    write_markdown(markdown(results), a.out / "results.md")
    return 0


def alarm_cell(by_kind: dict) -> str:
    return "; ".join(f"{k}: {v['frame']} ({'+' if v['delay'] is not None and v['delay'] >= 0 else ''}"
                     f"{v['delay']}), {v['statistic']}" for k, v in by_kind.items()) or "none"


def markdown(results: dict) -> str:
    s = results["settings"]
    lines = [f"# Drift watch bench ({s.get('title', 'synthetic line')})\n",
             f"Modes: {s['modes']}; alpha {s['alpha']} per 10,000 frames, onnxruntime {s['provider']}, batch 1. "
             f"Changes start at frame {s['at']} of {s['change_frames']}; {s['in_distribution_frames']} "
             "in-distribution frames. Offline: `ceod watch` over the line-rate run's log (reproduces = the same "
             f"kinds, each first alarm within one test interval: {CHECK_EVERY} frames for an every-frame "
             "statistic, one sample for a sampled one).\n"]
    for model, prof in results.get("profiles", {}).items():
        if "statistics" in prof:
            lines.append(f"- {model}: reference profile of {prof['origin']}, AOI from "
                         f"{prof['aoi_source']}; background region {prof.get('background_share', '?')} of the frame; "
                         f"watched: {', '.join(prof['statistics'])}; not watched: "
                         f"{'; '.join(f'{k} ({v})' for k, v in prof.get('unwatched', {}).items()) or 'none'}")
    lines += ["",
              "| mode | model | stream | expected | drift alarms (kind: first frame, delay, statistic) | false alarms | "
              "first alarm of each kind at or after the change | "
              "evidence outside the AOI above 0.5 (level) | sampled / offered | watch CPU share | offline watch |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, r in results["runs"].items():
        mode, model, stream = key.split("/")
        alarms = alarm_cell(r["first_by_kind"])
        after = alarm_cell(r["after_change_by_kind"]) if "after_change_by_kind" in r else "not recorded"
        if r["expected_kind"] and r["expected_kind"] not in r.get("after_change_by_kind", {r["expected_kind"]: None}):
            after += " — **expected kind missing**"
        level = f"frame {r['level_alarms'][0]['frame']}" if r["level_alarms"] else "-"
        sm = r["sampling"]
        off = r.get("offline")
        offline = "-" if off is None else (("reproduces" if off["reproduces"] else "**differs**") + ": " + (
            ", ".join(f"{k} {v['frame']}" for k, v in off["first_by_kind"].items()) or "none"))
        lines.append(f"| {mode} | {model} | {stream} | {r['expected_kind'] or '-'} | {alarms} | {len(r['false_alarms'])} | "
                     f"{after} | {level} | {sm['sampled']} / {sm['offered']} | {sm['watch_busy_share']} | {offline} |")
    if "throughput" in results:
        t = results["throughput"]
        lines += [f"\nThroughput at a saturated CPU: the CEOD model on {t['frames']} frames of the in-distribution "
                  f"stream, batch 1, {t['provider']}, the settings interleaved over {t['rounds']} rounds "
                  f"(order rotated each round; medians over rounds; ratio to the median without the watch; "
                  f"latency from a frame's decoding to its record, so it includes the wait in the 64-frame "
                  f"queue that a source read as fast as possible fills):\n",
                  "| setting | frames/s (median) | ratio | p50 ms | p95 ms | p99 ms | watch busy share | per round /s |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, r in t["settings"].items():
            lines.append(f"| {name} | {r['median_per_s']} | **{r['ratio']}** | {r['p50_ms']} | {r['p95_ms']} | "
                         f"{r['p99_ms']} | {r.get('watch_busy_share', '-')} | {r['per_s']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
