"""The drift watch: its statistics, its test's false-alarm control and detection, the profile in
the exported model, and `ceod inspect --watch` on synthetic streams that change at a known frame."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from ceod.export.drift import Monitor, window_test
from conftest import run_ceod_on_a_line_pc
from ceod.export.watch import QUANTILES, ProfileError, frame_statistics, part_position, read_profile, to_props


def _reference(values: np.ndarray) -> dict:
    return {"n": len(values), "mean": float(values.mean()), "std": float(values.std(ddof=1)),
            "quantiles": [float(q) for q in np.quantile(values, QUANTILES)]}


def _profile(rng: np.random.Generator, n: int = 400) -> dict:
    stats = {"score": _reference(rng.beta(0.5, 0.5, n))}
    for name in ("outside_grey", "aoi_area", "aoi_cx"):
        stats[name] = _reference(rng.normal(0.5, 0.05, n))
    stats["evidence_outside"] = _reference(rng.normal(0.3, 0.05, n))  # below its ceiling (0.5)
    region = np.zeros((32, 32), bool)
    region[:4] = True
    return {"version": 1, "images": n, "aoi_source": "test", "analysis_size": 128, "statistics": stats,
            "outside_histogram": [1 / 16] * 16,
            "background_region": {"size": 32, "share": 0.125, "cells": base64.b64encode(np.packbits(region)).decode()}}


def test_window_test_separates_same_from_shifted():
    rng = np.random.default_rng(0)
    ref = _reference(rng.normal(0, 1, 500))
    same = window_test(rng.normal(0, 1, 50), ref, upward=False)
    moved = window_test(rng.normal(1.0, 1, 50), ref, upward=False)
    assert same["p"] > 1e-3 and moved["p"] < 1e-6
    # one-sided: a drop is not drift for an upward statistic, a rise is
    assert window_test(rng.normal(-1.0, 1, 50), ref, upward=True)["p"] > 0.1
    assert window_test(rng.normal(1.0, 1, 50), ref, upward=True)["p"] < 1e-6
    # a statistic that is mostly exactly zero (tied quantiles) is tested against a step CDF
    spiky = np.where(rng.random(500) < 0.9, 0.0, rng.random(500))
    assert window_test(np.where(rng.random(100) < 0.9, 0.0, rng.random(100)), _reference(spiky), True)["p"] > 1e-3
    # a change of spread with the same mean: only the KS half sees it
    assert window_test(rng.normal(0, 3, 100), ref, upward=False)["p"] < 1e-3


def test_no_false_alarm_on_10000_in_distribution_frames_and_a_shift_is_found_near_its_start():
    rng = np.random.default_rng(1)
    profile = _profile(rng)
    draw = {k: (lambda n, k=k: rng.normal(0.3 if k == "evidence_outside" else 0.5, 0.05, n))
            for k in ("outside_grey", "aoi_area", "aoi_cx", "evidence_outside")}
    quiet = Monitor(profile, None, sample_every=10)
    for frame in range(10_000):
        quiet.observe_frame(frame, f"f{frame}", float(rng.beta(0.5, 0.5)), None)
        if frame % 10 == 0:
            quiet.observe_sample(frame, f"f{frame}", {k: float(d(1)[0]) for k, d in draw.items()})
    assert quiet.alarms == [] and quiet.samples == 1000

    moved = Monitor(profile, None, sample_every=10)
    for frame in range(2_000):
        values = {k: float(d(1)[0]) for k, d in draw.items()}
        if frame >= 1000:
            values["outside_grey"] += 0.05  # one reference sigma
        moved.observe_frame(frame, f"f{frame}", float(rng.beta(0.5, 0.5)), None)
        if frame % 10 == 0:
            moved.observe_sample(frame, f"f{frame}", values)
    assert [a.statistic for a in moved.alarms] == ["outside_grey"]
    alarm = moved.alarms[0]
    assert alarm.kind == "scene" and 1000 <= alarm.frame <= 1300
    assert 900 <= alarm.since_frame <= 1100 and alarm.shift_sigma > 0.5


def test_score_shift_and_evidence_rise_name_their_kinds():
    rng = np.random.default_rng(2)
    monitor = Monitor(_profile(rng), None, sample_every=1)
    for frame in range(600):
        score = float(rng.beta(0.5, 0.5)) if frame < 300 else float(rng.beta(5, 1))  # more defects
        monitor.observe_frame(frame, "x", score, None)
        evidence = 0.3 + (0.15 if frame >= 300 else 0.0)
        monitor.observe_sample(frame, "x", {"evidence_outside": float(rng.normal(evidence, 0.05))})
    kinds = {a.statistic: a.kind for a in monitor.alarms}
    assert kinds == {"score": "score", "evidence_outside": "evidence"}
    assert all(a.frame >= 300 for a in monitor.alarms)


def test_frame_statistics_measure_outside_the_aoi_only():
    image = np.full((256, 256, 3), 60, np.uint8)
    aoi = np.zeros((256, 256), np.uint8)
    aoi[64:192, 96:224] = 1
    image[aoi > 0] = 200  # the part: bright, and not part of the outside statistics
    heat = np.zeros((4, 4), np.float32)
    heat[0, 0] = 1.0  # all evidence in a corner outside the AOI
    stats = frame_statistics(image, aoi, heat)
    assert stats["outside_grey"] == pytest.approx(60 / 255, abs=1e-3)
    assert stats["outside_texture"] == pytest.approx(0.0, abs=1e-6)
    assert stats["aoi_area"] == pytest.approx(0.25, abs=0.01)
    assert stats["aoi_cx"] == pytest.approx(160 / 256, abs=0.01) and stats["aoi_cy"] == pytest.approx(0.5, abs=0.01)
    assert stats["evidence_outside"] == pytest.approx(1.0)
    heat[:] = 0
    heat[1:3, 2] = 1.0  # cells wholly inside
    assert frame_statistics(image, aoi, heat)["evidence_outside"] == pytest.approx(0.0, abs=1e-6)
    empty = frame_statistics(image, np.zeros_like(aoi), np.zeros((4, 4), np.float32))
    assert np.isnan(empty["aoi_cx"]) and np.isnan(empty["evidence_outside"]) and empty["aoi_area"] == 0


def test_part_position_follows_the_part_not_the_belt_texture_or_the_lamp():
    """The every-frame proxy of the AOI's centroid: a bright disk on a striped belt, moved right
    by 5 % of the frame, moves it most of that way; the lamp dimming every grey level does not."""
    import cv2
    rng = np.random.default_rng(3)
    region = np.zeros((32, 32), bool)
    region[:, :5] = region[:, -5:] = True  # the side strips no part comes near

    def frames(shift: float, lamp: float = 1.0) -> np.ndarray:
        out = []
        for _ in range(50):
            g = np.full((32, 32), 90.0) + 12.0 * (np.arange(32) % 4 < 2)[None, :] + rng.normal(0, 3, (32, 32))
            cx, cy = 16 + rng.uniform(-1.5, 1.5) + shift * 32, 16 + rng.uniform(-1.5, 1.5)
            cv2.circle(g, (int(round(cx)), int(round(cy))), 7, 200.0, -1)
            out.append(np.clip(g * lamp, 0, 255).astype(np.uint8))
        return np.stack(out)

    before, after, dimmed = (part_position(frames(shift, lamp), region) for shift, lamp in
                             ((0.0, 1.0), (0.05, 1.0), (0.0, 0.75)))
    moved = np.nanmean(after["part_cx"]) - np.nanmean(before["part_cx"])
    assert 0.025 <= moved <= 0.065, moved  # the belt's own departures pull it back a little
    assert abs(np.nanmean(after["part_cy"]) - np.nanmean(before["part_cy"])) < 0.01
    assert abs(np.nanmean(dimmed["part_cx"]) - np.nanmean(before["part_cx"])) < 0.01
    flat = part_position(np.full((2, 32, 32), 90, np.uint8), region)
    assert np.isnan(flat["part_cx"]).all()  # nothing departs from the background: no position


def test_profile_round_trip_and_damaged_profiles_are_refused():
    rng = np.random.default_rng(3)
    profile = _profile(rng)
    raw = {f"ceod.{k}": v for k, v in to_props(profile, None).items()}
    back, block = read_profile(raw, "m.onnx")
    assert back["statistics"]["score"]["n"] == 400 and block is None
    assert back["background_region"]["mask"].shape == (32, 32) and back["background_region"]["mask"][:4].all()
    with pytest.raises(ProfileError, match="no reference profile"):
        read_profile({}, "m.onnx")
    broken = json.loads(raw["ceod.reference_profile"])
    broken["statistics"]["score"]["quantiles"] = [0.1, 0.2]
    with pytest.raises(ProfileError, match="malformed"):
        read_profile({"ceod.reference_profile": json.dumps(broken)}, "m.onnx")
    with pytest.raises(ProfileError, match="cannot be read"):
        read_profile({"ceod.reference_profile": "{not json"}, "m.onnx")


def _disc_frames(radius: float, n: int = 40, size: int = 96):
    """Grey frames of a bright disc of `radius` (share of the side) on a darker background, with the
    disc as the AOI; the centre wanders by a pixel or two as a part on a fixture would."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:size, 0:size]
    for _ in range(n):
        cx, cy = size / 2 + rng.normal(0, 1.5, 2)
        aoi = (xx - cx) ** 2 + (yy - cy) ** 2 <= (radius * size) ** 2
        image = np.where(aoi, 170, 60).astype(np.uint8) + rng.integers(0, 8, (size, size)).astype(np.uint8)
        yield np.repeat(image[..., None], 3, axis=2), aoi


