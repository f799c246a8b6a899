"""Does `suggest-annotations` pick better images than chance? An oracle loop on a dataset whose
AOIs are all known (casting): start from `start` random annotated images, then `rounds` times
annotate the `per_round` images the segmenter is least sure of (the oracle reveals their true
AOI, as a corrected pre-annotation would), against `start + rounds * per_round` random images.
Same training budget for every run (fixed epochs, one batch of <= 16 per step), same fixed
validation images, test IoU on the grouped test split.

    python -m ceod.experiments.active --data ../shared/data/casting --out runs/active --seeds 0,1,2

Results land in OUT/results.json and OUT/results.md; finished runs are reused (resumable).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from ceod.contracts.config import load_config
from ceod.data.manifest import derive_dataset, read_manifest, read_rows
from ceod.data.loading import load_split
from ceod.data.splits import select
from ceod.segmenter.config import SegmenterConfig
from ceod.segmenter.evaluate import evaluate_segmenter
from ceod.segmenter.predict import load_segmenter
from ceod.segmenter.suggest import uncertainty_scores
from ceod.segmenter.train import train_segmenter


def _write_subset(data: Path, out: Path, annotated: set[int], val: list[int], rows: list[dict]) -> Path:
    """A dataset in the run folder reaching `data` through `source`: the annotated rows (train) and
    the validation rows, every column kept."""
    derive_dataset(out, data, [{**r, "split": "val" if i in val else "train"}
                               for i, r in enumerate(rows) if i in annotated or i in val])
    return out


def _train_eval(data: Path, subset: Path, run: Path, seed: int, epochs: int, test_filters: dict[str, str]
                ) -> dict[str, Any]:
    result_path = run / "result.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    cfg = load_config(SegmenterConfig, None, "segmenter-casting.yaml",
                      {"split_column": "split", "train.epochs": epochs, "max_val_images": 0})
    summary = train_segmenter(cfg, subset, run, seed, progress=False, overwrite=True)  # no result yet: retrain
    test = evaluate_segmenter(run, data, "test", "split_grouped", test_filters)
    result = {"train_images": summary["train_images"], "val_iou": summary["best"].get("val_iou"),
              "test_iou": test["iou_mean"], "test_dice": test["dice_mean"], "train_seconds": summary["train_seconds"]}
    result_path.write_text(json.dumps(result, indent=1))
    return result


def run_active(data: Path, out: Path, seeds: list[int], start: int = 10, rounds: int = 2, per_round: int = 10,
               epochs: int = 60, n_val: int = 60, score_pool: int = 1500) -> dict[str, Any]:
    rows = read_rows(data)
    pool_all = [i for i, r in enumerate(rows) if r["split_grouped"] == "train" and r.get("aoi_status") == "ok"]
    test_filters = {"aoi_status": "ok"}
    results: dict[str, Any] = {"seeds": {}, "setup": {"start": start, "rounds": rounds, "per_round": per_round,
                                                      "epochs": epochs, "val_images": n_val,
                                                      "scored_per_round": score_pool, "pool": len(pool_all)}}
    for seed in seeds:
        rng = np.random.default_rng(seed)
        groups = sorted({rows[i]["group"] for i in pool_all})
        rng.shuffle(groups)
        val_groups, val = set(), []
        for g in groups:  # whole families held out for validation, so copies never straddle
            if len(val) >= n_val:
                break
            val_groups.add(g)
            val += [i for i in pool_all if rows[i]["group"] == g]
        pool = [i for i in pool_all if rows[i]["group"] not in val_groups]
        val = val[:n_val]
        base = out / f"seed{seed}"
        per: dict[str, Any] = {}
        random_set = set(rng.choice(pool, size=start + rounds * per_round, replace=False).tolist())
        sub = _write_subset(data, base / "random" / "data", random_set, val, rows)
        per["random"] = _train_eval(data, sub, base / "random" / "run", seed, epochs, test_filters)
        annotated = set(np.random.default_rng([seed, 1]).choice(pool, size=start, replace=False).tolist())
        for k in range(rounds + 1):
            name = f"active_round{k}"
            sub = _write_subset(data, base / name / "data", annotated, val, rows)
            per[name] = _train_eval(data, sub, base / name / "run", seed, epochs, test_filters)
            if k == rounds:
                break
            picked_path = base / name / "picked.json"
            if picked_path.is_file():
                picked = json.loads(picked_path.read_text())
            else:
                model, cfg, _ = load_segmenter(base / name / "run")
                candidates = [i for i in pool if i not in annotated]
                candidates = sorted(np.random.default_rng([seed, 2, k]).choice(
                    candidates, size=min(score_pool, len(candidates)), replace=False).tolist())
                manifest = read_manifest(data, "split_grouped")
                by_row = {s.row - 1: s for s in select(manifest, "train", test_filters)}
                loaded = load_split([by_row[i] for i in candidates], cfg.input_size, root=data)
                scores, _ = uncertainty_scores(model, cfg, loaded.images)
                picked = [candidates[j] for j in np.argsort(-scores, kind="stable")[:per_round]]
                picked_path.write_text(json.dumps(picked))
            annotated |= set(picked)
        results["seeds"][seed] = per
        print(f"[active] seed {seed}: random {len(random_set)} -> test IoU {per['random']['test_iou']:.4f}; "
              + ", ".join(f"{k} ({v['train_images']}) {v['test_iou']:.4f}" for k, v in per.items() if k != "random"),
              flush=True)
    final = f"active_round{rounds}"
    rand = [results["seeds"][s]["random"]["test_iou"] for s in seeds]
    act = [results["seeds"][s][final]["test_iou"] for s in seeds]
    results["summary"] = {"random_mean": float(np.mean(rand)), "random_std": float(np.std(rand)),
                          "active_mean": float(np.mean(act)), "active_std": float(np.std(act)),
                          "active_wins": int(sum(a > r for a, r in zip(act, rand)))}
    (out / "results.json").write_text(json.dumps(results, indent=1))
    lines = [f"| seed | random {start + rounds * per_round} | " + " | ".join(
        f"active round {k} ({start + k * per_round})" for k in range(rounds + 1)) + " |",
             "|---" * (rounds + 3) + "|"]
    for s in seeds:
        per = results["seeds"][s]
        lines.append(f"| {s} | {per['random']['test_iou']:.4f} | " + " | ".join(
            f"{per[f'active_round{k}']['test_iou']:.4f}" for k in range(rounds + 1)) + " |")
    sm = results["summary"]
    lines.append(f"| mean ± std | {sm['random_mean']:.4f} ± {sm['random_std']:.4f} | "
                 + " | ".join(f"{np.mean([results['seeds'][s][f'active_round{k}']['test_iou'] for s in seeds]):.4f}"
                              for k in range(rounds + 1)) + " |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="a dataset whose AOIs are all known (e.g. ../shared/data/casting)")
    p.add_argument("--out", default="runs/active", help="results folder; finished runs are reused")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    p.add_argument("--epochs", type=int, default=60, help="epochs of every run (one step each at <= 16 images)")
    a = p.parse_args(argv)
    run_active(Path(a.data), Path(a.out), [int(s) for s in a.seeds.split(",")], epochs=a.epochs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
