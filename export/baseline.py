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


def baseline_model(model_path: str | Path, segmenter_path: str | Path, log_path: str | Path, sources: list[str],
                   judged_by: set[str], out: str | Path, frames: int = 256, provider: str = "cpu") -> BaselineResult:
    """A copy of `model_path` whose reference profile is built from the first `frames` of
    `sources` (the judged inputs of the run logged in `log_path`, in order), keeping the exported
    feature whitening. Refuses a log judged by another model; never modifies the input."""
    model_path, log_path, out = Path(model_path), Path(log_path), Path(out)
    check_new_model_path(model_path, out)
    if frames < MIN_FRAMES:
        raise CeodError(f"--frames {frames}: a baseline needs at least {MIN_FRAMES} frames")
    model = OnnxModel(model_path, provider)
    if judged_by != {model.identity}:
        raise CeodError(f"--log {log_path} was judged by {', '.join(sorted(judged_by))}, not --model "
                        f"{model.identity}: baseline the model that ran the commissioning shift")
    picked = sources[:frames]
    if len(picked) < MIN_FRAMES:
        raise CeodError(f"--log {log_path} holds {len(picked)} judged inputs; a baseline needs at least {MIN_FRAMES}")
    missing = [s for s in picked if not Path(s).is_file()]
    if missing:
        raise CeodError(f"{len(missing)} of the {len(picked)} baseline inputs are not files here (first: {missing[0]}); "
                        "the baseline reads the images again")
    segmenter = OnnxModel(segmenter_path, provider)
    if segmenter.info.kind != "segmenter":
        raise CeodError(f"--segmenter {segmenter_path} is a {segmenter.info.kind} model; give the exported segmenter")
    old, whitening = read_profile(model.info.raw, str(model_path))
    profile, _ = build_profile(model_outputs(model), read_frames(((s, None) for s in picked), segmenter),
                               f"line baseline, segmenter {Path(segmenter_path).name}", model.info.input_size,
                               whitening=whitening)
    provenance = {"log": log_path.name, "sha256": hashlib.sha256(log_path.read_bytes()).hexdigest()[:16],
                  "frames": profile["images"],
                  "previous": {k: old[k] for k in ("images", "aoi_source", "baseline") if k in old}}
    profile["baseline"] = provenance
    entries = {f"{PREFIX}{key}": value for key, value in to_props(profile, None).items()}
    write_model_copy(model_path, entries, out)
    means = {name: (old["statistics"][name]["mean"], s["mean"]) for name, s in profile["statistics"].items()
             if name in old["statistics"]}
    return BaselineResult(out, provenance, {k: v[0] for k, v in means.items()}, {k: v[1] for k, v in means.items()},
                          profile_summary(profile, model.info.outputs))


def provenance_line(result: BaselineResult) -> str:
    p = result.provenance
    return (f"reference rebuilt from {p['frames']} frames of {p['log']} (sha256 {p['sha256']}); it was "
            f"{p['previous'].get('images', '?')} images, {p['previous'].get('aoi_source', '?')}")


