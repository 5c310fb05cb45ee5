#!/usr/bin/env python3
"""Reference loss and gradients of SJD2's next-clean-token fine-tune on the Chameleon fixture.

Independent of the Rust code: transformers' ChameleonForConditionalGeneration (raw lm_head
logits, no image-token masking), the Lumina-style layout written out by hand, the embedding
normalization and sinusoidal level embedding of docs/algorithm.md written in torch. Writes
sjd2-train/tests/fixtures/finetune_reference.safetensors with the inputs (ids, noise plan, eps)
and the outputs (loss, gradients of a few named weights) that tests/finetune_gradients.rs
compares with (1e-4 relative).

Run offline from the repository root:
    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install torch transformers safetensors numpy
    /tmp/ref/bin/python scripts/finetune_reference.py
"""
import math
import pathlib

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import ChameleonForConditionalGeneration

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "sjd2-models/tests/fixtures/reference-models/chameleon/hf"
OUT = ROOT / "sjd2-train/tests/fixtures/finetune_reference.safetensors"

torch.manual_seed(0)
rng = np.random.default_rng(0)
model = ChameleonForConditionalGeneration.from_pretrained(FIXTURE, torch_dtype=torch.float32)
model.train(False)
emb = model.model.embed_tokens.weight
d = emb.shape[1]

# The Lumina-style span of the fixture (tests/common: chameleon_image(4, 4)): prompt, then
# <racm3:break> and two size tokens, 4 rows of 4 image tokens each ended by 51, then <eoss>.
IMAGE = range(4, 36)  # IMGIMG* ids of the fixture vocabulary
prompt = [1, 40, 41, 42]
prefix = [37, 52, 53]
grid = rng.integers(IMAGE.start, IMAGE.stop, size=(4, 4))
span = []
for row in grid:
    span += [int(t) for t in row] + [51]
span += [36]
forced = {i for i, t in enumerate(span) if t in (51, 36)}

# Row 0 conditional; row 1 the unconditional row (Lumina: the image prefix alone).
rows = [prompt + prefix, prefix]
L = max(len(p) for p in rows) + len(span) - 1
ids = np.zeros((2, L), dtype=np.int64)
targets = np.zeros((2, L), dtype=np.int64)
scored = np.zeros((2, L), dtype=bool)
grid_inputs = []
for r, p in enumerate(rows):
    seq = p + span[:-1]
    ids[r, : len(seq)] = seq
    ids[r, len(seq):] = 0  # padding (never seen by a real position)
    for j, t in enumerate(span):
        if j not in forced:
            targets[r, len(p) - 1 + j] = t
            scored[r, len(p) - 1 + j] = True
    grid_inputs.append([len(p) + j for j in range(len(span) - 1) if j not in forced])

# Noise: one segment of increasing levels (K = 4, Karras schedule) per row.
K = 4
sigma_min, sigma_max, rho = 0.002, 80.0, 7.0
def karras(k):
    s = (sigma_max ** (1 / rho) + (k - 1) / max(K - 1, 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return s
alpha = np.ones((2, L), dtype=np.float32)
sigma = np.zeros((2, L), dtype=np.float32)
level = np.zeros((2, L), dtype=np.float32)
noisy = np.zeros((2, L), dtype=bool)
for r, g in enumerate(grid_inputs):
    start, seg = [(3, 6), (8, 5)][r]
    for j in range(seg):
        k = min(max(math.ceil((j + 1) * K / seg), 1), K)
        pos = g[start + j]
        noisy[r, pos] = True
        level[r, pos] = k / K
    last = g[start + seg - 1]
    scored[r, last + 1 :] = False
eps = rng.standard_normal((2, L, d)).astype(np.float32)
OUT.parent.mkdir(parents=True, exist_ok=True)

# alpha/sigma: written by the Rust schedule (the test checks them against its own table); here
# they come from the same Karras formula, mapped to a variance-preserving pair.
for r in range(2):
    for pos in range(L):
        if noisy[r, pos]:
            k = round(level[r, pos] * K)
            # levels count from clean (1 = least noisy): sigma_k increases with k
            s = karras(K + 1 - k)
            alpha[r, pos] = 1 / math.sqrt(1 + s * s)
            sigma[r, pos] = s / math.sqrt(1 + s * s)

ids_t = torch.tensor(ids)
x = model.model.embed_tokens(ids_t)  # [2, L, d], tracked
with torch.no_grad():
    table = emb[IMAGE.start : IMAGE.stop]
    mu = table.mean(0)
    s = ((table - mu) ** 2).mean(0).add(1e-12).sqrt()
    x0 = x.detach()
    nz = ((x0 - mu) / s * torch.tensor(alpha)[..., None] + torch.tensor(eps) * torch.tensor(sigma)[..., None]) * s + mu
    half = d // 2
    freqs = torch.tensor([1000.0 * 10000.0 ** (-(2.0 * i) / d) for i in range(half)])
    ang = torch.tensor(level)[..., None] * freqs
    lev = torch.stack([torch.sin(ang), torch.cos(ang) - 1.0], dim=-1).reshape(2, L, 2 * half)
    nz = nz + lev
mask = torch.tensor(noisy)[..., None]
inp = torch.where(mask, nz, x)
hidden = model.model(inputs_embeds=inp).last_hidden_state
logits = model.lm_head(hidden)
lp = torch.log_softmax(logits, -1)
nll = -lp.gather(2, torch.tensor(targets)[..., None])[..., 0]
m = torch.tensor(scored, dtype=torch.float32)
loss = (nll * m).sum() / m.sum()
loss.backward()

names = {
    "model.embed_tokens.weight": model.model.embed_tokens.weight,
    "model.layers.0.self_attn.q_proj.weight": model.model.layers[0].self_attn.q_proj.weight,
    "model.layers.1.mlp.down_proj.weight": model.model.layers[1].mlp.down_proj.weight,
    "lm_head.weight": model.lm_head.weight,
}
out = {
    "ids": ids_t,
    "targets": torch.tensor(targets),
    "scored": torch.tensor(scored, dtype=torch.int64),
    "noisy": torch.tensor(noisy, dtype=torch.int64),
    "alpha": torch.tensor(alpha),
    "sigma": torch.tensor(sigma),
    "level": torch.tensor(level),
    "eps": torch.tensor(eps),
    "grid": torch.tensor(grid, dtype=torch.int64),
    "loss": loss.detach().reshape(1),
}
for n, p in names.items():
    out["grad." + n] = p.grad.detach().clone()
save_file(out, str(OUT))
print(f"loss {loss.item():.6f}; wrote {OUT} ({OUT.stat().st_size} bytes)")