def test_a_part_that_fills_the_frame_leaves_the_background_unwatched_and_export_says_what_still_watches():
    from ceod.export.watch import blind_spots, build_profile, unwatched

    def outputs(images):
        return {"score": np.full(len(images), 0.2), "judged": np.zeros(len(images), bool)}

    small, _ = build_profile(outputs, _disc_frames(0.3), "manifest AOI masks", 64)
    assert small["background_region"]["share"] >= 0.05 and "background_grey" in small["statistics"]
    assert blind_spots(unwatched(small, ("logits",))) is None  # only export options are missing
    # a casting-like part: a disc touching the frame's sides leaves corners under 5 % of the frame
    large, _ = build_profile(outputs, _disc_frames(0.56), "manifest AOI masks", 64)
    share = large["background_region"]["share"]
    assert share < 0.05
    reasons = unwatched(large, ("logits",))
    assert {"background_grey", "background_texture", "part_cx", "part_cy"} <= set(reasons)
    assert f"{share:.1%} of the frame" in reasons["background_grey"]
    assert reasons["feature_distance"] == "exported without --features"
    warning = blind_spots(reasons)
    assert "background_grey" in warning and "feature_distance" not in warning
    assert "watched by: outside_grey" in warning and "aoi_cx" in warning  # what still watches


