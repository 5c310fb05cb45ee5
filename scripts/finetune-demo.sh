#!/usr/bin/env bash
# The demo model's SJD2 fine-tune through the generic fine-tuning path (docs/finetuning.md,
# docs/demo-model.md): images written as an imagefolder, prepared, trained fully and with LoRA,
# exported as demo model directories, and evaluated on 200 held-out prompts. Every step resumes.
# About 40 min per training and 15 min per report on 2 CPU cores.
#   OUT=runs/ft-demo bash scripts/finetune-demo.sh
# RUNS picks the trainings (default "full lora16"; also lora8, lora32); SEEDS the sampling seeds of
# the reports (default "0"; each further seed is another 200 samples of the same prompts, AR and
# SJD2 of the fine-tuned model only).
set -euo pipefail
cd "$(dirname "$0")/.."
R="${OUT:-runs/ft-demo}"
RUNS="${RUNS:-full lora16}"
SEEDS="${SEEDS:-0}"
cargo build --release --example shapes_preview --example finetune --example demo_report
B=target/release/examples
mkdir -p "$R"
# Samples 160 000.. of the training seed: the images the base model (10 000 steps of 16) never saw.
[ -f "$R/images/metadata.jsonl" ] || "$B/shapes_preview" --seed 1 --imagefolder "$R/images" --start 160000 --count 9616
"$B/finetune" prepare --data "$R/images" --out "$R/prepared"
common=(--data "$R/prepared" --steps 600 --batch 16 --warmup 50 --levels 20 --clip 0 --seed 1 --checkpoint-every 50)
for run in $RUNS; do
  case "$run" in
    full) "$B/finetune" train "${common[@]}" --run "$R/full" --full --lr 0.0001 ;;
    lora*) "$B/finetune" train "${common[@]}" --run "$R/$run" --lora-rank "${run#lora}" --lr 0.001 ;;
    *) echo "unknown run $run" >&2; exit 1 ;;
  esac
  [ -d "$R/$run-export" ] || "$B/finetune" export --run "$R/$run" --out "$R/$run-export" --decoder-steps 5
  for seed in $SEEDS; do
    only=ar-sjd2,sjd2-sjd2-coupled
    [ "$seed" = 0 ] && only=ar-base,$only
    out="$R/report-$run"
    [ "$seed" = 0 ] || out="$out-seed$seed"
    [ -f "$out/report.md" ] || "$B/demo_report" --model "$R/$run-export" --prompts 200 \
        --sample-seed "$seed" --only "$only" --out "$out"
  done
done
