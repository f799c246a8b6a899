"""Run by tests/test_ddp.py under `torchrun --nproc_per_node 2`: one DDP step on this rank's half
of a fixed batch, then the gradients and updated parameters are written for comparison."""

import sys
from pathlib import Path

import torch
from torch import nn


from ceod.training.distributed import distributed_run, exit_after_group  # noqa: E402
from ceod.classifier.config import ClsModelConfig, LossConfig  # noqa: E402
from ceod.classifier.loss import CEODLoss  # noqa: E402
from ceod.classifier.model import build_classifier  # noqa: E402


def fixed_batch(n: int = 8, s: int = 32):
    g = torch.Generator().manual_seed(123)
    x = torch.randn(n, 3, s, s, generator=g)
    y = torch.tensor([0, 1] * (n // 2))
    m = torch.zeros(n, 1, s, s)
    m[:, :, 6:26, 8:24] = 1
    return x, m, y


def make(loss_kind: str, gradcam: str):
    torch.manual_seed(0)
    model = build_classifier(ClsModelConfig(backbone="simple", pretrained=False, width=8, norm="group"))
    loss = CEODLoss(LossConfig(kind=loss_kind, gradcam=gradcam, distance="signed_outside"))
    return model, loss


def main(out: str, loss_kind: str, gradcam: str) -> None:
    with distributed_run() as ctx:
        model, loss = make(loss_kind, gradcam)
        ddp = nn.parallel.DistributedDataParallel(model)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
        x, m, y = fixed_batch()
        half = len(x) // ctx.world_size
        sl = slice(ctx.rank * half, (ctx.rank + 1) * half)
        logits, feats = ddp(x[sl], return_features=True)
        loss(ddp, logits, feats, m[sl], y[sl]).total.backward()  # one ordinary backward
        grads = {k: p.grad.clone() for k, p in model.named_parameters()}
        opt.step()
        torch.save({"grads": grads, "params": {k: v.clone() for k, v in model.state_dict().items()}},
                   Path(out) / f"rank{ctx.rank}.pt")
        print(f"rank {ctx.rank}: step written", file=sys.stderr, flush=True)

if __name__ == "__main__":
    main(*sys.argv[1:4])
    exit_after_group(0)
