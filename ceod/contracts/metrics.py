"""Metrics in numpy (no torch): classification at a threshold, AUROC, IoU/Dice, latency percentiles."""

from __future__ import annotations

import numpy as np


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mann-Whitney AUROC with ties counted half; nan when one class is absent."""
    scores, labels = np.asarray(scores, float), np.asarray(labels).astype(bool)
    pos, neg = labels.sum(), (~labels).sum()
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # average ranks over ties
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[labels].sum() - pos * (pos + 1) / 2) / (pos * neg))


def binary_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float,
                   ranking: np.ndarray | None = None) -> dict[str, float]:
    """`def` is the positive class; a score >= threshold means def. AUROC ranks by `ranking` when
    given (a score in the same order that does not saturate: the log-odds, see `log_odds`)."""
    labels = np.asarray(labels).astype(bool)
    pred = np.asarray(scores) >= threshold
    tp = int((pred & labels).sum())
    tn = int((~pred & ~labels).sum())
    fp = int((pred & ~labels).sum())
    fn = int((~pred & labels).sum())
    recall = tp / (tp + fn) if tp + fn else float("nan")
    specificity = tn / (tn + fp) if tn + fp else float("nan")
    precision = tp / (tp + fp) if tp + fp else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    ranked = scores if ranking is None else ranking
    best = (float(np.nanmax(threshold_sweep(ranked, labels)["balanced_accuracy"]))
            if labels.any() and (~labels).any() else float("nan"))
    return {"accuracy": (tp + tn) / max(len(labels), 1),
            "balanced_accuracy": float(np.nanmean([recall, specificity])),
            "precision": precision, "recall": recall, "f1": f1,
            "auroc": auroc(ranked, labels), "threshold": float(threshold),
            # the best any threshold could do on these very rows: how much the calibrated one
            # costs; a figure to report, never one to choose a threshold with
            "balanced_accuracy_best_threshold": best,
            "confusion": [[tn, fp], [fn, tp]]}


def threshold_sweep(scores: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Every candidate threshold (the unique scores and 0.5, ascending) with its recall,
    specificity, balanced accuracy and F1, from one sort: O(N log N), not O(N^2). The same
    sorted-sweep idea as scikit-learn's roc_curve, kept in numpy because this module is part of
    the torch-free, scikit-learn-free runtime."""
    scores, labels = np.asarray(scores, float), np.asarray(labels).astype(bool)
    candidates = np.unique(np.concatenate([scores, [0.5]]))
    pos, neg = np.sort(scores[labels]), np.sort(scores[~labels])
    tp = len(pos) - np.searchsorted(pos, candidates, side="left")  # score >= t means def
    fp = len(neg) - np.searchsorted(neg, candidates, side="left")
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(len(pos) > 0, tp / max(len(pos), 1), np.nan)
        specificity = np.where(len(neg) > 0, (len(neg) - fp) / max(len(neg), 1), np.nan)
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0.0)
        r = np.nan_to_num(recall)
        f1 = np.where(precision + r > 0, 2 * precision * r / np.maximum(precision + r, 1e-300), 0.0)
    balanced = np.nanmean(np.stack([recall, specificity]), axis=0) if len(pos) and len(neg) else \
        (recall if len(pos) else specificity)
    return {"threshold": candidates, "recall": recall, "specificity": specificity,
            "balanced_accuracy": balanced, "f1": f1}


THRESHOLD_MODES = ("f1", "balanced", "recall", "escape", "quantile")
QUANTILE = 0.05  # mode quantile: the share of each class's parts allowed to lie beyond its quantile
QUANTILE_MIN_PARTS = 5  # ... and never fewer parts than this (25 checked parts: q = 0.2, not 0.05)


def quantile_midpoint(log_odds: np.ndarray, labels: np.ndarray, q: float = QUANTILE,
                      min_parts: int = QUANTILE_MIN_PARTS) -> float:
    """Half way, in log-odds, between the q-quantile of the defects and the (1-q)-quantile of the
    good parts, as P(def): a few odd parts of either class move it little, where a best-accuracy
    point sits on whichever part happens to lie at the edge. Each class's q is at least
    min_parts / its count, so that with few parts (`ceod calibrate`'s 25 a class) the cut reads
    several parts, not the second-lowest defect (docs/results.md sections 13.6-13.7)."""
    labels = np.asarray(labels).astype(bool)
    log_odds = np.asarray(log_odds, np.float64)

    def share(parts: int) -> float:
        return min(0.5, max(q, min_parts / max(parts, 1)))

    mid = (np.quantile(log_odds[labels], share(int(labels.sum())))
           + np.quantile(log_odds[~labels], 1 - share(int((~labels).sum())))) / 2
    return float(1 / (1 + np.exp(-mid)))


