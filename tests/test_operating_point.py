"""The operating point in the line's terms (escapes, false rejects), the escape threshold rule,
and `ceod calibrate` on a real exported model, run as on a line PC (no torch)."""

from __future__ import annotations

import csv
import hashlib
import json

import numpy as np
import pytest

from ceod.contracts.metrics import (calibrate_threshold, escape_threshold, min_defects_for, operating_point,
                                    operating_points)
from conftest import run_ceod_on_a_line_pc


def test_escape_threshold_lets_through_at_most_the_target_and_rejects_the_fewest():
    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(500), np.ones(400)].astype(int)
    scores = np.r_[rng.beta(2, 5, 500), rng.beta(5, 2, 400)]
    t = escape_threshold(scores, labels, 0.01)
    at = operating_point(scores, labels, t)
    assert at["escapes"] <= 4 and at["escape_rate"] <= 0.01  # 1 % of 400 defects
    # the next defect score up would let a fifth through: t is the highest that holds the target
    higher = np.sort(scores[labels == 1])[np.sort(scores[labels == 1]) > t][0]
    assert operating_point(scores, labels, higher)["escapes"] == 5
    assert calibrate_threshold(scores, labels, "escape", target_escape=0.01) == t
    assert at["false_reject_rate"] == pytest.approx(float((scores[labels == 0] >= t).mean()))


def test_the_quantile_rule_sits_between_the_clouds_and_a_few_odd_parts_barely_move_it():
    from ceod.experiments.operating import RULES
    rng = np.random.default_rng(3)
    labels = np.r_[np.zeros(300), np.ones(300)].astype(int)
    log_odds = np.r_[rng.normal(-3, 1, 300), rng.normal(5, 1, 300)]
    scores = 1 / (1 + np.exp(-log_odds))
    t = calibrate_threshold(scores, labels, "quantile")
    mid = (np.quantile(log_odds[300:], 0.05) + np.quantile(log_odds[:300], 0.95)) / 2
    assert np.log(t / (1 - t)) == pytest.approx(mid, abs=1e-6)
    assert t == pytest.approx(RULES["quantile-midpoint"](scores, log_odds, labels, None))  # the analysis' rule
    # two good parts scored above most defects: the quantile rule barely moves
    odd = scores.copy()
    odd[:2] = 1 / (1 + np.exp(-7.0))
    assert abs(calibrate_threshold(odd, labels, "quantile") - t) < 0.05
    saturated = np.where(labels == 1, 1.0, scores)  # float32 models give P(def) = 1 exactly
    assert 0.5 < calibrate_threshold(saturated, labels, "quantile") < 1.0
    assert calibrate_threshold(scores[:300], labels[:300], "quantile") == 0.5  # one class: no midpoint


def test_with_25_parts_a_class_two_odd_defects_do_not_pull_the_quantile_cut_down():
    """`ceod calibrate` on a first shift's 25 checked parts a class: the cut reads the 5th part of
    each side, not the 2nd, so two low defects (results 13.6's fold 1) leave it between the clouds."""
    rng = np.random.default_rng(7)
    labels = np.r_[np.zeros(25), np.ones(25)].astype(int)
    log_odds = np.r_[rng.normal(-4, 1, 25), rng.normal(8, 1, 25)]
    log_odds[25:27] = [-6.0, -5.0]  # two defects the model calls good
    t = calibrate_threshold(1 / (1 + np.exp(-log_odds)), labels, "quantile")
    cut = np.log(t / (1 - t))
    assert log_odds[:25].max() < cut < np.sort(log_odds[27:]).min()
    # the plain 5 % quantiles on the same parts: the second-lowest defect drags the cut among the good parts
    plain = (np.quantile(log_odds[25:], 0.05) + np.quantile(log_odds[:25], 0.95)) / 2
    assert plain < log_odds[:25].max()


