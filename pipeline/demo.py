"""`ceod demo`: the whole flow on the synthetic line, ending in runs/demo/report.md.

synthesise -> train segmenter -> predict AOI masks -> train a plain CNN (CE) and a CEOD classifier
on those masks -> evaluate both on test / test_shift / test_anti with the audit -> export both ->
inspect test_shift with the ONNX classifier -> bench -> report.
"""

from __future__ import annotations

import json
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from ceod.contracts.errors import CeodError

TEST_SPLITS = ("test", "test_shift", "test_anti")
MARKER = ".ceod-demo"  # written into every folder the demo creates; only such a folder is ever cleared


def prepare_output(out: Path) -> Path:
    """An empty folder for the demo. A folder the demo made before (it holds MARKER) is cleared; a
    missing or empty one is used; anything else is refused: the demo never deletes what it did not
    create."""
    if out.exists() and not out.is_dir():
        raise CeodError(f"--out {out} is a file; choose a folder")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise CeodError(f"--out {out} is not empty and was not made by `ceod demo`; "
                            "choose a new or empty folder (nothing was deleted)")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by ceod demo; `ceod demo --out` may clear this folder\n")
    return out


@dataclass
class DemoPlan:
    synth_preset: str
    synth_overrides: dict[str, Any]
    input_size: int
    seg_images: int
    seg_epochs: int
    cls_epochs: int | None  # None: train.epochs of configs/classifier.yaml
    bench_iters: int
    batches: list[int]
    variant: str = "default"  # configs/classifier.yaml as it ships
    cls_overrides: dict[str, Any] = field(default_factory=dict)
    cls_seeds: int = 1  # classifier pairs (CE, CEOD) trained on the same line, seeds seed .. seed + n - 1
    watch_frames: int = 600  # the drift watch's stream: the lamp dims half way


def demo_plan(quick: bool) -> DemoPlan:
    """The full or quick plan of configs/demo.yaml."""
    from ceod.contracts.config import read_packaged
    return DemoPlan(**read_packaged("demo.yaml")["quick" if quick else "full"])


class Stages:
    """Wall time of each stage, printed as it goes."""

    def __init__(self) -> None:
        self.times: list[tuple[str, float]] = []
        self.started = time.perf_counter()

    @contextmanager
    def __call__(self, name: str):
        print(f"\n=== {name}", flush=True)
        t = time.perf_counter()
        yield
        self.times.append((name, time.perf_counter() - t))
        print(f"=== {name}: {self.times[-1][1]:.1f} s", flush=True)

    @property
    def total(self) -> float:
        return time.perf_counter() - self.started


def check_demo_variant(variant: str) -> None:
    """The demo trains CE against a classifier that learns from the AOI masks; a variant that does
    not (CE under another name) would compare CE with itself."""
    from ceod.classifier.config import ClassifierConfig, resolve, uses_aoi, variant_overrides, variants
    from ceod.contracts.config import load_config, to_dict
    base = to_dict(load_config(ClassifierConfig, None, "classifier.yaml"))
    guided = [v for v in variants() if uses_aoi(resolve(base, variant_overrides(v), v == "default"))]
    if variant.partition("@")[0] not in guided or not uses_aoi(resolve(base, variant_overrides(variant),
                                                                          variant == "default")):
        raise CeodError(f"--variant {variant}: choose a variant that learns from the AOI from {guided}")


