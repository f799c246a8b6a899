import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from ceod.pipeline.inspect import Inspector

STATUS = {"good1.png": "ok", "good2.jpg": "ok", "gray.png": "ok", "rgba.png": "ok", "deep16.png": "ok",
          "empty.png": "error", "random.bin": "error", "truncated.jpg": "error", "notes.txt": "error",
          "huge.png": "error", "frames.gif": "error"}


@pytest.fixture()
def mixed_folder(tmp_path, tiny_dataset):
    folder = tmp_path / "in"
    folder.mkdir()
    src = sorted((tiny_dataset / "images" / "test").rglob("*.png"))
    img = cv2.imread(str(src[0]))
    cv2.imwrite(str(folder / "good1.png"), img)
    cv2.imwrite(str(folder / "good2.jpg"), cv2.imread(str(src[1])))
    cv2.imwrite(str(folder / "gray.png"), cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(folder / "rgba.png"), cv2.cvtColor(img, cv2.COLOR_BGR2BGRA))
    cv2.imwrite(str(folder / "deep16.png"), img.astype(np.uint16) * 257)
    (folder / "empty.png").write_bytes(b"")
    (folder / "random.bin").write_bytes(np.random.default_rng(0).bytes(5000))
    jpeg = (folder / "good2.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (folder / "notes.txt").write_text("not an image")
    png = bytearray((folder / "good1.png").read_bytes())
    png[16:24] = (100000).to_bytes(4, "big") * 2  # declares 100000 x 100000
    (folder / "huge.png").write_bytes(bytes(png))
    (folder / "frames.gif").write_bytes(b"GIF89a" + bytes(100))
    return folder


@pytest.mark.parametrize("batch", [1, 4])
def test_one_record_per_input_with_right_status(exported, mixed_folder, tmp_path, batch):
    log = tmp_path / f"log{batch}.jsonl"
    summary = Inspector(exported["classifier"], "cpu").run(str(mixed_folder), log, tmp_path / "ov", batch, live=False)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(records) == len(STATUS) == summary.records
    by_name = {r["source"].rsplit("/", 1)[-1]: r for r in records}
    assert {k: v["status"] for k, v in by_name.items()} == STATUS
    assert all(r["reason"] for r in records if r["status"] == "error")
    assert all(r["verdict"] in ("ok", "def") and 0 <= r["score"] <= 1 for r in records if r["status"] == "ok")
    assert summary.errors == 6 and sum(summary.verdicts.values()) == 5
    assert "truncated" in by_name["truncated.jpg"]["reason"] and "zero-byte" in by_name["empty.png"]["reason"]
    assert len(list((tmp_path / "ov").glob("*.png"))) == 5


def test_csv_log_and_stdin_source(exported, mixed_folder, tmp_path):
    import io
    paths = sorted(str(p) for p in mixed_folder.iterdir()) + [str(tmp_path / "gone.png")]
    log = tmp_path / "log.csv"
    summary = Inspector(exported["classifier"], "cpu").run("-", log, None, 2, live=False,
                                                           stdin=io.StringIO("\n".join(paths) + "\n"))
    lines = log.read_text().splitlines()
    assert lines[0].startswith("time,source,verdict") and len(lines) == len(paths) + 1
    assert summary.records == len(paths) and summary.errors == 7


def test_video_source(exported, tiny_dataset, tmp_path):
    video = tmp_path / "line.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 64))
    for p in sorted((tiny_dataset / "images" / "test").rglob("*.png"))[:12]:
        writer.write(cv2.imread(str(p)))
    writer.release()
    log = tmp_path / "v.jsonl"
    summary = Inspector(exported["classifier"], "cpu").run(str(video), log, None, 4, live=False)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(records) == 12 == summary.records and all(r["status"] == "ok" for r in records)
    assert records[5]["source"] == "line.avi#5"


def test_two_stage_with_segmenter(exported, mixed_folder, tmp_path):
    summary = Inspector(exported["classifier"], "cpu", segmenter=exported["segmenter"]).run(
        str(mixed_folder), tmp_path / "l.jsonl", None, 3, live=False)
    assert summary.records == len(STATUS) and summary.errors == 6
    # the classifier sees the image with the outside of the *predicted* AOI blanked (mean colour = 0)
    from ceod.export.runtime import OnnxModel, softmax
    images = [cv2.cvtColor(cv2.imread(str(mixed_folder / n)), cv2.COLOR_BGR2RGB) for n in ("good1.png", "good2.jpg")]
    two_stage, _, _ = Inspector(exported["classifier"], "cpu", segmenter=exported["segmenter"]).infer(images)
    one_stage, _, _ = Inspector(exported["classifier"], "cpu").infer(images)
    cls, seg = OnnxModel(exported["classifier"], "cpu"), OnnxModel(exported["segmenter"], "cpu")
    aoi = seg.run(images)["aoi_logits"][:, 0] > 0
    assert 0 < aoi.mean() < 1
    expected = softmax(cls.run_tensor(cls.prepare(images) * aoi[:, None])["logits"])[:, 1]
    assert np.allclose(two_stage, expected, atol=1e-5) and not np.allclose(two_stage, one_stage, atol=1e-5)


def test_cli_stdout_is_records_only_and_stderr_says_the_provider(exported, mixed_folder):
    r = subprocess.run([sys.executable, "-m", "ceod.pipeline.cli", "inspect", "--model", str(exported["classifier"]),
                        "--source", str(mixed_folder), "--batch", "2"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in r.stdout.splitlines()]  # every stdout line is a record
    assert len(records) == len(STATUS) and {"source", "verdict", "status"} <= set(records[0])
    provider_lines = [line for line in r.stderr.splitlines() if line.startswith("ceod inspect:")]
    assert len(provider_lines) == 1 and "ExecutionProvider" in provider_lines[0]
    assert "Failed to load" not in r.stdout + r.stderr


def test_a_source_with_no_input_is_an_error(exported, tmp_path):
    r = subprocess.run([sys.executable, "-m", "ceod.pipeline.cli", "inspect", "--model", str(exported["classifier"]),
                        "--source", str(tmp_path / "nothing" / "*.png")], capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert [line for line in r.stderr.splitlines() if "error" in line] == [
        f"ceod inspect: error: --source {tmp_path / 'nothing' / '*.png'}: no input (no file, frame or path "
        "matched); check the folder, pattern or camera"]


def test_folders_matched_by_a_glob_are_walked(exported, tiny_dataset, tmp_path):
    pattern = str(tiny_dataset / "images" / "test" / "*")  # matches the ok/ and def/ folders only
    files = [p for p in (tiny_dataset / "images" / "test").rglob("*") if p.is_file()]
    summary = Inspector(exported["classifier"], "cpu").run(pattern, tmp_path / "g.jsonl", None, 8, live=False)
    assert summary.records == len(files) > 0


def test_inspect_cli_imports_no_torch_and_needs_only_base_deps(exported, mixed_folder, tmp_path):
    from tests.conftest import run_ceod_on_a_line_pc
    r = run_ceod_on_a_line_pc(["inspect", "--model", exported["classifier"], "--source", mixed_folder,
                               "--log", tmp_path / "cli.jsonl", "--batch", "2", "--quiet"])
    assert r.returncode == 0, r.stderr
    assert f"{len(STATUS)} records" in r.stderr and "CPUExecutionProvider" in r.stderr and not r.stdout
    assert len((tmp_path / "cli.jsonl").read_text().splitlines()) == len(STATUS)


def test_model_that_cannot_load_exits_nonzero(tmp_path):
    (tmp_path / "bad.onnx").write_bytes(b"garbage")
    r = subprocess.run([sys.executable, "-m", "ceod.pipeline.cli", "inspect", "--model", str(tmp_path / "bad.onnx"),
                        "--source", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2 and "cannot load" in r.stderr