def test_thresholds_from_out_of_fold_scores_are_read_on_the_outer_models_test_fold():
    """Results 13.4's table: each rule fitted on the carve and on the pooled out-of-fold scores,
    both applied to the same test scores; a carve of one odd good family pulls its threshold up
    and lets defects escape that the out-of-fold fit, from many families, keeps."""
    from ceod.experiments.operating import RULES, cross_fitted

    def split(log_odds, labels, families):
        log_odds = np.asarray(log_odds, float)
        return {"p_def": (1 / (1 + np.exp(-log_odds))).tolist(), "log_odds": log_odds.tolist(),
                "label": list(labels), "family": list(families)}

    rng = np.random.default_rng(0)
    ok_fam = [f"ok{i % 10}" for i in range(200)]
    def_fam = [f"def{i % 20}" for i in range(200)]
    test = split(np.r_[rng.normal(-4, 1, 200), rng.normal(3, 1, 200)], [0] * 200 + [1] * 200, ok_fam + def_fam)
    oof = split(np.r_[rng.normal(-4, 1, 200), rng.normal(3, 1, 200)], [0] * 200 + [1] * 200, ok_fam + def_fam)
    carve = split(np.r_[rng.normal(2, 0.5, 40), rng.normal(6, 1, 40)], [0] * 40 + [1] * 40,
                  ["odd"] * 40 + def_fam[:40])  # one good family the model scores near the defects
    [row] = cross_fitted([{"variant": "ce", "fold": 0, "splits": {"val": carve, "test": test}}],
                         [{"variant": "ce", "fold": 0, "inner_train_seconds": [1.0, 2.0, 3.0], "splits": {"oof": oof}}])
    fits = row["rules"]["quantile-midpoint"]
    lo = np.asarray(oof["log_odds"])
    assert fits["oof"]["threshold"] == pytest.approx(RULES["quantile-midpoint"](
        np.asarray(oof["p_def"]), lo, np.asarray(oof["label"]), None))
    assert fits["carve"]["escape_rate"] > 0.5 > 0.05 > fits["oof"]["escape_rate"]
    assert row["oof_families"] == {"ok": 10, "def": 20} and row["carve_families"] == {"ok": 1, "def": 20}
    with pytest.raises(SystemExit, match="no outer run"):
        cross_fitted([], [{"variant": "ce", "fold": 1, "splits": {"oof": oof}}])

def test_operating_points_say_n_a_with_the_count_where_too_few_defects_resolve_a_rate():
    rng = np.random.default_rng(1)
    labels = np.r_[np.zeros(300), np.ones(150)].astype(int)
    scores = np.r_[rng.uniform(0, 0.6, 300), rng.uniform(0.4, 1, 150)]
    families = np.r_[np.arange(300) // 30, 100 + np.arange(150) // 10]
    op = operating_points(scores, labels, 0.5, families, bootstrap=200)
    assert min_defects_for(0.01) == 100 and min_defects_for(0.001) == 1000
    assert op["at_escape"]["0.01"]["available"] and op["at_escape"]["0.01"]["escapes"] <= 1
    assert not op["at_escape"]["0.001"]["available"]
    assert "150 defects, 1000 needed" in op["at_escape"]["0.001"]["note"]
    shipped = op["shipped"]
    low, high = shipped["escape_rate_ci95"]
    assert low <= shipped["escape_rate"] <= high and op["families"] == 25


def test_a_family_bootstrap_is_wider_than_a_part_bootstrap_when_families_differ():
    """Parts of one family move together: the interval must see 10 families, not 1,000 parts."""
    rng = np.random.default_rng(2)
    offsets = rng.normal(0, 0.15, 10)  # each good family sits at its own score level
    ok = np.concatenate([np.clip(0.3 + o + rng.normal(0, 0.02, 100), 0, 1) for o in offsets])
    labels = np.r_[np.zeros(1000), np.ones(200)].astype(int)
    scores = np.r_[ok, rng.uniform(0.7, 1, 200)]
    families = np.r_[np.repeat(np.arange(10), 100), 10 + np.arange(200)]
    by_family = operating_points(scores, labels, 0.45, families, bootstrap=300)["shipped"]["false_reject_rate_ci95"]
    by_part = operating_points(scores, labels, 0.45, None, bootstrap=300)["shipped"]["false_reject_rate_ci95"]
    assert by_family[1] - by_family[0] > 3 * (by_part[1] - by_part[0])


@pytest.fixture(scope="module")
def labelled_parts(tiny_dataset, tmp_path_factory):
    """A labels CSV of 24+ parts per class from the synthetic line, paths relative to the CSV."""
    rows = list(csv.DictReader((tiny_dataset / "manifest.csv").open()))
    path = tiny_dataset.parent / "checked.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label"])
        for r in rows:
            if r["split"] in ("train", "val"):
                w.writerow([f"ds/{r['image']}", r["label"]])
    return path


def _props(path):
    import onnx
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_the_exported_model_carries_where_its_threshold_came_from(exported):
    from ceod.classifier.config import ClassifierConfig
    from ceod.contracts.config import load_config
    fit = json.loads(_props(exported["classifier"])["ceod.threshold_fit"])
    packaged = load_config(ClassifierConfig, None, "classifier.yaml").threshold.mode
    assert fit["mode"] == packaged == "quantile" and fit["fitted_on"] == "validation carve"
    assert fit["parts"] == {"ok": 8, "def": 8} and fit["families"]["ok"] >= 1
    assert 0 <= fit["escape_rate"] <= 1 and 0 <= fit["false_reject_rate"] <= 1


