#!/usr/bin/env bash
# Issue 14's casting matrix: grouped 3-fold CV over families (`--seeds` are the folds), 192 px,
# 6 epochs, the mean of the last 3 epochs' weights kept. Two workers, one thread each, share
# $OUT: finished runs are reused and a run is trained by whoever claims it, so rerunning the
# script resumes where it stopped. A run took 20-30 minutes on one core while 3-4 runs shared
# the 2 cores; the 6 runs of CE and the default loss about 90 minutes in all.
# BackgroundSwap alone was run on fold 2 only (VARIANTS=ce-bgswap with --seeds 2).
set -euo pipefail
CASTING=${CASTING:-../shared/data/casting}
OUT=${OUT:-runs/cv}
CEOD=${CEOD:-.venv/bin/ceod}
VARIANTS=${VARIANTS:-ce,ceod-signed-all}
REVERSED=$(echo "$VARIANTS" | tr ',' '\n' | tac | paste -sd,)
mkdir -p "$OUT"
export OMP_NUM_THREADS=1 NO_ALBUMENTATIONS_UPDATE=1
run() { $CEOD experiment --out "$OUT" --datasets casting-cv --casting "$CASTING" "$@"; }
run --seeds 0,1 --variants "$VARIANTS" > "$OUT/worker-a.log" 2>&1 &
sleep 20  # let the first worker write the folds
run --seeds 2,1 --variants "$REVERSED" > "$OUT/worker-b.log" 2>&1 &
wait
run --seeds 0,1,2 --variants "$VARIANTS" > "$OUT/summary.log" 2>&1
