"""Mask-driven background work: the part-free donor backgrounds (rendered or inpainted) that both
BackgroundSwap and the audit's swap use, and the pieces the casting study relies on (grouped
folds, averaged weights, AUROC that does not saturate, the `paper` config layer)."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest
import torch

from ceod.data.loading import load_split
from ceod.data.manifest import read_manifest
from ceod.training.transforms import clean_background, flat_background, swap_background


def _scene(size: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A ramp background with a bright disc on it: the disc is the AOI."""
    rng = np.random.default_rng(seed)
    ramp = np.tile(np.linspace(40, 200, size, dtype=np.float32), (size, 1))
    image = np.clip(ramp + rng.normal(0, 2, ramp.shape), 0, 255).astype(np.uint8)
    aoi = np.zeros((size, size), np.uint8)
    cv2.circle(aoi, (size // 2, size // 2), size // 4, 1, -1)
    image[aoi > 0] = 250
    return np.repeat(image[..., None], 3, 2), aoi


def test_inpainting_removes_the_part_where_a_flat_fill_leaves_its_silhouette():
    image, aoi = _scene()
    truth = np.tile(np.linspace(40, 200, 96, dtype=np.float32), (96, 1))  # the ramp under the part
    inside = aoi > 0
    clean = clean_background(image, aoi)[..., 0].astype(np.float32)
    flat = flat_background(image, aoi)[..., 0].astype(np.float32)
    assert (clean[~inside] == image[..., 0][~inside]).mean() > 0.9  # the outside is kept
    # next to the AOI's edge (what a pasted AOI borders) the inpainted hole continues the ramp;
    # the flat fill is one grey, a step against the belt at both ends: the silhouette
    band = inside & (cv2.erode(aoi, np.ones((3, 3), np.uint8), iterations=4) == 0)
    assert np.abs(clean[band] - truth[band]).mean() < 0.5 * np.abs(flat[band] - truth[band]).mean()
    assert np.abs(clean[inside] - truth[inside]).mean() < np.abs(flat[inside] - truth[inside]).mean()
    assert not (clean[inside] > 240).any()  # no trace of the bright part


def test_swap_keeps_the_aoi_and_takes_the_donors_part_free_outside():
    image, aoi = _scene(seed=1)
    donor, donor_aoi = _scene(seed=2)
    donor = 255 - donor  # a different background
    rendered = np.full_like(donor, 7)
    out = swap_background(image, aoi, donor, donor_aoi, rendered)
    assert (out[aoi > 0] == image[aoi > 0]).all() and (out[aoi == 0] == 7).all()
    inpainted = swap_background(image, aoi, donor, donor_aoi)
    assert (inpainted[aoi > 0] == image[aoi > 0]).all()
    assert (inpainted[aoi == 0] == clean_background(donor, donor_aoi)[aoi == 0]).all()


def test_synthetic_line_renders_each_scene_without_its_part(tiny_dataset):
    manifest = read_manifest(tiny_dataset)
    rows = manifest.split("test")[:6]
    assert all(s.background is not None and s.background.is_file() for s in rows)
    data = load_split(rows, 64, root=tiny_dataset)
    assert data.backgrounds is not None and data.backgrounds.shape == data.images.shape
    for image, background, aoi in zip(data.images, data.backgrounds, data.aoi):
        # far from the part (beyond its cast shadow) the two are the same pixels ...
        far = cv2.dilate(aoi, np.ones((3, 3), np.uint8), iterations=12) == 0
        if far.any():
            assert np.abs(image.astype(int) - background)[far].max() <= 1
        # ... and where the part was, the background shows the belt, not the part
        assert np.abs(image.astype(int) - background)[aoi > 0].mean() > 10
    assert data.subset([1, 0]).backgrounds[0].tolist() == data.backgrounds[1].tolist()


def test_the_audit_swaps_in_rendered_backgrounds_and_keeps_the_flat_one_for_comparison(tiny_dataset):
    from ceod.classifier.evaluate import replace_outside
    data = load_split(read_manifest(tiny_dataset).split("test"), 64, root=tiny_dataset)
    swapped = replace_outside(data, "swap", seed=0)
    flat = replace_outside(data, "swap_flat", seed=0)
    inside = data.aoi[..., None].repeat(3, -1) > 0
    assert (swapped[inside] == data.images[inside]).all() and (flat[inside] == data.images[inside]).all()
    # every outside pixel of a clean swap comes from some donor's rendered part-free background
    i = 0
    matches = [(swapped[i][~inside[i]] == data.backgrounds[j][~inside[i]]).all() for j in range(len(data))]
    assert any(matches) and not (swapped == flat).all()


def test_background_swap_in_training_uses_the_part_free_donor(tiny_dataset):
    from ceod.training.torchdata import SplitDataset
    data = load_split(read_manifest(tiny_dataset).split("train")[:8], 64, root=tiny_dataset)
    np.random.seed(0)
    ds = SplitDataset(data, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), None, background_swap=1.0)
    x, m, _, i = ds[0]
    image = np.rint(x.numpy().transpose(1, 2, 0) * 255).astype(np.int64)
    outside = data.aoi[0] == 0
    assert (image[data.aoi[0] > 0] == data.images[0][data.aoi[0] > 0]).all()
    assert any((image[outside] == data.backgrounds[j][outside]).all() for j in range(1, 8))
    no_rendered = data.subset(range(8))
    no_rendered.backgrounds = None  # real data: donors are inpainted once and kept
    ds = SplitDataset(no_rendered, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), None, background_swap=1.0)
    ds[0], ds[1]
    assert ds._clean and all(v.shape == data.images[0].shape for v in ds._clean.values())


