#!/usr/bin/env bash
# Inference speed on a generated ~1.1B-parameter model (TinyLlama's shape,
# random weights): pp512 and tg128 tokens/s of `smelt-infer bench` for each
# of TYPES (F16 and smelt-quantize's Q8_0 Q4_K_M Q3_K_M Q5_K_M by default),
# RUNS runs of -r 1 each, median. With LLAMA_BIN set (a llama.cpp build's
# bin directory), llama-bench on the very same files in the same run,
# interleaved run by run (smelt 1, llama 1, smelt 2, ...), and the ratio
# smelt/llama.cpp (above 1: smelt is faster). Token generation reads every
# weight once per token, so tg is also shown as the bandwidth it streams
# (model bytes x tg t/s) and as a fraction of the read bandwidth bench/membw
# measures on this machine before and after the runs (the better of the two).
#
# Usage: bench/infer.sh [WORKDIR]   (or WORKDIR=...; default bench/work)
# Env: TYPES="F16 Q8_0 Q4_K_M Q3_K_M Q5_K_M" RUNS=3 THREADS=2 PP=512 TG=128
#      LLAMA_BIN=/path/to/llama.cpp/build/bin MODE=release BUILD=build/$MODE
#      NO_MAKE=1 (use the binaries already in BUILD)
# Files in WORKDIR: convert-f16.gguf (F16) and smelt-TYPE.gguf; each is made
# only when missing (gen_model -> smelt-convert -> smelt-quantize; ~6 GB of
# disk for all five). Output: one markdown table on stdout (progress on
# stderr), WORKDIR/infer-bench.csv (the table) and
# WORKDIR/infer-bench-runs.csv (every single run).
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${MODE:-release}
BUILD=${BUILD:-build/$MODE}
WORK=${1:-${WORKDIR:-bench/work}}
TYPES=${TYPES:-F16 Q8_0 Q4_K_M Q3_K_M Q5_K_M}
RUNS=${RUNS:-3}
THREADS=${THREADS:-2}
PP=${PP:-512}
TG=${TG:-128}
LLAMA_BIN=${LLAMA_BIN:-}
[ -n "${NO_MAKE:-}" ] || make -s MODE="$MODE" BUILD="$BUILD" bench >/dev/null
mkdir -p "$WORK"
MODEL="$WORK/tinyllama-shape-bf16"
F16="$WORK/convert-f16.gguf"

say() { echo "$*" >&2; }
die() { say "bench/infer.sh: $*"; exit 1; }

model_file() { # TYPE -> path of its GGUF in WORK
  if [ "$1" = F16 ]; then echo "$F16"; else echo "$WORK/smelt-$1.gguf"; fi
}

make_f16() {
  [ -f "$F16" ] && return 0
  if [ ! -f "$MODEL/config.json" ]; then
    say "generating $MODEL ..."
    "$BUILD/bench/gen_model" "$MODEL" models/stories260K/tokenizer.model --dtype bf16 --shard-mb 1000
  fi
  say "converting to $F16 ..."
  "$BUILD/smelt-convert" "$MODEL" --outtype f16 --outfile "$F16" --quiet
}

# A cell of smelt-infer bench's markdown table: the first number in column
# COL of the row whose "test" column is TEST. Columns are found by their
# header names, so added or reordered columns do not break it.
smelt_cell() { # LOG TEST COL
  awk -F'|' -v test="$2" -v col="$3" '
    function trim(s) { gsub(/^[ \t]+|[ \t]+$/, "", s); return s }
    /^\|/ && !hdr { for (i = 2; i < NF; i++) h[trim($i)] = i; hdr = 1; next }
    /^\|/ && hdr && ("test" in h) && (col in h) && trim($(h["test"])) == test {
      split(trim($(h[col])), a, " "); print a[1]; exit
    }' "$1"
}

# avg_ts of llama-bench -o jsonl's line with the given n_prompt and n_gen.
llama_ts() { # LOG N_PROMPT N_GEN
  awk -v np="$2" -v ng="$3" '
    function num(key,   m) {
      if (!match($0, "\"" key "\": *[-+0-9.eE]+")) return ""
      m = substr($0, RSTART, RLENGTH); sub(/^[^:]*: */, "", m); return m
    }
    num("n_prompt") == np && num("n_gen") == ng { print num("avg_ts"); exit }' "$1"
}

