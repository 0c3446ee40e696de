#!/usr/bin/env bash
# The whole pipeline on the shipped stories260K model, as one recipe
# (recipe/demo.json): convert -> merge (a small demo LoRA) -> imatrix ->
# quantize (5 presets) -> compare (PPL, KLD, RAM, speed; a RAM budget), then a
# generation from the recommended file. Run by `make demo`.
# usage: scripts/demo.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build/release}
export PATH="$PWD/$B:$PATH"
"$B/smelt-build" recipe/demo.json
echo
cat build/demo/report.md
best=$(sed -n 's/^ *"recommended": "\(.*\)",$/\1/p' build/demo/report.json)
if [ -n "$best" ] && [ -f "build/demo/$best" ]; then
  echo
  echo "== smelt-infer generate -m build/demo/$best -p \"Once upon a time\" -n 48 --temp 0"
  "$B/smelt-infer" generate -m "build/demo/$best" -p "Once upon a time" -n 48 --temp 0 -c 128
fi
