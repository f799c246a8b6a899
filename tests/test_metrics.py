import numpy as np
import pytest

from ceod.metrics import auroc, binary_metrics, calibrate_threshold, iou_dice, nanmean


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