def test_grouped_folds_keep_every_family_in_one_test_fold(tmp_path):
    from ceod.experiments.datasets import make_folds
    source = tmp_path / "src"
    source.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for family in range(30):
        label = "def" if family % 3 else "ok"
        for k in range(int(rng.integers(1, 12))):
            rows.append({"image": f"images/{family}_{k}.png", "aoi": "", "label": label, "group": str(family),
                         "aoi_status": "flagged" if (family, k) == (0, 0) else "ok"})
    with (source / "manifest.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    out = make_folds(source, tmp_path / "folds", k=3)
    folds = list(csv.DictReader((out / "manifest.csv").open()))
    assert len(folds) == len(rows) - 1 and (out / "source").is_symlink()  # the flagged row is left out
    assert all(r["image"].startswith("source/images/") for r in folds)
    for r in folds:
        assert [r[f"fold{f}"] for f in range(3)].count("test") == 1
    for family in {r["group"] for r in folds}:
        members = [r for r in folds if r["group"] == family]
        assert len({tuple(r[f"fold{f}"] for f in range(3)) for r in members}) == 1
    for f in range(3):
        test = [r for r in folds if r[f"fold{f}"] == "test"]
        assert {r["label"] for r in test} == {"ok", "def"}
    # cross-fitting (results 13.4): inner folds of fold 0's training families only, grouped the same way
    inner = list(csv.DictReader((make_folds(out, tmp_path / "inner", k=2, within="fold0") / "manifest.csv").open()))
    assert sorted(r["image"] for r in inner) == sorted("source/" + r["image"] for r in folds if r["fold0"] == "train")
    assert all((tmp_path / "inner" / r["image"]).resolve() == (source / r["image"][len("source/source/"):]).resolve()
               for r in inner)  # through the inner folds' link to the outer folds, and theirs to the source
    for family in {r["group"] for r in inner}:
        assert len({r["fold0"] for r in inner if r["group"] == family}) == 1


def test_weight_average_is_the_mean_and_recomputes_batchnorm():
    from ceod.training.loop import WeightAverage
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    average = WeightAverage()
    snapshots = []
    for _ in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        snapshots.append({k: v.clone() for k, v in model.named_parameters()})
        average.add(model)
    loader = [(torch.randn(8, 3, 10, 10) * 3 + 5,) for _ in range(4)]
    before = model[1].running_mean.clone()
    average.apply(model, loader, torch.device("cpu"))
    for name, p in model.named_parameters():
        assert torch.allclose(p, torch.stack([s[name] for s in snapshots]).mean(0), atol=1e-6)
    assert not torch.allclose(model[1].running_mean, before)


def test_average_last_keeps_the_averaged_model(tiny_dataset, tmp_path):
    import json

    from ceod.classifier.train import train_classifier
    from tests.conftest import tiny_classifier_config
    cfg = tiny_classifier_config(**{"train.epochs": 3, "train.average_last": 2})
    summary = train_classifier(cfg, tiny_dataset, tmp_path / "avg", seed=0, progress=False)
    history = json.loads((tmp_path / "avg" / "history.json").read_text())
    assert summary["best_epoch"] == 3 and history[-1]["averaged_epochs"] == 2
    assert [h["epoch"] for h in history] == [0, 1, 2, 3]
    from ceod.contracts.config import ConfigError
    with pytest.raises(ConfigError, match="train.average_last"):
        tiny_classifier_config(**{"train.average_last": -1})
    # a run shorter than average_last averages every epoch it has
    short = train_classifier(tiny_classifier_config(**{"train.epochs": 1, "train.average_last": 3}),
                             tiny_dataset, tmp_path / "short", seed=0, progress=False)
    assert short["best_epoch"] == 1
    assert json.loads((tmp_path / "short" / "history.json").read_text())[-1]["averaged_epochs"] == 1


def test_auroc_ranks_by_log_probabilities_where_softmax_saturates():
    from ceod.contracts.metrics import classification_metrics
    logits = torch.tensor([[0.0, 30.0], [0.0, 40.0], [0.0, 50.0], [0.0, 60.0]])  # P(def) == 1.0 in float32
    probs = torch.softmax(logits, 1).numpy()
    labels = np.array([0, 0, 1, 1])
    assert len(np.unique(probs[:, 1])) == 1
    assert classification_metrics(probs, labels, ("ok", "def"))["auroc"] == 0.5
    log_probs = torch.log_softmax(logits, 1).numpy()
    assert classification_metrics(probs, labels, ("ok", "def"), log_probs=log_probs)["auroc"] == 1.0


def test_the_papers_form_is_one_option_away():
    from ceod.contracts.config import load_config
    from ceod.classifier.config import ClassifierConfig
    default = load_config(ClassifierConfig, None, "classifier.yaml")
    paper = load_config(ClassifierConfig, "paper", "classifier.yaml")
    assert (default.loss.distance, default.loss.target, default.loss.centre, default.loss.gate) == (
        "outside_evidence", "all", True, "none")
    assert (paper.loss.kind, paper.loss.target, paper.loss.distance, paper.loss.warmup_epochs) == (
        "ceod", "label", "overlap", 0)
    assert (paper.loss.centre, paper.loss.detach_denominator, paper.loss.gate) == (False, False, "none")
    assert paper.augment == default.augment and paper.train == default.train  # only the loss differs


def test_resolving_a_variant_leaves_the_base_config_alone():
    from ceod.classifier.config import resolve, variant_overrides
    base = {"loss": {"kind": "ceod", "target": "all", "consistency_weight": 1.0},
            "augment": [{"name": "HorizontalFlip", "p": 0.5}]}
    ce = resolve(base, variant_overrides("ce"))
    assert ce["loss"]["kind"] == "ce" and base["loss"]["kind"] == "ceod"  # the demo trained CE twice when it did not
    # the plain CNN and the forms named for a loss stay what their names say whatever the default's terms
    assert ce["loss"]["consistency_weight"] == 0.0 and base["loss"]["consistency_weight"] == 1.0
    for name in ("ceod-paper", "ceod-evidence", "rrr", "ce-bgswap"):
        assert resolve(base, variant_overrides(name))["loss"]["consistency_weight"] == 0.0, name
    swap = resolve(base, variant_overrides("ce-bgswap"))
    assert [a["name"] for a in swap["augment"]] == ["HorizontalFlip", "BackgroundSwap"] and len(base["augment"]) == 1


def test_one_answer_to_which_terms_read_the_aoi_masks():
    """The demo's check and training's missing-mask warning ask the same function; BackgroundSwap
    alone reads the masks too (a row without one is never swapped)."""
    from ceod.classifier.config import ClassifierConfig, resolve, uses_aoi, variant_overrides
    from ceod.contracts.config import from_dict, load_config, to_dict
    base = to_dict(load_config(ClassifierConfig, None, "classifier.yaml"))
    readers = {name: from_dict(ClassifierConfig, resolve(base, variant_overrides(name), name == "default")).aoi_readers()
               for name in ("ce", "ce-bgswap", "ce-cf", "rrr", "default")}
    assert readers["ce"] == [] and readers["ce-bgswap"] == ["BackgroundSwap"]
    assert readers["ce-cf"] == ["the consistency term"] and readers["rrr"] == ["the rrr term"]
    assert readers["default"][0] == "the ceod term"
    for name, found in readers.items():
        assert uses_aoi(resolve(base, variant_overrides(name), name == "default")) == bool(found), name


def test_derived_datasets_keep_the_rendered_backgrounds(tiny_segmenter_run, tiny_dataset, tmp_path):
    from ceod.segmenter.predict import predict_dataset
    predict_dataset(tiny_segmenter_run, tiny_dataset, tmp_path / "pred")
    rows = read_manifest(tmp_path / "pred").samples
    assert rows and all(s.background is not None and s.background.is_file() for s in rows)
