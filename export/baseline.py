"""`ceod baseline`: the drift watch's reference rebuilt from the line's own accepted frames (the
commissioning shift) and written into a copy of the model. Statistical process control's phase
I: a reference made from other families of parts cannot hold the families a line makes
(docs/results.md section 12.3). The same code as the export's profile; no torch."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ceod.contracts.errors import CeodError
from ceod.contracts.model import PREFIX
from ceod.export.model_file import check_new_model_path, write_model_copy
from ceod.export.reference import model_outputs, read_frames
from ceod.export.runtime import OnnxModel
from ceod.export.watch import build_profile, profile_summary, read_profile, to_props

MIN_FRAMES = 30  # as the export's reference: fewer values do not make a distribution


@dataclass
class BaselineResult:
    out: Path
    provenance: dict[str, Any]
    before: dict[str, float]  # statistic -> reference mean
    after: dict[str, float]
    summary: dict[str, Any]


def baseline_model(model: OnnxModel, segmenter: OnnxModel, log_path: str | Path, sources: list[str],
                   out: str | Path) -> BaselineResult:
    """A copy of `model` whose reference profile is built from `sources` (the first judged inputs
    of the run logged in `log_path`, in order, already checked to be that model's and readable
    here), keeping the exported feature whitening. Never modifies the input."""
    model_path, log_path, out = model.path, Path(log_path), Path(out)
    check_new_model_path(model_path, out)
    if len(sources) < MIN_FRAMES:
        raise CeodError(f"--log {log_path}: {len(sources)} judged inputs for the baseline; it needs at least "
                        f"{MIN_FRAMES} frames")
    old, whitening = read_profile(model.info.raw, str(model_path))
    profile, _ = build_profile(model_outputs(model), read_frames(((s, None) for s in sources), segmenter),
                               f"line baseline, segmenter {segmenter.path.name}", model.info.input_size,
                               whitening=whitening)
    provenance = {"log": log_path.name, "sha256": hashlib.sha256(log_path.read_bytes()).hexdigest()[:16],
                  "frames": profile["images"],
                  "previous": {k: old[k] for k in ("images", "aoi_source", "baseline") if k in old}}
    profile["baseline"] = provenance
    entries = {f"{PREFIX}{key}": value for key, value in to_props(profile, None).items()}
    write_model_copy(model_path, entries, out)
    before = {name: old["statistics"][name]["mean"] for name in profile["statistics"] if name in old["statistics"]}
    after = {name: profile["statistics"][name]["mean"] for name in before}
    return BaselineResult(out, provenance, before, after, profile_summary(profile, model.info.outputs))


def provenance_line(result: BaselineResult) -> str:
    p = result.provenance
    return (f"reference rebuilt from {p['frames']} frames of {p['log']} (sha256 {p['sha256']}); it was "
            f"{p['previous'].get('images', '?')} images, {p['previous'].get('aoi_source', '?')}")


