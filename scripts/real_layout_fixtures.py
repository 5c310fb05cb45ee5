#!/usr/bin/env python3
"""Real-layout fixtures: random-weight checkpoints in the PUBLISHED layout of every checkpoint the
project loads, at the published width and vocabulary, with the transformer cut to ONE layer.

Usage:
    /work/pyenv/bin/python scripts/real_layout_fixtures.py OUT_DIR [--families F ...] [--seed N]

`--families` takes family names or group names (default: `default`):

    lumina        Alpha-VLLM/Lumina-mGPT-7B-768      HF Chameleon layout, 2 safetensors shards, bf16
    anole         GAIR/Anole-7b-v0.1                 Meta layout: models/7b/consolidated.pth (bf16)
                                                     + tokenizer/vqgan.ckpt (taming, f32) + yaml
    emu3-gen      BAAI/Emu3-Gen                      BAAI's own layout (model.* / lm_head), 7 shards, f32
    emu3-gen-hf   BAAI/Emu3-Gen-hf                   transformers layout (text_model.*, vqmodel.*), f32
    emu3-vq       BAAI/Emu3-VisionTokenizer          MoVQ, model.safetensors, f32 (no layer to cut)
    janus-pro-1b  deepseek-ai/Janus-Pro-1B           original layout, pytorch_model.bin, bf16
    janus-pro-7b  deepseek-ai/Janus-Pro-7B           original layout, 2 .bin shards + index, bf16
    llamagen      FoundationVision/LlamaGen          c2i_XL_384.pt + vq_ds16_c2i.pt ({"model": ...}, f32)
    flan-t5-xl    google/flan-t5-xl                  encoder only (T5EncoderModel names), 2 shards, f32

    default = lumina anole emu3-vq janus-pro-1b llamagen flan-t5-xl       (6.6 GB, ~70 s)
    heavy   = emu3-gen emu3-gen-hf janus-pro-7b                           (17.5 GB, ~100 s)
    all     = default + heavy                                             (24.0 GB)

Each repository is written to OUT_DIR/<org>/<name>/ with the published file names. The small
published files (configs) are read from sjd2-models/tests/fixtures/published/ (see its README for
their provenance) and written with the layer count cut to 1; the published count is recorded in
`published_layers.json` next to them, with the other notes of the fixture. Tokenizers are the
repository's SMALL vocabularies (sjd2-models/tests/fixtures/tokenizers/): the ids they produce are
theirs, not the real ones, except for Emu3, whose tokenizer numbers its special tokens from 151643
whatever the number of ranks.

Weights: deterministic normal(0, 0.02) from a per-tensor seed (crc32 of seed, repository and tensor
name), norm weights 1, norm biases 0, BatchNorm running_var 1 / running_mean 0 /
num_batches_tracked 0, `rope.freqs` the RoPE inverse frequencies. Two runs write identical bytes.
Safetensors files are streamed tensor by tensor (peak memory ~ one tensor); `.pt/.pth/.bin` files
are `torch.save`d dicts (zip format).

Embedding tables are kept at the published vocabulary (they are most of the size: Emu3's
184622 x 4096 float32 tables are 3 GB each, which is why Emu3-Gen and Emu3-Gen-hf are in `heavy`).
Understanding-path SigLIP tower of Janus: 1 block instead of 24 (not expressible in its config;
recorded in published_layers.json).

OUT_DIR/manifest.json lists, per repository written so far, its files, bytes and seconds.

Checked (see sjd2-models/tests/fixtures/published/README.md, "Checks"): names and shapes equal to
the upstream code's state_dicts; transformers loads the transformers-layout directories without
missing or unexpected keys (Lumina: only model.vqmodel.*, absent from the release as well).

Versions used: Python 3.11.7, torch 2.15.0, transformers 5.24.0 (only for the Emu3 MoVQ tensor
names, taken from `Emu3VQVAE` on the meta device and renamed to BAAI's names).
"""
from __future__ import annotations

import argparse
import collections
import hashlib
import json
import math
import re
import shutil
import struct
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = ROOT / "sjd2-models" / "tests" / "fixtures" / "published"
TOKENIZERS = ROOT / "sjd2-models" / "tests" / "fixtures" / "tokenizers"

STD = 0.02
CHUNK_BYTES = 64 << 20

ST_DTYPE = {torch.float32: "F32", torch.bfloat16: "BF16", torch.int64: "I64"}


# --------------------------------------------------------------------------------------------
# tensor specifications


@dataclass
class T:
    name: str
    shape: tuple
    init: str = "normal"  # normal | ones | zeros | count | rope_freqs
    dtype: torch.dtype | None = None  # None: the repository's dtype

    def numel(self) -> int:
        return math.prod(self.shape)


def linear(name, out_f, in_f, bias=False):
    out = [T(f"{name}.weight", (out_f, in_f))]
    if bias:
        out.append(T(f"{name}.bias", (out_f,)))
    return out


def conv(name, out_c, in_c, *k, bias=True):
    out = [T(f"{name}.weight", (out_c, in_c, *k))]
    if bias:
        out.append(T(f"{name}.bias", (out_c,)))
    return out


def norm(name, dim, bias=True):
    out = [T(f"{name}.weight", (dim,) if isinstance(dim, int) else tuple(dim), "ones")]
    if bias:
        out.append(T(f"{name}.bias", (dim,) if isinstance(dim, int) else tuple(dim), "zeros"))
    return out


def llama_layers(prefix, layers, d, h, kv, inter, qk_norm_heads=False):
    """transformers Llama/Chameleon decoder blocks (q/k/v/o, SwiGLU, two RMSNorms)."""
    hd = d // h
    out = []
    for i in range(layers):
        p = f"{prefix}.layers.{i}"
        out += linear(f"{p}.self_attn.q_proj", h * hd, d)
        out += linear(f"{p}.self_attn.k_proj", kv * hd, d)
        out += linear(f"{p}.self_attn.v_proj", kv * hd, d)
        out += linear(f"{p}.self_attn.o_proj", d, h * hd)
        if qk_norm_heads:  # ChameleonLayerNorm((heads, head_dim))
            out += norm(f"{p}.self_attn.q_norm", (h, hd))
            out += norm(f"{p}.self_attn.k_norm", (kv, hd))
        out += linear(f"{p}.mlp.gate_proj", inter, d)
        out += linear(f"{p}.mlp.up_proj", inter, d)
        out += linear(f"{p}.mlp.down_proj", d, inter)
        out += norm(f"{p}.input_layernorm", d, bias=False)
        out += norm(f"{p}.post_attention_layernorm", d, bias=False)
    return out