def test_calibrate_writes_a_new_model_with_the_new_threshold_and_never_edits_the_input(
        exported, labelled_parts, tmp_path):
    model = exported["classifier"]
    before = hashlib.sha256(model.read_bytes()).hexdigest()
    out = tmp_path / "recalibrated.onnx"
    r = run_ceod_on_a_line_pc(["calibrate", "--model", model, "--labels", labelled_parts, "--out", out,
                               "--mode", "balanced"])
    assert r.returncode == 0, r.stderr
    assert hashlib.sha256(model.read_bytes()).hexdigest() == before
    assert "before" in r.stdout and "after" in r.stdout and "false rejects" in r.stdout
    props = _props(out)
    fit = json.loads(props["ceod.threshold_fit"])
    assert fit["mode"] == "balanced" and fit["fitted_on"].startswith("calibration labels checked.csv")
    assert fit["previous"]["threshold"] == pytest.approx(json.loads(_props(model)["ceod.threshold"]))
    # the threshold written is the balanced rule on these parts, scored as the line scores them
    from ceod.data.imageio import read_image
    from ceod.export.runtime import OnnxModel, classify
    rows = list(csv.DictReader(labelled_parts.open()))
    runtime = OnnxModel(model, "cpu")
    scores = classify(runtime, runtime.run([read_image(labelled_parts.parent / r["path"]) for r in rows]))[0]
    labels = np.array([r["label"] == "def" for r in rows], int)
    assert json.loads(props["ceod.threshold"]) == pytest.approx(calibrate_threshold(scores, labels, "balanced"))
    assert OnnxModel(out, "cpu").info.threshold == pytest.approx(json.loads(props["ceod.threshold"]))
    # a second run never overwrites what it wrote, nor the input
    again = run_ceod_on_a_line_pc(["calibrate", "--model", model, "--labels", labelled_parts, "--out", out])
    assert again.returncode == 2 and "exists" in again.stderr
    same = run_ceod_on_a_line_pc(["calibrate", "--model", model, "--labels", labelled_parts, "--out", model])
    assert same.returncode == 2 and "never edits the input" in same.stderr
    assert hashlib.sha256(model.read_bytes()).hexdigest() == before


def test_calibrate_refuses_in_one_line_when_a_class_has_too_few_parts(exported, labelled_parts, tmp_path):
    out = tmp_path / "never.onnx"
    r = run_ceod_on_a_line_pc(["calibrate", "--model", exported["classifier"], "--labels", labelled_parts,
                               "--out", out, "--mode", "escape", "--target-escape", "0.01"])
    assert r.returncode == 2 and "def parts cannot fix an escape rate of 1.00% (100 needed)" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not out.exists()
    few = tmp_path / "few.csv"
    few.write_text("\n".join(labelled_parts.read_text().splitlines()[:11]) + "\n")
    import shutil
    shutil.copy(few, labelled_parts.parent / "few.csv")
    r = run_ceod_on_a_line_pc(["calibrate", "--model", exported["classifier"], "--labels",
                               labelled_parts.parent / "few.csv", "--out", out, "--mode", "balanced"])
    assert r.returncode == 2 and "at least 20 of each class" in r.stderr and not out.exists()
    bad = labelled_parts.parent / "bad.csv"
    bad.write_text("path,label\nds/nowhere.png,ok\n")
    r = run_ceod_on_a_line_pc(["calibrate", "--model", exported["classifier"], "--labels", bad, "--out", out])
    assert r.returncode == 2 and "line 2" in r.stderr and "not found" in r.stderr


def test_calibrate_floor_is_chosen_on_validation_carves_and_test_scores_cannot_move_it():
    """Results 13.7's rule: the floor with the smallest mean gap on the carves wins; whatever the
    test folds hold, the choice stays."""
    from ceod.experiments.operating import FLOOR_CANDIDATES, choose_calibrate_floor

    def split(seed, odd):
        rng = np.random.default_rng(seed)
        log_odds = np.r_[rng.normal(-4, 1.5, 150), rng.normal(6, 1.5, 150)]
        log_odds[150:150 + odd] = rng.normal(-5, 1, odd)  # defects the model calls good
        return {"p_def": (1 / (1 + np.exp(-log_odds))).tolist(), "log_odds": log_odds.tolist(),
                "label": [0] * 150 + [1] * 150, "family": [str(i % 7) for i in range(300)]}

    records = [{"variant": "ce", "fold": f, "splits": {"val": split(f, 6), "test": split(10 + f, 0)}} for f in (0, 1)]
    result = choose_calibrate_floor(records)
    mean = result["mean_on_validation"]
    assert result["chosen"] in {str(k) for k in FLOOR_CANDIDATES}
    assert mean[result["chosen"]][0] <= min(v[0] for v in mean.values()) + 0.002
    assert mean["1"][0] > mean["5"][0]  # six odd defects among 150: two in a 25-part draw sink the 5 % cut
    other_tests = [{**r, "splits": {"val": r["splits"]["val"], "test": split(20 + r["fold"], 12)}} for r in records]
    assert choose_calibrate_floor(other_tests)["chosen"] == result["chosen"]
