"""The README's main job, quick form: it runs end to end and its report holds what it promises."""

import json
import re

import pytest


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from ceod.pipeline.demo import run_demo
    out = tmp_path_factory.mktemp("demo") / "quick"
    report = run_demo(out, quick=True)
    return out, report.read_text(), json.loads((out / "facts.json").read_text())


def test_report_sections_and_pictures_exist(demo):
    out, text, _ = demo
    for heading in ("The synthetic line", "AOI segmenter", "Plain CNN (CE) vs CEOD", "Export and line inspection",
                    "Benchmark"):
        assert heading in text
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(pictures) >= 6
    for rel in pictures:
        assert (out / rel).is_file(), rel


def test_report_figures_match_the_run(demo):
    out, text, facts = demo
    n_shift = sum(1 for line in (out / "data" / "manifest.csv").read_text().splitlines() if ",test_shift," in line)
    assert facts["inspect"]["records"] == n_shift == len((out / "inspect.jsonl").read_text().splitlines())
    assert all(r["passed"] for r in facts["export"].values())
    assert set(facts["evaluation"]) == {"plain", "ceod"}
    # the two classifiers really are CE and CEOD (one config must not leak into the other)
    assert facts["train_plain"]["loss"] == "ce" and facts["train_ceod"]["loss"].startswith("ceod(")
    assert facts["evaluation"]["plain"] != facts["evaluation"]["ceod"]
    assert set(facts["evaluation"]["ceod"]) == {"test", "test_shift", "test_anti"}
    ratios = facts["bench"]["latency"]["ratios"]
    assert [r["batch"] for r in ratios] == [1, 8] and all(r["ceod_over_plain_p50"] > 0 and r["same_model_noise_p50"] > 0 for r in ratios)
    assert f"{facts['inspect']['records']} records" in text
    # the one-sentence verdict is computed from this run's own figures and printed in the report
    assert facts["verdict"] in text and re.match(r"seed 0: CEOD (beat CE on \d of 3|did not beat CE)", facts["verdict"])
    plain = facts["evaluation"]["plain"]["test_anti"]["balanced_accuracy"]
    ceod = facts["evaluation"]["ceod"]["test_anti"]["balanced_accuracy"]
    assert f"{100 * (ceod - plain):+.1f} points" in facts["verdict"]
    assert (out / "bench" / "bench.json").is_file() and (out / "bench" / "bench.png").is_file()
    # the operating point of each model in the line's terms, from the same evaluation
    assert "Operating points, in the line's terms" in text
    for name in ("plain", "ceod"):
        at = facts["evaluation"][name]["test_anti"]["operating_point"]["shipped"]
        n_anti = sum(1 for line in (out / "data" / "manifest.csv").read_text().splitlines() if ",test_anti," in line)
        assert at["defects"] + at["ok_parts"] == n_anti and f"({at['escapes']}/{at['defects']})" in text
    assert "torch on **" in text and facts["cpu_capability"] in text
    # the report describes the schedule the CEOD run trained with, read from its config
    from ceod.pipeline.report import loss_description, loss_schedule
    schedule = loss_schedule(facts["ceod_loss"], facts["ceod_epochs"])
    assert facts["ceod_loss"]["gate"] in ("none", "ce") and schedule in text
    assert loss_description(facts["ceod_loss"], facts["ceod_epochs"]) in text
    assert ("switched on once" in schedule) == (facts["ceod_loss"]["gate"] == "ce")


def test_demo_never_deletes_a_folder_it_did_not_create(tmp_path):
    from ceod.contracts.errors import CeodError
    from ceod.pipeline.demo import MARKER, prepare_output
    user = tmp_path / "mine"
    user.mkdir()
    (user / "thesis.txt").write_text("years of work")
    with pytest.raises(CeodError, match="not made by `ceod demo`.*nothing was deleted"):
        prepare_output(user)
    assert (user / "thesis.txt").read_text() == "years of work"
    # through the CLI, as a user would type it: exit 2, one line, the file survives
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "ceod.pipeline.cli", "demo", "--quick", "--out", str(user)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert (user / "thesis.txt").is_file()
    # a folder the demo made is cleared and reused; an empty one is used as it is
    made = prepare_output(tmp_path / "made")
    (made / "old.txt").write_text("stale")
    again = prepare_output(made)
    assert not (again / "old.txt").exists() and (again / MARKER).is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert prepare_output(empty) == empty


def test_the_report_says_when_a_run_ended_before_the_term_reached_full_weight():
    from ceod.pipeline.report import loss_schedule
    loss = {"gate": "none", "warmup_epochs": 3}
    assert loss_schedule(loss, 6).endswith("full weight at epoch 4")
    assert loss_schedule(loss, 3).endswith("at 3/4 of its weight in the last epoch")
    assert loss_schedule({**loss, "warmup_epochs": 0}, 3) == "at full weight from the first epoch"  # no ramp
    assert "switched on once" in loss_schedule({"gate": "ce", "gate_ce": 0.3, "gate_deadline": 0.5, "ramp_steps": 50})


def test_the_report_names_every_term_the_guided_run_trained_with():
    from ceod.classifier.config import ClassifierConfig
    from ceod.contracts.config import load_config, to_dict
    from ceod.pipeline.report import loss_description
    loss = to_dict(load_config(ClassifierConfig, None, "classifier.yaml"))["loss"]
    aoi_only = loss_description({**loss, "kind": "ceod", "consistency_weight": 0.0}, 6)
    assert aoi_only.count(" + ") == 1 and "AOI term" in aoi_only and "consistency" not in aoi_only
    both = loss_description({**loss, "kind": "ceod", "consistency_weight": 1.0, "gate": "ce"}, 6)
    assert "AOI term" in both and "consistency term (w = 1" in both
    assert "switched on once" in both and both.endswith("full weight at epoch 4")  # the consistency term is not gated
    alone = loss_description({**loss, "kind": "ce", "consistency_weight": 1.0}, 3)
    assert "AOI term" not in alone and alone.endswith("at 3/4 of its weight in the last epoch")
    assert loss_description({**loss, "kind": "ce", "consistency_weight": 0.0}) == "cross-entropy alone"


def test_the_demo_compares_ce_with_a_classifier_that_learns_from_the_aoi():
    from ceod.contracts.errors import CeodError
    from ceod.pipeline.demo import check_demo_variant
    for variant in ("default", "ceod-paper", "ce-cf", "ce-bgswap", "rrr", "default-cf@0.3"):
        check_demo_variant(variant)
    for variant in ("ce", "ce-os16", "ce-cf@0", "no-such-variant"):  # CE under another name, or nothing
        with pytest.raises(CeodError, match="learns from the AOI.*ce-cf"):
            check_demo_variant(variant)
