#!/usr/bin/env bash
# Importance-matrix collection speed on a generated ~1.1B-parameter model
# (TinyLlama's shape, random weights, F16): tokens/s of smelt-imatrix over
# CHUNKS chunks of CTX tokens of the shipped calibration text; with LLAMA_BIN
# set, llama-imatrix on the same file and text in the same run, and the ratio.
# Usage: bench/imatrix.sh [WORKDIR]   (CTX=512 CHUNKS=4 THREADS=2 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${MODE:-release}
BUILD=${BUILD:-build/$MODE}
WORK=${1:-bench/work}
CTX=${CTX:-512}
CHUNKS=${CHUNKS:-4}
THREADS=${THREADS:-2}
[ -n "${NO_MAKE:-}" ] || make -s MODE="$MODE" bench >/dev/null
mkdir -p "$WORK"
MODEL="$WORK/tinyllama-shape-bf16"
F16="$WORK/convert-f16.gguf"
[ -f "$MODEL/config.json" ] || "$BUILD/bench/gen_model" "$MODEL" models/stories260K/tokenizer.model --dtype bf16 --shard-mb 1000
[ -f "$F16" ] || "$BUILD/smelt-convert" "$MODEL" --outtype f16 --outfile "$F16" --quiet
TEXT=calibration/groups_merged.txt
tokens=$((CTX * CHUNKS))
cat "$F16" > /dev/null
secs() { local t0 t1; t0=$(date +%s.%N); "$@" > "$WORK/imatrix-run.log" 2>&1; t1=$(date +%s.%N); awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }'; }
s=$(secs "$BUILD/smelt-imatrix" -m "$F16" -f "$TEXT" -o "$WORK/smelt-imatrix.dat" -c "$CTX" --chunks "$CHUNKS" -t "$THREADS" --no-ppl)
printf "%-16s %6s tokens in %8s s = %8s tokens/s (-c %s, %s chunks, -t %s)\n" smelt-imatrix "$tokens" "$s" \
  "$(awk -v n="$tokens" -v s="$s" 'BEGIN { printf "%.1f", n / s }')" "$CTX" "$CHUNKS" "$THREADS"
if [ -n "${LLAMA_BIN:-}" ]; then
  l=$(secs "$LLAMA_BIN/llama-imatrix" -m "$F16" -f "$TEXT" -o "$WORK/llama-imatrix.dat" -c "$CTX" --chunks "$CHUNKS" -t "$THREADS" --no-ppl)
  printf "%-16s %6s tokens in %8s s = %8s tokens/s   smelt/llama.cpp speed: %s\n" llama-imatrix "$tokens" "$l" \
    "$(awk -v n="$tokens" -v s="$l" 'BEGIN { printf "%.1f", n / s }')" "$(awk -v a="$s" -v b="$l" 'BEGIN { printf "%.2f", b / a }')"
fi
