#!/usr/bin/env bash
# Install ceod the way users do, outside this checkout, and run it from there:
#   1. build the wheel; install it NON-editable with [train] into a fresh venv; synth, train, export;
#   2. a second fresh venv with the base install only (the line PC: no torch) runs `ceod inspect`.
# Prints what it checks; exits non-zero on the first failure. Used by .ci/run after `make test`.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ceod-install-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
PY=${PYTHON:-python3}
export NO_ALBUMENTATIONS_UPDATE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
step() { echo "== install check: $*"; }
# pip's output without its warnings; a failed install stops the check with pip's own words
pip_install() {
    local log="$WORK/pip.log"
    if ! "$@" > "$log" 2>&1; then cat "$log"; echo "pip install failed: $*"; exit 1; fi
    grep -v -i "warning" "$log" || true
}
free_disk() { df -h --output=avail "$WORK" | tail -1 | tr -d ' '; }

step "build the wheel"
"$PY" -m pip wheel -q --no-deps -w "$WORK/dist" "$REPO" 2>&1 | grep -v -i "warning\|deprecat\|^\s*$\|!!\|\*\*\*" || true
WHEEL=$(ls "$WORK"/dist/ceod-*.whl)
echo "   $(basename "$WHEEL")"
LISTING=$(unzip -Z1 "$WHEEL")  # read once: `unzip | grep -q` dies of SIGPIPE under pipefail when grep stops early
TOP=$(grep -v "dist-info" <<< "$LISTING" | cut -d/ -f1 | sort -u | tr '\n' ' ')
echo "   top-level names in the wheel: $TOP"
[ "$TOP" = "ceod " ] || { echo "the wheel must expose only 'ceod', it has: $TOP"; exit 1; }
grep -q "ceod/configs/classifier.yaml" <<< "$LISTING" || { echo "configs are not in the wheel"; exit 1; }

step "training workstation: fresh venv, pip install 'ceod[train]' (non-editable); $(free_disk) free in $WORK"
"$PY" -m venv "$WORK/train"
# a [train] venv is ~7 GB (torch's CUDA libraries); no cache copy of the wheels beside it
pip_install "$WORK/train/bin/pip" install -q --no-cache-dir "$WHEEL[train]"
cd "$WORK"  # nothing from the checkout is importable from here
T="$WORK/train/bin/ceod"
printf 'counts: {train: 64, val: 40, test: 16, test_shift: 16, test_anti: 16}\n' > synth.yaml
"$T" synth line data --preset tiny --seed 0 --config synth.yaml  # 40 val images: enough for the watch's profile
# the packaged default: EfficientNet-Lite0 with the ImageNet weights from the wheel [train] installed
"$T" train-classifier --data data --out run --epochs 1 --input-size 96 --max-train-images 48 --loss ceod
"$WORK/train/bin/python" -c "
import json; m = json.load(open('run/metrics.json'))['config']['model']
assert m['backbone'] == 'efficientnet_lite0' and m['pretrained'], m
print('   trained the pretrained', m['backbone'], 'from the installed weights wheel')"
"$T" train-segmenter --data data --out seg --epochs 1 --input-size 64
"$T" export --model seg --out segmenter.onnx
"$T" export --model run --out model.onnx --heatmap --features --segmenter segmenter.onnx
# The same exports with torch's sums done as other CPUs do them: a parity rule that depends on
# the instruction set refuses one of these (scripts/kernels.sh).
source "$REPO/scripts/kernels.sh"
forced_start=$(date +%s)
for kernels in "${FORCED_KERNELS[@]}"; do
    echo "   export again on forced-down kernels: $kernels"
    env $kernels "$T" export --model seg --out forced-segmenter.onnx | sed 's/^/   /'
    env $kernels "$T" export --model run --out forced-model.onnx --heatmap --features --segmenter segmenter.onnx \
        | sed 's/^/   /'
done
echo "   exports on forced-down kernels: $(( $(date +%s) - forced_start )) s"
"$WORK/train/bin/python" - <<'PY'
import ceod.classifier.train, ceod.contracts.config
assert "site-packages" in ceod.classifier.train.__file__, ceod.classifier.train.__file__
print("   ceod.classifier from", ceod.classifier.train.__file__)
print("   packaged configs at", ceod.contracts.config.CONFIG_DIR)
PY

# The line PC's venv needs none of it: the training venv goes before the second one is made, so the
# check needs the disk of one [train] venv, not two (CI machines have run out between them).
rm -rf "$WORK/train"
step "line PC: fresh venv, pip install ceod (base only: no torch); $(free_disk) free in $WORK"
"$PY" -m venv "$WORK/line"
pip_install "$WORK/line/bin/pip" install -q --no-cache-dir "$WHEEL"
if "$WORK/line/bin/python" -c "import torch" 2>/dev/null; then echo "torch must not be installed on the line PC"; exit 1; fi
"$WORK/line/bin/ceod" inspect --model model.onnx --source 'data/images/test/*' --batch 4 > records.jsonl
N_FILES=$(find data/images/test -type f | wc -l)
N_RECORDS=$(wc -l < records.jsonl)
echo "   $N_RECORDS records on stdout for $N_FILES images"
[ "$N_RECORDS" -eq "$N_FILES" ] || exit 1
"$WORK/line/bin/python" -c "
import json, sys
rows = [json.loads(line) for line in open('records.jsonl')]
assert all(r['status'] == 'ok' and r['verdict'] in ('ok', 'def') for r in rows), rows[:3]
"
"$WORK/line/bin/ceod" inspect --model model.onnx --source 'data/images/test/*' --watch segmenter.onnx \
    --log watched.jsonl --quiet
"$WORK/line/bin/python" -c "
import json; r = json.load(open('watched_watch/watch.json'))
assert r['frames'] > 0 and r['sampling']['sampled'] > 0, r['sampling']
print('   drift watch without torch:', r['frames'], 'frames,', r['sampling']['sampled'], 'sampled,', len(r['alarms']), 'alarms')"
step "passed"