def llama_lm(model_prefix, head_name, vocab, d, layers, h, kv, inter, qk_norm_heads=False):
    return (
        [T(f"{model_prefix}.embed_tokens.weight", (vocab, d))]
        + llama_layers(model_prefix, layers, d, h, kv, inter, qk_norm_heads)
        + norm(f"{model_prefix}.norm", d, bias=False)
        + [T(f"{head_name}.weight", (vocab, d))]
    )


def meta_chameleon(vocab, d, layers, h, inter):
    """Meta's consolidated.pth names (see reference-models/chameleon/original/MAPPING.md §1)."""
    hd = d // h
    out = [T("tok_embeddings.weight", (vocab, d))]
    for i in range(layers):
        p = f"layers.{i}"
        out += [T(f"{p}.attention.{w}.weight", (d, d)) for w in ("wq", "wk", "wv", "wo")]
        out += norm(f"{p}.attention.q_normalization", hd)
        out += norm(f"{p}.attention.k_normalization", hd)
        out += linear(f"{p}.feed_forward.w1", inter, d)
        out += linear(f"{p}.feed_forward.w2", d, inter)
        out += linear(f"{p}.feed_forward.w3", inter, d)
        out += norm(f"{p}.attention_norm", d, bias=False)
        out += norm(f"{p}.ffn_norm", d, bias=False)
    out += norm("norm", d, bias=False)
    out += [T("output.weight", (vocab, d)), T("rope.freqs", (hd // 2,), "rope_freqs")]
    return out


def resnet(p, cin, cout, norm_names=("norm1", "norm2")):
    out = norm(f"{p}.{norm_names[0]}", cin) + conv(f"{p}.conv1", cout, cin, 3, 3)
    out += norm(f"{p}.{norm_names[1]}", cout) + conv(f"{p}.conv2", cout, cout, 3, 3)
    if cin != cout:
        out += conv(f"{p}.nin_shortcut", cout, cin, 1, 1)
    return out


def attn_block(p, c):
    out = norm(f"{p}.norm", c)
    for w in ("q", "k", "v", "proj_out"):
        out += conv(f"{p}.{w}", c, c, 1, 1)
    return out


def taming_vqgan(ch=128, ch_mult=(1, 1, 2, 2, 4), nres=2, z=256, embed=256, n_embed=8192, in_ch=3, out_ch=3):
    """taming-transformers VQModel with attn_resolutions [] (Chameleon's vqgan.ckpt state_dict)."""
    L = len(ch_mult)
    out = conv("encoder.conv_in", ch, in_ch, 3, 3)
    cin = ch
    for i, m in enumerate(ch_mult):
        cout = ch * m
        for j in range(nres):
            out += resnet(f"encoder.down.{i}.block.{j}", cin, cout)
            cin = cout
        if i != L - 1:
            out += conv(f"encoder.down.{i}.downsample.conv", cin, cin, 3, 3)
    out += resnet("encoder.mid.block_1", cin, cin) + attn_block("encoder.mid.attn_1", cin)
    out += resnet("encoder.mid.block_2", cin, cin)
    out += norm("encoder.norm_out", cin) + conv("encoder.conv_out", z, cin, 3, 3)
    cin = ch * ch_mult[-1]
    out += conv("decoder.conv_in", cin, z, 3, 3)
    out += resnet("decoder.mid.block_1", cin, cin) + attn_block("decoder.mid.attn_1", cin)
    out += resnet("decoder.mid.block_2", cin, cin)
    ups = []
    for i in reversed(range(L)):
        cout = ch * ch_mult[i]
        blk = []
        for j in range(nres + 1):
            blk += resnet(f"decoder.up.{i}.block.{j}", cin, cout)
            cin = cout
        if i != 0:
            blk += conv(f"decoder.up.{i}.upsample.conv", cin, cin, 3, 3)
        ups.append(blk)
    for blk in reversed(ups):  # state_dict order: up.0 first (taming inserts at the front)
        out += blk
    out += norm("decoder.norm_out", cin) + conv("decoder.conv_out", out_ch, cin, 3, 3)
    out += [T("quantize.embedding.weight", (n_embed, embed))]
    out += conv("quant_conv", embed, z, 1, 1) + conv("post_quant_conv", z, embed, 1, 1)
    return out


def taming_loss_keys():
    """Representative `loss.*` entries of a taming training checkpoint (VQLPIPSWithDiscriminator):
    LPIPS scaling/linear layers and the PatchGAN discriminator (ndf 64, 3 layers). Float tensors
    only: the published vqgan.ckpt's pickle imports hold no LongStorage (no num_batches_tracked).
    Which loss tensors the real file holds is NOT established."""
    out = [T("loss.perceptual_loss.scaling_layer.shift", (1, 3, 1, 1)),
           T("loss.perceptual_loss.scaling_layer.scale", (1, 3, 1, 1))]
    for i, c in enumerate((64, 128, 256, 512, 512)):
        out.append(T(f"loss.perceptual_loss.lin{i}.model.1.weight", (1, c, 1, 1)))
    out += conv("loss.discriminator.main.0", 64, 3, 4, 4)
    idx, cin = 2, 64
    for cout in (128, 256, 512):
        out += conv(f"loss.discriminator.main.{idx}", cout, cin, 4, 4, bias=False)
        out += norm(f"loss.discriminator.main.{idx + 1}", cout)
        out += [T(f"loss.discriminator.main.{idx + 1}.running_mean", (cout,), "zeros"),
                T(f"loss.discriminator.main.{idx + 1}.running_var", (cout,), "ones")]
        idx, cin = idx + 3, cout
    out += conv(f"loss.discriminator.main.{idx}", 1, cin, 4, 4)
    return out


def llamagen_vq16(prefix="", ch=128, ch_mult=(1, 1, 2, 2, 4), nres=2, z=256, embed=8, n_embed=16384):
    """LlamaGen tokenizer/tokenizer_image/vq_model.py VQ-16 (also Janus' gen_vision_model)."""
    L = len(ch_mult)
    out = conv("encoder.conv_in", ch, 3, 3, 3)
    cin = ch
    for i, m in enumerate(ch_mult):
        cout = ch * m
        for j in range(nres):
            out += resnet(f"encoder.conv_blocks.{i}.res.{j}", cin, cout)
            cin = cout
        if i == L - 1:
            for j in range(nres):
                out += attn_block(f"encoder.conv_blocks.{i}.attn.{j}", cin)
        if i != L - 1:
            out += conv(f"encoder.conv_blocks.{i}.downsample.conv", cin, cin, 3, 3)
    out += resnet("encoder.mid.0", cin, cin) + attn_block("encoder.mid.1", cin) + resnet("encoder.mid.2", cin, cin)
    out += norm("encoder.norm_out", cin) + conv("encoder.conv_out", z, cin, 3, 3)
    cin = ch * ch_mult[-1]
    out += conv("decoder.conv_in", cin, z, 3, 3)
    out += resnet("decoder.mid.0", cin, cin) + attn_block("decoder.mid.1", cin) + resnet("decoder.mid.2", cin, cin)
    for i in range(L):
        cout = ch * ch_mult[L - i - 1]
        for j in range(nres + 1):
            out += resnet(f"decoder.conv_blocks.{i}.res.{j}", cin, cout)
            cin = cout
        if i == 0:
            for j in range(nres + 1):
                out += attn_block(f"decoder.conv_blocks.{i}.attn.{j}", cin)
        if i != L - 1:
            out += conv(f"decoder.conv_blocks.{i}.upsample.conv", cin, cin, 3, 3)
    out += norm("decoder.norm_out", cin) + conv("decoder.conv_out", 3, cin, 3, 3)
    # VectorQuantizer's own buffer comes before its nn.Embedding child in state_dict order
    out += [T("quantize.codebook_used", (65536,), "zeros"), T("quantize.embedding.weight", (n_embed, embed))]
    out += conv("quant_conv", embed, z, 1, 1) + conv("post_quant_conv", z, embed, 1, 1)
    return [T(prefix + t.name, t.shape, t.init, t.dtype) for t in out]


def siglip_large_patch16_384(prefix, blocks):
    """Janus' siglip_vit.py VisionTransformer (timm names) with global_pool 'map'."""
    w, mlp = 1024, 4096
    out = [T(f"{prefix}.pos_embed", (1, 576, w))] + conv(f"{prefix}.patch_embed.proj", w, 3, 16, 16)
    for i in range(blocks):
        p = f"{prefix}.blocks.{i}"
        out += norm(f"{p}.norm1", w) + linear(f"{p}.attn.qkv", 3 * w, w, True) + linear(f"{p}.attn.proj", w, w, True)
        out += norm(f"{p}.norm2", w) + linear(f"{p}.mlp.fc1", mlp, w, True) + linear(f"{p}.mlp.fc2", w, mlp, True)
    out += norm(f"{prefix}.norm", w)
    p = f"{prefix}.attn_pool"
    out += [T(f"{p}.latent", (1, 1, w))] + linear(f"{p}.q", w, w, True) + linear(f"{p}.kv", 2 * w, w, True)
    out += linear(f"{p}.proj", w, w, True) + norm(f"{p}.norm", w)
    out += linear(f"{p}.mlp.fc1", mlp, w, True) + linear(f"{p}.mlp.fc2", w, mlp, True)
    return out


def janus_original(n, vocab, layers, heads, inter, siglip_blocks=1):
    """Janus janus/models/modeling_vlm.py MultiModalityCausalLM state_dict, module order."""
    out = siglip_large_patch16_384("vision_model.vision_tower", siglip_blocks)
    out += linear("aligner.layers.0", n, 1024, True) + linear("aligner.layers.2", n, n, True)
    out += llamagen_vq16("gen_vision_model.")
    out += linear("gen_aligner.layers.0", n, 8, True) + linear("gen_aligner.layers.2", n, n, True)
    out += linear("gen_head.output_mlp_projector", n, n, True) + linear("gen_head.vision_head", 16384, n, True)
    out += [T("gen_embed.weight", (16384, 8))]
    lm = llama_lm("language_model.model", "language_model.lm_head", vocab, n, layers, heads, heads, inter)
    # LlamaForCausalLM registers model before lm_head; the llama_lm order already matches.
    return out + lm


def llamagen_gpt_c2i(dim=1280, layers=1, heads=20, vocab=16384, num_classes=1000, multiple_of=256,
                     caption_dim=None, caption_slots=120):
    """LlamaGen autoregressive/models/gpt.py Transformer, model_type 'c2i' (GPT_XL: 36 x 1280, 20 heads),
    or 't2i' with `caption_dim` (CaptionEmbedder: a bias-free fc1/fc2 MLP over FLAN-T5 features and the
    learned `uncond_embedding` of `caption_slots` rows)."""
    hidden = int(2 * (4 * dim) / 3)
    hidden = hidden + (multiple_of - hidden % multiple_of) % multiple_of  # find_multiple
    if caption_dim is None:
        cond = [T("cls_embedding.embedding_table.weight", (num_classes + 1, dim))]
    else:
        cond = [T("cls_embedding.uncond_embedding", (caption_slots, caption_dim)),
                T("cls_embedding.cap_proj.fc1.weight", (dim, caption_dim)),
                T("cls_embedding.cap_proj.fc2.weight", (dim, dim))]
    out = cond + [T("tok_embeddings.weight", (vocab, dim))]
    for i in range(layers):
        p = f"layers.{i}"
        out += [T(f"{p}.attention.wqkv.weight", (3 * dim, dim)), T(f"{p}.attention.wo.weight", (dim, dim))]
        out += [T(f"{p}.feed_forward.w1.weight", (hidden, dim)), T(f"{p}.feed_forward.w3.weight", (hidden, dim)),
                T(f"{p}.feed_forward.w2.weight", (dim, hidden))]
        out += norm(f"{p}.attention_norm", dim, bias=False) + norm(f"{p}.ffn_norm", dim, bias=False)
    out += norm("norm", dim, bias=False) + [T("output.weight", (vocab, dim))]
    return out


def t5_encoder(vocab=32128, d=2048, dkv=64, heads=32, dff=5120, layers=1):
    """transformers T5EncoderModel (gated-gelu) as saved: shared.weight + encoder.*."""
    inner = dkv * heads
    out = [T("shared.weight", (vocab, d))]
    for i in range(layers):
        p = f"encoder.block.{i}.layer"
        for w in ("q", "k", "v"):
            out += linear(f"{p}.0.SelfAttention.{w}", inner, d)
        out += linear(f"{p}.0.SelfAttention.o", d, inner)
        if i == 0:
            out += [T(f"{p}.0.SelfAttention.relative_attention_bias.weight", (32, heads))]
        out += norm(f"{p}.0.layer_norm", d, bias=False)
        out += linear(f"{p}.1.DenseReluDense.wi_0", dff, d) + linear(f"{p}.1.DenseReluDense.wi_1", dff, d)
        out += linear(f"{p}.1.DenseReluDense.wo", d, dff)
        out += norm(f"{p}.1.layer_norm", d, bias=False)
    out += norm("encoder.final_layer_norm", d, bias=False)
    return out


# transformers Emu3VQVAE names -> BAAI's Emu3VisionVQModel names (inverse of the rules recorded in
# reference-models/emu3/meta.json "orig_to_hf_vq_key_regexes"); attention projections are Linear
# [c, c] in transformers and 1x1 Conv2d [c, c, 1, 1] in BAAI's code.
HF_TO_BAAI_VQ = [
    (r"^encoder\.down_block\.down\.(\d+)\.attn_norms\.(\d+)\.", r"encoder.down.\1.attn.\2.norm."),
    (r"^decoder\.up_block\.up\.(\d+)\.attn_norms\.(\d+)\.", r"decoder.up.\1.attn.\2.norm."),
    (r"^encoder\.down_block\.down\.", "encoder.down."),
    (r"^decoder\.up_block\.up\.", "decoder.up."),
    (r"^(encoder|decoder)\.middle_block\.attn_norm\.", r"\1.mid.attn_1.norm."),
    (r"^(encoder|decoder)\.middle_block\.", r"\1.mid."),
    (r"\.q_proj\.", ".q."), (r"\.k_proj\.", ".k."), (r"\.v_proj\.", ".v."), (r"\.out_proj\.", ".proj_out."),
]


def init_for(name: str, shape: tuple) -> str:
    """Initialisation by name: norm affines (1-D tensors of a module whose name contains "norm") are
    1 / 0, BatchNorm statistics 0 / 1, counters 0, everything else random."""
    module, leaf = name.split(".")[-2:]
    if leaf == "num_batches_tracked":
        return "count"
    if leaf == "running_var":
        return "ones"
    if leaf == "running_mean":
        return "zeros"
    if len(shape) == 1 and "norm" in module:
        return "ones" if leaf == "weight" else "zeros"
    return "normal"


def emu3_vq_hf():
    """Names and shapes of transformers' Emu3VQVAE with the published Emu3-VisionTokenizer config
    (= Emu3VQVAEConfig defaults), in state_dict order."""
    from transformers import Emu3VQVAEConfig
    from transformers.models.emu3.modeling_emu3 import Emu3VQVAE

    with torch.device("meta"):
        m = Emu3VQVAE(Emu3VQVAEConfig())
    return [T(k, tuple(v.shape), init_for(k, tuple(v.shape)), torch.int64 if v.dtype == torch.int64 else None)
            for k, v in m.state_dict().items()]


def emu3_vq_baai():
    out = []
    for t in emu3_vq_hf():
        name = t.name
        for a, b in HF_TO_BAAI_VQ:
            name = re.sub(a, b, name)
        shape = t.shape
        if re.search(r"\.(q|k|v|proj_out)\.weight$", name) and len(shape) == 2:
            shape = (*shape, 1, 1)
        out.append(T(name, shape, t.init, t.dtype))
    return out


# --------------------------------------------------------------------------------------------
# values


def tensor_seed(seed: int, repo: str, name: str) -> int:
    return zlib.crc32(f"{seed}:{repo}:{name}".encode())


def chunks(t: T, dtype: torch.dtype, seed: int, repo: str):
    """The tensor's values as a sequence of row chunks (contiguous, in `dtype`)."""
    dt = t.dtype or dtype
    shape = t.shape
    if t.init == "count":
        yield torch.zeros(shape, dtype=dt)
        return
    if t.init == "ones":
        yield torch.ones(shape, dtype=dt)
        return
    if t.init == "zeros":
        yield torch.zeros(shape, dtype=dt)
        return
    if t.init == "rope_freqs":
        hd = 2 * shape[0]
        yield (1.0 / (10000.0 ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))).to(dt)
        return
    g = torch.Generator().manual_seed(tensor_seed(seed, repo, t.name))
    if len(shape) == 0:
        yield (torch.randn((), generator=g) * STD).to(dt)
        return
    row = math.prod(shape[1:]) if len(shape) > 1 else 1
    rows_per = max(1, CHUNK_BYTES // (4 * row)) if len(shape) > 1 else shape[0]
    for start in range(0, shape[0], rows_per):
        n = min(rows_per, shape[0] - start)
        yield (torch.randn((n, *shape[1:]), generator=g) * STD).to(dt)


def full_tensor(t: T, dtype, seed, repo) -> torch.Tensor:
    parts = list(chunks(t, dtype, seed, repo))
    x = parts[0] if len(parts) == 1 else torch.cat(parts, 0)
    return x.clone().contiguous()  # own storage (torch.save writes whole storages)


def nbytes(t: T, dtype) -> int:
    return t.numel() * torch.empty((), dtype=t.dtype or dtype).element_size()


# --------------------------------------------------------------------------------------------
# writers


def write_safetensors(path: Path, specs: list, dtype, seed, repo, metadata=None):
    header, off = {}, 0
    for t in specs:
        n = nbytes(t, dtype)
        header[t.name] = {"dtype": ST_DTYPE[t.dtype or dtype], "shape": list(t.shape), "data_offsets": [off, off + n]}
        off += n
    header["__metadata__"] = metadata if metadata is not None else {"format": "pt"}
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for t in specs:
            for c in chunks(t, dtype, seed, repo):
                f.write(c.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return off


def write_torch(path: Path, specs: list, dtype, seed, repo, wrap=None):
    sd = collections.OrderedDict((t.name, full_tensor(t, dtype, seed, repo)) for t in specs)
    obj = sd if wrap is None else wrap(sd)
    torch.save(obj, path)
    return sum(nbytes(t, dtype) for t in specs)


def write_index(path: Path, shards: list, total: int):
    weight_map = {t.name: fname for fname, specs in shards for t in specs}
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def write_json(path: Path, obj, ensure_ascii=True, newline=True):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=ensure_ascii) + ("\n" if newline else ""), encoding="utf-8")


def published(*parts) -> Path:
    return PUBLISHED.joinpath(*parts)


def load_published(*parts):
    return json.loads(published(*parts).read_text(encoding="utf-8"), object_pairs_hook=collections.OrderedDict)


def md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 24), b""):
            h.update(b)
    return h.hexdigest()