def run_demo(out: str | Path, quick: bool = False, seed: int = 0, variant: str | None = None) -> Path:
    from ceod.contracts.config import from_dict, load_config, to_dict
    from ceod.data.loading import load_split
    from ceod.data.manifest import read_manifest
    from ceod.data.synth import config_for, synthesize
    from ceod.classifier.config import ClassifierConfig
    from ceod.classifier.evaluate import evaluate_splits
    from ceod.classifier.config import resolve, variant_overrides
    from ceod.classifier.inference import load_classifier
    from ceod.classifier.train import train_classifier
    from ceod.export.onnx_export import export_run
    from ceod.pipeline.bench import run_bench
    from ceod.pipeline.inspect import Inspector
    from ceod.pipeline.masks import mask_source
    from ceod.segmenter.config import SegmenterConfig
    from ceod.segmenter.evaluate import evaluate_segmenter
    from ceod.segmenter.predict import predict_dataset
    from ceod.segmenter.train import train_segmenter

    plan = demo_plan(quick)
    variant = variant or plan.variant
    check_demo_variant(variant)
    out = prepare_output(Path(out))
    stage = Stages()
    import torch
    # Same seed, same thread count and same CPU kernels give bit-identical training; another thread
    # count or instruction set sums in another order (1e-6 after one step), so both are recorded.
    facts: dict[str, Any] = {"quick": quick, "seed": seed, "variant": variant, "plan": plan.__dict__,
                             "torch_threads": torch.get_num_threads(),
                             "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    data, pred = out / "data", out / "data_pred"

    with stage("synthesise the line"):
        summary = synthesize(data, config_for(plan.synth_preset, overrides=plan.synth_overrides), seed, preview=True)
        facts["synth"] = summary
    with stage("train the AOI segmenter"):
        seg_cfg = load_config(SegmenterConfig, None, "segmenter.yaml",
                              {"input_size": plan.input_size, "train.epochs": plan.seg_epochs})
        facts["segmenter"] = train_segmenter(seg_cfg, data, out / "segmenter", seed, plan.seg_images)
        facts["segmenter_test"] = evaluate_segmenter(out / "segmenter", data, "test", overlay_dir=out / "segmenter")
    with stage("predict AOI masks for every image"):
        facts["predict_aoi"] = predict_dataset(out / "segmenter", data, pred)
    label, source = mask_source(str(pred))
    seeds = [seed + k for k in range(plan.cls_seeds)]
    runs_by_seed = {s: {"plain": out / ("plain_ce" + (f"_seed{s}" if s != seed else "")),
                        "ceod": out / (f"ceod_{variant}" + (f"_seed{s}" if s != seed else ""))} for s in seeds}
    runs = runs_by_seed[seed]  # exported, inspected and benchmarked
    base = to_dict(load_config(ClassifierConfig, None, "classifier.yaml"))
    for s in seeds:
        for name, overrides in (("plain", variant_overrides("ce")), ("ceod", variant_overrides(variant))):
            what = "plain CNN (CE)" if name == "plain" else f"CEOD classifier ({variant})"
            with stage(f"train the {what}, seed {s}"):
                cfg = from_dict(ClassifierConfig, resolve(
                    base, {"input_size": plan.input_size, "train.epochs": plan.cls_epochs or base["train"]["epochs"],
                                 **plan.cls_overrides, **overrides}, keep_background_swap=variant == "default"))
                facts[f"train_{name}" + (f"_seed{s}" if s != seed else "")] = train_classifier(
                    cfg, data, runs_by_seed[s][name], s, source, label)
                if name == "ceod":
                    facts["ceod_loss"], facts["ceod_epochs"] = to_dict(cfg)["loss"], cfg.train.epochs
    with stage("evaluate and audit on test, test_shift, test_anti"):
        manifest = read_manifest(data)
        splits = {split: load_split(manifest.split(split), plan.input_size, root=data) for split in TEST_SPLITS}
        by_seed: dict[int, dict[str, dict[str, Any]]] = {}
        for s in seeds:
            for name, run in runs_by_seed[s].items():
                model, cfg, meta = load_classifier(run)
                by_seed.setdefault(s, {})[name] = evaluate_splits(model, cfg, meta, splits, s)
        evals = by_seed[seed]
        facts["evaluation_by_seed"] = {str(s): v for s, v in by_seed.items()}
        facts["verdict"] = verdict(by_seed)
        facts["evaluation"] = evals
        facts["gradcam_picture"] = gradcam_comparison(runs, data, out / "gradcam_ce_vs_ceod.png")
    with stage("export both classifiers and the segmenter to ONNX"):
        onnx_dir = out / "onnx"
        facts["export"] = {
            "plain": export_run(runs["plain"], onnx_dir / "plain.onnx"),
            "ceod": export_run(runs["ceod"], onnx_dir / "ceod.onnx"),
            "segmenter": export_run(out / "segmenter", onnx_dir / "segmenter.onnx"),
        }
        facts["export"]["ceod_heatmap"] = export_run(runs["ceod"], onnx_dir / "ceod_heatmap.onnx", heatmap=True,
                                                     features=True, segmenter=onnx_dir / "segmenter.onnx")
    with stage("inspect test_shift with the ONNX classifier"):
        inspector = Inspector(onnx_dir / "ceod_heatmap.onnx", "auto")
        s = inspector.run(str(data / "images" / "test_shift" / "*" / "*.png"), out / "inspect.jsonl",
                          out / "overlays", batch=8, live=False).as_dict()
        facts["inspect"] = s
    with stage("watch a line whose lamp dims at frame 300"):
        from ceod.data.synth import synthesize_stream
        stream = synthesize_stream(out / "stream_lamp", config_for(plan.synth_preset, overrides=plan.synth_overrides),
                                   seed + 1000, plan.watch_frames, "lamp", plan.watch_frames // 2, progress=False)
        watched = Inspector(onnx_dir / "ceod_heatmap.onnx", "auto", watch=onnx_dir / "segmenter.onnx")
        s = watched.run(str(out / "stream_lamp" / "frames"), out / "watch.jsonl", batch=1, live=False,
                        watch_report=out / "watch").as_dict()
        report = json.loads((out / "watch" / "watch.json").read_text())
        facts["watch"] = {"stream": stream, "records": s["records"], "drift_alarms": s["drift_alarms"],
                          "alarms": [{k: a[k] for k in ("kind", "statistic", "frame", "since_frame", "shift_sigma")}
                                     for a in report["alarms"]],
                          "sampling": report["sampling"]}
    with stage("benchmark"):
        facts["bench"] = run_bench(str(onnx_dir / "ceod.onnx"), str(onnx_dir / "plain.onnx"),
                                   str(onnx_dir / "segmenter.onnx"), plan.batches, "auto", out / "bench",
                                   plan.bench_iters, 5, str(runs["ceod"]),
                                   str(data / "images" / "test_shift" / "*" / "*.png"), train_iters=4)
    facts["stages"] = stage.times
    facts["wall_seconds"] = stage.total
    (out / "facts.json").write_text(json.dumps(facts, indent=1, default=str))
    from ceod.pipeline.report import write_report
    path = write_report(out, facts)
    print(f"\ndemo finished in {stage.total:.0f} s (torch {facts['cpu_capability']} kernels, "
          f"{facts['torch_threads']} threads); report: {path}")
    return path


def verdict(by_seed: dict[int, dict[str, dict[str, Any]]]) -> str:
    """Sentences: per seed, on which splits CEOD beat CE and by how much, and where it flipped
    fewer decisions when the outside changed (another part's background swapped in; clutter
    never seen in training drawn beside the part); then whether every seed agrees."""
    seeds = sorted(by_seed)
    splits = list(by_seed[seeds[0]]["plain"])

    def bacc(s: int, name: str, split: str) -> float:
        return by_seed[s][name][split]["balanced_accuracy"]

    def flips(s: int, name: str, split: str, how: str) -> float:
        return by_seed[s][name][split]["flip"].get(how, float("nan"))

    parts, wins = [], {}
    for s in seeds:
        gains = {sp: 100 * (bacc(s, "ceod", sp) - bacc(s, "plain", sp)) for sp in splits}
        won = [sp for sp in splits if gains[sp] > 0]
        head = (f"seed {s}: CEOD beat CE on {len(won)} of {len(splits)} splits ({', '.join(won)})" if won
                else f"seed {s}: CEOD did not beat CE on any split")
        text = head + " — " + ", ".join(
            f"{sp} {gains[sp]:+.1f} points ({bacc(s, 'ceod', sp):.3f} vs {bacc(s, 'plain', sp):.3f})" for sp in splits)
        fewer_by = []
        for how in ("swap", "clutter"):
            fewer = [sp for sp in splits if flips(s, "ceod", sp, how) < flips(s, "plain", sp, how)]
            fewer_by.append(len(fewer))
            text += (f"; fewer {how} flips on {len(fewer)} of {len(splits)} splits ("
                     + ", ".join(f"{sp} {flips(s, 'ceod', sp, how):.3f} vs {flips(s, 'plain', sp, how):.3f}"
                                 for sp in splits) + ")")
        wins[s] = (tuple(won), *fewer_by)
        parts.append(text)
    same = len(set(wins.values())) == 1
    tail = ("Every seed reached the same verdict." if same and len(seeds) > 1 else
            "" if len(seeds) == 1 else "The seeds disagree: read each one.")
    return ". ".join(parts) + (". " + tail if tail else ".")


def gradcam_comparison(runs: dict[str, Path], data: Path, path: Path, n: int = 8) -> str:
    """The same test_anti images under CE and under CEOD: where does each look?"""
    from ceod.data.loading import load_split
    from ceod.data.manifest import read_manifest
    from ceod.data.overlay import draw_overlay, grid, save_rgb
    from ceod.classifier.inference import load_classifier, predict

    manifest = read_manifest(data)
    rows = [s for s in manifest.split("test_anti") if s.extra.get("distractor") == "1"][:n]
    rows = rows or manifest.split("test_anti")[:n]
    tiles = []
    for name, run in runs.items():
        model, cfg, meta = load_classifier(run)
        loaded = load_split(rows, cfg.input_size, root=data)
        probs, cams = predict(model, loaded.images, cfg.mean, cfg.std, with_cam=True)
        from ceod.contracts.classes import decide
        from ceod.contracts.model import class_names
        names = class_names(meta)
        pred = decide(probs, names, meta["threshold"])
        for i in range(len(rows)):
            verdict, truth = names[pred[i]], names[loaded.labels[i]]
            tiles.append(draw_overlay(loaded.images[i], loaded.aoi[i], cams[i],
                                      f"{'CE' if name == 'plain' else 'CEOD'} {truth}->{verdict}",
                                      scale=max(1, 128 // cfg.input_size) * 2))
    return str(save_rgb(path, grid(tiles, len(rows))))
