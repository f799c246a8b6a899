"""The rule of docs/results.md section 14.1, applied to finished casting-cv runs: which finalist
becomes the packaged default. Reads only each run's validation figures (balanced accuracy at its
own threshold, the validation audit's flips) and its median training step; never a test split.

    python experiments/scripts/choose_consistency.py runs/op/casting-cv --finalists default-cf,default \
        --packaged default --folds 0,1,2 --out docs/experiments/consistency-screen/choice.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ceod.experiments.report import write_markdown

ELIGIBLE = 0.01   # validation balanced accuracy at least CE's minus this, on every fold
TIE = 0.005       # mean worst validation flips this close count as a tie
FLIPS = ("swap", "shift", "clutter")


def validation_figures(folder: Path, variant: str, fold: int) -> dict | None:
    """None where the run has not finished (no result.json): it can be tabled, not chosen."""
    path = folder / f"{variant}-seed{fold}" / "result.json"
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    flips = {k: result["val_audit"][k] for k in FLIPS}
    return {"bacc": result["val"]["val_balanced_accuracy"], "flips": flips, "worst": max(flips.values()),
            "step_s": result["step_ms_median"] / 1000}


def choose(folder: Path, finalists: list[str], packaged: str, folds: list[int]) -> tuple[list[str], str]:
    ce = {f: validation_figures(folder, "ce", f) for f in folds}
    if any(v is None for v in ce.values()):
        raise SystemExit(f"CE has not finished on folds {[f for f, v in ce.items() if v is None]}: "
                         f"run `ceod experiment --variants ce` there first (it sets eligibility)")
    rows, eligible, pending = [], {}, []
    for variant in ["ce", *finalists]:
        figures = {f: validation_figures(folder, variant, f) for f in folds}
        done = {f: v for f, v in figures.items() if v is not None}
        short = [f"fold {f}: {v['bacc']:.3f} < CE's {ce[f]['bacc']:.3f} - {ELIGIBLE}"
                 for f, v in done.items() if v["bacc"] < ce[f]["bacc"] - ELIGIBLE]
        missing = [f for f in folds if f not in done]
        worst = sum(v["worst"] for v in done.values()) / len(done) if done else float("nan")
        step = sum(v["step_s"] for v in done.values()) / len(done) if done else float("nan")
        if variant != "ce" and not short:
            if missing:
                pending.append(variant)
            else:
                eligible[variant] = (worst, step)
        cells = " | ".join("not run" if v is None else f"{v['bacc']:.3f} / "
                           + " / ".join(f"{v['flips'][k]:.3f}" for k in FLIPS) + f" (**{v['worst']:.3f}**)"
                           for v in figures.values())
        verdict = "reference" if variant == "ce" else "; ".join(
            short + ([f"not run on fold(s) {', '.join(map(str, missing))}"] if missing else [])) or "eligible"
        means = f"{worst:.3f} | {step:.2f} s" if done else "- | -"
        rows.append(f"| {variant} | {cells} | {means} | {verdict} |")
    if pending:
        choice = (f"not decided: {', '.join(pending)} not yet run on every fold (still eligible where run); "
                  f"the packaged default (`{packaged}`) stays until they are")
    elif not eligible:
        choice = f"no finalist is eligible on every fold: the packaged default (`{packaged}`) stays"
    else:
        best = min(w for w, _ in eligible.values())
        tied = [v for v, (w, _) in eligible.items() if w < best + TIE]
        pick = packaged if packaged in tied else min(tied, key=lambda v: eligible[v][1])
        choice = f"**{pick}** (lowest mean worst validation flip rate {eligible[pick][0]:.3f}; tied within {TIE}: " \
                 f"{', '.join(tied)})"
    header = ("| variant | " + " | ".join(f"fold {f}: val bacc / swap / shift / clutter (worst)" for f in folds)
              + " | mean worst | median step | eligibility |")
    return [header, "|---|" + "---|" * (len(folds) + 3), *rows], choice


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="the casting-cv folder holding VARIANT-seedFOLD/result.json")
    parser.add_argument("--finalists", required=True, help="comma-separated variants")
    parser.add_argument("--packaged", default="default", help="the variant the package ships now")
    parser.add_argument("--folds", default="0,1,2")
    parser.add_argument("--out", help="markdown file for the table and the choice")
    args = parser.parse_args()
    lines, choice = choose(args.folder, args.finalists.split(","), args.packaged,
                           [int(f) for f in args.folds.split(",")])
    text = "\n".join([*lines, "", f"Chosen by the rule of docs/results.md section 14.1: {choice}"]) + "\n"
    write_markdown(text, args.out)


if __name__ == "__main__":
    main()
