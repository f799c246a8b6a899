from pathlib import Path

import numpy as np
import pytest
import torch

from ceod.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ceod.contracts.config import load_config
from ceod.data.checks import check_dataset
from ceod.data.loading import load_split
from ceod.data.manifest import read_manifest
from ceod.contracts.metrics import iou_dice
from ceod.segmenter.config import PostprocessConfig, SegmenterConfig
from ceod.segmenter.model import build_segmenter
from ceod.segmenter.predict import load_segmenter, postprocess, predict_dataset, predict_masks


def _cfg(**over):
    cfg = load_config(SegmenterConfig, None, "segmenter.yaml", {"input_size": 64, "train.epochs": 6,
                                                                "train.batch_size": 8, "train.lr": 0.003,
                                                                "model.encoder_depth": 3,
                                                                "model.decoder_channels": [32, 16, 8]})
    return cfg


@pytest.fixture(scope="module")
def seg_run(tiny_dataset, tmp_path_factory):
    from ceod.segmenter.train import train_segmenter
    out = tmp_path_factory.mktemp("seg") / "run"
    summary = train_segmenter(_cfg(), tiny_dataset, out, seed=0, progress=False)
    return out, summary


def test_training_improves_iou_over_untrained(seg_run, tiny_dataset):
    out, summary = seg_run
    cfg = _cfg()
    m = read_manifest(tiny_dataset)
    val = load_split(m.split("val"), 64)
    torch.manual_seed(0)
    untrained = build_segmenter(cfg.model).eval()
    iou_before = iou_dice(predict_masks(untrained, cfg, val.images), val.aoi)[0].mean()
    model, _, meta = load_segmenter(out)
    iou_after = iou_dice(predict_masks(model, cfg, val.images), val.aoi)[0].mean()
    assert iou_after > iou_before + 0.15, (iou_before, iou_after)
    assert summary["best"]["val_iou"] == pytest.approx(iou_after, abs=1e-6)
    assert (out / "metrics.json").is_file() and (out / "curves.png").is_file()
    assert meta["input_size"] == 64 and meta["model_kind"] == "segmenter"


def test_predict_aoi_output_passes_data_check(seg_run, tiny_dataset, tmp_path):
    out, _ = seg_run
    result = predict_dataset(out, tiny_dataset, tmp_path / "pred")
    assert result["rows"] == 128
    report = check_dataset(tmp_path / "pred", progress=False)
    assert report.ok and sum(c["ok"] + c["def"] for c in report.counts.values()) == 128
    # the images are the originals, not copies
    pred = read_manifest(tmp_path / "pred")
    assert all(s.image.resolve().is_relative_to(tiny_dataset.resolve()) for s in pred.samples)


def test_postprocess_keeps_largest_component_and_real_holes():
    prob = np.zeros((64, 64), np.float32)
    prob[10:50, 10:50] = 0.9
    prob[20:40, 20:40] = 0.0  # a big hole (ring): stays
    prob[12:14, 12:14] = 0.0  # a pinhole: filled
    prob[55:60, 55:60] = 0.9  # a speck: dropped
    mask = postprocess(prob, PostprocessConfig(threshold=0.5, largest_component=True, fill_holes_below=0.01))
    assert mask[12, 12] == 1 and mask[30, 30] == 0 and mask[57, 57] == 0 and mask[45, 45] == 1


def test_corrupt_and_foreign_checkpoints_are_refused(seg_run, tmp_path):
    out, _ = seg_run
    good = (out / "best.pt").read_bytes()
    (tmp_path / "trunc.pt").write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "trunc.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a ceod checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="is a segmenter checkpoint, expected a classifier"):
        load_checkpoint(out, "classifier")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing")


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "c.pt", "segmenter", {"w": torch.ones(2)}, {}, {})
    before = (tmp_path / "c.pt").read_bytes()

    real_save = torch.save

    def crash_half_way(obj, f, *a, **k):
        """Write half of the real bytes, then fail: a crash (disk full, power cut) mid-write."""
        import io
        buf = io.BytesIO()
        real_save(obj, buf)
        data = buf.getvalue()
        fh = open(f, "wb") if isinstance(f, (str, Path)) else f
        fh.write(data[: len(data) // 2])
        fh.flush()
        raise OSError("disk full")

    # A plain torch.save(payload, path) would leave half a checkpoint at c.pt here.
    monkeypatch.setattr(torch, "save", crash_half_way)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / "c.pt", "segmenter", {"w": torch.zeros(2)}, {}, {})
    assert (tmp_path / "c.pt").read_bytes() == before
    assert not list(tmp_path.glob(".c.pt.*"))