def score_log_odds(scores: np.ndarray) -> np.ndarray:
    """Log-odds of P(def), clipped 1e-12 from 0 and 1 (the float64 resolution of a saturated score)."""
    p = np.clip(np.asarray(scores, np.float64), 1e-12, 1 - 1e-12)
    return np.log(p) - np.log1p(-p)


def calibrate_threshold(scores: np.ndarray, labels: np.ndarray, mode: str = "f1",
                        target_recall: float = 0.95, target_escape: float = 0.01) -> float:
    """Max-F1 threshold, max balanced accuracy (independent of class prevalence, for validation
    sets whose ok/def mix differs from the line's), the highest threshold reaching target_recall,
    or `escape`: the lowest false-reject rate at an escape rate <= target_escape (the highest
    threshold that lets at most that share of these defects through), or `quantile`: the
    quantile_midpoint of the scores' log-odds (score_log_odds). Ties go to the lowest threshold. One sorted sweep
    (threshold_sweep)."""
    labels = np.asarray(labels).astype(bool)
    if mode not in THRESHOLD_MODES:
        raise ValueError(f"threshold mode {mode!r}: choose from {THRESHOLD_MODES}")
    if mode == "escape":
        return escape_threshold(scores, labels, target_escape) if labels.any() else 0.5
    if mode == "quantile":
        if labels.all() or not labels.any():
            return 0.5
        return quantile_midpoint(score_log_odds(scores), labels)
    sweep = threshold_sweep(scores, labels)
    if mode == "recall":
        ok = sweep["threshold"][sweep["recall"] >= target_recall] if labels.sum() else np.array([])
        return float(ok.max()) if ok.size else 0.5
    values = sweep["balanced_accuracy" if mode == "balanced" else "f1"]
    return float(sweep["threshold"][int(np.argmax(values))])


def escape_threshold(scores: np.ndarray, labels: np.ndarray, target: float) -> float:
    """The highest threshold at which at most `target` of these defects score below it (escape:
    a defect called ok). The highest such threshold rejects the fewest good parts."""
    defects = np.sort(np.asarray(scores, float)[np.asarray(labels).astype(bool)])
    if defects.size == 0:
        raise ValueError("no defective part: an escape rate cannot be fixed")
    allowed = int(np.floor(target * defects.size + 1e-9))  # escapes the target tolerates
    return float(defects[min(allowed, defects.size - 1)]) if allowed < defects.size else float("inf")


def min_defects_for(target: float) -> int:
    """Defects needed before an escape rate of `target` is resolved at all: one escape among
    fewer parts is already more than the target."""
    return int(np.ceil(1.0 / target - 1e-9))


def operating_point(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float | int]:
    """What the line does at `threshold`: escapes (defects called ok) and false rejects (good parts
    called def), as counts and rates."""
    scores, labels = np.asarray(scores, float), np.asarray(labels).astype(bool)
    defect = scores >= threshold
    n_def, n_ok = int(labels.sum()), int((~labels).sum())
    escapes, rejects = int((labels & ~defect).sum()), int((~labels & defect).sum())
    escape = escapes / n_def if n_def else float("nan")
    reject = rejects / n_ok if n_ok else float("nan")
    return {"threshold": float(threshold), "escape_rate": escape, "false_reject_rate": reject,
            "balanced_accuracy": float(np.nanmean([1 - escape, 1 - reject])) if n_def or n_ok else float("nan"),
            "escapes": escapes, "false_rejects": rejects, "defects": n_def, "ok_parts": n_ok}


def _family_resamples(families: np.ndarray, n: int, seed: int) -> list[np.ndarray]:
    """Row indices of `n` bootstrap samples that draw whole families with replacement: parts of
    one family move together, as they do on the line."""
    _, inverse = np.unique(families, return_inverse=True)
    members = [np.flatnonzero(inverse == f) for f in range(inverse.max() + 1)]
    rng = np.random.default_rng(seed)
    return [np.concatenate([members[f] for f in rng.integers(0, len(members), len(members))]) for _ in range(n)]


