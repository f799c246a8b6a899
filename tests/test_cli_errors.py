"""Every user mistake ends in one line on stderr and exit code 2: no traceback, whatever the command."""

from __future__ import annotations

import pytest

from ceod.pipeline.cli import main


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("mistakes")
    (root / "bad_key.yaml").write_text("train: {epochs: 1, learning_rate: 0.1}\n")
    (root / "not_a_model.pt").write_bytes(b"this is not a checkpoint")
    (root / "not_a_model.onnx").write_bytes(b"this is not an onnx model")
    return root


CASES = {
    # command line -> a fragment the one line must hold
    "synth bad config key": (["synth", "{out}/s", "--config", "{bad_key}"], "unknown config key 'train'"),
    "synth unknown dataset": (["synth", "decoy-fashion", "{out}/s"], "unknown dataset 'decoy-fashion'"),
    "data check missing folder": (["data", "check", "{out}/nowhere"], "manifest.csv not found"),
    "data check wrong split column": (["data", "check", "{data}", "--split-column", "split_grouped"],
                                      "missing column(s) split_grouped"),
    "train-classifier missing data": (["train-classifier", "--data", "{out}/nowhere", "--out", "{out}/r"],
                                      "manifest.csv not found"),
    "train-classifier bad config key": (["train-classifier", "--data", "{data}", "--out", "{out}/r",
                                         "--config", "{bad_key}"], "unknown config key 'train.learning_rate'"),
    "train-classifier bad --set key": (["train-classifier", "--data", "{data}", "--out", "{out}/r",
                                        "--set", "train.epoch=3"], "did you mean 'train.epochs'"),
    "train-classifier wrong split column": (["train-classifier", "--data", "{data}", "--out", "{out}/r",
                                             "--split-column", "split_grouped"], "missing column(s) split_grouped"),
    "train-segmenter bad config key": (["train-segmenter", "--data", "{data}", "--out", "{out}/r",
                                        "--config", "{bad_key}"], "unknown config key 'train.learning_rate'"),
    "train-segmenter bad --set value": (["train-segmenter", "--data", "{data}", "--out", "{out}/r",
                                         "--set", "train.epochs=many"], "'train.epochs': expected an integer"),
    "evaluate wrong split": (["evaluate", "--model", "{run}", "--data", "{data}", "--split", "tset"],
                             "split 'tset' has no rows"),
    "evaluate wrong model file": (["evaluate", "--model", "{not_pt}", "--data", "{data}"], "not a readable checkpoint"),
    "evaluate missing model": (["evaluate", "--model", "{out}/none", "--data", "{data}"], "no checkpoint at"),
    "audit wrong split": (["audit", "--model", "{run}", "--data", "{data}", "--split", "tset"], "split 'tset' has no rows"),
    "evaluate-segmenter wrong split": (["evaluate-segmenter", "--model", "{seg}", "--data", "{data}", "--split", "tset"],
                                       "split 'tset' has no rows"),
    "evaluate-segmenter classifier model": (["evaluate-segmenter", "--model", "{run}", "--data", "{data}"],
                                            "is a classifier checkpoint, expected a segmenter"),
    "predict-aoi wrong model file": (["predict-aoi", "--model", "{not_pt}", "--data", "{data}", "--out", "{out}/p"],
                                     "not a readable checkpoint"),
    "export wrong model file": (["export", "--model", "{not_pt}", "--out", "{out}/m.onnx"], "not a readable checkpoint"),
    "inspect wrong model file": (["inspect", "--model", "{not_onnx}", "--source", "{data}"], "cannot load"),
    "inspect missing source": (["inspect", "--model", "{onnx}", "--source", "{out}/nowhere"], "--source"),
    "bench wrong model file": (["bench", "--classifier", "{not_onnx}", "--plain", "{not_onnx}", "--out", "{out}/b"],
                               "cannot load"),
    "bench train size without training-only": (["bench", "--classifier", "{onnx}", "--plain", "{onnx}", "--out",
                                                 "{out}/b", "--train-size", "192"], "--train-size needs --training-only"),
    "experiment unknown variant": (["experiment", "--out", "{out}/x", "--datasets", "synthetic", "--variants", "cee"],
                                   "unknown variant 'cee'"),
    "demo unknown variant": (["demo", "--out", "{out}/d", "--variant", "cee"], "--variant cee"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_user_mistake_is_one_line_and_exit_2(name, files, tiny_dataset, tiny_classifier_run, tiny_segmenter_run,
                                             exported, tmp_path, capsys):
    argv, fragment = CASES[name]
    values = {"out": tmp_path, "bad_key": files / "bad_key.yaml", "data": tiny_dataset, "run": tiny_classifier_run,
              "seg": tiny_segmenter_run, "not_pt": files / "not_a_model.pt", "not_onnx": files / "not_a_model.onnx",
              "onnx": exported["classifier"]}
    capsys.readouterr()
    code = main([a.format(**values) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("ceod ") and ": error: " in err[0], err
    assert fragment in err[0], err[0]


def test_every_flag_has_help_text():
    import argparse
    from ceod.pipeline.cli import build_parser

    def walk(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, f"{path} {name}")
            elif not isinstance(action, argparse._HelpAction):
                yield f"{path} {'/'.join(action.option_strings) or action.dest}", action.help

    missing = [name for name, text in walk(build_parser(), "ceod") if not text]
    assert not missing, missing
