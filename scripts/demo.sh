#!/usr/bin/env bash
# The whole pipeline on the shipped stories260K model:
# convert -> merge -> imatrix -> quantize -> perplexity + generation -> table.
# usage: scripts/demo.sh BUILD_DIR   (run by `make demo`)
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build/release}
OUT=build/demo
mkdir -p "$OUT"
MODEL=models/stories260K
EVAL=models/eval/tinystories-valid.txt
CALIB=calibration/groups_merged.txt
have() { [ -x "$B/smelt-$1" ]; }

echo "== convert $MODEL -> $OUT/stories260K-f16.gguf"
"$B/smelt-convert" "$MODEL" --outtype f16 --outfile "$OUT/stories260K-f16.gguf" --force --quiet

rows=("stories260K-f16.gguf")
if have quantize; then
  for q in Q8_0 Q6_K Q5_K_M Q4_K_M Q3_K_M; do
    echo "== quantize $q"
    if "$B/smelt-quantize" --force "$OUT/stories260K-f16.gguf" "$OUT/stories260K-$q.gguf" "$q" 2 > "$OUT/quantize-$q.log" 2>&1; then
      rows+=("stories260K-$q.gguf")
    else
      echo "   refused: $(tail -n 1 "$OUT/quantize-$q.log")"
    fi
  done
fi

printf '\n%-26s %10s %8s %10s\n' "file" "bytes" "BPW" "PPL"
for f in "${rows[@]}"; do
  bytes=$(stat -c %s "$OUT/$f")
  ppl="-"
  if have infer; then
    ppl=$("$B/smelt-infer" perplexity -m "$OUT/$f" -f "$EVAL" -c 128 -b 128 -t 2 2>/dev/null | awk '/Final estimate/ {print $5}')
  fi
  params=$("$B/smelt-dump" "$OUT/$f" --json | awk '/"shape"/ {getline a; getline b; n=a+0; if (b ~ /[0-9]/) n*=b+0; s+=n} END {print s}')
  bpw=$(awk -v b="$bytes" -v p="$params" 'BEGIN { printf "%.2f", b * 8 / p }')
  printf '%-26s %10s %8s %10s\n' "$f" "$bytes" "$bpw" "$ppl"
done
if have infer; then
  echo
  echo "== generate (greedy, 48 tokens) from the last quantized file"
  "$B/smelt-infer" generate -m "$OUT/${rows[-1]}" -p "Once upon a time" -n 48 --temp 0 -c 128
fi