def test_training_frames_widen_the_image_statistics_and_never_the_models():
    from ceod.export.watch import build_profile

    calls = []

    def outputs(images):
        calls.append(len(images))
        return {"score": np.full(len(images), 0.2), "judged": np.zeros(len(images), bool)}

    held_out, _ = build_profile(outputs, _disc_frames(0.3), "masks", 64)
    wider, _ = build_profile(outputs, _disc_frames(0.3), "masks", 64, scene_frames=_disc_frames(0.2, n=30))
    assert sum(calls) == 80  # the scene frames never went through the model
    assert wider["images"] == held_out["images"] == 40 and wider["scene_images"] == 30
    assert wider["statistics"]["score"]["n"] == 40 and wider["statistics"]["aoi_area"]["n"] == 70
    assert wider["statistics"]["aoi_area"]["mean"] < held_out["statistics"]["aoi_area"]["mean"]


def test_the_held_out_reference_takes_the_training_class_mix():
    from types import SimpleNamespace

    from ceod.export.reference import at_prevalence
    rows = [SimpleNamespace(label=1, i=i) for i in range(429)] + [SimpleNamespace(label=0, i=i) for i in range(103)]
    train = [SimpleNamespace(label=1)] * 2736 + [SimpleNamespace(label=0)] * 2004
    kept = at_prevalence(rows, train, seed=0)
    ok, defects = sum(r.label == 0 for r in kept), sum(r.label == 1 for r in kept)
    assert ok == 103 and defects == round(103 * 2736 / 2004)  # every ok part, the defects thinned
    assert kept == at_prevalence(rows, train, seed=0) and kept != at_prevalence(rows, train, seed=1)
    assert at_prevalence(rows[:429], train, seed=0) == rows[:429]  # no ok part held out: left as it is


