#!/usr/bin/env bash
# Backend checks (tests/backend.rs: cached vs uncached logits, greedy tokens and logits equal to
# the CPU run, fixture parity) on wgpu. On a machine without a GPU it uses Mesa's software
# Vulkan driver (lavapipe), installed here if missing. Not part of CI: the wgpu feature adds
# several minutes of build time and lavapipe is about 20x slower than the CPU backend.
#
#   bash scripts/wgpu-check.sh            # wgpu, default adapter
#   SJD2_TEST_DEVICE=wgpu:0 bash scripts/wgpu-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if ! ls /usr/share/vulkan/icd.d/*.json >/dev/null 2>&1 && ! ls /etc/vulkan/icd.d/*.json >/dev/null 2>&1; then
  echo "no Vulkan driver found: installing Mesa's (lavapipe) from Debian's packages"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
fi
export SJD2_TEST_DEVICE="${SJD2_TEST_DEVICE:-wgpu}"
echo "backend checks on ${SJD2_TEST_DEVICE}"
cargo test --features wgpu --test backend -- --nocapture --test-threads 1
