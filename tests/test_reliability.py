"""Resume after SIGKILL, refusal to resume on a changed config, NaN stop, unwritable paths."""

import json
import signal
import subprocess
import sys
import time

import pytest
import torch

from ceod.training.checkpoint import CheckpointError, load_checkpoint
from ceod.contracts.config import load_config
from ceod.training.loop import FitSpec, TrainingDiverged, fit
from ceod.classifier.config import ClassifierConfig
from ceod.classifier.train import train_classifier

EPOCHS = 8
YAML = """input_size: 64
model: {backbone: simple, pretrained: false, width: 8}
loss: {gate: ce, gate_window: 5, gate_ce: 0.69}
train: {epochs: %d, batch_size: 16, lr: 0.003}
""" % EPOCHS


@pytest.fixture()
def cfg_file(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(YAML)
    return path


def _history(run):
    path = run / "history.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else []
    except json.JSONDecodeError:
        return []


def test_sigkill_then_resume_matches_uninterrupted(tiny_dataset, tmp_path, cfg_file):
    cfg = load_config(ClassifierConfig, cfg_file, "classifier.yaml")
    full = train_classifier(cfg, tiny_dataset, tmp_path / "full", seed=5, progress=False)

    run = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "ceod.pipeline.cli", "train-classifier", "--data", str(tiny_dataset),
                             "--out", str(run), "--config", str(cfg_file), "--seed", "5"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while len(_history(run)) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(_history(run))
    assert 2 <= done < EPOCHS, f"the kill came after {done} epochs"
    resumed = train_classifier(cfg, tiny_dataset, run, seed=5, resume=run, progress=False)
    history = _history(run)  # the packaged default keeps the mean of the last epochs: one row more
    assert len(history) == EPOCHS + 1 and history[-1]["averaged_epochs"] == 3
    for key in ("val_auroc", "val_balanced_accuracy", "val_aoi_attention"):
        assert resumed["best"][key] == pytest.approx(full["best"][key], abs=1e-4, nan_ok=True), key
    full_history = _history(tmp_path / "full")
    assert history[-2]["train_loss"] == pytest.approx(full_history[-2]["train_loss"], abs=1e-4)
    assert resumed["best_epoch"] == full["best_epoch"] == EPOCHS
    # the gate's state is resumed too: it opened once, at the same step
    assert resumed["term_switched_on_at_step"] == full["term_switched_on_at_step"] is not None
    a = load_checkpoint(tmp_path / "full" / "last.pt")["state_dict"]
    b = load_checkpoint(run / "last.pt")["state_dict"]
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    print(f"resume vs uninterrupted: max abs weight diff {worst:.2e}, killed after {done}/{EPOCHS} epochs")
    assert worst < 1e-4


def test_resume_refuses_a_changed_config_unless_forced(tiny_dataset, tmp_path, cfg_file):
    cfg = load_config(ClassifierConfig, cfg_file, "classifier.yaml", {"train.epochs": 1})
    train_classifier(cfg, tiny_dataset, tmp_path / "r", seed=0, progress=False)
    changed = load_config(ClassifierConfig, cfg_file, "classifier.yaml", {"train.epochs": 2, "train.lr": 0.01})
    with pytest.raises(CheckpointError, match=r"config differs in \['train.lr'\].*--force"):
        train_classifier(changed, tiny_dataset, tmp_path / "r", seed=0, resume=tmp_path / "r", progress=False)
    with pytest.warns(UserWarning, match=r"changed config \(\['train.lr'\]\)"):
        out = train_classifier(changed, tiny_dataset, tmp_path / "r", seed=0, resume=tmp_path / "r",
                               force_resume=True, progress=False)
    assert out["config"]["train"]["lr"] == 0.01
    trained = [h["epoch"] for h in _history(tmp_path / "r") if "train_loss" in h]
    assert trained == [0, 1]  # epoch 0 kept, epoch 1 added (then the averaged model's row)


def test_changing_only_the_epoch_count_resumes_without_force(tiny_dataset, tmp_path, cfg_file):
    cfg = load_config(ClassifierConfig, cfg_file, "classifier.yaml", {"train.epochs": 1})
    train_classifier(cfg, tiny_dataset, tmp_path / "r", seed=0, progress=False)
    longer = load_config(ClassifierConfig, cfg_file, "classifier.yaml", {"train.epochs": 3})
    train_classifier(longer, tiny_dataset, tmp_path / "r", seed=0, resume=tmp_path / "r", progress=False)
    history = [h for h in _history(tmp_path / "r") if "train_loss" in h]
    assert [h["epoch"] for h in history] == [0, 1, 2]
    assert history[-1]["lr"] < history[1]["lr"]  # the 3-epoch schedule, fast-forwarded, decays to its end


def test_force_never_hides_a_data_change(tiny_dataset, tmp_path, cfg_file):
    cfg = load_config(ClassifierConfig, cfg_file, "classifier.yaml", {"train.epochs": 1})
    train_classifier(cfg, tiny_dataset, tmp_path / "r", seed=0, max_train_images=60, progress=False)
    longer = load_config(ClassifierConfig, cfg_file, "classifier.yaml", {"train.epochs": 2})
    with pytest.raises(CheckpointError, match=r"dataset fingerprint \w+ != \w+"):
        train_classifier(longer, tiny_dataset, tmp_path / "r", seed=0, resume=tmp_path / "r", progress=False)
    with pytest.warns(UserWarning, match=r"different data because of --force: checkpoint fingerprint \w+, this data \w+"):
        train_classifier(longer, tiny_dataset, tmp_path / "r", seed=0, resume=tmp_path / "r",
                         force_resume=True, progress=False)


def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(tmp_path):
    model = torch.nn.Linear(4, 2)
    data = [(torch.randn(8, 4), torch.randint(0, 2, (8,))) for _ in range(3)]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, 10)

    def step(m, batch, epoch):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(m(x), y)
        return (loss * float("nan") if epoch == 1 else loss), {"loss": loss.item()}

    spec = FitSpec(kind="classifier", model=model, optimizer=opt, scheduler=sched, loader=data, epochs=3, seed=0,
                   step=step, validate=lambda m: {"val": 1.0}, monitor="val", out=tmp_path, config={},
                   meta=lambda v: {}, progress=False)
    spec.loader = type("L", (list,), {"sampler": None})(data)
    with pytest.raises(TrainingDiverged, match=r"loss is nan at epoch 2, step 3.*last good checkpoint"):
        fit(spec)
    good = load_checkpoint(tmp_path / "best.pt")
    assert all(torch.isfinite(v).all() for v in good["state_dict"].values())


