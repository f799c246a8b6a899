"""Markdown tables from finished `ceod experiment` runs: per variant, each test split's balanced
accuracy (mean ± std and the worst seed or fold), the best any threshold reaches on it (reported,
never used), the audit's swap and shift flips, AOI attention and the step time.

    python experiments/scripts/results_table.py runs/cv/casting-cv --variants ce,ceod-evidence --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ceod.experiments.report import write_markdown


def _fmt(values: list[float], worst: str = "min") -> str:
    v = np.asarray([x for x in values if x is not None], float)
    if not v.size:
        return "—"
    pick = v.min() if worst == "min" else v.max()
    return f"{v.mean():.3f} ± {v.std():.3f} ({'worst' if len(v) > 1 else 'one'} {pick:.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="an experiment's dataset folder (holds VARIANT-seedN/result.json)")
    parser.add_argument("--variants", required=True)
    parser.add_argument("--seeds", required=True)
    parser.add_argument("--out", help="also write the tables here")
    args = parser.parse_args()
    folder = Path(args.folder)
    seeds = [int(s) for s in args.seeds.split(",")]
    lines = []
    results = {v: [json.loads((folder / f"{v}-seed{s}" / "result.json").read_text())
                   for s in seeds if (folder / f"{v}-seed{s}" / "result.json").is_file()]
               for v in args.variants.split(",")}
    splits = next(iter(r for rs in results.values() for r in rs))["splits"].keys()
    for split in splits:
        lines += [f"**{split}** (seeds/folds {seeds}; mean ± std, worst)", "",
                  "| variant | n | balanced acc. | best-threshold bal. acc. (reported only) | AUROC "
                  "| flip swap | flip shift | aoi_attention | step ms |", "|---|---|---|---|---|---|---|---|---|"]
        for variant, rs in results.items():
            sp = [r["splits"][split] for r in rs]
            lines.append(
                f"| {variant} | {len(rs)} | {_fmt([x['balanced_accuracy'] for x in sp])} | "
                f"{_fmt([x.get('balanced_accuracy_best_threshold') for x in sp])} | "
                f"{_fmt([x['auroc'] for x in sp])} | {_fmt([x['flip']['swap'] for x in sp], 'max')} | "
                f"{_fmt([x['flip']['shift'] for x in sp], 'max')} | {_fmt([x['aoi_attention'] for x in sp])} | "
                f"{np.median([r['step_ms_median'] for r in rs]):.0f} |")
        lines.append("")
    lines += ["Per run:", "", "| variant | seed | " + " | ".join(f"{s} bal. acc. / swap / shift" for s in splits)
              + " | val swap flips | train s |", "|---|---|" + "---|" * (len(splits) + 2)]
    for variant, rs in results.items():
        for r in rs:
            lines.append(f"| {variant} | {r['seed']} | " + " | ".join(
                f"{r['splits'][s]['balanced_accuracy']:.3f} / {r['splits'][s]['flip']['swap']:.3f} / "
                f"{r['splits'][s]['flip']['shift']:.3f}" for s in splits)
                + f" | {r.get('val_audit', {}).get('swap', float('nan')):.3f} | {r['train_seconds']:.0f} |")
    text = "\n".join(lines) + "\n"
    write_markdown(text, args.out)


if __name__ == "__main__":
    main()
