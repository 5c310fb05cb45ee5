#!/usr/bin/env bash
# Reproduces the shipped demo model (assets/demo) stage by stage, in the background-friendly way:
# every stage checkpoints into runs/<stage>/ and resumes when this script is run again.
#
#   nohup bash scripts/train-demo.sh > runs/train.log 2>&1 &
#
# Stages (wall times on the project's 2-core machine are in docs/demo-model.md):
#   1. vq        the VQ image tokenizer
#   2. ar        the next-token transformer (base model, AR and SJD)
#   3. finetune  its SJD2 next-clean-token fine-tune
#   4. package   assemble assets/demo
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p runs
cargo build --release --features x86-v4 --example train_demo
T=target/release/examples/train_demo
"$T" vq --dir runs/vq --steps "${VQ_STEPS:-2000}"
"$T" ar --dir runs/ar --vq runs/vq --steps "${AR_STEPS:-10000}"
"$T" finetune --dir runs/sjd2 --vq runs/vq --base runs/ar --steps "${FT_STEPS:-600}" --lr "${FT_LR:-0.0001}" \
    --pattern "${FT_PATTERN:-increasing}" --conditioning "${FT_CONDITIONING:-sinusoidal}"
"$T" package --vq runs/vq --base runs/ar --sjd2 runs/sjd2 --out "${OUT:-assets/demo}" --denoising-steps 5