def split_by(specs, rules):
    """Shards: rules is a list of predicates over the tensor name, one per shard except the last,
    which takes every tensor not taken yet."""
    shards = [[] for _ in range(len(rules) + 1)]
    for t in specs:
        for i, rule in enumerate(rules):
            if rule(t.name):
                shards[i].append(t)
                break
        else:
            shards[-1].append(t)
    assert all(shards), "empty shard"
    return shards


def write_sharded_safetensors(d: Path, stem: str, shard_specs: list, dtype, seed, repo, index_name):
    n = len(shard_specs)
    shards, total = [], 0
    for i, specs in enumerate(shard_specs, 1):
        fname = f"{stem}-{i:05d}-of-{n:05d}.safetensors"
        total += write_safetensors(d / fname, specs, dtype, seed, repo)
        shards.append((fname, specs))
    write_index(d / index_name, shards, total)


# --------------------------------------------------------------------------------------------
# vocabularies written into transformers configs (the real ones are not downloadable here)


def chameleon_vocabulary_map(vocab=65536):
    """Chameleon's token layout: <s> 0, <pad> 1, </s> 2, <unk> 3, IMGIMG<code in letters A-J>Z for
    codes 0..8191 at ids 4..8195, <eoss> 8196, <racm3:break> 8197, <reserved{id-4:05d}> for ids
    8198..16383 with <reserved08707> renamed <image> (id 8711) as transformers' converter does.
    Ids 16384.. are the text vocabulary; their names are placeholders here."""
    m = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for code in range(8192):
        m["IMGIMG" + "".join(chr(ord("A") + int(c)) for c in str(code)) + "Z"] = 4 + code
    m["<eoss>"], m["<racm3:break>"] = 8196, 8197
    for i in range(8198, 16384):
        m[f"<reserved{i - 4:05d}>"] = i
    m["<image>"] = m.pop("<reserved08707>")
    for i in range(16384, vocab):
        m[f"<fixture_text_{i}>"] = i
    return dict(sorted(m.items()))


