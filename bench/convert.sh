#!/usr/bin/env bash
# Convert throughput and peak memory on a generated ~1.1B-parameter BF16
# checkpoint (TinyLlama's shape, random weights), beside a plain `cp` of the
# same bytes in the same run. Usage: bench/convert.sh [WORKDIR] (default
# bench/work). MODE=release by default; needs ~7 GB of disk.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${MODE:-release}
BUILD=${BUILD:-build/$MODE}
WORK=${1:-bench/work}
SHARED=${SHARED:-../shared}
[ -n "${NO_MAKE:-}" ] || make -s MODE="$MODE" bench >/dev/null
mkdir -p "$WORK"
MODEL="$WORK/tinyllama-shape-bf16"
if [ ! -f "$MODEL/config.json" ]; then
  echo "generating $MODEL ..."
  "$BUILD/bench/gen_model" "$MODEL" models/stories260K/tokenizer.model --dtype bf16 --shard-mb 1000
fi
bytes=$(cat "$MODEL"/*.safetensors | wc -c)
sync
# warm the page cache for both runs alike
cat "$MODEL"/*.safetensors > /dev/null

t0=$(date +%s.%N)
cat "$MODEL"/*.safetensors > "$WORK/copy.bin"; sync
t1=$(date +%s.%N)
rm -f "$WORK/copy.bin"
cat "$MODEL"/*.safetensors > /dev/null

/usr/bin/time -v -o "$WORK/convert.time" "$BUILD/smelt-convert" "$MODEL" --outtype f16 --outfile "$WORK/convert-f16.gguf" --force --quiet
sync
t2=$(date +%s.%N)
out_bytes=$(stat -c %s "$WORK/convert-f16.gguf")
rss_kb=$(awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print $2}' "$WORK/convert.time")
wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$WORK/convert.time")
largest=$($BUILD/smelt-dump "$MODEL" --json | awk -F': ' '/"bytes"/ {gsub(/[ ,]/,"",$2); if ($2>m) m=$2} END {print m}')
python_free_calc() { awk "BEGIN { printf \"%.1f\", $1 }"; }
cp_s=$(python_free_calc "$t1 - $t0")
conv_s=$(python_free_calc "$t2 - $t1")
echo
echo "input: $bytes bytes BF16 safetensors ($MODEL), output: $out_bytes bytes F16 GGUF"
printf "%-22s %10s %12s\n" "job" "seconds" "MB/s (input)"
printf "%-22s %10s %12s\n" "cp (same bytes)" "$cp_s" "$(python_free_calc "$bytes / 1e6 / $cp_s")"
printf "%-22s %10s %12s\n" "smelt-convert f16" "$conv_s" "$(python_free_calc "$bytes / 1e6 / $conv_s")"
echo "convert/cp time ratio: $(python_free_calc "$conv_s / $cp_s")"
echo "peak RSS (/usr/bin/time -v, mapped pages included): $((rss_kb / 1024)) MiB; largest tensor: $((largest / 1048576)) MiB (BF16)"
