import numpy as np
import pytest

from ceod.contracts.metrics import auroc, binary_metrics, calibrate_threshold, iou_dice, nanmean


def test_auroc_with_ties_and_degenerate_input():
    assert auroc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(0.75)
    assert auroc(np.array([0.5, 0.5]), np.array([0, 1])) == pytest.approx(0.5)
    assert np.isnan(auroc(np.array([0.2, 0.3]), np.array([1, 1])))


def test_threshold_modes():
    scores = np.array([.1, .2, .3, .6, .7, .8, .9, .95])
    labels = np.array([0, 0, 1, 0, 1, 1, 1, 1])
    assert calibrate_threshold(scores, labels, "f1") == pytest.approx(0.3)
    assert calibrate_threshold(scores, labels, "balanced") == pytest.approx(0.7)
    t = calibrate_threshold(scores, labels, "recall", target_recall=0.8)
    assert binary_metrics(scores, labels, t)["recall"] >= 0.8 and t == pytest.approx(0.7)


def test_binary_metrics_confusion():
    m = binary_metrics(np.array([.9, .2, .7, .4]), np.array([1, 0, 0, 1]), 0.5)
    assert m["confusion"] == [[1, 1], [1, 1]] and m["balanced_accuracy"] == 0.5


def test_iou_dice_and_nanmean():
    a = np.zeros((2, 4, 4)); a[0, :2] = 1
    b = np.zeros((2, 4, 4)); b[0, :1] = 1
    iou, dice = iou_dice(a, b)
    assert iou.tolist() == [0.5, 1.0] and dice[0] == pytest.approx(2 / 3)
    assert np.isnan(nanmean(np.array([np.nan]))) and nanmean(np.array([1.0, np.nan, 3.0])) == 2.0


def _calibrate_by_brute_force(scores, labels, mode, target_recall=0.95):
    """The O(N^2) reference the sorted sweep replaced: every candidate through binary_metrics."""
    candidates = np.unique(np.concatenate([scores, [0.5]]))
    if mode == "recall":
        ok = [t for t in candidates if labels.sum() and (scores[labels.astype(bool)] >= t).mean() >= target_recall]
        return float(max(ok)) if ok else 0.5
    key = "balanced_accuracy" if mode == "balanced" else "f1"
    values = [binary_metrics(scores, labels, t)[key] for t in candidates]
    return float(candidates[int(np.argmax(values))])


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("mode", ["f1", "balanced", "recall"])
def test_sorted_sweep_matches_brute_force(seed, mode):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 400))
    labels = rng.integers(0, 2, n)
    scores = np.round(rng.random(n) * 0.6 + 0.3 * labels, int(rng.integers(1, 4)))  # ties included
    assert calibrate_threshold(scores, labels, mode, 0.9) == _calibrate_by_brute_force(scores, labels, mode, 0.9)



def test_best_threshold_figure_is_reported_beside_the_calibrated_one():
    from ceod.contracts.metrics import binary_metrics
    scores = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.8])
    labels = np.array([0, 0, 0, 1, 1, 1])
    miscalibrated = binary_metrics(scores, labels, threshold=0.75)  # a threshold set elsewhere
    assert miscalibrated["balanced_accuracy"] == pytest.approx(2 / 3)
    assert miscalibrated["balanced_accuracy_best_threshold"] == 1.0  # 0.6 would have separated them
    assert np.isnan(binary_metrics(scores, np.ones(6), 0.5)["balanced_accuracy_best_threshold"])