def emu3_vocabulary_map(vocab=184622):
    """Emu3's ids: ranks 0..151642 (text; placeholder names here), then tokenization_emu3.py's
    special tokens numbered from 151643: <|endoftext|>, <|im_start|>, <|im_end|>,
    <|extra_0|>..<|extra_204|>, then emu3_vision_tokens.txt: <|image token|>, <|image start|>,
    <|image end|>, <|visual token 000000|>..<|visual token 032767|>."""
    m = {f"<fixture_text_{i}>": i for i in range(151643)}
    nxt = 151643
    for name in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + [f"<|extra_{i}|>" for i in range(205)] + [
            "<|image token|>", "<|image start|>", "<|image end|>"] + [f"<|visual token {c:06d}|>" for c in range(32768)]:
        m[name] = nxt
        nxt += 1
    assert nxt == vocab
    return m


# --------------------------------------------------------------------------------------------
# repositories


def sidecar(d: Path, repo: str, layers: dict, notes: list):
    write_json(d / "published_layers.json", collections.OrderedDict([
        ("repo", repo),
        ("generated_by", "scripts/real_layout_fixtures.py"),
        ("layers", layers),
        ("weights", "random normal(0, 0.02), norm weights 1 / biases 0; NOT the published values"),
        ("notes", notes),
    ]))


