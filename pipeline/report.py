"""The demo's report.md: tables and pictures from facts.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _rel(out: Path, p: str | Path) -> str:
    try:
        return str(Path(p).resolve().relative_to(out.resolve()))
    except ValueError:
        return str(p)


def _operating_point_table(by_seed: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """Escapes (defects called ok) and false rejects (good parts called def) at the threshold each
    model ships with, and the false rejects its ranking allows at a fixed escape rate."""
    def rate(v: float | None, ci: list[float] | None = None) -> str:
        text = "n/a" if v is None or v != v else f"{100 * v:.1f} %"
        return text + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")

    L = ["", "Operating points, in the line's terms (95 % intervals: bootstrap over the split's parts; "
         "n/a where the split has too few defects to resolve the rate):", "",
         "| model | seed | split | threshold | escapes | false rejects | false rejects at escape <= 1 % |",
         "|---|---|---|---|---|---|---|"]
    for seed, evals in by_seed.items():
        for name in ("plain", "ceod"):
            for split, r in evals[name].items():
                op = r.get("operating_point")
                if not op:
                    continue
                at, e1 = op["shipped"], op["at_escape"]["0.01"]
                L.append(f"| {'CE' if name == 'plain' else 'CEOD'} | {seed} | {split} | {at['threshold']:.3g} | "
                         f"{rate(at['escape_rate'], at['escape_rate_ci95'])} ({at['escapes']}/{at['defects']}) | "
                         f"{rate(at['false_reject_rate'], at['false_reject_rate_ci95'])} "
                         f"({at['false_rejects']}/{at['ok_parts']}) | "
                         f"{rate(e1['false_reject_rate']) if e1['available'] else e1['note']} |")
    return L


def loss_schedule(loss: dict[str, Any] | None, epochs: int | None = None) -> str:
    """How the AOI term came on in training, read from the loss config and epochs the run used (so
    the report cannot describe a schedule the run did not have)."""
    if not loss:
        return "its schedule not recorded"
    if loss.get("gate") == "ce":
        return (f"switched on once the running training cross-entropy fell below {loss['gate_ce']} "
                f"(or at {loss['gate_deadline']:.0%} of the run), then ramped in over {loss['ramp_steps']} steps")
    from ceod.classifier.loss import warmup_share
    if loss["warmup_epochs"] == 0:
        return "at full weight from the first epoch"
    full = loss["warmup_epochs"] + 1  # counted from 1: the first epoch at full weight
    if epochs is not None and warmup_share(epochs - 1, loss["warmup_epochs"]) < 1:
        return f"on from the first epoch, ramped in linearly and at {epochs}/{full} of its weight in the last epoch"
    return f"on from the first epoch, ramped in linearly to full weight at epoch {full}"


def loss_description(loss: dict[str, Any] | None, epochs: int | None = None) -> str:
    """What the AOI-guided run added to cross-entropy and when each term came on, read from the
    loss config it trained with (the consistency term follows the warm-up ramp, never the gate)."""
    if not loss:
        return "its loss not recorded"
    terms = []
    if loss.get("kind") in ("ceod", "rrr"):
        centred = "centred " if loss.get("centre") else ""
        what = (f"an AOI term on the {centred}Grad-CAM (w = {loss['weight']:g}, maps `{loss['target']}`, distance "
                f"`{loss['distance']}`)" if loss["kind"] == "ceod"
                else f"RRR's input-gradient penalty outside the AOI (lambda = {loss['weight']:g})")
        terms.append(f"{what}, {loss_schedule(loss, epochs)}")
    if float(loss.get("consistency_weight") or 0) > 0:
        terms.append(f"the consistency term (w = {loss['consistency_weight']:g}: the change of the logits when the "
                     f"outside of the AOI is replaced, on {loss['consistency_images']} images a batch), "
                     f"{loss_schedule({**loss, 'gate': 'none'}, epochs)}")
    return "cross-entropy + " + "; + ".join(terms) if terms else "cross-entropy alone"


def write_report(out: Path, f: dict[str, Any]) -> Path:
    from ceod.classifier.evaluate import REPLACEMENTS as flips, REPLACEMENTS_NOTE  # the audit's, in its order
    L: list[str] = []
    L += [f"# ceod demo report{' (quick)' if f['quick'] else ''}", "",
          f"Wall time **{f['wall_seconds']:.0f} s** on this machine, torch on **{f.get('cpu_capability', '?')}** "
          f"kernels with {f.get('torch_threads', '?')} thread(s) (an AVX2-only CPU trains about 4x slower than "
          f"an AVX-512 one). CEOD variant `{f['variant']}`, seed {f['seed']}. "
          "Every figure below was measured in this run; `facts.json` holds them all. The same seed, thread "
          "count and kernels give the same weights bit for bit; another thread count or CPU sums in "
          "another order.", ""]
    if f["quick"]:
        L += ["> **Quick mode** is a plumbing check: a 64 px line and a few epochs leave the classifiers "
              "under-trained, so its accuracy figures say nothing about CE vs CEOD. Run `ceod demo` (full) "
              "or `ceod experiment` for those.", ""]
    L += [
          "| stage | seconds |", "|---|---|"]
    L += [f"| {name} | {sec:.1f} |" for name, sec in f["stages"]]
    L += ["", "## 1. The synthetic line", "",
          f"{f['synth']['images']} images. Green: AOI; red boxes: defects (inside the AOI); yellow boxes: "
          "distractors on the belt (outside), correlated with `def` in train/val/test, independent in "
          "`test_shift`, reversed in `test_anti`.", "", f"![samples]({_rel(out, f['synth']['preview'])})", ""]
    seg, segt = f["segmenter"], f["segmenter_test"]
    L += ["## 2. AOI segmenter", "",
          f"Trained on {seg['train_images']} annotated images for {seg['best']['epoch'] + 1} epoch(s) "
          f"(best), {seg['train_seconds']:.0f} s. Validation IoU {seg['best']['val_iou']:.4f}; "
          f"**test IoU {segt['iou_mean']:.4f}**, Dice {segt['dice_mean']:.4f} (n={segt['n']}). "
          f"Predicted masks for all {f['predict_aoi']['rows']} images supervise the CEOD classifier.", "",
          f"Worst five test images (green: annotation, red: prediction): ![worst]({_rel(out, segt['overlay'])})", ""]
    L += ["## 3. Plain CNN (CE) vs CEOD", "", f"**{f['verdict']}**", "",
          f"CEOD here is `{f['variant']}`" + (" (configs/classifier.yaml as it ships)" if f["variant"] == "default"
                                             else "") + f": {loss_description(f.get('ceod_loss'), f.get('ceod_epochs'))}"
          "; CE is the same network and augmentation without those terms (and without BackgroundSwap). "
          "Balanced accuracy at the threshold calibrated on validation; `aoi_attention` = share of the "
          "Grad-CAM mass inside the AOI; flip = share of decisions that change when the outside of the AOI "
          f"is replaced ({REPLACEMENTS_NOTE}).", "",
          "| model | seed | split | balanced acc. | AUROC | aoi_attention | "
          + " | ".join(f"flip {k}" for k in flips) + " |", "|---|---|---|---|---|---|" + "---|" * len(flips)]
    for seed, evals in f["evaluation_by_seed"].items():
        for name in ("plain", "ceod"):
            for split, r in evals[name].items():
                L.append(f"| {'CE' if name == 'plain' else 'CEOD'} | {seed} | {split} | {r['balanced_accuracy']:.3f} | "
                         f"{r['auroc']:.3f} | {r['aoi_attention']:.3f} | "
                         + " | ".join(f"{r['flip'].get(k, float('nan')):.3f}" for k in flips) + " |")
    L += _operating_point_table(f["evaluation_by_seed"])
    L += ["", "Grad-CAM on the same `test_anti` images (top row CE, bottom row CEOD):", "",
          f"![gradcam]({_rel(out, f['gradcam_picture'])})", "", "Training curves:", ""]
    for name in ("plain", "ceod"):
        run = out / ("plain_ce" if name == "plain" else f"ceod_{f['variant']}")
        L.append(f"![{name} curves]({_rel(out, run / 'curves.png')})")
    tp, tc = f["train_plain"], f["train_ceod"]
    L += ["", f"Median training step (forward, loss, backward, update): CE {tp['step_ms_median']:.1f} ms, CEOD {tc['step_ms_median']:.1f} ms "
          f"(ratio {tc['step_ms_median'] / tp['step_ms_median']:.2f}).", ""]
    ex = f["export"]
    L += ["## 4. Export and line inspection", "",
          "| model | exporter | precision | max abs diff vs torch | decision agreement (decided) | within the margin (flipped) |",
          "|---|---|---|---|---|---|"]
    for name, r in ex.items():
        L.append(f"| {name} | {r['exporter']} | {r['precision']} | {r['max_abs_diff']:.2e} | "
                 f"{r['decision_agreement']:.6f} ({r.get('decided', '?')}) | {r.get('within_margin', '?')} "
                 f"({r.get('within_margin_flipped', '?')}) |")
    s = f["inspect"]
    L += ["", f"`ceod inspect` over `test_shift` (ONNX, batch 8): {s['records']} records, {s['ok']} ok, {s['def']} def, "
          f"{s['errors']} errors; latency p50 {s['p50_ms']:.2f} ms, p95 {s['p95_ms']:.2f} ms, p99 {s['p99_ms']:.2f} ms; "
          f"{s['throughput_per_s']:.1f} images/s; providers {s['providers']}. Log: `inspect.jsonl`, overlays in `overlays/`.", ""]
    if "watch" in f:
        w = f["watch"]
        alarms = "; ".join(f"**{a['kind']}** ({a['statistic']}) at frame {a['frame']}, since frame {a['since_frame']}, "
                           f"{a['shift_sigma']:+.1f} sigma" for a in w["alarms"]) or "none"
        L += [f"`ceod inspect --watch` on a line whose lamp dims at frame {w['stream']['at']} of "
              f"{w['stream']['frames']}: {w['drift_alarms']} drift alarm(s): {alarms}. Sampled "
              f"{w['sampling']['sampled']} frames for the segmenter (the watch busy "
              f"{w['sampling']['watch_busy_share']} of the run). Charts: `watch/watch.html`.", ""]
    L += ["## 5. Benchmark", "", (out / "bench" / "bench.md").read_text().split("\n", 2)[2], "",
          "![latency](bench/bench.png)", ""]
    path = out / "report.md"
    path.write_text("\n".join(L))
    return path
