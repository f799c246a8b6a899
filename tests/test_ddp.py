"""DDP on CPU: 2 gloo ranks on loopback, launched by the real torchrun."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from ddp_worker import fixed_batch, make  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("loss_kind, gradcam", [("ce", "fast"), ("ceod", "fast"), ("ceod", "general")])
def test_ddp_gradient_equals_single_process(tmp_path, loss_kind, gradcam):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), str(Path(__file__).parent / "ddp_worker.py"),
           str(tmp_path), loss_kind, gradcam]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert r.returncode == 0, r.stderr[-12000:]
    ranks = [torch.load(tmp_path / f"rank{i}.pt", weights_only=True) for i in (0, 1)]
    # after the step the parameters are identical on both ranks
    for k in ranks[0]["params"]:
        assert torch.equal(ranks[0]["params"][k], ranks[1]["params"][k]), k
    # the DDP gradient on 2 x B images equals the single-process gradient on the same 2B images
    model, loss = make(loss_kind, gradcam)
    x, m, y = fixed_batch()
    logits, feats = model(x, return_features=True)
    loss(model, logits, feats, m, y).total.backward()
    worst = max(float((p.grad - ranks[0]["grads"][k]).abs().max()) for k, p in model.named_parameters())
    scale = max(float(p.grad.abs().max()) for p in model.parameters())
    print(f"DDP vs single process [{loss_kind}, {gradcam}]: max abs grad diff {worst:.2e} (max grad {scale:.2e})")
    assert worst <= 1e-5 * max(scale, 1.0), (worst, scale)


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "ceod.pipeline.cli", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("trainer", ["train-classifier", "train-segmenter"])
def test_torchrun_through_the_cli(tiny_dataset, tmp_path, trainer):
    """The README's scale-out line, for real: one set of outputs, disjoint shards covering the
    epoch, a loadable checkpoint, and --resume under torchrun."""
    import json
    run = tmp_path / "ddp"
    common = ["--data", str(tiny_dataset), "--out", str(run), "--input-size", "64", "--set", "train.batch_size=8"]
    common += ["--set", "model.backbone=simple", "--set", "model.pretrained=false", "--set", "model.width=8"] if trainer == "train-classifier" else \
        ["--set", "model.encoder_depth=3", "--set", "model.decoder_channels=[32,16,8]"]
    r = _torchrun(trainer, *common, "--epochs", "1")
    assert r.returncode == 0, r.stderr[-12000:]
    names = sorted(p.name for p in run.iterdir())
    assert {"best.pt", "last.pt", "metrics.json", "history.json", "shards.json"} <= set(names)
    assert not [n for n in names if "write-test" in n or n.endswith(".tmp")], names
    assert r.stdout.count("/best.pt") == 1  # only rank 0 reports (its last line names the checkpoint)
    shards = json.loads((run / "shards.json").read_text())
    ranks = shards["epochs"]["0"]
    a, b = set(ranks["0"]), set(ranks["1"])
    assert a and b and not a & b and len(ranks["0"]) == len(ranks["1"])
    metrics = json.loads((run / "metrics.json").read_text())
    n = metrics["train_images"]
    assert n - 2 * 8 < len(a | b) <= n  # the whole epoch, less at most one dropped batch per rank
    from ceod.training.checkpoint import load_checkpoint
    kind = "classifier" if trainer == "train-classifier" else "segmenter"
    assert load_checkpoint(run, kind)["ceod"]["kind"] == kind
    r = _torchrun(trainer, *common, "--epochs", "2", "--resume", str(run))
    assert r.returncode == 0, r.stderr[-12000:]
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history if "train_loss" in h] == [0, 1]  # (the classifier adds its averaged row)
    assert json.loads((run / "shards.json").read_text())["epochs"]["1"]["0"] != ranks["0"]  # reshuffled


def test_exit_after_group_flushes_and_keeps_the_code():
    """The exit that skips the interpreter's teardown after a process group: the exit code is the
    command's and buffered output still arrives; without a group it does nothing."""
    code = ("import ceod.training.distributed as d; d.exit_after_group(5); print('still here', end=''); "
            "d._GROUP_USED = True; print(' then gone', end=''); d.exit_after_group(3); print('never')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 3, r.stderr[-2000:]
    assert r.stdout == "still here then gone"
