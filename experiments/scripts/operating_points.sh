#!/usr/bin/env bash
# Issue 28's runs: CE and the packaged default on casting's grouped 3 folds (the casting-cv preset),
# with every validation and test score written for the threshold rules (operating_points.py).
# Two workers, one thread each, share $OUT; finished runs and score files are reused, so
# rerunning resumes. Then the tables: docs/experiments/operating-point/.
set -euo pipefail
CASTING=${CASTING:-../shared/data/casting}
OUT=${OUT:-runs/op}
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT"
export OMP_NUM_THREADS=1 NO_ALBUMENTATIONS_UPDATE=1
run() { $PY experiments/scripts/operating_points.py --casting "$CASTING" --out "$OUT" "$@"; }
run --folds 0,1,2 --variants ce,default > "$OUT/worker-a.log" 2>&1 &
sleep 30  # let the first worker write the folds
run --folds 2,1,0 --variants default,ce > "$OUT/worker-b.log" 2>&1 &
wait
$PY experiments/scripts/operating_points.py --out "$OUT" --analyse docs/experiments/operating-point