def test_the_training_mix_is_taken_by_the_rows_that_can_be_read():
    from types import SimpleNamespace

    from ceod.export.reference import reference_rows
    # half of the held-out ok parts have no AOI mask: without a segmenter they cannot be read, so
    # the defects are thinned against the ok parts that remain
    rows = ([SimpleNamespace(label=1, aoi="m") for _ in range(400)]
            + [SimpleNamespace(label=0, aoi="m" if i % 2 else None) for i in range(200)])
    train = [SimpleNamespace(label=1, aoi="m")] * 300 + [SimpleNamespace(label=0, aoi=None)] * 300
    held_out, trained = reference_rows(rows, train, with_segmenter=False)
    assert all(r.aoi is not None for r in held_out + trained) and len(trained) == 300
    assert sum(r.label == 0 for r in held_out) == 100 and sum(r.label == 1 for r in held_out) == 100
    with_seg, trained_all = reference_rows(rows, train, with_segmenter=True)
    assert sum(r.label == 0 for r in with_seg) == 200 and len(trained_all) == 600


def test_an_alarm_needs_a_change_of_the_floor_in_the_statistics_own_units():
    from ceod.export.watch import BY_NAME
    st = BY_NAME["background_grey"]  # floor 0.02 grey levels / 255
    ref = _reference(np.random.default_rng(0).normal(0.5, 0.001, 2000))
    tiny_shift = np.random.default_rng(1).normal(0.505, 0.001, 100)  # KS D ~1, but 0.005 grey levels
    assert not st.material(ref, tiny_shift, ks_d=0.99)
    real_shift = np.random.default_rng(2).normal(0.53, 0.001, 100)
    assert st.material(ref, real_shift, ks_d=0.99)
    # the mean stays, the spread widens: its deciles move by more than the floor
    spread = np.concatenate([np.full(50, 0.47), np.full(50, 0.53)])
    assert st.material(ref, spread, ks_d=0.5) and not st.material(ref, spread, ks_d=0.1)


# ---------------------------------------------------------------- end to end on the synthetic line

@pytest.fixture(scope="module")
def watched(tiny_dataset, tiny_classifier_run, tmp_path_factory) -> dict:
    """The tiny classifier exported with heatmap, features and a reference profile measured with
    an exported segmenter (trained long enough to leave the frame's corners out of every AOI) on
    a validation split of 60 images."""
    from ceod.contracts.config import load_config
    from ceod.export.onnx_export import export_run
    from ceod.segmenter.config import SegmenterConfig
    from ceod.segmenter.train import train_segmenter
    from ceod.data.synth import config_for, synthesize
    root = tmp_path_factory.mktemp("watch")
    cfg = load_config(SegmenterConfig, None, "segmenter.yaml", {
        "input_size": 64, "train.epochs": 4, "train.batch_size": 16, "model.encoder_depth": 3,
        "model.decoder_channels": [32, 16, 8]})
    train_segmenter(cfg, tiny_dataset, root / "seg", seed=0, progress=False)
    export_run(root / "seg", root / "segmenter.onnx")
    data = root / "ref"
    synthesize(data, config_for("tiny", overrides={"counts": {"train": 8, "val": 60}}), seed=5, progress=False)
    report = export_run(tiny_classifier_run, root / "watched.onnx", heatmap=True, features=True, data=data,
                        segmenter=root / "segmenter.onnx")
    return {"root": root, "model": root / "watched.onnx", "segmenter": root / "segmenter.onnx", "report": report}


def _stream(root, change: str, frames: int = 400, at: int = 150):
    from ceod.data.synth import config_for, synthesize_stream
    out = root / f"stream_{change}"
    if not (out / "stream.csv").exists():
        synthesize_stream(out, config_for("tiny"), seed=11, frames=frames, change=change, at=at, progress=False)
    return out