median() { # numbers... -> median (mean of the middle two for an even count)
  printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 }
    END { printf "%.2f\n", NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# DECIMALS EXPR; the parentheses keep awk from reading ">" as a redirection
calc() { awk "BEGIN { printf \"%.${1}f\", ($2) }"; }

membw() { "$BUILD/bench/membw" --quiet -t "$THREADS"; }

for b in smelt-infer bench/membw; do
  [ -x "$BUILD/$b" ] || die "$BUILD/$b is missing: make MODE=$MODE BUILD=$BUILD bench"
done
[ -z "$LLAMA_BIN" ] || [ -x "$LLAMA_BIN/llama-bench" ] || die "no llama-bench in LLAMA_BIN=$LLAMA_BIN"
for t in $TYPES; do
  f=$(model_file "$t")
  [ -f "$f" ] && continue
  if [ "$t" = F16 ]; then make_f16; continue; fi
  make_f16
  say "quantizing $f ..."
  "$BUILD/smelt-quantize" --force --quiet "$F16" "$f" "$t" "$THREADS"
done

say "- start $(date -u '+%Y-%m-%d %H:%M:%S UTC'), load:$(uptime | sed 's/.*load average://')"
bw0=$(membw)
say "- membw before: $bw0 GB/s"
RUNS_CSV="$WORK/infer-bench-runs.csv"
echo "type,run,tool,pp_tps,tg_tps" > "$RUNS_CSV"
rows=()
for t in $TYPES; do
  f=$(model_file "$t")
  cat "$f" > /dev/null # page cache warm for both tools alike
  sp=() st=() lp=() lt=()
  for r in $(seq 1 "$RUNS"); do
    log="$WORK/infer-smelt-$t.log"
    "$BUILD/smelt-infer" bench -m "$f" -p "$PP" -n "$TG" -t "$THREADS" -r 1 > "$log" 2>&1 ||
      die "smelt-infer bench failed on $f (see $log)"
    p=$(smelt_cell "$log" "pp$PP" "t/s") g=$(smelt_cell "$log" "tg$TG" "t/s") mib=$(smelt_cell "$log" "tg$TG" size)
    if [ -z "$p" ] || [ -z "$g" ] || [ -z "$mib" ]; then die "cannot read smelt-infer bench's table in $log"; fi
    sp+=("$p") st+=("$g")
    echo "$t,$r,smelt,$p,$g" >> "$RUNS_CSV"
    msg="- $t run $r: smelt pp$PP $p tg$TG $g"
    if [ -n "$LLAMA_BIN" ]; then
      log="$WORK/infer-llama-$t.log"
      "$LLAMA_BIN/llama-bench" -m "$f" -p "$PP" -n "$TG" -t "$THREADS" -r 1 -o jsonl > "$log" 2> "$log.err" ||
        die "llama-bench failed on $f (see $log.err)"
      p=$(llama_ts "$log" "$PP" 0) g=$(llama_ts "$log" 0 "$TG")
      if [ -z "$p" ] || [ -z "$g" ]; then die "cannot read llama-bench's output in $log"; fi
      lp+=("$p") lt+=("$g")
      echo "$t,$r,llama,$p,$g" >> "$RUNS_CSV"
      msg="$msg | llama pp$PP $p tg$TG $g"
    fi
    say "$msg"
  done
  row="$t $mib $(median "${sp[@]}") $(median "${st[@]}")"
  if [ -n "$LLAMA_BIN" ]; then row="$row $(median "${lp[@]}") $(median "${lt[@]}")"; else row="$row - -"; fi
  rows+=("$row")
done
bw1=$(membw)
say "- membw after: $bw1 GB/s"
say "- end $(date -u '+%Y-%m-%d %H:%M:%S UTC'), load:$(uptime | sed 's/.*load average://')"
bw=$(calc 2 "$bw0 > $bw1 ? $bw0 : $bw1")

CSV="$WORK/infer-bench.csv"
echo "type,size_mib,smelt_pp$PP,llama_pp$PP,pp_ratio,smelt_tg$TG,llama_tg$TG,tg_ratio,smelt_tg_gbs,smelt_tg_frac_membw,llama_tg_gbs,llama_tg_frac_membw,membw_gbs" > "$CSV"
echo
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), -t $THREADS, median of $RUNS runs (-r 1 each); membw $bw GB/s" \
  "(best of before $bw0 / after $bw1; $THREADS threads); ratio = smelt/llama.cpp speed"
echo
echo "| type | size MiB | smelt pp$PP | llama pp$PP | ratio | smelt tg$TG | llama tg$TG | ratio | tg GB/s | of membw | llama of membw |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for row in "${rows[@]}"; do
  read -r t mib sp st lp lt <<< "$row"
  gbs=$(calc 2 "$mib * 1048576 * $st / 1e9")
  frac=$(calc 2 "$gbs / $bw")
  if [ "$lp" != - ]; then
    rp=$(calc 2 "$sp / $lp") rt=$(calc 2 "$st / $lt")
    lgbs=$(calc 2 "$mib * 1048576 * $lt / 1e9") lfrac=$(calc 2 "$mib * 1048576 * $lt / 1e9 / $bw")
  else
    rp=- rt=- lgbs=- lfrac=-
  fi
  echo "| $t | $mib | $sp | $lp | $rp | $st | $lt | $rt | $gbs | $frac | $lfrac |"
  echo "$t,$mib,$sp,${lp#-},${rp#-},$st,${lt#-},${rt#-},$gbs,$frac,${lgbs#-},${lfrac#-},$bw" >> "$CSV"
done
echo
echo "CSV: $CSV (every run: $RUNS_CSV)"
