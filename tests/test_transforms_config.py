import numpy as np
import pytest
import yaml

from ceod.contracts.config import CONFIG_DIR, ConfigError
from ceod.training.transforms import apply_augment, build_augment


def _pattern(size: int = 64):
    """An asymmetric image whose mask is recoverable from the image: mask = bright pixels."""
    rng = np.random.default_rng(1)
    mask = np.zeros((size, size), np.uint8)
    mask[5:20, 8:40] = 1
    mask[30:60, 45:55] = 1
    img = np.where(mask[..., None] > 0, 220, 30).astype(np.uint8).repeat(3, 2)
    return img + rng.integers(0, 5, img.shape, dtype=np.uint8), mask


def _spec(name):
    return yaml.safe_load((CONFIG_DIR / name).read_text())["augment"]


@pytest.mark.parametrize("config", ["classifier.yaml", "segmenter.yaml"])
def test_geometric_transforms_move_image_and_masks_together(config):
    augment = build_augment(_spec(config))
    img, mask = _pattern()
    moved = 0
    for seed in range(30):
        augment.set_random_seed(seed)
        out_img, (out_mask,) = apply_augment(augment, img, [mask])
        from_image = out_img.mean(axis=2) > 125
        agree = (from_image == (out_mask > 0)).mean()
        assert agree > 0.97, f"seed {seed}: image and mask disagree on {1 - agree:.1%} of pixels"
        moved += not np.array_equal(out_mask, mask)
    assert moved > 10  # the pipeline really is geometric


def test_the_check_catches_an_image_only_transform():
    # The same comparison fails for a flip applied to the image alone: the test above can fail.
    augment = build_augment([{"name": "HorizontalFlip", "p": 1.0}])
    img, mask = _pattern()
    out_img, _ = apply_augment(augment, img, [mask])
    assert ((out_img.mean(axis=2) > 125) == (mask > 0)).mean() < 0.9


def test_unknown_transform_is_named():
    with pytest.raises(ConfigError, match=r"augment\[0\].name.*NoSuchFlip"):
        build_augment([{"name": "NoSuchFlip"}])


def test_unknown_config_key_is_named(tmp_path):
    from ceod.data.synth import SynthConfig
    from ceod.contracts.config import load_config
    path = tmp_path / "bad.yaml"
    path.write_text("size: 64\np_distractr_def: 0.5\n")
    with pytest.raises(ConfigError, match="unknown config key 'p_distractr_def'"):
        load_config(SynthConfig, path, "synth.yaml")
    path.write_text("size: big\n")
    with pytest.raises(ConfigError, match="'size': expected an integer"):
        load_config(SynthConfig, path, "synth.yaml")


def test_yaml_is_the_one_source_of_defaults():
    """Packaged YAML and dataclass defaults agree on every key; `augment` lists live only in the YAML
    (a ClassifierConfig() built in code trains without augmentation)."""
    import dataclasses
    from ceod.contracts.config import CONFIG_DIR, load_config, to_dict
    from ceod.data.synth import SynthConfig
    from ceod.classifier.config import ClassifierConfig
    from ceod.segmenter.config import SegmenterConfig
    for schema, name in ((ClassifierConfig, "classifier.yaml"), (SegmenterConfig, "segmenter.yaml"),
                         (SynthConfig, "synth.yaml")):
        packaged, in_code = to_dict(load_config(schema, None, name)), to_dict(schema())
        packaged.pop("augment", None), in_code.pop("augment", None)
        assert packaged == in_code, name
        assert (CONFIG_DIR / name).is_file()
    assert dataclasses.fields(ClassifierConfig)  # the schema is still a dataclass


def test_user_yaml_is_layered_over_the_packaged_one(tmp_path):
    from ceod.contracts.config import ConfigError, load_config, parse_sets
    from ceod.classifier.config import ClassifierConfig
    path = tmp_path / "mine.yaml"
    path.write_text("train: {lr: 0.01}\nloss: {distance: overlap}\n")
    cfg = load_config(ClassifierConfig, path, "classifier.yaml", parse_sets(["train.epochs=3", "model.backbone=simple", "model.pretrained=false", "model.width=16"]))
    assert cfg.train.lr == 0.01 and cfg.train.epochs == 3 and cfg.model.width == 16
    assert cfg.train.batch_size == 32 and cfg.loss.distance == "overlap" and len(cfg.augment) == 5
    assert cfg.loss.target == "all"  # a key the user did not set keeps the packaged value
    with pytest.raises(ConfigError, match=r"unknown config key 'loss.wieght'; did you mean 'loss.weight'\?"):
        load_config(ClassifierConfig, None, "classifier.yaml", parse_sets(["loss.wieght=2"]))
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_sets(["train.lr"])
    with pytest.raises(ConfigError, match="fast needs a linear head"):  # cross-field check at load
        load_config(ClassifierConfig, None, "classifier.yaml", {"model.head": "mlp", "loss.gradcam": "fast"})


def test_options_the_backbone_ignores_are_refused_at_load():
    from ceod.contracts.config import ConfigError, load_config
    from ceod.classifier.config import ClassifierConfig
    with pytest.raises(ConfigError, match="'model.width': applies to the simple backbone only"):
        load_config(ClassifierConfig, None, "classifier.yaml", {"model.backbone": "resnet18", "model.pretrained": False, "model.width": 16})
    assert load_config(ClassifierConfig, None, "classifier.yaml",
                       {"model.backbone": "resnet18", "model.pretrained": False}).model.width == 32