def _inspect(watched, stream, tmp_path, every: int = 1):
    from ceod.pipeline.inspect import Inspector
    # a queue that holds every sample: the watch thread measures all of them, whatever its speed
    inspector = Inspector(watched["model"], "cpu", watch=watched["segmenter"], watch_every=every, watch_budget=1.0,
                          watch_queue=10_000)
    log = tmp_path / "log.jsonl"
    summary = inspector.run(str(stream / "frames"), log, batch=4, live=False, watch_report=tmp_path / "watch")
    records = [json.loads(line) for line in log.read_text().splitlines()]
    return summary, records


def test_export_stores_a_profile_the_runtime_reads(watched):
    from ceod.export.runtime import OnnxModel
    model = OnnxModel(watched["model"], "cpu")
    assert model.info.outputs == ("logits", "heatmap", "features")
    profile, block = read_profile(model.info.raw, "watched.onnx")
    from ceod.data.manifest import read_manifest
    from ceod.export.reference import at_prevalence
    manifest = read_manifest(watched["root"] / "ref")
    expected = at_prevalence(manifest.split("val"), manifest.split("train"), seed=2)
    assert 30 <= profile["images"] == len(expected) < 60  # the validation rows at the training class mix
    assert profile["aoi_source"].startswith("segmenter")
    assert profile["scene_images"] == 8  # the image statistics also read the run's training rows
    assert {"score", "feature_distance", "outside_grey", "aoi_area", "evidence_outside",
            "background_grey"} <= set(profile["statistics"])
    region = profile["background_region"]["mask"]
    assert 0.05 <= region.mean() < 0.8 and region[0, 0] and not region[16, 16]  # corners, never the centre
    assert block["whiten"].shape[1] == model.run_tensor(np.zeros((1, 3, 64, 64), np.float32))["features"].shape[1]
    summary = watched["report"]["profile"]
    assert summary["background_share"] == profile["background_region"]["share"] and summary["warning"] is None


def test_in_distribution_stream_raises_no_alarm(watched, tmp_path):
    summary, records = _inspect(watched, _stream(watched["root"], "none"), tmp_path)
    drift = [r for r in records if r["status"] == "drift"]
    # no change; the tiny 2-epoch model may read outside the AOI, a level reported as such
    assert summary.records == 400 and [r for r in drift if r["ceiling"] is None] == []
    assert all(r["kind"] == "evidence" for r in drift)
    report = json.loads((tmp_path / "watch" / "watch.json").read_text())
    assert report["frames"] == 400 and report["sampling"]["sampled"] > 0
    assert [a for a in report["alarms"] if a["ceiling"] is None] == []
    assert "<svg" in (tmp_path / "watch" / "watch.html").read_text()


def test_a_fixture_outside_the_part_raises_a_scene_alarm_after_it_appears(watched, tmp_path):
    summary, records = _inspect(watched, _stream(watched["root"], "fixture"), tmp_path)
    drift = [r for r in records if r["status"] == "drift" and r["ceiling"] is None]
    assert summary.records == 400 and drift, "no drift record"
    assert all(r["frame"] >= 150 for r in drift)
    scene = [r for r in drift if r["kind"] == "scene"]
    assert scene and scene[0]["frame"] <= 150 + 300 and 100 <= scene[0]["since_frame"] <= 250
    assert "outside the AOI" in scene[0]["reason"] and scene[0]["verdict"] is None
    # drift records are extra: every frame still has exactly one verdict record
    assert len([r for r in records if r["status"] == "ok"]) == 400


def test_the_budget_bounds_the_sampling_by_all_the_watchs_work(watched, tmp_path):
    """The segmenter gets a frame only while the sampling and the every-frame statistics together
    stay within the budget: every-frame statistics over it alone stop the sampling."""
    from ceod.export.runtime import OnnxModel
    from ceod.pipeline.watch import Watcher, prepare_watch
    model = OnnxModel(watched["model"], "cpu")
    watcher = Watcher(model, prepare_watch(model, watched["segmenter"], "cpu", every=1, budget=0.05, alpha=0.01))
    frame = np.full((64, 64, 3), 120, np.uint8)
    watcher.frames_busy = 1e6  # as if the every-frame statistics had taken all the time there was
    watcher.frame(0, "a.png", frame, frame, 0.1, 0, None, None)
    assert (watcher.offered, watcher.over_budget, watcher.jobs.qsize()) == (1, 1, 0)
    watcher.frames_busy = 0.0
    watcher.started -= 1000.0  # and a line that has run long enough for one frame's statistics to fit
    watcher.frame(1, "b.png", frame, frame, 0.1, 0, None, None)
    watcher.close()
    assert (watcher.offered, watcher.over_budget, watcher.sampled) == (2, 1, 1)