def operating_points(scores: np.ndarray, labels: np.ndarray, threshold: float, families: np.ndarray | None = None,
                     escape_targets: tuple[float, ...] = (0.01, 0.001), bootstrap: int = 1000,
                     seed: int = 0) -> dict[str, object]:
    """The line's terms: escape and false-reject rates at `threshold`, and the false-reject rate
    the ranking allows at each escape target ("n/a" with the defect count where too few defects
    resolve it), each with a 95 % interval from a bootstrap over families (each part its own
    family where none is given)."""
    scores, labels = np.asarray(scores, float), np.asarray(labels).astype(bool)
    families = np.arange(len(scores)) if families is None else np.asarray(families)
    samples = _family_resamples(families, bootstrap, seed) if bootstrap else []

    def interval(values: list[float]) -> list[float] | None:
        v = np.asarray(values, float)
        v = v[np.isfinite(v)]
        return [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] if v.size else None

    at = operating_point(scores, labels, threshold)
    boot = [operating_point(scores[i], labels[i], threshold) for i in samples]
    result: dict[str, object] = {
        "shipped": {**at, "escape_rate_ci95": interval([b["escape_rate"] for b in boot]),
                    "false_reject_rate_ci95": interval([b["false_reject_rate"] for b in boot])},
        "families": int(len(np.unique(families))), "bootstrap": int(bootstrap), "at_escape": {}}
    for target in escape_targets:
        key = f"{target:g}"
        need = min_defects_for(target)
        if at["defects"] < need or at["ok_parts"] == 0:
            result["at_escape"][key] = {"target": target, "available": False, "defects": at["defects"],
                                        "note": f"n/a: {at['defects']} defects, {need} needed to resolve {target:.1%}"}
            continue
        t = escape_threshold(scores, labels, target)
        point = operating_point(scores, labels, t)
        frr = []
        for i in samples:
            if labels[i].sum() >= need and (~labels[i]).any():
                frr.append(operating_point(scores[i], labels[i], escape_threshold(scores[i], labels[i], target))
                           ["false_reject_rate"])
        result["at_escape"][key] = {"target": target, "available": True, **point,
                                    "false_reject_rate_ci95": interval(frr)}
    return result


def format_operating_points(op: dict[str, object]) -> str:
    """The operating point in the words a quality engineer signs off, a line each."""
    def pct(v: float) -> str:
        return f"{100 * v:.2f} %" if v == v else "n/a"

    def ci(pair) -> str:
        return f" (95 % CI {pct(pair[0])}-{pct(pair[1])})" if pair else ""

    at = op["shipped"]
    lines = [f"at the shipped threshold {at['threshold']:.4g}: escapes {pct(at['escape_rate'])}{ci(at['escape_rate_ci95'])} "
             f"({at['escapes']} of {at['defects']} defects called ok), false rejects {pct(at['false_reject_rate'])}"
             f"{ci(at['false_reject_rate_ci95'])} ({at['false_rejects']} of {at['ok_parts']} good parts)"]
    for key, e in op["at_escape"].items():
        if not e["available"]:
            lines.append(f"at escape <= {pct(e['target'])}: {e['note']}")
        else:
            lines.append(f"at escape <= {pct(e['target'])} (threshold {e['threshold']:.4g}): false rejects "
                         f"{pct(e['false_reject_rate'])}{ci(e['false_reject_rate_ci95'])}")
    lines.append(f"intervals: bootstrap over {op['families']} families ({op['bootstrap']} draws)")
    return "\n".join(lines)


def threshold_provenance(mode: str, target_recall: float, target_escape: float, fitted_on: str,
                         scores: np.ndarray, labels: np.ndarray, families: list[str] | np.ndarray | None,
                         threshold: float) -> dict[str, object]:
    """Where a threshold came from, as the exported model carries it: the rule, its target, the
    rows it was fitted on (parts and, where known, families per class) and its figures on those rows."""
    labels = np.asarray(labels).astype(bool)
    point = operating_point(scores, labels, threshold)
    if families is not None:
        families = np.asarray(families)
    return {"mode": mode, "target": {"recall": target_recall, "escape": target_escape}.get(mode),
            "fitted_on": fitted_on,
            "parts": {"ok": int((~labels).sum()), "def": int(labels.sum())},
            "families": None if families is None else {"ok": int(len(np.unique(families[~labels]))),
                                                        "def": int(len(np.unique(families[labels])))},
            "escape_rate": point["escape_rate"], "false_reject_rate": point["false_reject_rate"],
            "balanced_accuracy": point["balanced_accuracy"]}


