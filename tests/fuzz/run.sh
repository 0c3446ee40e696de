#!/usr/bin/env bash
# Runs each libFuzzer target for FUZZ_SECONDS on a corpus seeded from
# tests/fuzz/corpus/<name>/ and the shared files listed in seeds.txt.
# Findings are written to build/fuzz/findings/<name>/; any crash fails.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${FUZZ_SECONDS:-60}
SHARED=${SHARED:-../shared}
status=0
for bin in "$@"; do
  name=$(basename "$bin"); name=${name#fuzz_}
  corpus=build/fuzz/corpus/$name
  findings=build/fuzz/findings/$name
  mkdir -p "$corpus" "$findings"
  [ -d "tests/fuzz/corpus/$name" ] && cp -n tests/fuzz/corpus/"$name"/* "$corpus"/ 2>/dev/null || true
  # seeds.txt: lines "<target> <path relative to SHARED>"
  while read -r t p; do
    [ "$t" = "$name" ] || continue
    for f in $SHARED/$p; do [ -f "$f" ] && cp -n "$f" "$corpus/$(echo "$p$(basename "$f")" | tr '/' '_')" 2>/dev/null || true; done
  done < tests/fuzz/seeds.txt
  dict=(); [ -f "tests/fuzz/$name.dict" ] && dict=(-dict="tests/fuzz/$name.dict")
  echo "== fuzz $name for ${SECS}s"
  if ! "$bin" "$corpus" "${dict[@]}" -max_total_time="$SECS" -max_len=65536 -rss_limit_mb=2048 \
        -artifact_prefix="$findings/" -print_final_stats=1 > "build/fuzz/$name.log" 2>&1; then
    echo "fuzz $name: CRASH — see build/fuzz/$name.log and $findings/"; tail -n 30 "build/fuzz/$name.log"; status=1
  fi
  grep -E "stat::number_of_executed_units|Done [0-9]+ runs" "build/fuzz/$name.log" | tail -n 2 || true
done
exit $status