def test_inspection_at_full_speed_reports_what_the_budget_counted(watched, tmp_path):
    from ceod.pipeline.inspect import Inspector
    inspector = Inspector(watched["model"], "cpu", watch=watched["segmenter"], watch_every=1, watch_budget=0.05)
    inspector.run(str(_stream(watched["root"], "none") / "frames"), tmp_path / "log.jsonl", batch=1, live=False,
                  watch_report=tmp_path / "watch")
    s = json.loads((tmp_path / "watch" / "watch.json").read_text())["sampling"]
    assert s["offered"] == 400 and s["skipped_over_budget"] > 0, s
    assert s["sampled"] + s["skipped_over_budget"] + s["skipped_queue_full"] == 400, s
    assert s["every_frame_statistics_seconds"] > 0
    share = (s["sampling_busy_seconds"] + s["every_frame_statistics_seconds"]) / s["watch_seconds"]
    assert s["watch_busy_share"] == pytest.approx(share, abs=0.01), s


def test_watch_refuses_a_model_without_profile_and_a_foreign_report_folder(watched, tiny_classifier_run, tmp_path):
    from ceod.contracts.errors import CeodError
    from ceod.pipeline.inspect import Inspector
    from ceod.export.onnx_export import export_run
    bare = tmp_path / "bare.onnx"
    export_run(tiny_classifier_run, bare, profile=False)
    with pytest.raises(ProfileError, match="no reference profile"):
        Inspector(bare, "cpu", watch=watched["segmenter"])
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep")
    inspector = Inspector(watched["model"], "cpu", watch=watched["segmenter"])
    with pytest.raises(CeodError, match="did not write"):
        inspector.run(str(_stream(watched["root"], "none") / "frames"), None, live=False, watch_report=folder)
    assert (folder / "notes.txt").read_text() == "keep"
    with pytest.raises(CeodError, match="segmenter"):
        Inspector(watched["model"], "cpu", watch=watched["model"])


def test_inspect_watch_cli_runs_without_torch(watched, tmp_path):
    from tests.conftest import run_ceod_on_a_line_pc
    stream = _stream(watched["root"], "none")
    r = run_ceod_on_a_line_pc(["inspect", "--model", watched["model"], "--source", stream / "frames",
                               "--log", tmp_path / "log.csv", "--watch", watched["segmenter"], "--quiet"])
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "log_watch" / "watch.json").is_file() and "drift watch report" in r.stderr
    assert len((tmp_path / "log.csv").read_text().splitlines()) == 1 + 400


def test_evidence_mostly_outside_the_aoi_is_reported_as_a_level_once():
    """A model whose defect evidence lies mostly outside the AOI on its own reference is reported
    when the line confirms it (the window above the ceiling), with no change at all; a model
    whose evidence stays inside is not."""
    rng = np.random.default_rng(4)
    for level, expected in ((0.7, 1), (0.15, 0)):
        profile = _profile(rng)
        profile["statistics"]["evidence_outside"] = _reference(np.clip(rng.normal(level, 0.1, 400), 0, 1))
        monitor = Monitor(profile, None, sample_every=1)
        for frame in range(200):
            monitor.observe_sample(frame, "x", {"evidence_outside": float(np.clip(rng.normal(level, 0.1), 0, 1))})
        ceilings = [a for a in monitor.alarms if a.ceiling is not None]
        assert len(ceilings) == expected and all(a.kind == "evidence" for a in ceilings)
        assert [a for a in monitor.alarms if a.ceiling is None] == []  # nothing moved


