"""Training throughput on the casting images: where an epoch's time goes, and what channels_last buys.

    python experiments/scripts/casting_throughput.py --casting ../shared/data/casting --out docs/experiments/casting-throughput

For each input size it measures, in one process and interleaved (so machine noise hits every
variant alike): decoding + resizing (`load_split`, once per run: images stay in memory across
epochs), the per-item augmentation (albumentations + normalisation, every epoch), and whole
training iterations (DataLoader + forward + loss + backward + AdamW) of the simple CNN with CE and
with the default CEOD loss, in NCHW (before) and channels_last (after) memory layout.
Prints a markdown table and writes throughput.json and throughput.md to --out.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--casting", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--sizes", default="128,192,256")
    ap.add_argument("--images", type=int, default=384, help="training images loaded per size")
    ap.add_argument("--batches", type=int, default=6, help="timed iterations per variant and round")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is reported")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    from ceod.contracts.config import load_config
    from ceod.data.loading import load_split
    from ceod.data.manifest import read_manifest
    from ceod.training.torchdata import SplitDataset
    from ceod.training.transforms import background_swap_probability, build_augment
    from ceod.classifier.config import ClassifierConfig
    from ceod.classifier.loss import CEODLoss
    from ceod.classifier.model import build_classifier

    manifest = read_manifest(a.casting, "split_grouped")
    rows = [s for s in manifest.split("train") if s.extra.get("aoi_status") == "ok"]
    rows = [rows[i] for i in sorted(np.random.default_rng(0).permutation(len(rows))[:a.images])]
    results = []
    for size in [int(s) for s in a.sizes.split(",")]:
        cfg = load_config(ClassifierConfig, None, "classifier.yaml", {"input_size": size})
        started = time.perf_counter()
        data = load_split(rows, size, root=a.casting)
        load_rate = len(rows) / (time.perf_counter() - started)
        augment = build_augment(cfg.augment)
        dataset = SplitDataset(data, tuple(cfg.mean), tuple(cfg.std), augment,
                               background_swap=background_swap_probability(cfg.augment))
        for i in range(len(dataset)):  # inpaint every donor once, as a run does over its first epoch
            dataset._background(i)
        started = time.perf_counter()
        for i in range(len(dataset)):
            dataset[i]
        augment_rate = len(dataset) / (time.perf_counter() - started)
        loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.train.batch_size, shuffle=True, drop_last=True)
        variants = {}
        for layout in ("nchw", "channels_last"):
            for loss_kind in ("ce", "ceod"):
                torch.manual_seed(0)
                model = build_classifier(cfg.model, 2, size)
                if layout == "channels_last":
                    model = model.to(memory_format=torch.channels_last)
                optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
                loss_cfg = cfg.loss if loss_kind == "ceod" else type(cfg.loss)(kind="ce")
                variants[(layout, loss_kind)] = (model, optimizer, CEODLoss(loss_cfg), [])

        def iterate(layout: str, model, optimizer, criterion, n: int) -> float:
            fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
            it = iter(loader)
            start = time.perf_counter()
            for _ in range(n):
                x, m, y, _ = next(it)
                x = x.contiguous(memory_format=fmt)
                logits, feats = model(x, return_features=True)
                res = criterion(model, logits, feats, m, y, 5)
                optimizer.zero_grad(set_to_none=True)
                res.total.backward()
                optimizer.step()
            return n * loader.batch_size / (time.perf_counter() - start)

        for (layout, _), (model, optimizer, criterion, _) in variants.items():  # warm-up
            iterate(layout, model, optimizer, criterion, 1)
        for _ in range(a.rounds):
            for (layout, _), (model, optimizer, criterion, rates) in variants.items():
                rates.append(iterate(layout, model, optimizer, criterion, a.batches))
        row = {"size": size, "decode_resize_images_per_s": round(load_rate, 1),
               "augment_images_per_s": round(augment_rate, 1)}
        for (layout, loss_kind), (*_, rates) in variants.items():
            row[f"train_{loss_kind}_{layout}_images_per_s"] = round(float(np.median(rates)), 1)
        results.append(row)
        print(json.dumps(row), flush=True)

    lines = [f"Casting training throughput, images/s ({a.threads} threads, batch 32, simple CNN, "
             f"{a.images} grouped-train images; median of {a.rounds} interleaved rounds of {a.batches} "
             "iterations; iterations include the DataLoader with the packaged augmentation)", "",
             "| input | decode + resize (once a run) | augment (every epoch) | CE, NCHW (before) | CE, channels_last "
             "(after) | CEOD default, NCHW (before) | CEOD default, channels_last (after) | after / before (CEOD) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        ratio = r["train_ceod_channels_last_images_per_s"] / r["train_ceod_nchw_images_per_s"]
        lines.append(f"| {r['size']} px | {r['decode_resize_images_per_s']:.0f} | {r['augment_images_per_s']:.0f} | "
                     f"{r['train_ce_nchw_images_per_s']:.1f} | {r['train_ce_channels_last_images_per_s']:.1f} | "
                     f"{r['train_ceod_nchw_images_per_s']:.1f} | {r['train_ceod_channels_last_images_per_s']:.1f} | "
                     f"{ratio:.2f}x |")
    table = "\n".join(lines) + "\n"
    print(table)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "throughput.json").write_text(json.dumps({"threads": a.threads, "rows": results}, indent=1))
    (a.out / "throughput.md").write_text(table)


if __name__ == "__main__":
    main()
