"""Why does a classifier's validation AUROC swing or invert while its training loss falls?

    python experiments/scripts/diagnose_validation.py RUN_FOLDER_OR_CHECKPOINT --data DATASET [--split-column C]

Separates the three suspects on one checkpoint (e.g. a run's last.pt):
1. eval-mode BatchNorm statistics: AUROC with BatchNorm in eval mode (running statistics) and
   in train mode (statistics of the validation batch itself), no gradient step either way;
2. saturated scores: AUROC ranked by the logit margin (never ties) and the share of P(def)
   values that tie in float32;
3. the validation population itself: the same figures on a sample of the training rows.
Also prints, per BatchNorm layer, running/batch variance ratios and mean shifts on validation.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--split-column")
    ap.add_argument("--n", type=int, default=384, help="images sampled from validation and from training")
    a = ap.parse_args()

    from ceod.classifier.inference import load_classifier
    from ceod.data.loading import load_train_val
    from ceod.data.imageio import normalize
    from ceod.contracts.metrics import auroc

    model, cfg, meta = load_classifier(a.model)
    if a.split_column:
        cfg.split_column = a.split_column
    train, val = load_train_val(a.data, cfg, int(meta.get("seed", 0)), progress=False)

    def margins(images: np.ndarray, bn_mode: str) -> np.ndarray:
        model.train(bn_mode == "train")
        out = []
        with torch.no_grad():
            for i in range(0, len(images), 64):
                logits = model(torch.from_numpy(normalize(images[i:i + 64], cfg.mean, cfg.std)))
                out.append((logits[:, 1] - logits[:, 0]).numpy())
        model.eval()
        return np.concatenate(out)

    rng = np.random.default_rng(0)
    print(f"{a.model}: validation {len(val)} rows ({val.labels.mean():.2f} def), training {len(train)} rows")
    for name, split in (("validation", val), ("training", train)):
        pick = rng.permutation(len(split))[:a.n]
        for bn_mode in ("eval", "train"):
            m = margins(split.images[pick], bn_mode)
            p_def = torch.sigmoid(torch.from_numpy(m)).numpy().astype(np.float32)
            tied = 1 - len(np.unique(p_def)) / len(p_def)
            print(f"  {name:10s} BatchNorm {bn_mode:5s}: AUROC (margin) {auroc(m, split.labels[pick]):.3f}, "
                  f"AUROC (float32 P(def)) {auroc(p_def, split.labels[pick]):.3f}, tied P(def) {tied:.2f}, "
                  f"margin mean {m.mean():+.2f} sd {m.std():.2f}")
    layers = [mod for mod in model.modules() if isinstance(mod, torch.nn.BatchNorm2d)]
    inputs: dict[int, torch.Tensor] = {}
    hooks = [layer.register_forward_hook(lambda mod, i, o, k=k: inputs.__setitem__(k, i[0]))
             for k, layer in enumerate(layers)]
    with torch.no_grad():
        model(torch.from_numpy(normalize(val.images[rng.permutation(len(val))[:64]], cfg.mean, cfg.std)))
    for hook in hooks:
        hook.remove()
    for k, layer in enumerate(layers):
        x = inputs[k]
        mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3))
        print(f"  BatchNorm {k}: running/batch variance median {float((layer.running_var / var).median()):.2f}, "
              f"mean shift median {float(((mean - layer.running_mean).abs() / var.sqrt()).median()):.2f} sd")


if __name__ == "__main__":
    main()
