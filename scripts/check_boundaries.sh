#!/usr/bin/env bash
# The import boundaries (.importlinter) and a small lint (ruff: unused imports, undefined names,
# bare excepts). import-linter analyses an installed package, and the checkout maps its
# top-level folders into `ceod` (pyproject's package-dir), so the check reads the wheel's files,
# unpacked into a temporary folder. Exits non-zero on the first failure. Used by .ci/run.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-"$REPO/.venv/bin/python"}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ceod-boundaries-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
echo "== ruff check (pyproject [tool.ruff])"
"$PY" -m ruff check "$REPO"
echo "== import-linter (.importlinter) on the wheel's layout"
"$PY" -m pip wheel -q --no-deps -w "$WORK/dist" "$REPO" >/dev/null 2>&1
"$PY" -c "import glob, sys, zipfile; zipfile.ZipFile(glob.glob(sys.argv[1] + '/dist/*.whl')[0]).extractall(sys.argv[1] + '/tree')" "$WORK"
cd "$WORK" && PYTHONPATH="$WORK/tree" "$(dirname "$PY")/lint-imports" "$REPO/.importlinter"  # from $WORK: the checkout's ceod/ would shadow the tree