def test_unwritable_outputs_fail_at_start(tiny_dataset, tmp_path):
    r = subprocess.run([sys.executable, "-m", "ceod.pipeline.cli", "train-classifier", "--data", str(tiny_dataset),
                        "--out", "/proc/ceod-run"], capture_output=True, text=True)
    assert r.returncode == 2 and "cannot write to output folder /proc/ceod-run" in r.stderr
    from ceod.pipeline.inspect import RecordLog
    from ceod.contracts.errors import CeodError
    with pytest.raises(CeodError, match="cannot write the log"):
        RecordLog("/proc/ceod/log.jsonl")


def test_a_new_run_never_overwrites_an_existing_one(tiny_dataset, tmp_path, cfg_file):
    from ceod.contracts.errors import CeodError
    cfg = load_config(ClassifierConfig, cfg_file, "classifier.yaml", {"train.epochs": 1})
    train_classifier(cfg, tiny_dataset, tmp_path / "r", seed=0, progress=False)
    before = (tmp_path / "r" / "best.pt").read_bytes()
    with pytest.raises(CeodError, match=r"already holds a run \(best.pt\); pass --resume .*\(nothing was overwritten\)"):
        train_classifier(cfg, tiny_dataset, tmp_path / "r", seed=1, progress=False)
    assert (tmp_path / "r" / "best.pt").read_bytes() == before
    r = subprocess.run([sys.executable, "-m", "ceod.pipeline.cli", "train-classifier", "--data", str(tiny_dataset),
                        "--out", str(tmp_path / "r"), "--config", str(cfg_file), "--epochs", "1"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "already holds a run" in r.stderr


def test_the_fingerprint_sees_a_file_replaced_by_another_of_the_same_size(tiny_dataset, tmp_path):
    import csv
    import shutil
    from ceod.data.manifest import fingerprint, read_manifest
    ds = tmp_path / "ds"
    shutil.copytree(tiny_dataset, ds)
    before = fingerprint(read_manifest(ds).samples)
    first = ds / next(csv.DictReader((ds / "manifest.csv").open()))["image"]
    data = bytearray(first.read_bytes())
    data[-20] ^= 0xFF  # same size, other contents
    first.write_bytes(bytes(data))
    assert fingerprint(read_manifest(ds).samples) != before
