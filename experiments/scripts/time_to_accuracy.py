"""Time-to-accuracy curves: cumulative training wall time vs validation balanced accuracy, read
from the history.json of finished runs. Prints a table and saves a PNG beside it.

    python experiments/scripts/time_to_accuracy.py --out docs/experiments/time-to-accuracy \
        "synthetic, simple CNN=runs/screen/synthetic/ce-simple-seed0" \
        "synthetic, Lite0=runs/screen/synthetic/ce-seed0"

Wall times are what each run logged (epoch_seconds, validation excluded); runs that shared the
cores with others are slower than alone, so compare curves that ran side by side.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def curve(run: Path) -> list[tuple[float, float]]:
    history = json.loads((run / "history.json").read_text())
    points, elapsed = [], 0.0
    for row in history:
        if "train_loss" not in row:  # the averaged-weights row: no training time of its own
            continue
        elapsed += row["epoch_seconds"]
        points.append((elapsed, row["val_balanced_accuracy"]))
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="LABEL=RUN_FOLDER")
    parser.add_argument("--out", required=True, help="folder for time_to_accuracy.{md,png}")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    curves = {}
    for item in args.runs:
        label, _, folder = item.partition("=")
        if not folder:
            parser.error(f"{item!r}: expected LABEL=RUN_FOLDER")
        curves[label] = curve(Path(folder))
    lines = ["| run | epoch | cumulative training s | val balanced acc. |", "|---|---|---|---|"]
    for label, points in curves.items():
        lines += [f"| {label} | {i + 1} | {t:.0f} | {acc:.4f} |" for i, (t, acc) in enumerate(points)]
    (out / "time_to_accuracy.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, points in curves.items():
        ax.plot([t / 60 for t, _ in points], [a for _, a in points], marker="o", label=label)
    ax.set_xlabel("training wall time (min, 1 thread, 2 runs sharing 2 cores)")
    ax.set_ylabel("validation balanced accuracy")
    ax.set_ylim(0.45, 1.0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "time_to_accuracy.png", dpi=110)
    print(f"saved {out / 'time_to_accuracy.png'}")


if __name__ == "__main__":
    main()