def build_lumina(d: Path, seed: int):
    repo, dtype = "Alpha-VLLM/Lumina-mGPT-7B-768", torch.bfloat16
    cfg = load_published("Alpha-VLLM", "Lumina-mGPT-7B-768", "config.json")
    pub_layers = cfg["num_hidden_layers"]
    cfg["num_hidden_layers"] = 1
    # vocabulary_map sits between vocab_size and vq_config in the published (sorted) file
    items = list(cfg.items())
    pos = [k for k, _ in items].index("vq_config")
    items.insert(pos, ("vocabulary_map", chameleon_vocabulary_map(cfg["vocab_size"])))
    write_json(d / "config.json", collections.OrderedDict(items))
    shutil.copy(published("Alpha-VLLM", "Lumina-mGPT-7B-768", "generation_config.json"), d / "generation_config.json")
    specs = llama_lm("model", "lm_head", cfg["vocab_size"], cfg["hidden_size"], 1, cfg["num_attention_heads"],
                     cfg["num_key_value_heads"], cfg["intermediate_size"], qk_norm_heads=True)
    shards = split_by(specs, [lambda n: n == "model.embed_tokens.weight" or n.startswith("model.layers.")])
    write_sharded_safetensors(d, "model", shards, dtype, seed, repo, "model.safetensors.index.json")
    shutil.copy(TOKENIZERS / "lumina" / "tokenizer.json", d / "tokenizer.json")
    sidecar(d, repo, {"num_hidden_layers": {"published": pub_layers, "fixture": 1}}, [
        "config.json: reconstructed published config (see published/README.md) with num_hidden_layers cut to 1 and "
        "vocabulary_map generated from Chameleon's token layout (ids 0..16383 real layout, text ids 16384.. are placeholders)",
        "no model.vqmodel.* tensors: Lumina deletes model.vqmodel before saving (lumina_mgpt/finetune_solver.py)",
        "tokenizer.json is the repository's SMALL Chameleon vocabulary (tests/fixtures/tokenizers/lumina): its ids are "
        "its own, not the ids of vocabulary_map",
    ])


