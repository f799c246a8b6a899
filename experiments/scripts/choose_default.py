"""The rule of docs/results.md section 11.1, applied to the screen's results: which CEOD variant
becomes the packaged default. Reads only training logs, validation scores and the validation
audit (never a test split); prints the table and the choice, and writes them as markdown.

    python experiments/scripts/choose_default.py --screen synthetic=runs/screen/synthetic/{variant}-seed0 \
        --screen casting=runs/cv/casting-cv/{variant}-seed0 \
        --candidates ceod-evidence,ceod-evidence-gated,ceod-gated --out docs/experiments/default-choice.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ceod.experiments.report import write_markdown

CE_LIMIT = 0.5          # training CE at or below this from epoch FROM_EPOCH on (1-based)
FROM_EPOCH = {"synthetic": 4}  # other screens: the last epoch only
AUROC_TOLERANCE = 0.01  # validation AUROC within this of CE's on the same screen
TIE = 0.01              # validation swap flips this close count as a tie
CENTRED_FIRST = True    # a tie goes to the variant whose term a class-blind change cannot lower


def screen_figures(pattern: str, variant: str, screen: str) -> dict:
    run = Path(pattern.format(variant=variant))
    result = json.loads((run / "result.json").read_text())
    history = [h for h in json.loads((run / "history.json").read_text()) if "train_ce" in h]
    start = FROM_EPOCH.get(screen, len(history)) - 1
    config = json.loads((run / "metrics.json").read_text())["config"]
    return {"train_ce_max": max(h["train_ce"] for h in history[start:]),
            "val_auroc": result["val"]["val_auroc"], "val_swap": result["val_audit"]["swap"],
            "step_ms": result["step_ms_median"], "centred": bool(config["loss"].get("centre"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screen", action="append", required=True, metavar="NAME=PATTERN",
                        help="a screen and its run folders, {variant} standing for the variant name")
    parser.add_argument("--candidates", required=True, help="comma-separated CEOD variants")
    parser.add_argument("--out", help="markdown file for the table and the choice")
    args = parser.parse_args()
    screens = dict(item.split("=", 1) for item in args.screen)
    candidates = args.candidates.split(",")
    rows, qualified = [], {}
    for variant in candidates:
        figures = {name: screen_figures(pattern, variant, name) for name, pattern in screens.items()}
        reasons = []
        for name, f in figures.items():
            ce = screen_figures(screens[name], "ce", name)
            if f["train_ce_max"] > CE_LIMIT:
                reasons.append(f"{name}: training CE {f['train_ce_max']:.3f} > {CE_LIMIT}")
            if f["val_auroc"] < ce["val_auroc"] - AUROC_TOLERANCE:
                reasons.append(f"{name}: val AUROC {f['val_auroc']:.4f} < CE's {ce['val_auroc']:.4f} - {AUROC_TOLERANCE}")
        swap = sum(f["val_swap"] for f in figures.values()) / len(figures)
        step = sum(f["step_ms"] for f in figures.values()) / len(figures)
        centred = all(f["centred"] for f in figures.values())
        if not reasons:
            qualified[variant] = (swap, centred, step)
        rows.append(f"| {variant} | " + " | ".join(
            f"{f['train_ce_max']:.3f} / {f['val_auroc']:.4f} / {f['val_swap']:.3f}" for f in figures.values())
            + f" | {swap:.3f} | {'yes' if centred else 'no'} | {'; '.join(reasons) or 'qualifies'} |")
    if not qualified:
        choice = "none qualifies: keep the current default and report"
    else:
        best = min(v[0] for v in qualified.values())
        tied = [v for v, (swap, _, _) in qualified.items() if swap <= best + TIE]
        if CENTRED_FIRST and any(qualified[v][1] for v in tied):
            tied = [v for v in tied if qualified[v][1]]
        choice = min(tied, key=lambda v: qualified[v][2])
        choice = f"**{choice}** (tied within {TIE}: {', '.join(tied)})"
    header = ("| variant | " + " | ".join(f"{n}: max train CE / val AUROC / val swap flips" for n in screens)
              + " | mean val swap flips | centred | verdict |")
    lines = [header, "|---|" + "---|" * (len(screens) + 3), *rows, "", f"Chosen: {choice}"]
    text = "\n".join(lines) + "\n"
    write_markdown(text, args.out)


if __name__ == "__main__":
    main()
