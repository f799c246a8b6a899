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
    assert r.returncode == 0, r.stderr[-3000:]
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
