"""`ceod experiment`: CE vs CEOD variants over seeds, with the audit (ceod.experiments)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ceod.contracts.errors import CeodError
from ceod.pipeline.commands.common import key_values


def register(sub: argparse._SubParsersAction) -> None:
    x = sub.add_parser("experiment", help="CE vs CEOD variants over seeds, with audit (docs/results.md)")
    x.add_argument("--out", default="runs/experiment", help="results folder; finished runs in it are reused")
    x.add_argument("--datasets", default="synthetic",
                   help="comma-separated presets of configs/experiments.yaml: synthetic, casting (needs --casting), "
                        "casting-cv (grouped 3-fold CV over families: seed s runs fold s mod 3, so 0,1,2 are the folds and "
                        "3,4,5 a second run of each; needs --casting), "
                        "decoy-mnist, decoy-mnist-112")
    x.add_argument("--variants", default="ce,ceod-paper,ceod-outside,ceod-signed,ceod-contrast",
                   help="comma-separated VARIANT or VARIANT@STRENGTH (configs/variants.yaml)")
    x.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    x.add_argument("--epochs", type=int, help="override every preset's epoch count")
    x.add_argument("--sweep", action="append", metavar="FAMILY=S1,S2,...",
                   help="train FAMILY at each strength (loss.weight) on the first seed, keep the largest whose "
                        "validation score stays within --tolerance of CE's, then run it on every seed (repeatable)")
    x.add_argument("--tolerance", type=float, default=0.01, help="the --sweep rule's allowed validation drop")
    x.add_argument("--casting", help="the casting dataset folder (needed by --datasets casting)")
    x.set_defaults(handler=run)


def run(a: argparse.Namespace) -> int:
    from ceod.experiments.runner import run_experiment
    sweeps = {}
    for family, values in key_values(a.sweep, "--sweep", "FAMILY=S1,S2,... e.g. rrr=1,10,100",
                                     empty_value=False).items():
        try:
            sweeps[family] = [float(v) for v in values.split(",") if v]
        except ValueError:
            raise CeodError(f"--sweep {family}={values}: the strengths must be numbers, e.g. {family}=1,10,100") from None
        if not sweeps[family]:
            raise CeodError(f"--sweep {family}={values}: give at least one strength, e.g. {family}=1,10,100")
    run_experiment(Path(a.out), a.datasets.split(","), [v for v in a.variants.split(",") if v],
                   [int(s) for s in a.seeds.split(",")], epochs=a.epochs, sweeps=sweeps,
                   casting=Path(a.casting) if a.casting else None, tolerance=a.tolerance)
    return 0