def iou_dice(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-image IoU and Dice of binary masks [N,H,W]; two empty masks score 1."""
    p, t = pred.reshape(len(pred), -1) > 0, target.reshape(len(target), -1) > 0
    inter = (p & t).sum(1)
    union = (p | t).sum(1)
    total = p.sum(1) + t.sum(1)
    iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    dice = np.where(total > 0, 2 * inter / np.maximum(total, 1), 1.0)
    return iou, dice


def percentiles_ms(seconds: list[float] | np.ndarray) -> dict[str, float]:
    """p50/p95/p99 in milliseconds."""
    a = np.asarray(seconds, float) * 1000
    if a.size == 0:
        return {"p50_ms": float("nan"), "p95_ms": float("nan"), "p99_ms": float("nan")}
    return {f"p{q}_ms": float(np.percentile(a, q)) for q in (50, 95, 99)}


def strict_json(value):
    """The same structure with every non-finite float (NaN, Infinity) as None: JSON has no NaN,
    and a figure that could not be computed is absent, not a number."""
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def csv_safe(value):
    """A text cell beginning with = + - @ (or a tab / carriage return) is prefixed with ' so a
    spreadsheet shows it instead of evaluating it (OWASP's CSV-injection rule)."""
    return "'" + value if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def nanmean(values: np.ndarray) -> float:
    """Mean over the finite entries; nan (without a warning) when there are none."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def multiclass_metrics(probs: np.ndarray, labels: np.ndarray, classes: list[str] | tuple[str, ...],
                       ranking: np.ndarray | None = None) -> dict[str, object]:
    """Argmax decisions over K classes: accuracy, balanced accuracy (mean per-class recall),
    macro-F1 over the classes present, per-class recall, K x K confusion (rows = truth), and the
    macro one-vs-rest AUROC."""
    probs, labels = np.asarray(probs, float), np.asarray(labels, np.int64)
    k = len(classes)
    pred = probs.argmax(1)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (labels, pred), 1)
    support = confusion.sum(1)
    predicted = confusion.sum(0)
    tp = np.diag(confusion)
    recall = np.where(support > 0, tp / np.maximum(support, 1), np.nan)
    precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
    f1 = np.where(precision + np.nan_to_num(recall) > 0,
                  2 * precision * np.nan_to_num(recall) / np.maximum(precision + np.nan_to_num(recall), 1e-12), 0.0)
    present = support > 0
    rank = probs if ranking is None else np.asarray(ranking, float)
    aurocs = [auroc(rank[:, c], labels == c) for c in range(k) if present[c] and (~(labels == c)).any()]
    return {"accuracy": float((pred == labels).mean()) if len(labels) else float("nan"),
            "balanced_accuracy": nanmean(recall),
            "macro_f1": float(f1[present].mean()) if present.any() else float("nan"),
            "auroc": nanmean(np.array(aurocs)) if aurocs else float("nan"),
            "per_class_recall": {str(c): float(r) for c, r in zip(classes, recall)},
            "confusion": confusion.tolist()}


def classification_metrics(probs: np.ndarray, labels: np.ndarray, classes, threshold: float = 0.5,
                           log_probs: np.ndarray | None = None) -> dict[str, object]:
    """ok/def: the binary figures at the calibrated threshold on P(def); K classes: argmax figures.

    `log_probs` (log-softmax, same shape as probs), when given, ranks the AUROC by each class's
    log-odds: softmax in float32 rounds every P(def) above 1 - 6e-8 to exactly 1.0 (and log P(def)
    to 0.0), so a confident model's scores tie and its AUROC drifts towards 0.5 whatever it ranks.
    The log-odds, log P(c) - log sum_{j != c} P(j), is the logit margin and does not saturate."""
    from ceod.contracts.classes import is_anomaly
    probs = np.asarray(probs)
    ranking = None if log_probs is None else log_odds(log_probs)
    if is_anomaly(classes):
        return binary_metrics(probs[:, 1], labels, threshold, None if ranking is None else ranking[:, 1])
    return multiclass_metrics(probs, labels, classes, ranking)


def log_odds(log_probs: np.ndarray) -> np.ndarray:
    """[N,K] log P(c) - log(sum of the other classes' P), from log-probabilities."""
    lp = np.asarray(log_probs, np.float64)
    k = lp.shape[1]
    others = np.stack([np.logaddexp.reduce(np.delete(lp, c, axis=1), axis=1) for c in range(k)], 1)
    return lp - others
