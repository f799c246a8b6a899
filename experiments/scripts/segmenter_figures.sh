#!/usr/bin/env bash
# The segmenter figures of docs/results.md: synthetic `small`, and casting (aoi_status=ok rows,
# split_grouped) against the number of annotated training images. CPU only; ~20 min on 2 cores.
set -euo pipefail
OUT=${1:-runs/segmenter-figures}
CEOD=${CEOD:-.venv/bin/ceod}
CASTING=${CASTING:-../shared/data/casting}
mkdir -p "$OUT"
[ -f "$OUT/small/manifest.csv" ] || $CEOD synth "$OUT/small" --preset small --seed 0
$CEOD train-segmenter --data "$OUT/small" --out "$OUT/seg-small" --epochs 10 --max-train-images 200 \
  --config configs/segmenter.yaml
$CEOD evaluate-segmenter --model "$OUT/seg-small" --data "$OUT/small" --split test > /dev/null
for n_epochs in "25 40" "100 25" "500 10"; do
  set -- $n_epochs
  $CEOD train-segmenter --data "$CASTING" --out "$OUT/casting-$1" --split-column split_grouped \
    --filter aoi_status=ok --max-train-images "$1" --epochs "$2" --config configs/segmenter-casting.yaml
  $CEOD evaluate-segmenter --model "$OUT/casting-$1" --data "$CASTING" --split test \
    --split-column split_grouped --filter aoi_status=ok > /dev/null
done
