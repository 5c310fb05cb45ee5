#!/usr/bin/env python3
"""Reference outputs of Emu3's vision tokenizer *encoder* for the parity test of
`sjd2_models::vq::MovqEncoder` (sjd2-models/tests/movq_encoder.rs).

Loads the repository's tiny Emu3 fixture (sjd2-models/tests/fixtures/reference-models/emu3/hf,
random weights, `vqmodel.*` in transformers' names) with transformers, encodes two seeded random
images of 24 x 32 pixels through `Emu3VQVAE.encode` (the image repeated 4 times in time, as
upstream), and writes the images, the latents after `quant_conv` (frame 0, before quantization)
and the codes (also with the codebook scaled by 0.05, so that the codes vary).

Usage (offline; torch + transformers + safetensors from the package registry):
    python3 scripts/emu3_encoder_reference.py
writes sjd2-models/tests/fixtures/emu3_encoder_reference.safetensors
"""
from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file

root = Path(__file__).resolve().parent.parent
fixture = root / "sjd2-models/tests/fixtures/reference-models/emu3/hf"
out = root / "sjd2-models/tests/fixtures/emu3_encoder_reference.safetensors"

model = transformers.Emu3ForConditionalGeneration.from_pretrained(fixture, torch_dtype=torch.float32)
vq = model.model.vqmodel.eval()

g = torch.Generator().manual_seed(7)
images = torch.rand(2, 3, 24, 32, generator=g) * 2 - 1
# Make the second image smooth (a gradient plus noise), closer to a real photograph.
ys = torch.linspace(-1, 1, 24).view(1, 24, 1)
xs = torch.linspace(-1, 1, 32).view(1, 1, 32)
images[1] = (0.6 * ys + 0.3 * xs + 0.1 * images[1]).clamp(-1, 1)

with torch.no_grad():
    t = vq.config.temporal_downsample_factor
    frames = images.unsqueeze(1).repeat(1, t, 1, 1, 1)
    hidden = vq.encoder(frames)  # [b, t', c, h, w]
    latents = vq.quant_conv(hidden.permute(0, 2, 1, 3, 4))[:, :, 0]  # [b, e, h, w]
    sizes = torch.tensor([[24, 32], [24, 32]])
    codes = torch.stack(vq.encode(images, sizes).image_tokens)  # [b, h, w]
    # The random codebook is ~20x wider than the random encoder's latents, so every latent lands on
    # the same code; upstream's quantizer with the codebook scaled by 0.05 gives varied codes.
    vq.quantize.embedding.weight.mul_(0.05)
    scaled = vq.quantize(latents.unsqueeze(1))[:, 0]  # [b, h, w]

save_file(
    {
        "images": images.contiguous(),
        "latents": latents.contiguous(),
        "codes": codes.to(torch.int64).contiguous(),
        "codes_codebook_scaled_0_05": scaled.to(torch.int64).contiguous(),
    },
    out,
    metadata={"transformers": transformers.__version__, "torch": torch.__version__},
)
print(f"wrote {out}: latents {tuple(latents.shape)}, codes {codes.tolist()}, scaled {scaled.tolist()}")
