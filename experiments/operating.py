"""Issue 28's analysis, from score files only (numpy): threshold rules fitted on a run's validation
carve and read on its test fold, the rule chosen on validation data by a rule fixed in advance,
and `ceod calibrate`'s refit on a few labelled test parts.

The choice (written before any score existed): each candidate is fitted on half of each class's
validation families and scored by balanced accuracy on the other half (both ways, 50 random
halvings per run); the rule with the highest mean over every run wins, ties within 0.002 going
to the lower held-out escape rate. Test folds are read only after the choice."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np

from ceod.contracts.metrics import (QUANTILE, calibrate_threshold, operating_point, operating_points, quantile_midpoint,
                                   score_log_odds, threshold_sweep)

Rule = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], float]


def _family_weighted_balanced(scores: np.ndarray, labels: np.ndarray, families: np.ndarray) -> float:
    """Max balanced accuracy where every family of a class weighs the same (a big family of
    near-copies cannot pull the threshold to its own look)."""
    labels = labels.astype(bool)
    weights = np.empty(len(scores))
    for cls in (False, True):
        rows = labels == cls
        _, inverse, counts = np.unique(families[rows], return_inverse=True, return_counts=True)
        weights[rows] = 1.0 / (counts[inverse] * len(counts))
    candidates = np.unique(np.r_[scores, 0.5])
    best, best_t = -1.0, 0.5
    for t in candidates:
        called = scores >= t
        recall = weights[labels & called].sum()
        specificity = weights[~labels & ~called].sum()
        if (recall + specificity) / 2 > best:
            best, best_t = (recall + specificity) / 2, float(t)
    return best_t


RULES: dict[str, Rule] = {
    "f1": lambda p, lo, y, fam: calibrate_threshold(p, y, "f1"),
    "balanced": lambda p, lo, y, fam: calibrate_threshold(p, y, "balanced"),
    "escape@1%": lambda p, lo, y, fam: calibrate_threshold(p, y, "escape", target_escape=0.01),
    "quantile-midpoint": lambda p, lo, y, fam: quantile_midpoint(lo, y, min_parts=0),  # as 13.1 ran it: q = 0.05 at any count
    "family-balanced": lambda p, lo, y, fam: _family_weighted_balanced(p, y, fam),
}


def _arrays(split: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return (np.asarray(split["p_def"]), np.asarray(split["log_odds"]), np.asarray(split["label"]),
            np.asarray(split["family"]).astype(str))


def _best_balanced_accuracy(log_odds: np.ndarray, labels: np.ndarray) -> float:
    """Balanced accuracy at the best threshold on these very scores (the ceiling a rule is read against)."""
    return float(np.nanmax(threshold_sweep(log_odds, labels)["balanced_accuracy"]))


def _families(families: np.ndarray, labels: np.ndarray) -> dict[str, int]:
    return {"ok": len(set(families[labels == 0])), "def": len(set(families[labels == 1]))}


def held_out_choice_scores(val: dict, halvings: int = 50, seed: int = 0) -> dict[str, dict[str, float]]:
    """Each rule fitted on half of each class's validation families, read on the other half."""
    p, lo, y, fam = _arrays(val)
    rng = np.random.default_rng(seed)
    per_class = {c: np.unique(fam[y == c]) for c in (0, 1)}
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in RULES}
    for _ in range(halvings):
        half = set()
        for c, names in per_class.items():
            order = rng.permutation(names)
            half.update(order[: max(1, len(order) // 2)])
        a = np.isin(fam, list(half))
        for fit, read in ((a, ~a), (~a, a)):
            if len(set(y[fit])) < 2 or len(set(y[read])) < 2:
                continue
            for name, rule in RULES.items():
                t = rule(p[fit], lo[fit], y[fit], fam[fit])
                point = operating_point(p[read], y[read], t)
                results[name].append((point["balanced_accuracy"], point["escape_rate"]))
    return {name: {"balanced_accuracy": float(np.mean([r[0] for r in v])), "escape_rate": float(np.mean([r[1] for r in v])),
                   "trials": len(v)} for name, v in results.items()}


def choose_rule(records: list[dict]) -> tuple[str, dict[str, dict[str, float]]]:
    """The pre-stated rule: the best mean held-out validation balanced accuracy over every run,
    ties within 0.002 to the lower held-out escape rate."""
    per_run = [held_out_choice_scores(r["splits"]["val"], seed=r["fold"]) for r in records]
    mean = {name: {k: float(np.mean([run[name][k] for run in per_run])) for k in ("balanced_accuracy", "escape_rate")}
            for name in RULES}
    top = max(v["balanced_accuracy"] for v in mean.values())
    tied = [n for n, v in mean.items() if v["balanced_accuracy"] >= top - 0.002]
    return min(tied, key=lambda n: mean[n]["escape_rate"]), mean


def calibrate_draws(test: dict, fit: Callable[[np.ndarray, np.ndarray], float], per_class: int = 25,
                    draws: int = 5) -> list[dict[str, float]]:
    """`ceod calibrate`'s refit (`fit`: P(def), labels -> threshold) on `per_class` labelled parts
    of each class drawn from the test fold, read on the rest of the fold beside the best threshold
    on that rest."""
    p, lo, y, fam = _arrays(test)
    out = []
    for draw in range(draws):
        rng = np.random.default_rng(1000 + draw)
        picked = np.concatenate([rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in (0, 1)])
        rest = np.ones(len(p), bool)
        rest[picked] = False
        t = fit(p[picked], y[picked])
        point = operating_point(p[rest], y[rest], t)
        best = _best_balanced_accuracy(lo[rest], y[rest])
        out.append({"draw": draw, "threshold": t, "balanced_accuracy": point["balanced_accuracy"],
                    "best_on_rest": best, "escape_rate": point["escape_rate"],
                    "false_reject_rate": point["false_reject_rate"]})
    return out


def analyse(records: list[dict]) -> dict:
    chosen, choice_table = choose_rule(records)
    runs = []
    for r in sorted(records, key=lambda r: (r["variant"], r["fold"])):
        vp, vlo, vy, vfam = _arrays(r["splits"]["val"])
        tp, tlo, ty, tfam = _arrays(r["splits"]["test"])
        best = _best_balanced_accuracy(tlo, ty)
        rules = {}
        for name, rule in RULES.items():
            t = rule(vp, vlo, vy, vfam)
            rules[name] = {"threshold": t, **operating_point(tp, ty, t)}
        shipped = operating_points(tp, ty, rules[chosen]["threshold"], tfam)
        runs.append({"variant": r["variant"], "fold": r["fold"], "train_seconds": r.get("train_seconds"),
                     "val_parts": {"ok": int((vy == 0).sum()), "def": int((vy == 1).sum())},
                     "val_families": _families(vfam, vy),
                     "test_best_balanced_accuracy": best, "rules": rules, "chosen_operating_point": shipped,
                     "calibrate": calibrate_draws(r["splits"]["test"], lambda p, y: calibrate_threshold(p, y, "balanced")),
                     "calibrate_quantile": calibrate_draws(r["splits"]["test"], _quantile_fit(0))})
    return {"chosen_rule": chosen, "choice_on_validation": choice_table, "runs": runs}


def cross_fitted(records: list[dict], xfit: list[dict]) -> list[dict]:
    """Results 13.4: every rule fitted on a fold's pooled out-of-fold scores (every training family)
    and on its validation carve, both read on the outer model's test fold."""
    outer = {(r["variant"], r["fold"]): r for r in records}
    rows = []
    for x in sorted(xfit, key=lambda r: (r["variant"], r["fold"])):
        r = outer.get((x["variant"], x["fold"]))
        if r is None:
            raise SystemExit(f"out-of-fold scores of {x['variant']} fold {x['fold']} but no outer run's scores")
        tp, tlo, ty, _ = _arrays(r["splits"]["test"])
        op, olo, oy, ofam = _arrays(x["splits"]["oof"])
        vp, vlo, vy, vfam = _arrays(r["splits"]["val"])
        rules = {}
        for name, rule in RULES.items():
            rules[name] = {fitted_on: {"threshold": t, **operating_point(tp, ty, t)}
                           for fitted_on, t in (("carve", rule(vp, vlo, vy, vfam)), ("oof", rule(op, olo, oy, ofam)))}
        rows.append({"variant": x["variant"], "fold": x["fold"], "inner_train_seconds": x.get("inner_train_seconds"),
                     "oof_parts": {"ok": int((oy == 0).sum()), "def": int((oy == 1).sum())},
                     "oof_families": _families(ofam, oy), "carve_families": _families(vfam, vy),
                     "test_best_balanced_accuracy": _best_balanced_accuracy(tlo, ty),
                     "rules": rules})
    return rows


def _cross_fitted_markdown(rows: list[dict]) -> list[str]:
    L = ["", "## Thresholds fitted on out-of-fold scores of every training family (results 13.4)", "",
         "Each rule fitted on the validation carve (as above) and on the pooled out-of-fold scores of 3 inner "
         "runs, both read on the outer model's test fold: balanced accuracy (escape rate, false-reject rate).", "",
         "| variant | fold | families ok/def: carve, out-of-fold | best on test | inner runs (s) | rule | carve | "
         "out-of-fold |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        for name, fits in row["rules"].items():
            cells = [f"{f['balanced_accuracy']:.3f} ({f['escape_rate']:.3f}, {f['false_reject_rate']:.3f}; "
                     f"t {f['threshold']:.4g})" for f in (fits["carve"], fits["oof"])]
            L.append(f"| {row['variant']} | {row['fold']} | {row['carve_families']['ok']}/{row['carve_families']['def']}, "
                     f"{row['oof_families']['ok']}/{row['oof_families']['def']} | {row['test_best_balanced_accuracy']:.3f} | "
                     f"{', '.join(f'{s:.0f}' for s in row['inner_train_seconds'] or [])} | {name} | " + " | ".join(cells) + " |")
    return L


def _markdown(result: dict) -> str:
    chosen = result["chosen_rule"]
    L = ["# Operating points on casting's grouped folds (issue 28)", "",
         "Generated by `experiments/scripts/operating_points.py --analyse` from the score files.", "",
         "## The choice, on validation families only", "",
         "| rule | held-out validation balanced accuracy | held-out escape rate |", "|---|---|---|"]
    for name, v in sorted(result["choice_on_validation"].items(), key=lambda kv: -kv[1]["balanced_accuracy"]):
        L.append(f"| {'**' + name + '**' if name == chosen else name} | {v['balanced_accuracy']:.4f} | {v['escape_rate']:.4f} |")
    L += ["", f"Chosen: **{chosen}**.", "", "## Every rule on the test folds (reported, never used to choose)", "",
          "| variant | fold | val ok/def parts (families) | best on test | " + " | ".join(RULES) + " |",
          "|---|---|---|---|" + "---|" * len(RULES)]
    for run in result["runs"]:
        cells = [f"{run['rules'][n]['balanced_accuracy']:.3f} (esc {run['rules'][n]['escape_rate']:.3f}, "
                 f"FRR {run['rules'][n]['false_reject_rate']:.3f})" for n in RULES]
        L.append(f"| {run['variant']} | {run['fold']} | {run['val_parts']['ok']}/{run['val_parts']['def']} "
                 f"({run['val_families']['ok']}/{run['val_families']['def']}) | {run['test_best_balanced_accuracy']:.3f} | "
                 + " | ".join(cells) + " |")
    L += ["", f"## The chosen rule ({chosen}) in the line's terms, test folds, 95 % CI by family bootstrap", "",
          "| variant | fold | threshold | escape rate | false-reject rate | FRR at escape <= 1 % | FRR at escape <= 0.1 % |",
          "|---|---|---|---|---|---|---|"]

    def ci(pair):
        return f" [{pair[0]:.3f}, {pair[1]:.3f}]" if pair else ""

    for run in result["runs"]:
        op = run["chosen_operating_point"]
        s = op["shipped"]
        esc = []
        for key in ("0.01", "0.001"):
            e = op["at_escape"][key]
            esc.append(f"{e['false_reject_rate']:.3f}{ci(e['false_reject_rate_ci95'])}" if e["available"] else e["note"])
        L.append(f"| {run['variant']} | {run['fold']} | {s['threshold']:.4g} | {s['escape_rate']:.3f}{ci(s['escape_rate_ci95'])} | "
                 f"{s['false_reject_rate']:.3f}{ci(s['false_reject_rate_ci95'])} | {esc[0]} | {esc[1]} |")
    L += ["", "## `ceod calibrate` with 25 labelled parts per class of the test fold (5 draws)", "",
          "`balanced`: the rule these runs' thresholds were fitted with (the casting-cv preset); `quantile`: "
          "the packaged `threshold.mode` as 13.6 measured it (q = 0.05 at any count; since 13.7 `ceod calibrate` reads "
          "each cut at least 5 parts in: calibrate-floor/results.md).", "",
          "| variant | fold | best threshold on the rest | balanced: bacc on the rest (mean, min) | worst gap | "
          "quantile: bacc on the rest (mean, min) | mean gap | worst gap | escapes (mean) |",
          "|---|---|---|---|---|---|---|---|---|"]
    for run in result["runs"]:
        cells = []
        for key in ("calibrate", "calibrate_quantile"):
            b = [d["balanced_accuracy"] for d in run[key]]
            gaps = [d["best_on_rest"] - d["balanced_accuracy"] for d in run[key]]
            cells.append(f"{np.mean(b):.3f}, {np.min(b):.3f}")
            cells += [f"{np.mean(gaps):.3f}"] if key == "calibrate_quantile" else []
            cells.append(f"{max(gaps):.3f}")
        escapes = np.mean([d["escape_rate"] for d in run["calibrate_quantile"]])
        L.append(f"| {run['variant']} | {run['fold']} | {run['calibrate'][0]['best_on_rest']:.3f} | "
                 + " | ".join(cells) + f" | {escapes:.3f} |")
    if result.get("cross_fitted"):
        L += _cross_fitted_markdown(result["cross_fitted"])
    return "\n".join(L) + "\n"


def _quantile_fit(min_parts: int, q: float = QUANTILE) -> Callable[[np.ndarray, np.ndarray], float]:
    """The `quantile` rule with a floor of `min_parts` parts each side (0: q at any count, as 13.1-13.6 ran it)."""
    return lambda p, y: quantile_midpoint(score_log_odds(p), y, q=q, min_parts=min_parts)


# results 13.7: the floor's candidates, parts each side of the cut (median: q = 0.5)
FLOOR_CANDIDATES: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "1": _quantile_fit(1), "3": _quantile_fit(3), "5": _quantile_fit(5), "median": _quantile_fit(0, q=0.5)}


def _mean_gaps(split: dict, fit: Callable[[np.ndarray, np.ndarray], float]) -> tuple[float, float]:
    gaps = [d["best_on_rest"] - d["balanced_accuracy"] for d in calibrate_draws(split, fit)]
    return float(np.mean(gaps)), float(np.max(gaps))


def _floor_row(record: dict, splits: tuple[str, ...]) -> dict:
    return {"variant": record["variant"], "fold": record["fold"], "seed": record.get("seed", record["fold"]),
            "source": record.get("source", ""),
            **{name: {k: _mean_gaps(record["splits"][name], fit) for k, fit in FLOOR_CANDIDATES.items()}
               for name in splits}}


def choose_calibrate_floor(records: list[dict], confirm: list[dict] = ()) -> dict:
    """Results 13.7's rule: `ceod calibrate`'s 25-part refit simulated on each run's validation
    carve (read on the rest of the carve) for every floor; the smallest mean gap wins, ties within
    0.002 to the smaller mean worst-draw gap, then the smaller floor. Test folds (the records' and
    `confirm`'s, runs scored after the rule was written) are read after, never choosing."""
    runs = [_floor_row(r, ("val", "test")) for r in records]
    mean = {k: tuple(float(np.mean([run["val"][k][i] for run in runs])) for i in (0, 1)) for k in FLOOR_CANDIDATES}
    top = min(v[0] for v in mean.values())
    tied = [k for k in FLOOR_CANDIDATES if mean[k][0] <= top + 0.002]
    chosen = min(tied, key=lambda k: (mean[k][1], tied.index(k)))
    return {"chosen": chosen, "mean_on_validation": mean, "runs": runs,
            "confirm": [_floor_row(r, ("test",)) for r in confirm]}


def _floor_markdown(result: dict) -> str:
    keys = list(FLOOR_CANDIDATES)
    L = ["# `ceod calibrate`'s quantile cut with a floor of k parts (results 13.7)", "",
         "Generated by `experiments/scripts/operating_points.py --calibrate-floor`. Gap: balanced accuracy at the best "
         "threshold on the rest minus at the refit threshold, 25 parts a class drawn (5 seeded draws); mean over "
         "draws (worst draw).", "",
         "## The choice: validation carves only", "",
         "| k | mean gap | mean worst-draw gap |", "|---|---|---|"]
    for k in keys:
        v = result["mean_on_validation"][k]
        L.append(f"| {'**' + k + '**' if k == result['chosen'] else k} | {v[0]:.4f} | {v[1]:.4f} |")
    L += ["", f"Chosen: **k = {result['chosen']}**.", "",
          "## Per run: validation carve, then the test fold (read after the choice)", "",
          "| scores | variant | fold | seed | " + " | ".join(f"val k={k}" for k in keys) + " | "
          + " | ".join(f"test k={k}" for k in keys) + " |", "|---|---|---|---|" + "---|" * (2 * len(keys))]

    def cell(pair):
        return f"{pair[0]:.3f} ({pair[1]:.3f})"

    for run in result["runs"]:
        L.append(f"| {run['source']} | {run['variant']} | {run['fold']} | {run['seed']} | "
                 + " | ".join(cell(run["val"][k]) for k in keys)
                 + " | " + " | ".join(cell(run["test"][k]) for k in keys) + " |")
    if result["confirm"]:
        L += ["", "## Runs scored after the rule was written: test folds", "",
              "| variant | fold | seed | " + " | ".join(f"test k={k}" for k in keys) + " |", "|---|---|---|" + "---|" * len(keys)]
        for run in result["confirm"]:
            L.append(f"| {run['variant']} | {run['fold']} | {run['seed']} | " + " | ".join(cell(run["test"][k]) for k in keys) + " |")
    for name, rows in (("the choice's runs", result["runs"]), ("the runs scored after", result["confirm"])):
        if rows:
            within = {k: sum(r["test"][k][0] <= 0.01 for r in rows) for k in keys}
            L += ["", f"Test, {name}: mean gap within a point on " + ", ".join(f"{within[k]}/{len(rows)} (k={k})" for k in keys)
                  + "; mean of mean gaps " + ", ".join(f"{np.mean([r['test'][k][0] for r in rows]):.4f}" for k in keys) + "."]
    return "\n".join(L) + "\n"


def write_floor_tables(score_files: list[Path], out: Path, confirm_files: list[Path] = ()) -> dict:
    def read(f: Path) -> dict:
        return {**json.loads(Path(f).read_text()), "source": str(Path(f).parent.parent).split("docs/experiments/")[-1]}

    result = choose_calibrate_floor([read(f) for f in score_files], [read(f) for f in confirm_files])
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=1))
    (out / "results.md").write_text(_floor_markdown(result))
    print(_floor_markdown(result))
    return result


def write_tables(score_files: list[Path], out: Path, cross_fitted_files: list[Path] = ()) -> dict:
    records = [json.loads(Path(f).read_text()) for f in score_files]
    if not records:
        raise SystemExit("no score files: run the training step first")
    result = analyse(records)
    if cross_fitted_files:
        result["cross_fitted"] = cross_fitted(records, [json.loads(Path(f).read_text()) for f in cross_fitted_files])
    out.mkdir(parents=True, exist_ok=True)
    from ceod.contracts.metrics import strict_json
    (out / "results.json").write_text(json.dumps(strict_json(result), indent=1))
    (out / "results.md").write_text(_markdown(result))
    print(_markdown(result))
    return result