def test_synth_stream_cli_changes_at_the_frame_asked_and_refuses_bad_input(tmp_path, capsys):
    import csv

    import cv2

    from ceod.pipeline.cli import main
    assert main(["synth", "stream", str(tmp_path / "s"), "--preset", "tiny", "--frames", "40", "--change", "lamp",
                 "--at", "25"]) == 0
    rows = list(csv.DictReader((tmp_path / "s" / "stream.csv").open()))
    assert len(rows) == 40 and [r["changed"] for r in rows].index("1") == 25
    before = np.mean([cv2.imread(str(tmp_path / "s" / r["image"])).mean() for r in rows[:25]])
    after = np.mean([cv2.imread(str(tmp_path / "s" / r["image"])).mean() for r in rows[25:]])
    assert after < 0.85 * before  # the lamp dims to 0.75
    assert main(["synth", "stream", str(tmp_path / "t"), "--change", "rain"]) == 2
    assert main(["synth", "stream", str(tmp_path / "s"), "--frames", "4"]) == 2  # never over a stream
    assert main(["inspect", "--model", "m.onnx", "--source", str(tmp_path), "--watch-report", "r"]) == 2
    assert "--watch-report needs --watch" in capsys.readouterr().err


def test_the_offline_watch_replays_a_log_into_the_same_alarms(watched, tmp_path):
    """`ceod watch` on the log of a run made without --watch finds what the online watch found on
    the same frames (same kinds, frames within one test interval), with no torch; a log judged by
    another model is refused in one line."""
    from ceod.pipeline.inspect import Inspector
    stream = _stream(watched["root"], "fixture")
    _, online = _inspect(watched, stream, tmp_path / "online", every=10)
    log = tmp_path / "plain.jsonl"
    Inspector(watched["model"], "cpu").run(str(stream / "frames"), log, batch=4, live=False)  # no --watch
    out = tmp_path / "replayed"
    r = run_ceod_on_a_line_pc(["watch", "--log", log, "--model", watched["model"], "--segmenter",
                               watched["segmenter"], "--out", out, "--provider", "cpu"])
    assert r.returncode == 0, r.stderr
    replayed = [json.loads(line) for line in (out / "replay.jsonl").read_text().splitlines()]
    assert len([x for x in replayed if x["status"] == "ok"]) == 400
    changes = lambda records: {(x["kind"], x["statistic"]): x["frame"] for x in records  # noqa: E731
                               if x["status"] == "drift" and x["ceiling"] is None}
    assert changes(online) and set(changes(replayed)) == set(changes(online))
    assert all(abs(changes(replayed)[k] - changes(online)[k]) <= 32 for k in changes(online))
    assert json.loads((out / "watch.json").read_text())["frames"] == 400 and (out / "watch.html").is_file()
    # the same log against another model file: refused before any frame is read
    r = run_ceod_on_a_line_pc(["watch", "--log", log, "--model", watched["segmenter"], "--segmenter",
                               watched["segmenter"], "--out", tmp_path / "never"])
    assert r.returncode == 2 and "replay with the model file that judged the run" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "never").exists()


def test_a_stream_of_real_images_changes_at_the_frame_asked_and_only_outside_the_part(tiny_dataset, tmp_path):
    """`ceod data stream` on a dataset (the synthetic line's files stand in for real ones here):
    jittered frames, none identical, the fixture drawn from frame K on outside the AOI only, the
    ground truth beside them, and the dataset folder left as it was."""
    import csv
    import cv2
    before = sorted(p.name for p in tiny_dataset.rglob("*"))
    r = run_ceod_on_a_line_pc(["data", "stream", tiny_dataset, tmp_path / "s", "--split", "test", "--change",
                               "fixture", "--at", "20", "--frames", "40", "--seed", "3"])
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tiny_dataset.rglob("*")) == before
    truth = json.loads((tmp_path / "s" / "change.json").read_text())
    assert truth["change"] == "fixture" and truth["at"] == 20 and truth["frames"] == 40
    rows = list(csv.DictReader((tmp_path / "s" / "stream.csv").open()))
    assert [int(x["changed"]) for x in rows] == [0] * 20 + [1] * 20
    frames = [cv2.imread(str(tmp_path / "s" / x["image"])) for x in rows]
    assert len({f.tobytes() for f in frames}) == 40  # 16 test images, 40 frames: jitter makes each its own
    for x, frame in zip(rows, frames):
        aoi = cv2.imread(str(tmp_path / "s" / x["aoi"]), cv2.IMREAD_GRAYSCALE) > 0
        bar = np.zeros(aoi.shape, bool)
        bar[:4] = True
        bright = (frame[bar & ~aoi] >= 228).all(axis=-1).mean() if (bar & ~aoi).any() else 0
        if int(x["changed"]):
            assert bright == 1.0
        else:
            assert bright < 0.5
    again = run_ceod_on_a_line_pc(["data", "stream", tiny_dataset, tmp_path / "s", "--change", "lamp"])
    assert again.returncode == 2 and "already holds a stream" in again.stderr


