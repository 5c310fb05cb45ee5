#!/usr/bin/env bash
# Builds and runs every fuzz target for SECONDS seconds each (default 600), two at a time, with
# seeds from the fixtures. Not part of CI. cargo-fuzz normally wants a nightly toolchain; with
# only stable available, RUSTC_BOOTSTRAP=1 and --sanitizer none (coverage-guided, no ASan) work.
#
#   cargo install cargo-fuzz && bash fuzz/run-all.sh 600
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_EACH=${1:-600}
FIX=${SJD2_FIXTURES:-../sjd2-models/tests/fixtures/reference-models}
export RUSTC_BOOTSTRAP=1
cargo fuzz build --sanitizer none -O
BIN=target/x86_64-unknown-linux-gnu/release
mkdir -p corpus/{safetensors,pytorch,config_json,prompt,decoder_config,verify,vq_decode} artifacts logs
cp "$FIX"/chameleon/reference.safetensors "$FIX"/llamagen_c2i/reference.safetensors corpus/safetensors/ 2>/dev/null || true
cp "$FIX"/*/hf/config.json corpus/config_json/ 2>/dev/null || true
for f in "$FIX"/*/hf/config.json; do cp "$f" "corpus/config_json/$(basename "$(dirname "$(dirname "$f")")").json"; done 2>/dev/null || true
printf 'a red circle' > corpus/prompt/seed1
printf 'Generate an image of 512x512' > corpus/prompt/seed2
run() {
  local t=$1
  mkdir -p "artifacts/$t"
  "$BIN/$t" "corpus/$t" -max_total_time="$SECONDS_EACH" -rss_limit_mb=4096 -max_len=65536 \
    -artifact_prefix="artifacts/$t/" -print_final_stats=1 > "logs/$t.log" 2>&1 || echo "$t: exit $?" >> logs/summary.txt
  echo "$t: $(grep -E 'stat::number_of_executed_units' "logs/$t.log" | tail -1) $(ls "artifacts/$t" | wc -l) artifacts" >> logs/summary.txt
}
: > logs/summary.txt
targets=(safetensors pytorch config_json prompt decoder_config verify vq_decode)
for ((i = 0; i < ${#targets[@]}; i += 2)); do
  run "${targets[i]}" &
  if ((i + 1 < ${#targets[@]})); then run "${targets[i + 1]}" & fi
  wait
done
cat logs/summary.txt
