"""Does a training run replay bit for bit? The same tiny run three times in one process: twice
with one thread, once with two. Prints each run's per-epoch (train loss, val AUROC) and whether
they are identical. Seeds fix data order, augmentation and initialisation; the thread count (and
the CPU's kernels) change the order of floating-point sums.

    python experiments/scripts/determinism_check.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import tiny_classifier_config  # noqa: E402
from ceod.classifier.train import train_classifier  # noqa: E402
from ceod.data.synth import config_for, synthesize  # noqa: E402


def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    data = tmp / "ds"
    synthesize(data, config_for("tiny"), seed=0, progress=False)
    runs = {}
    for name, threads in (("one thread", 1), ("one thread again", 1), ("two threads", 2)):
        torch.set_num_threads(threads)
        train_classifier(tiny_classifier_config(**{"train.epochs": 3}), data, tmp / name.replace(" ", "_"),
                         seed=0, progress=False)
        history = json.loads((tmp / name.replace(" ", "_") / "history.json").read_text())
        runs[name] = [(row.get("train_loss"), row.get("val_auroc")) for row in history]
        print(f"{name}: {runs[name]}")
    print("same thread count, identical:", runs["one thread"] == runs["one thread again"])
    print("one vs two threads, identical:", runs["one thread"] == runs["two threads"])


if __name__ == "__main__":
    main()