def test_baseline_rebuilds_the_reference_from_the_line_and_writes_a_new_model(watched, tmp_path, capsys):
    """`ceod baseline` on a run of frames under a dimmed lamp: the copy's background reference is
    the dimmed look, the feature whitening and the input model are kept, and the step refuses
    what it cannot do in one line."""
    import hashlib
    import shutil

    from ceod.export.runtime import OnnxModel
    from ceod.pipeline.cli import main
    from ceod.pipeline.inspect import Inspector
    stream = _stream(watched["root"], "lamp")
    dimmed = tmp_path / "dimmed"
    dimmed.mkdir()
    for frame in sorted((stream / "frames").iterdir())[150:]:
        shutil.copy(frame, dimmed / frame.name)
    log = tmp_path / "commissioning.jsonl"
    Inspector(watched["model"], "cpu").run(str(dimmed), log, batch=8, live=False)
    before = hashlib.sha256(watched["model"].read_bytes()).hexdigest()
    out = tmp_path / "baselined.onnx"
    capsys.readouterr()
    code = main(["baseline", "--model", str(watched["model"]), "--segmenter", str(watched["segmenter"]),
                 "--log", str(log), "--out", str(out), "--frames", "200"])
    printed = capsys.readouterr().out
    assert code == 0 and "reference rebuilt from 200 frames of commissioning.jsonl" in printed
    assert hashlib.sha256(watched["model"].read_bytes()).hexdigest() == before
    old_raw, new_raw = OnnxModel(watched["model"], "cpu").info.raw, OnnxModel(out, "cpu").info.raw
    old, _ = read_profile(old_raw, "old")
    new, _ = read_profile(new_raw, "new")
    assert new["images"] == 200 and new["baseline"]["previous"]["images"] == old["images"]
    assert new["statistics"]["background_grey"]["mean"] < old["statistics"]["background_grey"]["mean"] - 0.02
    assert new_raw["ceod.reference_features"] == old_raw["ceod.reference_features"]  # the whitening is kept
    # reports name where each reference came from: the line's frames are not validation images
    from ceod.export.watch import reference_origin
    assert reference_origin(new) == "200 line frames of commissioning.jsonl (ceod baseline)"
    assert reference_origin(old) == f"{old['images']} validation images"
    # refused in one line: an existing --out, a log another model judged, too few frames
    for args, fragment in ((["--out", str(out)], "exists"),
                           (["--model", str(out), "--out", str(tmp_path / "b.onnx")], "was judged by"),
                           (["--frames", "10", "--out", str(tmp_path / "c.onnx")], "at least 30")):
        argv = {"--model": str(watched["model"]), "--segmenter": str(watched["segmenter"]), "--log": str(log)}
        argv.update(dict(zip(args[::2], args[1::2])))
        code = main(["baseline", *[x for kv in argv.items() for x in kv]])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and fragment in err[0], err


def test_the_default_budget_is_the_one_the_command_line_names(watched):
    """`ceod inspect --watch` without --watch-budget watches at the package's default, and its help
    says which figure that is (the help text cannot import the watch: it names the number)."""
    from ceod.pipeline.cli import build_parser
    from ceod.pipeline.inspect import Inspector
    from ceod.pipeline.watch import DEFAULT_BUDGET
    parser = build_parser()
    args = parser.parse_args(["inspect", "--model", str(watched["model"]), "--source", "x"])
    assert args.watch_budget is None
    inspector = Inspector(watched["model"], "cpu", watch=watched["segmenter"])
    assert inspector.watch_setup.budget == DEFAULT_BUDGET < 0.05
    inspect_help = next(a for a in parser._subparsers._group_actions[0].choices["inspect"]._actions
                        if "--watch-budget" in a.option_strings).help
    assert f"default {DEFAULT_BUDGET * 100:g} %%" in inspect_help