def build_anole(d: Path, seed: int):
    repo, dtype = "GAIR/Anole-7b-v0.1", torch.bfloat16
    m7 = d / "models" / "7b"
    tk = d / "tokenizer"
    m7.mkdir(parents=True, exist_ok=True)
    tk.mkdir(parents=True, exist_ok=True)
    params = load_published("GAIR", "Anole-7b-v0.1", "models", "7b", "params.json")
    pub_layers = params["model"]["n_layers"]
    params["model"]["n_layers"] = 1
    write_json(m7 / "params.json", params)
    shutil.copy(published("GAIR", "Anole-7b-v0.1", "models", "7b", "consolidate_params.json"), m7 / "consolidate_params.json")
    p = params["model"]
    dim = p["dim"]
    inter = int(8 * dim / 3)
    inter = int(p["ffn_dim_multiplier"] * inter)
    inter = p["multiple_of"] * ((inter + p["multiple_of"] - 1) // p["multiple_of"])
    specs = meta_chameleon(p["vocab_size"], dim, 1, p["n_heads"], inter)
    write_torch(m7 / "consolidated.pth", specs, dtype, seed, repo)
    # tokenizer/: Meta's text_tokenizer.json names <image> <reserved08707> (transformers renames it)
    tok = json.loads((TOKENIZERS / "lumina" / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = tok["model"]["vocab"]
    vocab["<reserved08707>"] = vocab.pop("<image>")
    tok["model"]["vocab"] = dict(sorted(vocab.items(), key=lambda kv: kv[1]))
    for a in tok["added_tokens"]:
        if a["content"] == "<image>":
            a["content"] = "<reserved08707>"
    (tk / "text_tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False), encoding="utf-8")
    shutil.copy(published("GAIR", "Anole-7b-v0.1", "tokenizer", "vqgan.yaml"), tk / "vqgan.yaml")
    vq = taming_vqgan() + taming_loss_keys()
    write_torch(tk / "vqgan.ckpt", vq, torch.float32, seed, repo, wrap=lambda sd: {"state_dict": sd})
    for folder, files in ((m7, ["consolidate_params.json", "consolidated.pth", "params.json"]),
                          (tk, ["text_tokenizer.json", "vqgan.ckpt", "vqgan.yaml"])):
        (folder / "checklist.chk").write_text("".join(f"{md5(folder / f)}  {f}\n" for f in files))
    sidecar(d, repo, {"n_layers": {"published": pub_layers, "fixture": 1}}, [
        "models/7b/params.json, consolidate_params.json: reconstructed (published/README.md), n_layers cut to 1",
        "consolidated.pth: Meta's names (MAPPING.md), interleaved-RoPE row order, one [head_dim] q/k LayerNorm affine, "
        "rope.freqs, every tensor bf16, torch.save of an OrderedDict",
        "tokenizer/vqgan.ckpt: {'state_dict': OrderedDict} in taming names, f32, real size (ch 128, ch_mult [1,1,2,2,4], "
        "z 256, embed 256, 8192 codes) plus representative loss.* tensors (which ones the real file holds is not established)",
        "tokenizer/text_tokenizer.json: the SMALL Chameleon vocabulary (tests/fixtures/tokenizers/lumina) with <image> "
        "renamed back to <reserved08707>; its ids are its own",
        "checklist.chk: md5 of the files written here, in md5sum format (the published ones list the same file names)",
        "models/7b/config.json (45 B in the release) is not written: its content is not established",
    ])


def build_emu3_gen(d: Path, seed: int):
    repo, dtype = "BAAI/Emu3-Gen", torch.float32
    text = published("BAAI", "Emu3-Gen", "config.json").read_text()
    cfg = json.loads(text)
    pub_layers = cfg["num_hidden_layers"]
    (d / "config.json").write_text(text.replace('"num_hidden_layers": 32,', '"num_hidden_layers": 1,'))
    for f in ("generation_config.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(published("BAAI", "Emu3-Gen", f), d / f)
    shutil.copy(TOKENIZERS / "emu3" / "emu3.tiktoken", d / "emu3.tiktoken")
    # The release's vision-token file lists every code of the 32 768-entry codebook after the
    # three image markers, in the small fixture's order; its ids are then the real ones.
    markers = [l for l in (TOKENIZERS / "emu3" / "emu3_vision_tokens.txt").read_text().splitlines()
               if l.strip() and not l.startswith("<|visual token")]
    codebook = cfg["vocab_size"] - 151643 - 3 - 205 - len(markers)
    (d / "emu3_vision_tokens.txt").write_text(
        "\n".join(markers + [f"<|visual token {i:06d}|>" for i in range(codebook)]) + "\n")
    specs = llama_lm("model", "lm_head", cfg["vocab_size"], cfg["hidden_size"], 1, cfg["num_attention_heads"],
                     cfg["num_key_value_heads"], cfg["intermediate_size"])
    L = "model.layers.0."
    shards = split_by(specs, [
        lambda n: n == "model.embed_tokens.weight",
        lambda n: n.startswith(L + "self_attn.q_proj") or n.startswith(L + "self_attn.k_proj"),
        lambda n: n.startswith(L + "self_attn."),
        lambda n: n.startswith(L + "mlp.gate_proj"),
        lambda n: n.startswith(L + "mlp.up_proj"),
        lambda n: n.startswith(L),
    ])
    write_sharded_safetensors(d, "model", shards, dtype, seed, repo, "model.safetensors.index.json")
    sidecar(d, repo, {"num_hidden_layers": {"published": pub_layers, "fixture": 1}}, [
        "config.json: the published file as reconstructed in published/README.md (933 B like the release) with num_hidden_layers 32 -> 1",
        "7 shards like the release (model-0000N-of-00007.safetensors): embeddings, q/k, v/o, gate, up, down+norms, "
        "final norm + lm_head",
        "emu3.tiktoken: the SMALL vocabulary (tests/fixtures/tokenizers/emu3); emu3_vision_tokens.txt: the image markers "
        "and all 32 768 visual tokens, so every special token has its real id (numbered from 151643)",
        "the remote-code Python files (configuration_emu3.py, modeling_emu3.py, tokenization_emu3.py, ...) are not copied",
    ])


def build_emu3_gen_hf(d: Path, seed: int):
    repo, dtype = "BAAI/Emu3-Gen-hf", torch.float32
    cfg = load_published("BAAI", "Emu3-Gen-hf", "config.json")
    tc = cfg["text_config"]
    pub_layers = tc["num_hidden_layers"]
    tc["num_hidden_layers"] = 1
    items = list(cfg.items())
    items.insert([k for k, _ in items].index("vq_config"), ("vocabulary_map", emu3_vocabulary_map(tc["vocab_size"])))
    write_json(d / "config.json", collections.OrderedDict(items))
    shutil.copy(TOKENIZERS / "emu3" / "tokenizer.json", d / "tokenizer.json")
    lm = llama_lm("text_model.model", "text_model.lm_head", tc["vocab_size"], tc["hidden_size"], 1,
                  tc["num_attention_heads"], tc["num_key_value_heads"], tc["intermediate_size"])
    vq = [T("vqmodel." + t.name, t.shape, t.init, t.dtype) for t in emu3_vq_hf()]
    specs = lm + vq
    shards = split_by(specs, [
        lambda n: n == "text_model.model.embed_tokens.weight",
        lambda n: n.startswith("text_model.model.layers.0.self_attn."),
        lambda n: n.startswith("text_model.model.layers.0.mlp.gate"),
        lambda n: n.startswith("text_model.model.layers.0.mlp.up"),
        lambda n: n.startswith("text_model.model.layers."),
        lambda n: n.startswith("text_model."),
        lambda n: n.startswith("vqmodel.encoder."),
    ])
    write_sharded_safetensors(d, "model", shards, dtype, seed, repo, "model.safetensors.index.json")
    sidecar(d, repo, {"text_config.num_hidden_layers": {"published": pub_layers, "fixture": 1}}, [
        "config.json: RECONSTRUCTED (published/README.md); vocabulary_map generated from Emu3's id rules (specials and "
        "visual tokens at their real ids, text ranks as placeholder names); no <image> entry (none in the published "
        "tokenizer's 32979 added tokens)",
        "tensor names as transformers saves Emu3ForConditionalGeneration (text_model.model.*, text_model.lm_head, "
        "vqmodel.*); dtype float32 and the 8-shard split are NOT established (the converter loads and saves in float32)",
        "tokenizer.json: the SMALL vocabulary converted the transformers way (tests/fixtures/tokenizers/emu3)",
    ])


def build_emu3_vq(d: Path, seed: int):
    repo, dtype = "BAAI/Emu3-VisionTokenizer", torch.float32
    shutil.copy(published("BAAI", "Emu3-VisionTokenizer", "config.json"), d / "config.json")
    write_safetensors(d / "model.safetensors", emu3_vq_baai(), dtype, seed, repo)
    sidecar(d, repo, {}, [
        "config.json: the published file (verbatim); nothing is cut, the MoVQ is at its real size (270.7 M parameters)",
        "tensor names are BAAI's (emu3/tokenizer/modeling_emu3visionvq.py), derived from transformers' Emu3VQVAE and "
        "checked against BAAI's code (495 tensors, same names and shapes)",
        "the remote-code Python files and preprocessor_config.json are not copied",
    ])


def build_janus(d: Path, seed: int, which: str):
    repo, dtype = f"deepseek-ai/Janus-Pro-{which}", torch.bfloat16
    cfg = load_published("deepseek-ai", f"Janus-Pro-{which}", "config.json")
    lc = cfg["language_config"]
    pub_layers = lc["num_hidden_layers"]
    lc["num_hidden_layers"] = 1
    write_json(d / "config.json", cfg)
    shutil.copy(published("deepseek-ai", f"Janus-Pro-{which}", "tokenizer_config.json"), d / "tokenizer_config.json")
    shutil.copy(TOKENIZERS / "janus" / "tokenizer.json", d / "tokenizer.json")
    n = cfg["gen_head_config"]["params"]["n_embed"]
    heads = lc.get("num_attention_heads", 32)  # LlamaConfig defaults (the 7B file relies on them)
    inter = lc.get("intermediate_size", 11008)
    specs = janus_original(n, lc["vocab_size"], 1, heads, inter, siglip_blocks=1)
    if which == "1B":
        write_torch(d / "pytorch_model.bin", specs, dtype, seed, repo)
        files = "pytorch_model.bin"
    else:
        shards = split_by(specs, [lambda name: not name.startswith("language_model.") or name.startswith("language_model.model.layers.")
                                  or name == "language_model.model.embed_tokens.weight"])
        total = 0
        named = []
        for i, s in enumerate(shards, 1):
            fname = f"pytorch_model-{i:05d}-of-{len(shards):05d}.bin"
            total += write_torch(d / fname, s, dtype, seed, repo)
            named.append((fname, s))
        write_index(d / "pytorch_model.bin.index.json", named, total)
        files = "pytorch_model-0000{1,2}-of-00002.bin + pytorch_model.bin.index.json"
    sidecar(d, repo, {"language_config.num_hidden_layers": {"published": pub_layers, "fixture": 1},
                      "vision_model.vision_tower.blocks": {"published": 24, "fixture": 1}}, [
        "config.json: RECONSTRUCTED (published/README.md; its size and line count match the Hub listing), "
        "language_config.num_hidden_layers cut to 1",
        f"weights: {files}, torch.save of an OrderedDict, bf16, names and order of janus/models/modeling_vlm.py "
        "MultiModalityCausalLM (vision_model, aligner, gen_vision_model, gen_aligner, gen_head, gen_embed, language_model)",
        "the SigLIP understanding tower keeps 1 of its 24 blocks (the config cannot say so: siglip_large_patch16_384 "
        "fixes 24 blocks in janus/models/siglip_vit.py); everything else is at its real size",
        "tokenizer.json: the SMALL DeepSeek/Janus vocabulary (tests/fixtures/tokenizers/janus); its ids are its own",
    ])


def build_llamagen(d: Path, seed: int):
    repo, dtype = "FoundationVision/LlamaGen", torch.float32
    write_torch(d / "c2i_XL_384.pt", llamagen_gpt_c2i(layers=1), dtype, seed, repo + "/c2i_XL_384.pt",
                wrap=lambda sd: {"model": sd})
    write_torch(d / "vq_ds16_c2i.pt", llamagen_vq16(), dtype, seed, repo + "/vq_ds16_c2i.pt",
                wrap=lambda sd: {"model": sd})
    # The text-conditional release: GPT-XL over FLAN-T5-XL features (2048 wide, 120 slots).
    write_torch(d / "t2i_XL_stage2_512.pt", llamagen_gpt_c2i(layers=1, caption_dim=2048), dtype, seed,
                repo + "/t2i_XL_stage2_512.pt", wrap=lambda sd: {"model": sd})
    write_torch(d / "vq_ds16_t2i.pt", llamagen_vq16(), dtype, seed + 1, repo + "/vq_ds16_t2i.pt",
                wrap=lambda sd: {"model": sd})
    sidecar(d, repo, {"n_layer (GPT-XL)": {"published": 36, "fixture": 1}}, [
        "no config is published: GPT-XL = ModelArgs(n_layer=36, n_head=20, dim=1280) in autoregressive/models/gpt.py, "
        "vocab_size 16384, num_classes 1000 (+1 CFG row), cls_token_num 1, block_size 24*24 for 384 px",
        "t2i_XL_stage2_512.pt / vq_ds16_t2i.pt: the text-conditional GPT-XL (caption MLP over 2048-wide FLAN-T5 "
        "features, 120-row unconditional caption) and its VQ, same format",
        "c2i_XL_384.pt / vq_ds16_c2i.pt: torch.save({'model': state_dict}), f32, names of gpt.py / vq_model.py "
        "(freqs_cis and the KV caches are not in the state_dict); the VQ is at its real size",
        "whether the released .pt files hold more keys than 'model' (optimizer, args, ...) is not established",
    ])


def build_t5(d: Path, seed: int):
    repo, dtype = "google/flan-t5-xl", torch.float32
    cfg = load_published("google", "flan-t5-xl", "config.json")
    pub = (cfg["num_layers"], cfg["num_decoder_layers"])
    cfg["num_layers"] = 1
    cfg["num_decoder_layers"] = 1
    write_json(d / "config.json", cfg)
    shutil.copy(TOKENIZERS / "t5" / "tokenizer.json", d / "tokenizer.json")
    specs = t5_encoder(cfg["vocab_size"], cfg["d_model"], cfg["d_kv"], cfg["num_heads"], cfg["d_ff"], 1)
    shards = split_by(specs, [lambda n: n == "shared.weight" or ".layer.0." in n])
    write_sharded_safetensors(d, "model", shards, dtype, seed, repo, "model.safetensors.index.json")
    sidecar(d, repo, {"num_layers": {"published": pub[0], "fixture": 1},
                      "num_decoder_layers": {"published": pub[1], "fixture": 1}}, [
        "config.json: RECONSTRUCTED (published/README.md), num_layers and num_decoder_layers cut to 1",
        "encoder only: shared.weight + encoder.* in T5EncoderModel names (no decoder / lm_head tensors)",
        "tokenizer.json: the SMALL FLAN-T5 vocabulary (tests/fixtures/tokenizers/t5); its ids are its own",
    ])


REPOS = {
    "lumina": ("Alpha-VLLM/Lumina-mGPT-7B-768", build_lumina),
    "anole": ("GAIR/Anole-7b-v0.1", build_anole),
    "emu3-gen": ("BAAI/Emu3-Gen", build_emu3_gen),
    "emu3-gen-hf": ("BAAI/Emu3-Gen-hf", build_emu3_gen_hf),
    "emu3-vq": ("BAAI/Emu3-VisionTokenizer", build_emu3_vq),
    "janus-pro-1b": ("deepseek-ai/Janus-Pro-1B", lambda d, s: build_janus(d, s, "1B")),
    "janus-pro-7b": ("deepseek-ai/Janus-Pro-7B", lambda d, s: build_janus(d, s, "7B")),
    "llamagen": ("FoundationVision/LlamaGen", build_llamagen),
    "flan-t5-xl": ("google/flan-t5-xl", build_t5),
}
GROUPS = {
    "default": ["lumina", "anole", "emu3-vq", "janus-pro-1b", "llamagen", "flan-t5-xl"],
    "heavy": ["emu3-gen", "emu3-gen-hf", "janus-pro-7b"],
}
GROUPS["all"] = GROUPS["default"] + GROUPS["heavy"]


def dir_size(d: Path) -> int:
    return sum(p.stat().st_size for p in d.rglob("*") if p.is_file())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--families", nargs="+", default=["default"],
                    help=f"families or groups: {', '.join(list(REPOS) + list(GROUPS))}")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    keys = []
    for f in args.families:
        for k in GROUPS.get(f, [f]):
            if k not in REPOS:
                ap.error(f"unknown family {k!r}")
            if k not in keys:
                keys.append(k)
    torch.set_num_threads(1)
    report = collections.OrderedDict()
    manifest_path = args.out_dir / "manifest.json"
    if manifest_path.exists():
        report = json.loads(manifest_path.read_text(), object_pairs_hook=collections.OrderedDict)
    for k in keys:
        repo, build = REPOS[k]
        d = args.out_dir / repo
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        t0 = time.time()
        build(d, args.seed)
        secs = time.time() - t0
        size = dir_size(d)
        report[repo] = {"family": k, "bytes": size, "seconds": round(secs, 1),
                        "files": sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())}
        print(f"{repo:36s} {size / 1e9:7.3f} GB  {secs:6.1f} s", flush=True)
        manifest_path.write_text(json.dumps(report, indent=2) + "\n")
    total = sum(v["bytes"] for v in report.values())
    print(f"{'total in ' + str(args.out_dir):36s} {total / 1e9:7.3f} GB")


if __name__ == "__main__":
    sys.exit(main())
