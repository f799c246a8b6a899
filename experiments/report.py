"""The markdown table an experiment writes per dataset (mean +- std over seeds)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ceod.classifier.evaluate import REPLACEMENTS, REPLACEMENTS_NOTE
from ceod.experiments.datasets import DatasetSpec


def _ms(values: list[float]) -> str:
    v = np.asarray(values, float)
    return f"{np.nanmean(v):.3f} ± {np.nanstd(v):.3f}"


def summarise(spec: DatasetSpec, results: list[dict[str, Any]], choices: dict[str, Any] | None = None,
              tolerance: float = 0.01) -> str:
    """Markdown: an accuracy overview across test splits, the strength choices, and per split
    every figure (mean ± std over seeds)."""
    lines = [f"### {spec.name} (`{spec.data.name}`, split column `{spec.split_column}`)", ""]
    variants = list(dict.fromkeys(r["variant"] for r in results))
    seeds = sorted({r["seed"] for r in results})
    first = spec.test_splits[0]
    lines += ["Accuracy per test split and the decision flip rate on "
              f"`{first}` when the outside of the AOI is swapped (mean ± std over seeds {seeds}):", "",
              "| variant | " + " | ".join(spec.test_splits) + f" | flip swap ({first}) | step ms (median, shared CPU) |",
              "|---|" + "---|" * (len(spec.test_splits) + 2)]
    for v in variants:
        rv = [r for r in results if r["variant"] == v]
        lines.append(f"| {v} | " + " | ".join(_ms([r["splits"][sp].get("accuracy", float("nan")) for r in rv])
                                              for sp in spec.test_splits)
                     + f" | {_ms([r['splits'][first]['flip']['swap'] for r in rv])} | "
                     + f"{np.nanmedian([r['step_ms_median'] or np.nan for r in rv]):.0f} |")
    lines.append("")
    for family, c in (choices or {}).items():
        key = [k for k in c["sweep"][0] if k.startswith("val_")][0]
        lines.append(f"Strength of `{family}` (seed {c['seed']}, rule: the largest whose {key} stays within "
                     f"{tolerance:g} of CE's): " + ", ".join(f"{r['strength']:g} → {r[key]:.4f}"
                                                              + ("" if r["within"] else " (out)") for r in c["sweep"])
                     + f"; **chosen {c['chosen']:g}**.")
    if choices:
        lines.append("")
    lines.append(f"Seeds: {seeds}. Mean ± std over seeds. Flip = fraction of decisions that change when the "
                 f"outside of the AOI is replaced ({REPLACEMENTS_NOTE}).")
    lines.append("")
    for split in spec.test_splits:
        lines += [f"**{split}**", "",
                  "| variant | balanced acc. | AUROC | aoi_attention | " + " | ".join(f"flip {k}" for k in REPLACEMENTS)
                  + " | bal. acc. after swap |", "|---|---|---|---|" + "---|" * len(REPLACEMENTS) + "---|"]
        for v in variants:
            rs = [r["splits"][split] for r in results if r["variant"] == v]
            lines.append(f"| {v} | {_ms([r['balanced_accuracy'] for r in rs])} | {_ms([r['auroc'] for r in rs])} | "
                         f"{_ms([r['aoi_attention'] for r in rs])} | "
                         + " | ".join(_ms([r['flip'].get(k, float("nan")) for r in rs]) for k in REPLACEMENTS)
                         + f" | {_ms([r['audit_balanced_accuracy']['swap'] for r in rs])} |")
        lines.append("")
    lines.append("Training cost is not compared here (runs share the machine); `ceod bench` measures CE vs CEOD "
                 "step time interleaved in one process.")
    return "\n".join(lines) + "\n"


def write_markdown(text: str, out: str | Path | None) -> None:
    """Write a table to `out` (when given), then print it: written first, so a closed stdout
    (`| head`) cannot lose the file."""
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)
    print(text)
