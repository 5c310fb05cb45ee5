#!/usr/bin/env bash
# Prepared check for a GPU machine (one NVIDIA GPU, no network): wgpu on Vulkan.
#  1. the backend checks (tests/backend.rs) on wgpu,
#  2. AR vs SJD vs SJD2 on the shipped demo model (assets/demo; timings and forward passes) and on
#     the toy model,
#  3. forward-pass time against window length on a random model with Lumina-mGPT-7B's shape in f16
#     (bf16 is refused on wgpu),
#  4. the decoding loop's own time per pass at the published vocabularies (the host's sampling on
#     the GPU machine's cores, guidance and the copies on the device).
# burn-cuda cannot be built without network, so CUDA is only type-checked elsewhere.
#
# The machine has no network, so bring the binaries built here (x86-64):
#   cargo build --release --features wgpu --examples && cargo test --release --features wgpu --test backend --no-run
#   mkdir -p .gpu && cp target/release/examples/{generate,toy_speedup,gpu_bench,loop_overhead} .gpu/ && cp "$(ls -t target/release/deps/backend-* | grep -v '\.d$' | head -1)" .gpu/backend
# and the Vulkan loader as Debian packages in .gl/ (see the device tool's README); carry .gpu and .gl.
# Finishes in well under 8 minutes on an H200.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -d .gl ]; then for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig; fi
if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
BIN=${SJD2_GPU_BIN:-.gpu}
OUT=${OUT:-/tmp/sjd2-gpu}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null | tee "$OUT/gpu.txt"
# Per-step time limits keep the whole script under 8 minutes even when a step hangs.
run() { local t=$1; shift; echo "== $*"; timeout "$t" "$@" 2>&1 | tee -a "$OUT/gpu-check.log"; }
# The test binary was built elsewhere: point it at this checkout's model and fixtures.
export SJD2_DEMO_DIR="$PWD/assets/demo"
export SJD2_FIXTURES="$PWD/sjd2-models/tests/fixtures/reference-models"
SJD2_TEST_DEVICE=wgpu run 100 "$BIN/backend" --nocapture --test-threads 1
for mode in ar sjd sjd2; do
  run 35 "$BIN/generate" --device wgpu --model assets/demo --mode "$mode" --seed 3 \
    --prompt "a red circle in the top left corner" --out "$OUT/demo-$mode.png"
done
run 25 "$BIN/toy_speedup" --device wgpu --samples 8 --window 16
run 25 "$BIN/toy_speedup" --device wgpu --samples 8 --window 16 --greedy --guidance 1
run 180 "$BIN/gpu_bench" --device wgpu --dtype f16 --preset lumina-7b --context 2048 --reps 5
run 60 "$BIN/loop_overhead" --device wgpu --vocab 8192,32768 --images 2
echo "== done; log in $OUT/gpu-check.log"
