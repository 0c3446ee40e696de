#!/usr/bin/env bash
# Runs each libFuzzer target given on the command line for FUZZ_SECONDS on a
# corpus seeded from tests/fuzz/corpus/<name>/ and the shared files listed in
# seeds.txt, with the target's dictionary (tests/fuzz/<name>.dict, json.dict for the
# JSON readers) and its
# max_len (table below: small inputs keep the exec rate high; each cap is
# above the largest seed that matters for that format).
# Findings go to $FUZZ_DIR/findings/<name>/; any crash, leak or timeout makes
# the script exit 1. Every run appends "<name> <execs> <seconds> <status>" to
# $FUZZ_DIR/execs.txt, so bursts can be summed: tests/fuzz/run.sh --total.
# Environment: FUZZ_SECONDS (60), SHARED (../shared), FUZZ_DIR (build/fuzz),
# FUZZ_NICE (10).
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${FUZZ_SECONDS:-60}
SHARED=${SHARED:-../shared}
FUZZ_DIR=${FUZZ_DIR:-build/fuzz}
NICE=${FUZZ_NICE:-10}
mkdir -p "$FUZZ_DIR"
if [ "${1:-}" = "--total" ]; then
  [ -f "$FUZZ_DIR/execs.txt" ] || { echo "no runs recorded in $FUZZ_DIR/execs.txt"; exit 0; }
  awk '{ e[$1] += $2; s[$1] += $3; r[$1]++; if ($4 != "ok") bad[$1]++ }
       END { for (k in e) printf "%-18s %12d execs %7d s %3d runs %d failed\n", k, e[k], s[k], r[k], bad[k] }' \
      "$FUZZ_DIR/execs.txt" | sort
  exit 0
fi
SHARED_ABS=$(cd "$SHARED" && pwd)
export SMELT_SHARED=$SHARED_ABS

max_len_for() {
  case "$1" in
    quantize) echo 65536 ;;
    model) echo 8192 ;;
    gguf|safetensors|lora_tensors|tok_load|st_index|tokenizer_config|spm|bpe|imatrix) echo 16384 ;;
    config|adapter_config) echo 4096 ;;
    # tokenizers: 256 bytes already form long words, runs of spaces and
    # several special tokens; at 1024 the ASan+cmp-traced tokenize,
    # detokenize and per-piece render ran ~700 inputs/s, at 256 ~4x that
    tok_spm|tok_bpe) echo 256 ;;
    *) echo 16384 ;;
  esac
}

status=0
for bin in "$@"; do
  [ -x "$bin" ] && [ -f "$bin" ] || { echo "skip $bin: not an executable"; continue; }
  name=$(basename "$bin"); name=${name#fuzz_}
  corpus=$FUZZ_DIR/corpus/$name
  findings=$FUZZ_DIR/findings/$name
  log=$FUZZ_DIR/$name.log
  mkdir -p "$corpus" "$findings"
  [ -d "tests/fuzz/corpus/$name" ] && cp -n tests/fuzz/corpus/"$name"/* "$corpus"/ 2>/dev/null || true
  [ -d "tests/fuzz/regressions/$name" ] && cp -n tests/fuzz/regressions/"$name"/* "$corpus"/ 2>/dev/null || true
  # seeds.txt: lines "<target> <path relative to SHARED>"
  while read -r t p; do
    [ "$t" = "$name" ] || continue
    for f in $SHARED_ABS/$p; do
      [ -f "$f" ] && cp -n "$f" "$corpus/seed_$(echo "$p" | tr '/' '_')" 2>/dev/null || true
    done
  done < tests/fuzz/seeds.txt
  dict=()
  case "$name" in config|tokenizer_config|adapter_config|bpe|st_index) dict=(-dict=tests/fuzz/json.dict) ;; esac
  [ -f "tests/fuzz/$name.dict" ] && dict=(-dict="tests/fuzz/$name.dict")
  echo "== fuzz $name for ${SECS}s (max_len $(max_len_for "$name"))"
  start=$(date +%s)
  rc=0
  nice -n "$NICE" "$bin" "$corpus" "${dict[@]}" -max_total_time="$SECS" -max_len="$(max_len_for "$name")" \
      -rss_limit_mb=2048 -timeout=20 -artifact_prefix="$findings/" -print_final_stats=1 > "$log" 2>&1 || rc=$?
  secs=$(( $(date +%s) - start ))
  execs=$(grep -E "stat::number_of_executed_units" "$log" | tail -n 1 | awk '{print $2}')
  st=ok; [ "$rc" = 0 ] || st=crash
  echo "$name ${execs:-0} $secs $st" >> "$FUZZ_DIR/execs.txt"
  if [ "$rc" != 0 ]; then
    echo "fuzz $name: CRASH (exit $rc) — see $log and $findings/"; tail -n 30 "$log"; status=1
  fi
  echo "   $name: ${execs:-0} execs in ${secs}s, $st"
done
exit $status
