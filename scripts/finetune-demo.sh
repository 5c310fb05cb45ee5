#!/usr/bin/env bash
# The demo model's SJD2 fine-tune through the generic fine-tuning path (docs/finetuning.md,
# docs/demo-model.md): images written as an imagefolder, prepared, trained fully and with LoRA,
# exported as demo model directories, and evaluated on 200 held-out prompts. Every step resumes.
# About 40 min per training and 15 min per report on 2 CPU cores.
#   OUT=runs/ft-demo bash scripts/finetune-demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
R="${OUT:-runs/ft-demo}"
cargo build --release --example shapes_preview --example finetune --example demo_report
B=target/release/examples
mkdir -p "$R"
# Samples 160 000.. of the training seed: the images the base model (10 000 steps of 16) never saw.
[ -f "$R/images/metadata.jsonl" ] || "$B/shapes_preview" --seed 1 --imagefolder "$R/images" --start 160000 --count 9616
"$B/finetune" prepare --data "$R/images" --out "$R/prepared"
common=(--data "$R/prepared" --steps 600 --batch 16 --warmup 50 --levels 20 --clip 0 --seed 1 --checkpoint-every 50)
"$B/finetune" train "${common[@]}" --run "$R/full" --full --lr 0.0001
"$B/finetune" train "${common[@]}" --run "$R/lora16" --lora-rank 16 --lr 0.001
for run in full lora16; do
  [ -d "$R/$run-export" ] || "$B/finetune" export --run "$R/$run" --out "$R/$run-export" --decoder-steps 5
  [ -f "$R/report-$run/report.md" ] || "$B/demo_report" --model "$R/$run-export" --prompts 200 \
      --only ar-base,ar-sjd2,sjd2-sjd2-coupled --out "$R/report-$run"
done
