#!/usr/bin/env bash
# Quantize throughput on a generated ~1.1B-parameter model (TinyLlama's shape,
# random weights): smelt-quantize Q4_K_M with 1 and 2 threads, reported as MB/s
# of F16 input; with LLAMA_BIN set (a llama.cpp build's bin directory), the
# same jobs by llama-quantize in the same run, interleaved, and the ratio.
# Usage: bench/quantize.sh [WORKDIR]   (default bench/work; ~9 GB of disk)
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${MODE:-release}
BUILD=${BUILD:-build/$MODE}
WORK=${1:-bench/work}
TYPE=${TYPE:-Q4_K_M}
[ -n "${NO_MAKE:-}" ] || make -s MODE="$MODE" bench >/dev/null
mkdir -p "$WORK"
MODEL="$WORK/tinyllama-shape-bf16"
F16="$WORK/convert-f16.gguf"
if [ ! -f "$MODEL/config.json" ]; then
  "$BUILD/bench/gen_model" "$MODEL" models/stories260K/tokenizer.model --dtype bf16 --shard-mb 1000
fi
[ -f "$F16" ] || "$BUILD/smelt-convert" "$MODEL" --outtype f16 --outfile "$F16" --quiet
in_mb=$(awk -v b="$(stat -c %s "$F16")" 'BEGIN { printf "%.1f", b / 1e6 }')
cat "$F16" > /dev/null   # warm the page cache for every run alike
run() { # label, command...
  local t0 t1
  t0=$(date +%s.%N); "${@:2}" > "$WORK/$1.log" 2>&1; t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }'
}
printf "%-28s %8s %10s %8s\n" "job ($TYPE, $in_mb MB F16 in)" "threads" "seconds" "MB/s"
for t in 1 2; do
  s=$(run "smelt-t$t" "$BUILD/smelt-quantize" --force --quiet "$F16" "$WORK/smelt-$TYPE.gguf" "$TYPE" "$t")
  printf "%-28s %8s %10s %8s\n" smelt-quantize "$t" "$s" "$(awk -v m="$in_mb" -v s="$s" 'BEGIN { printf "%.1f", m / s }')"
  if [ -n "${LLAMA_BIN:-}" ]; then
    l=$(run "llama-t$t" "$LLAMA_BIN/llama-quantize" "$F16" "$WORK/llama-$TYPE.gguf" "$TYPE" "$t")
    printf "%-28s %8s %10s %8s   smelt/llama.cpp speed: %s\n" llama-quantize "$t" "$l" \
      "$(awk -v m="$in_mb" -v s="$l" 'BEGIN { printf "%.1f", m / s }')" "$(awk -v a="$s" -v b="$l" 'BEGIN { printf "%.2f", b / a }')"
    cmp -s "$WORK/smelt-$TYPE.gguf" "$WORK/llama-$TYPE.gguf" && echo "  outputs byte-identical" || echo "  outputs DIFFER"
  fi
done
