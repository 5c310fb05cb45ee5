#!/usr/bin/env python3
"""Golden tokenizer fixtures: small vocabularies in each family's real tokenizer format, and the
ids the upstream Python tokenizers give for a set of tricky prompts.

The real vocabularies (65k-152k tokens, gated or large downloads) are not in this repository.
Instead this script builds SMALL vocabularies (BPE merges / a unigram model learned from a built-in
English corpus) inside the PUBLISHED tokenizer pipelines, runs the upstream tokenizer code paths on
them and records the ids, so that the Rust side (`tokenizers` 0.22 for tokenizer.json, tiktoken-rs
for Emu3) can be tested to reproduce them exactly.

Writes, under sjd2-models/tests/fixtures/tokenizers/:
  lumina/tokenizer.json     Chameleon's tokenizer as transformers converts it (Lumina-mGPT, Anole)
  janus/tokenizer.json      DeepSeek-LLM's tokenizer with Janus' special tokens (Janus-Pro)
  emu3/emu3.tiktoken        Emu3's original tiktoken vocabulary (base64 token, rank)
  emu3/emu3_vision_tokens.txt  Emu3's vision-token file (ids from SPECIAL_START_ID + 208)
  emu3/tokenizer.json       the same vocabulary converted as transformers converts Emu3 (Emu3-*-hf)
  t5/tokenizer.json         FLAN-T5's tokenizer.json format (Unigram)
  goldens.json              the cases and their ids
(README.md beside them holds the provenance; it is written by hand, not by this script.)

Upstream settings followed (read from the upstream sources, not copied):
  * Chameleon / Lumina-mGPT / Anole: pre-tokenizer of facebook/chameleon-7b's tokenizer.json as
    transcribed by llama.cpp (src/llama-vocab.cpp, LLAMA_VOCAB_PRE_TYPE_CHAMELEON, PR #8543:
    Split `<sentinel:[0-9]+>`, Split `(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z`, Split
    `([\\t\\n]|    |  )` (all Isolated, as Meta's tokenizer-augmentation script writes them),
    Digits(individual), Punctuation(Isolated), ByteLevel(use_regex=True)); no normalizer; the
    `<reserved08707>` -> `<image>` rename and the LlamaTokenizerFast(legacy=False) load of
    transformers' convert_chameleon_weights_to_hf.py (which makes the post-processor
    TemplateProcessing "<s> $A"). Prompt: Lumina-mGPT lumina_mgpt/inference_solver.py +
    data/convertsation.py + xllmx/data/item_processor.py + xllmx/model/tokenizer.py
    (`[bos] + encode(q + "<reserved08706>", add_special_tokens=False)`, the item processor adds
    the `<|image|>` token); Anole: GAIR-NLP/anole text2image.py + chameleon/inference/chameleon.py
    (`[bos] + encode(text).ids + [<reserved08706>]`), the same as transformers' ChameleonProcessor
    (`text + sep_token`, add_special_tokens=True).
  * Janus-Pro: deepseek-llm-7b-base's tokenizer.json pipeline (normalizer Sequence[], Split
    `[\\r\\n]`, the letter and punctuation classes, `\\s+$`, the CJK class (all Isolated),
    Digits(individual), ByteLevel(use_regex=False)), the special tokens of Janus'
    special_tokens_map (`<image_placeholder>`, `<|User|>`, `<|Assistant|>`, ...) plus
    `<begin_of_image>` / `<end_of_image>` / `<｜▁pad▁｜>`; LlamaTokenizerFast adds BOS. Prompt:
    deepseek-ai/Janus generation_inference.py + janus/models/processing_vlm.py
    (apply_sft_template_for_multi_turn_prompts, sft_format "deepseek", system_prompt "", content
    stripped) + janus/utils/conversation.py, then `+ image_start_tag`, `tokenizer.encode(prompt)`.
  * Emu3: baaivision/Emu3 emu3/mllm/tokenization_emu3.py (PAT_STR, `<|endoftext|>`,
    `<|im_start|>`, `<|im_end|>`, `<|extra_0|>`..`<|extra_204|>`, then the vision-token file, all
    numbered from SPECIAL_START_ID = 151643; NFC; allowed_special="all"), vision-token order from
    emu3/mllm/configuration_emu3.py (img 151851, boi 151852, eoi 151853); prompt from
    emu3/mllm/processing_emu3.py (mode "G": bos + text + boi + "{H}*{W}" + img) and
    image_generation.py (POSITIVE_PROMPT, NEGATIVE_PROMPT, image_area 720*720 -> 90*90). The
    tokenizer.json conversion follows transformers' models/emu3/convert_emu3_weights_to_hf.py.
  * FLAN-T5 (LlamaGen t2i): a sentencepiece unigram model trained with T5's settings (nmt_nfkc,
    pad 0, eos 1, unk 2, no bos, 100 `<extra_id_N>`) written in the tokenizer.json layout of the
    published google/flan-t5 files (Precompiled normalizer, WhitespaceSplit + Metaspace, post
    processor `$A </s>`); vocabulary entries as transformers' T5Converter lists them. Prompt:
    FoundationVision/LlamaGen language/t5.py (T5Embedder.get_text_embeddings: clean_caption twice,
    then tokenizer(max_length=120, padding="max_length", truncation=True, add_special_tokens=True)).
    The cleaning is run from a LlamaGen checkout (--llamagen), not re-implemented here.

Run (offline; packages from the package registry). The goldens are made with the versions the
upstream code was written against, kept out of the main environment with --target:

    pip install --no-deps --target /tmp/sjd2-upstream-py transformers==4.44.0 tokenizers==0.19.1 \
        tiktoken==0.6.0 huggingface_hub==0.24.6
    # and, in the interpreter itself: sentencepiece, protobuf, regex, ftfy, beautifulsoup4
    PYTHONPATH=/tmp/sjd2-upstream-py python3 scripts/tokenizer_goldens.py --llamagen PATH
        # PATH: a checkout of FoundationVision/LlamaGen (or its language/t5.py)

Optional cross-checks against the upstream code itself (checkouts of the repositories, any
commit that has these files): --lumina (lumina_mgpt/data/convertsation.py builds the same prompt
string), --janus (janus/utils/conversation.py builds the same sft string), --emu3
(emu3/mllm/tokenization_emu3.py's Emu3Tokenizer, unchanged, gives the same ids on a padded copy
of the vocabulary). The committed files were made with all three given (Lumina-mGPT 104abe45,
Janus 1daa72fa, Emu3 f6ea9aaa, LlamaGen ce98ec41); they do not change what is written.

Check the committed files with any other `tokenizers` / `tiktoken` (e.g. tokenizers 0.22.2, the
version of the Rust crate) without regenerating them:

    python3 scripts/tokenizer_goldens.py --verify

Versions that produced the committed files: Python 3.11.7, transformers 4.44.0, tokenizers 0.19.1,
tiktoken 0.6.0, sentencepiece 0.2.3, ftfy 6.3.1, beautifulsoup4 4.15.0 (also recorded in
goldens.json). Two runs write the same bytes.

Note: Emu3Tokenizer itself cannot load the cut vocabulary: its check
`len(mergeable_ranks) + len(special_tokens) == n_vocab` fails because the special tokens keep
their real ids (151643...) while the vocabulary has only a few hundred ranks. The script therefore
builds the `tiktoken.Encoding` exactly as Emu3Tokenizer.__init__ does and encodes as
Emu3Tokenizer.tokenize does (NFC, allowed_special="all", disallowed_special=()); with --emu3 it
also runs the real class on a copy padded to 151643 ranks with tokens that can never be merged.
"""

from __future__ import annotations

import argparse
import ast
import base64
import importlib.metadata as md
import json
import platform
import sys
import tempfile
import unicodedata
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "sjd2-models" / "tests" / "fixtures" / "tokenizers"

# The versions the committed files were generated with (generation refuses others unless
# --any-version is given, because a different transformers/tokenizers may change the ids).
PINNED = {"transformers": "4.44.0", "tokenizers": "0.19.1", "tiktoken": "0.6.0"}

# --------------------------------------------------------------------------------------------
# Corpus (our own text) and the golden prompts
# --------------------------------------------------------------------------------------------

_HAND = """\
A photo of an astronaut riding a horse in the forest.
There is a river in front of them with water lilies.
A portrait photo of a kangaroo wearing an orange hoodie and blue sunglasses.
A blue Porsche 356 parked in front of a yellow brick wall.
A map of the United States made out of sushi, on a table next to a glass of red wine.
A close-up high-contrast photo of the Sydney Opera House under a night sky.
a portrait of young girl.
a shiba inu sitting on the grass.
a red circle on a white background.
Generate an image of 768x768 according to the following prompt:
Generate an image of 512x512 according to the following prompt:
Generate an image of 1024x1024 according to the following prompt:
masterpiece, film grained, best quality.
lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, cropped,
worst quality, low quality, normal quality, jpeg artifacts, signature, watermark, username, blurry.
It's a dog's life, isn't it? Don't stop, we'll see what they've done.
I'm sure you'd like the cat's toy; they're all here.
Three cats and twelve dogs play in the garden at noon.
The café on the corner serves a naïve little résumé of French food.
A façade in Zürich, painted in the style of an old master.
Line one.
Line two.
The year 2024: fifty percent off, nineteen dollars each, rated number one at home.
A cat sitting on a windowsill, watching the rain.
UPPER CASE WORDS AND MIXED CASE words in one sentence.
Punctuation: (brackets) [square] {curly} <angle> "quotes" and a dash - here.
An oil painting of a lighthouse on a cliff at sunset, dramatic clouds.
A watercolor of a fox in the snow, soft light, pastel colors.
A futuristic city at night with neon signs and flying cars.
A bowl of ramen with a soft boiled egg, studio lighting, 4k.
A golden retriever puppy playing with a ball in the park.
An astronaut floating above the earth, highly detailed, cinematic.
A small wooden cabin in the mountains covered with snow.
A steaming cup of coffee on a wooden table next to an open book.
A robot painting a self portrait in an artist's studio.
A dragon flying over a medieval castle, fantasy art.
A still life of apples, pears and grapes on a silver plate.
A black and white photograph of a busy street in Paris.
A sailing boat on a calm lake at dawn, reflections on the water.
A close-up of a hummingbird drinking from a red flower.
"""

_SUBJECTS = [
    "a cat", "two dogs", "an old man", "a young woman", "a red fox", "a white horse",
    "a small robot", "a giant whale", "three birds", "a green frog", "an astronaut",
    "a teddy bear", "a lighthouse", "a vintage car", "a wooden boat", "a tall tree",
]
_ACTIONS = [
    "sitting on", "standing next to", "running across", "sleeping under", "looking at",
    "flying over", "walking through", "reading a book in", "playing in", "painted on",
]
_PLACES = [
    "the beach", "a busy street", "the forest", "a snowy mountain", "the desert", "a kitchen",
    "a garden", "the moon", "an old library", "a river", "the city at night", "a green field",
]
_STYLES = [
    "oil painting", "watercolor", "photograph", "digital art", "pencil sketch", "anime style",
    "studio lighting", "cinematic", "highly detailed", "soft light", "8k", "wide angle",
]


def corpus() -> list[str]:
    """A few hundred English sentences (deterministic)."""
    lines = [line for line in _HAND.splitlines() if line.strip()]
    n = 0
    for i, s in enumerate(_SUBJECTS):
        for j, a in enumerate(_ACTIONS):
            if (i + j) % 3:
                continue
            p = _PLACES[(i * 7 + j * 5) % len(_PLACES)]
            st = _STYLES[(i * 5 + j * 3) % len(_STYLES)]
            sentence = f"{s} {a} {p}, {st}."
            lines.append(sentence[0].upper() + sentence[1:] if n % 2 else sentence)
            n += 1
    for k in range(60):
        s, p = _SUBJECTS[k % len(_SUBJECTS)], _PLACES[(k * 5) % len(_PLACES)]
        lines.append(f"{k + 1} photos of {s} in {p}, {_STYLES[k % len(_STYLES)]}")
    return lines


LONG = (
    "A highly detailed oil painting of an old lighthouse standing on a rocky cliff above a stormy "
    "sea at sunset, with dramatic orange and purple clouds, seagulls flying over the waves, a small "
    "wooden boat with a red sail fighting the wind near the rocks, warm light shining from the "
    "windows of the lighthouse keeper's cottage, wet stones reflecting the sky, spray and foam "
    "everywhere, painted in the style of the old masters with visible brush strokes, rich colors, "
    "soft shadows, cinematic composition, masterpiece, trending on an art site, eight k resolution, "
    "and a tiny cat sitting on the windowsill of the cottage watching the storm with curious eyes "
    "while the rain falls on the garden and the trees bend in the wind."
)

# (name, text): shared by every family.
PROMPTS: list[tuple[str, str]] = [
    ("simple", "a red circle"),
    ("sentence", "A photo of an astronaut riding a horse in the forest. There is a river in front "
                 "of them with water lilies."),
    ("leading_trailing_spaces", "  a cat on a mat  "),
    ("multiple_spaces_tabs", "multiple   spaces\tand\ttabs"),
    ("newlines", "line one\nline two\n\nline four"),
    ("crlf", "first line\r\nsecond line"),
    ("digits", "3 cats and 12 dogs, 1024x768, 3.14159"),
    ("size_like", "a 90*90 grid"),
    ("apostrophes", "It's a dog's life, isn't it? Don't stop! IT'S LOUD"),
    ("punctuation", "Punctuation: (brackets) [square] {curly} <angle> \"quotes\" \u2014 dash "
                    "\u2013 en-dash\u2026 ellipsis!? ...done"),
    ("accents_nfc", "caf\u00e9 na\u00efve r\u00e9sum\u00e9 fa\u00e7ade Z\u00fcrich"),
    ("accents_nfd", "cafe\u0301 au lait, nai\u0308ve"),
    ("emoji", "emoji \U0001F431\U0001F680 and a smiling face \U0001F600"),
    ("emoji_zwj", "an astronaut \U0001F469\u200D\U0001F680 with a zero\u200Bwidth space"),
    ("cjk", "\u4e00\u53ea\u732b\u5750\u5728\u7a97\u53f0\u4e0a"),
    ("cjk_mixed", "\u4e00\u53ea\u732b sitting on a windowsill"),
    ("upper_case", "UPPER CASE WORDS AND MiXeD CaSe"),
    ("symbols", "The year 2024: 50% off, $19.99 each & #1 rated @home"),
    ("fullwidth", "\uff46\uff55\uff4c\uff4c\uff57\uff49\uff44\uff54\uff48 \uff11\uff12\uff13 "
                  "\uff21\uff22\uff23"),
    ("nbsp", "non\u00a0breaking\u00a0space"),
    ("special_like", "a sign that says <s> and </s> and <|endoftext|>"),
    ("long", LONG),
]

# --------------------------------------------------------------------------------------------
# Byte-level BPE (our own trainer; ties broken by byte order, so it is deterministic)
# --------------------------------------------------------------------------------------------


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table (as every ByteLevel tokenizer uses)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("\u00a1"), ord("\u00ac") + 1))
        + list(range(ord("\u00ae"), ord("\u00ff") + 1))
    )
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


BYTE_ENCODER = bytes_to_unicode()
BYTE_DECODER = {c: b for b, c in BYTE_ENCODER.items()}
# Rank order of single bytes in cl100k / Qwen / Emu3 vocabularies: the printable bytes first.
BYTE_ORDER = list(BYTE_ENCODER.keys())


def to_byte_level(b: bytes) -> str:
    return "".join(BYTE_ENCODER[x] for x in b)


def from_byte_level(s: str) -> bytes:
    return bytes(BYTE_DECODER[c] for c in s)


def learn_merges(words: Counter, n_merges: int) -> list[tuple[bytes, bytes]]:
    """Plain BPE on byte strings: repeatedly merge the most frequent adjacent pair (count >= 2;
    ties: the smallest pair in byte order)."""
    seqs = {w: [bytes([b]) for b in w] for w in words}
    merges: list[tuple[bytes, bytes]] = []
    for _ in range(n_merges):
        pairs: Counter = Counter()
        for w, seq in seqs.items():
            c = words[w]
            for a, b in zip(seq, seq[1:]):
                pairs[(a, b)] += c
        if not pairs:
            break
        best = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        if best[1] < 2:
            break
        (a, b), _ = best
        merges.append((a, b))
        for w, seq in seqs.items():
            if len(seq) < 2:
                continue
            out, i = [], 0
            while i < len(seq):
                if i + 1 < len(seq) and seq[i] == a and seq[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(seq[i])
                    i += 1
            seqs[w] = out
    return merges


def pretokenized_words(pre_tokenizer_json: dict, lines: list[str]) -> Counter:
    """Words of the corpus as the given (ByteLevel-ending) pre-tokenizer splits them, as bytes."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(json.dumps({
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
        "normalizer": None, "pre_tokenizer": pre_tokenizer_json, "post_processor": None,
        "decoder": None, "model": {"type": "WordLevel", "vocab": {"x": 0}, "unk_token": "x"},
    }))
    words: Counter = Counter()
    for line in lines:
        for piece, _ in tok.pre_tokenizer.pre_tokenize_str(line):
            words[from_byte_level(piece)] += 1
    return words


def bpe_model(vocab: dict[str, int], merges: list[tuple[bytes, bytes]], unk: str | None) -> dict:
    return {
        "type": "BPE", "dropout": None, "unk_token": unk, "continuing_subword_prefix": None,
        "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
        "vocab": vocab,
        "merges": [f"{to_byte_level(a)} {to_byte_level(b)}" for a, b in merges],
    }


def added(token_id: int, content: str, special: bool = True) -> dict:
    return {"id": token_id, "content": content, "single_word": False, "lstrip": False,
            "rstrip": False, "normalized": False, "special": special}


def template_bos(bos: str, bos_id: int) -> dict:
    """The post-processor LlamaTokenizerFast.update_post_processor writes (add_bos_token=True)."""
    return {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}},
    }


BYTE_LEVEL_DECODER = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}


def tokenizer_json(added_tokens, normalizer, pre_tokenizer, post_processor, decoder, model) -> dict:
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added_tokens,
            "normalizer": normalizer, "pre_tokenizer": pre_tokenizer, "post_processor": post_processor,
            "decoder": decoder, "model": model}


# --------------------------------------------------------------------------------------------
# Chameleon (Lumina-mGPT, Anole)
# --------------------------------------------------------------------------------------------

CHAMELEON_PRE = {
    "type": "Sequence",
    "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "<sentinel:[0-9]+>"}, "behavior": "Isolated", "invert": False},
        {"type": "Split", "pattern": {"Regex": "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z"},
         "behavior": "Isolated", "invert": False},
        {"type": "Split", "pattern": {"Regex": "([\\t\\n]|    |  )"}, "behavior": "Isolated", "invert": False},
        {"type": "Digits", "individual_digits": True},
        {"type": "Punctuation", "behavior": "Isolated"},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
    ],
}
CHAMELEON_IMAGE_CODES = 64  # the real vocabulary has 8192 (ids 4..8195)
LUMINA_GRIDS = range(8800, 8865)  # <reserved{8800+n}>: Lumina's size tokens, n <= 64


def image_token_name(code: int) -> str:
    return "IMGIMG" + "".join(chr(ord("A") + int(d)) for d in str(code)) + "Z"


def build_chameleon(lines: list[str]) -> dict:
    """The layout of the real vocabulary, compacted: <s> <pad> </s> <unk> (0-3), image tokens
    (4..), <eoss>, <racm3:break>, the reserved tokens Lumina-mGPT and Anole use (with
    <reserved08707> renamed <image>), then the byte-level text vocabulary. Ids are this fixture's
    own (the real ones: <eoss> 8196, <racm3:break> 8197, <reserved0NNNN> NNNN+4, <image> 8711)."""
    names = ["<s>", "<pad>", "</s>", "<unk>"]
    names += [image_token_name(c) for c in range(CHAMELEON_IMAGE_CODES)]
    names += ["<eoss>", "<racm3:break>"]
    reserved = [8706, 8707, 8796, 8797, 8798, 8799, *LUMINA_GRIDS]
    names += ["<image>" if r == 8707 else f"<reserved{r:05d}>" for r in reserved]
    specials = [n for n in names if not n.startswith("IMGIMG")]
    merges = learn_merges(pretokenized_words(CHAMELEON_PRE, lines), 700)
    names += [BYTE_ENCODER[b] for b in BYTE_ORDER]
    names += [to_byte_level(a + b) for a, b in merges]
    vocab = {}
    for n in names:  # two merges may make the same token; it gets one id
        vocab.setdefault(n, len(vocab))
    return tokenizer_json(
        [added(vocab[n], n) for n in specials],
        None,
        CHAMELEON_PRE,
        template_bos("<s>", vocab["<s>"]),
        BYTE_LEVEL_DECODER,
        bpe_model(vocab, merges, "<unk>"),
    )


# --------------------------------------------------------------------------------------------
# Janus-Pro (DeepSeek-LLM)
# --------------------------------------------------------------------------------------------

DEEPSEEK_LETTERS = (
    "\\s?[A-Za-z\u00b5\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-\u02af"
    "\u0370-\u0373\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1\u03a3-\u03f5"
    "\u03f7-\u0481\u048a-\u052f\u0531-\u0556\u10a0-\u10c5\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba"
    "\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45"
    "\u1f48-\u1f4d\u1f50-\u1f57\u1f59\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe"
    "\u1fc2-\u1fc4\u1fc6-\u1fcc\u1fd0-\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc"
    "\u2102\u2107\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139"
    "\u213c-\u213f\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee\u2cf2\u2cf3"
    "\ua640-\ua66d\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e\uab70-\uabbf\ufb00-\ufb06"
    "\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a\U00010400-\U0001044f\U000104b0-\U000104d3"
    "\U000104d8-\U000104fb\U00010c80-\U00010cb2\U00010cc0-\U00010cf2\U000118a0-\U000118df"
    "\U0001e900-\U0001e943]+"
)
DEEPSEEK_PUNCT = "\\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+"
DEEPSEEK_CJK = "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+"
DEEPSEEK_PRE = {
    "type": "Sequence",
    "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "[\r\n]"}, "behavior": "Isolated", "invert": False},
        {"type": "Split", "pattern": {"Regex": DEEPSEEK_LETTERS}, "behavior": "Isolated", "invert": False},
        {"type": "Split", "pattern": {"Regex": DEEPSEEK_PUNCT}, "behavior": "Isolated", "invert": False},
        {"type": "Split", "pattern": {"Regex": "\\s+$"}, "behavior": "Isolated", "invert": False},
        {"type": "Split", "pattern": {"Regex": DEEPSEEK_CJK}, "behavior": "Isolated", "invert": False},
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
    ],
}
JANUS_BOS = "<\uff5cbegin\u2581of\u2581sentence\uff5c>"
JANUS_EOS = "<\uff5cend\u2581of\u2581sentence\uff5c>"
JANUS_PAD = "<\uff5c\u2581pad\u2581\uff5c>"
JANUS_SPECIALS = [
    JANUS_BOS, JANUS_EOS, JANUS_PAD,
    # janus special_tokens_map.json additional_special_tokens
    "<image_placeholder>", "<patch_placeholder>", "<|ref|>", "<|/ref|>", "<|det|>", "<|/det|>",
    "<|grounding|>", "<|User|>", "<|Assistant|>",
    # VLChatProcessor image_start_tag / image_end_tag
    "<begin_of_image>", "<end_of_image>",
]


def build_janus(lines: list[str]) -> dict:
    """Byte-level text vocabulary first, the special tokens after it (added tokens only, as in
    DeepSeek's file, where they follow the 100000 text tokens); ids are this fixture's own."""
    merges = learn_merges(pretokenized_words(DEEPSEEK_PRE, lines), 700)
    vocab = {}
    for n in [BYTE_ENCODER[b] for b in BYTE_ORDER] + [to_byte_level(a + b) for a, b in merges]:
        vocab.setdefault(n, len(vocab))
    first = len(vocab)
    specials = [added(first + i, n) for i, n in enumerate(JANUS_SPECIALS)]
    return tokenizer_json(
        specials,
        {"type": "Sequence", "normalizers": []},
        DEEPSEEK_PRE,
        template_bos(JANUS_BOS, first),
        BYTE_LEVEL_DECODER,
        bpe_model(vocab, merges, None),
    )


# --------------------------------------------------------------------------------------------
# Emu3 (tiktoken)
# --------------------------------------------------------------------------------------------

EMU3_PAT = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
            r"""\s*[\r\n]+|\s+(?!\S)|\s+""")
EMU3_SPECIAL_START_ID = 151643
EMU3_VISION = ["<|image token|>", "<|image start|>", "<|image end|>"] + [
    f"<|visual token {i:06d}|>" for i in range(8)]
EMU3_POSITIVE = " masterpiece, film grained, best quality."
EMU3_NEGATIVE = ("lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer "
                 "digits, cropped, worst quality, low quality, normal quality, jpeg artifacts, "
                 "signature, watermark, username, blurry.")
# Multi-digit tokens such as Qwen's vocabulary (from cl100k) holds: never used by Emu3's own
# pattern (one digit per piece) but used by the GPT-2 pattern of the transformers conversion.
EMU3_DIGIT_MERGES = [(b"9", b"0"), (b"6", b"4"), (b"3", b"2"), (b"1", b"2"), (b"12", b"8"),
                     (b"1", b"0"), (b"10", b"2"), (b"2", b"4"), (b"0", b"0")]


def emu3_specials(vision: list[str]) -> dict[str, int]:
    names = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + [f"<|extra_{i}|>" for i in range(205)]
    return {n: EMU3_SPECIAL_START_ID + i for i, n in enumerate(names + vision)}


def build_emu3(lines: list[str]) -> dict[bytes, int]:
    import regex

    pat = regex.compile(EMU3_PAT)
    words: Counter = Counter()
    for line in lines:
        for piece in pat.findall(unicodedata.normalize("NFC", line)):
            words[piece.encode("utf-8")] += 1
    merges = learn_merges(words, 700) + EMU3_DIGIT_MERGES
    ranks: dict[bytes, int] = {}
    for b in BYTE_ORDER:
        ranks[bytes([b])] = len(ranks)
    for a, b in merges:
        assert a in ranks and b in ranks, (a, b)
        ranks.setdefault(a + b, len(ranks))  # a token made by two merges keeps its first rank
    return ranks


def emu3_encoding(ranks: dict[bytes, int], vision: list[str]):
    """tiktoken.Encoding as Emu3Tokenizer.__init__ builds it (without its n_vocab assertion)."""
    import tiktoken

    return tiktoken.Encoding("Emu3", pat_str=EMU3_PAT, mergeable_ranks=ranks,
                             special_tokens=emu3_specials(vision))


def emu3_encode(enc, text: str) -> list[int]:
    """Emu3Tokenizer.tokenize + convert_tokens_to_ids."""
    return enc.encode(unicodedata.normalize("NFC", text), allowed_special="all", disallowed_special=())


def emu3_tiktoken_text(ranks: dict[bytes, int]) -> str:
    return "".join(f"{base64.b64encode(t).decode()} {r}\n" for t, r in sorted(ranks.items(), key=lambda kv: kv[1]))


def _bpe_parts(ranks: dict[bytes, int], token: bytes, max_rank: int) -> list[bytes]:
    parts = [bytes([b]) for b in token]
    while True:
        best = None
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and r < max_rank and (best is None or r < best[0]):
                best = (r, i)
        if best is None:
            return parts
        i = best[1]
        parts = parts[:i] + [parts[i] + parts[i + 1]] + parts[i + 2:]


def build_emu3_hf(ranks: dict[bytes, int], vision: list[str]) -> dict:
    """The tokenizer.json transformers' convert_emu3_weights_to_hf.py writes (Emu3-Gen-hf):
    vocab and merges recovered from the ranks, the special tokens in the vocabulary and as added
    tokens, and a plain GPT-2 ByteLevel pre-tokenizer (not Emu3's pattern) without NFC."""
    vocab, merges = {}, []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        vocab[to_byte_level(token)] = rank
        if len(token) == 1:
            continue
        parts = _bpe_parts(ranks, token, rank)
        assert len(parts) == 2, (token, parts)
        merges.append(f"{to_byte_level(parts[0])} {to_byte_level(parts[1])}")
    specials = emu3_specials(vision)
    vocab.update(specials)
    return tokenizer_json(
        [added(i, n) for n, i in specials.items()],
        None,
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        None,
        BYTE_LEVEL_DECODER,
        {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
         "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False,
         "vocab": vocab, "merges": merges},
    )


def emu3_size(ratio: str, image_area: int = 720 * 720, spatial: int = 8) -> tuple[int, int]:
    """Emu3Processor.calculate_generate_size."""
    w, h = map(int, ratio.split(":"))
    target = (image_area / (h * w)) ** 0.5
    return int(round(h * target / spatial)), int(round(w * target / spatial))


# --------------------------------------------------------------------------------------------
# FLAN-T5 (LlamaGen t2i)
# --------------------------------------------------------------------------------------------

T5_EXTRA_IDS = 100


def train_t5_spm(lines: list[str], path: Path) -> None:
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_prefix=str(path.with_suffix("")),
        model_type="unigram", vocab_size=600, hard_vocab_limit=False, character_coverage=1.0,
        normalization_rule_name="nmt_nfkc", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>", num_threads=1,
        input_sentence_size=0, shuffle_input_sentence=False, minloglevel=2,
    )


def build_t5(spm_path: Path) -> dict:
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = pb.ModelProto()
    proto.ParseFromString(spm_path.read_bytes())
    vocab = [[p.piece, p.score] for p in proto.pieces]
    vocab += [[f"<extra_id_{i}>", 0.0] for i in range(T5_EXTRA_IDS - 1, -1, -1)]  # T5Converter.vocab
    ids = {p: i for i, (p, _) in enumerate(vocab)}
    assert (ids["<pad>"], ids["</s>"], ids["<unk>"]) == (0, 1, 2)
    added_tokens = [added(0, "<pad>"), added(1, "</s>"), added(2, "<unk>")]
    added_tokens += [added(ids[f"<extra_id_{i}>"], f"<extra_id_{i}>") for i in range(T5_EXTRA_IDS - 1, -1, -1)]
    metaspace = {"type": "Metaspace", "replacement": "\u2581", "add_prefix_space": True}
    seq = lambda name: {"Sequence": {"id": name, "type_id": 0}}  # noqa: E731
    eos = {"SpecialToken": {"id": "</s>", "type_id": 0}}
    return tokenizer_json(
        added_tokens,
        {"type": "Precompiled",
         "precompiled_charsmap": base64.b64encode(proto.normalizer_spec.precompiled_charsmap).decode()},
        {"type": "Sequence", "pretokenizers": [{"type": "WhitespaceSplit"}, metaspace]},
        {"type": "TemplateProcessing", "single": [seq("A"), eos], "pair": [seq("A"), eos, seq("B"), eos],
         "special_tokens": {"</s>": {"id": "</s>", "ids": [1], "tokens": ["</s>"]}}},
        metaspace,
        {"type": "Unigram", "unk_id": 2, "vocab": vocab},
    )


def load_llamagen_preprocessing(path: Path):
    """T5Embedder.text_preprocessing from a LlamaGen checkout, without importing the module (which
    needs torch and downloads nothing here): the class body's cleaning members are compiled from
    the upstream source as they are."""
    src_path = path / "language" / "t5.py" if path.is_dir() else path
    source = src_path.read_text()
    tree = ast.parse(source)
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "T5Embedder")
    keep = []
    for node in cls.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "bad_punct_regex" for t in node.targets):
            keep.append(node)
        elif isinstance(node, ast.FunctionDef) and node.name in ("basic_clean", "clean_caption", "text_preprocessing"):
            keep.append(node)
    new_cls = ast.ClassDef(name="Cleaner", bases=[], keywords=[], body=keep, decorator_list=[])
    module = ast.Module(body=[new_cls], type_ignores=[])
    ast.fix_missing_locations(module)
    import html
    import re
    import urllib.parse as ul

    import ftfy
    from bs4 import BeautifulSoup

    ns = {"re": re, "html": html, "ul": ul, "ftfy": ftfy, "BeautifulSoup": BeautifulSoup}
    exec(compile(module, str(src_path), "exec"), ns)  # noqa: S102 - upstream code, read above
    cleaner = ns["Cleaner"]()
    cleaner.use_text_preprocessing = True  # T5Embedder's default; LlamaGen's samplers keep it
    return cleaner.text_preprocessing, src_path


# --------------------------------------------------------------------------------------------
# Optional cross-checks against the upstream code itself (checkouts given on the command line)
# --------------------------------------------------------------------------------------------


def load_upstream(root: str | None, rel: str, name: str):
    """A module of an upstream checkout, or None when no checkout was given."""
    if not root:
        return None
    import importlib.util

    path = Path(root) / rel
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def lumina_conversation(module, q: str) -> str:
    """Alpha-VLLM/Lumina-mGPT lumina_mgpt/data/convertsation.py, as the item processor uses it."""
    conv = module.Conversation()
    conv.load_qas([[q, None]])
    return conv.get_prompt()


def janus_sft(module, text: str) -> str:
    """VLChatProcessor.apply_sft_template_for_multi_turn_prompts (janus/models/processing_vlm.py)
    on janus/utils/conversation.py's "deepseek" template, with Janus-Pro's roles."""
    conv = module.get_conv_template("deepseek")
    conv.set_system_message("")
    for role, content in [("<|User|>", text), ("<|Assistant|>", "")]:
        conv.append_message(role, content.strip())
    return conv.get_prompt().strip()


def emu3_upstream_ids(module, ranks: dict[bytes, int], vision: list[str], prompts: list[str]) -> list[list[int]]:
    """Ids from baaivision/Emu3's own Emu3Tokenizer (emu3/mllm/tokenization_emu3.py, unchanged).
    Its n_vocab check needs ranks 0..151642, so the cut vocabulary is padded with tokens that begin
    with the byte 0xFF, which never occurs in UTF-8 text and so never takes part in a merge."""
    padded = dict(ranks)
    for i, rank in enumerate(range(len(ranks), EMU3_SPECIAL_START_ID)):
        padded[b"\xff" + i.to_bytes(3, "big")] = rank
    with tempfile.TemporaryDirectory() as tmp:
        vocab_file, special_file = Path(tmp) / "emu3.tiktoken", Path(tmp) / "emu3_vision_tokens.txt"
        vocab_file.write_text(emu3_tiktoken_text(padded), encoding="utf-8")
        special_file.write_text("".join(t + "\n" for t in vision), encoding="utf-8")
        tok = module.Emu3Tokenizer(str(vocab_file), str(special_file))
        return [tok(p)["input_ids"] for p in prompts]


# --------------------------------------------------------------------------------------------
# Goldens
# --------------------------------------------------------------------------------------------


def hf_encode(tok, text: str, add_special_tokens: bool = False) -> list[int]:
    return tok.encode(text, add_special_tokens=add_special_tokens).ids


def lumina_cases(path: Path, upstream=None) -> list[dict]:
    from tokenizers import Tokenizer
    from transformers import LlamaTokenizerFast

    raw = Tokenizer.from_file(str(path))
    # convert_chameleon_weights_to_hf.py: LlamaTokenizerFast(tokenizer_file=..., legacy=False);
    # Lumina-mGPT's FlexARItemProcessor then adds "<|image|>" (MMConvItemProcessor.__init__).
    tok = LlamaTokenizerFast(tokenizer_file=str(path), legacy=False)
    tok.add_tokens(["<|image|>"])
    bos, sep = tok.bos_token_id, tok.convert_tokens_to_ids("<reserved08706>")
    cases = []
    sizes = [(768, 768)] * len(PROMPTS) + [(512, 512), (1024, 1024)]
    prompts = PROMPTS + [("simple_512", PROMPTS[0][1]), ("simple_1024", PROMPTS[0][1])]
    for (name, text), (w, h) in zip(prompts, sizes):
        q = f"Generate an image of {w}x{h} according to the following prompt:\n{text}"
        conv = q + "<reserved08706>"  # data/convertsation.py: each human turn + sep_token
        if upstream is not None:
            assert lumina_conversation(upstream, q) == conv, name
        # xllmx/model/tokenizer.py encode(s, bos=True, eos=False)
        ids = [bos] + tok.encode(conv, truncation=False, add_special_tokens=False)
        sjd2 = [raw.token_to_id("<s>")] + hf_encode(raw, q) + [raw.token_to_id("<reserved08706>")]
        cases.append({
            "name": name, "text": text, "template": "lumina", "width": w, "height": h,
            "upstream_string": conv, "prepend_ids": [bos], "add_special_tokens": False,
            "ids": ids, "text_ids": hf_encode(raw, text),
            "sjd2_template_ids": sjd2, "sjd2_matches_upstream": sjd2 == ids,
        })
        assert [bos] + hf_encode(raw, conv) == ids, name
        assert sep == ids[-1]
    return cases


def chameleon_cases(path: Path) -> list[dict]:
    from tokenizers import Tokenizer
    from transformers import LlamaTokenizerFast

    raw = Tokenizer.from_file(str(path))
    tok = LlamaTokenizerFast(tokenizer_file=str(path), legacy=False)
    tok.sep_token = "<reserved08706>"  # convert_chameleon_weights_to_hf.py: sep_token_id = 8710
    cases = []
    for name, text in PROMPTS:
        # transformers ChameleonProcessor (return_for_text_completion=False): text + sep_token,
        # tokenized with add_special_tokens=True (BOS from the post-processor).
        s = text + tok.sep_token
        ids = tok(s, add_special_tokens=True)["input_ids"]
        # GAIR-NLP/anole text2image.py: [bos] + tokenizer.encode(text).ids + [eot] (END-OF-TURN);
        # its text_tokenizer.json (Meta's original) adds nothing itself.
        anole = [raw.token_to_id("<s>")] + hf_encode(raw, text) + [raw.token_to_id("<reserved08706>")]
        assert anole == ids, name
        sjd2 = [raw.token_to_id("<s>")] + hf_encode(raw, text)
        cases.append({
            "name": name, "text": text, "template": "chameleon",
            "upstream_string": s, "prepend_ids": [], "add_special_tokens": True,
            "ids": ids, "text_ids": hf_encode(raw, text),
            "sjd2_template_ids": sjd2, "sjd2_matches_upstream": sjd2 == ids,
        })
    return cases


def janus_cases(path: Path, upstream=None) -> list[dict]:
    from tokenizers import Tokenizer
    from transformers import LlamaTokenizerFast

    raw = Tokenizer.from_file(str(path))
    tok = LlamaTokenizerFast(tokenizer_file=str(path), bos_token=JANUS_BOS, eos_token=JANUS_EOS,
                             pad_token=JANUS_PAD, unk_token=None)
    assert tok.convert_tokens_to_ids("<image_placeholder>") is not None
    boi = raw.token_to_id("<begin_of_image>")
    cases = []
    for name, text in PROMPTS:
        # conversation.py, sep_style DeepSeek, system "" : "<|User|>: " + content.strip() + "\n\n"
        # then "<|Assistant|>:" for the empty assistant turn; the whole prompt .strip()ped.
        content = text.strip()
        sft = (f"<|User|>: {content}\n\n" if content else "<|User|>:") + "<|Assistant|>:"
        if upstream is not None:
            assert janus_sft(upstream, text) == sft.strip(), name
        prompt = sft.strip() + "<begin_of_image>"  # generation_inference.py
        ids = tok.encode(prompt)  # add_special_tokens=True: BOS from the post-processor
        assert ids == hf_encode(raw, prompt, True), name
        sjd2 = [raw.token_to_id(JANUS_BOS)] + hf_encode(raw, f"<|User|>: {text}\n\n<|Assistant|>:")
        cases.append({
            "name": name, "text": text, "template": "janus",
            "upstream_string": prompt, "prepend_ids": [], "add_special_tokens": True,
            "ids": ids, "text_ids": hf_encode(raw, text),
            "sjd2_template_ids": sjd2, "sjd2_matches_upstream": sjd2 + [boi] == ids,
        })
    return cases


def emu3_cases(ranks, vision, hf_path: Path, upstream=None) -> dict:
    from tokenizers import Tokenizer

    enc = emu3_encoding(ranks, vision)
    hf = Tokenizer.from_file(str(hf_path))
    bos = "<|extra_203|>"
    h, w = emu3_size("1:1")
    header = f"<|image start|>{h}*{w}<|image token|>"
    cases = []
    for name, text in PROMPTS:
        prompt = bos + text + EMU3_POSITIVE + header  # processing_emu3.py, mode "G"
        ids = emu3_encode(enc, prompt)
        body = emu3_encode(enc, bos + text + EMU3_POSITIVE)
        size_ids = emu3_encode(enc, f"{h}*{w}")
        specials = emu3_specials(vision)
        assert ids == body + [specials["<|image start|>"]] + size_ids + [specials["<|image token|>"]], name
        hf_ids = hf_encode(hf, prompt)
        sjd2 = [hf.token_to_id(bos)] + hf_encode(hf, text + EMU3_POSITIVE)
        cases.append({
            "name": name, "text": text, "template": "emu3", "height": h, "width": w,
            "upstream_string": prompt, "normalization": "NFC", "allowed_special": "all",
            "ids": ids, "prompt_ids": body, "text_ids": emu3_encode(enc, text),
            "hf_tokenizer_json_ids": hf_ids, "hf_matches_upstream": hf_ids == ids,
            "sjd2_template_ids": sjd2, "sjd2_matches_upstream": sjd2 == body,
        })
    sizes = []
    for ratio in ["1:1", "16:9", "9:16", "4:3"]:
        sh, sw = emu3_size(ratio)
        sizes.append({"ratio": ratio, "text": f"{sh}*{sw}", "ids": emu3_encode(enc, f"{sh}*{sw}"),
                      "hf_tokenizer_json_ids": hf_encode(hf, f"{sh}*{sw}")})
    for side in [32, 64, 128]:  # other image sizes (px / 8)
        s = f"{side}*{side}"
        sizes.append({"ratio": None, "text": s, "ids": emu3_encode(enc, s),
                      "hf_tokenizer_json_ids": hf_encode(hf, s)})
    neg_prompt = bos + EMU3_NEGATIVE + header  # image_generation.py: the negative prompt as is
    negative = {
        "text": EMU3_NEGATIVE, "upstream_string": neg_prompt, "ids": emu3_encode(enc, neg_prompt),
        "prompt_ids": emu3_encode(enc, bos + EMU3_NEGATIVE), "text_ids": emu3_encode(enc, EMU3_NEGATIVE),
        "hf_tokenizer_json_ids": hf_encode(hf, neg_prompt),
    }
    if upstream is not None:
        strings = [c["upstream_string"] for c in cases] + [s["text"] for s in sizes] + [neg_prompt]
        want = [c["ids"] for c in cases] + [s["ids"] for s in sizes] + [negative["ids"]]
        assert emu3_upstream_ids(upstream, ranks, vision, strings) == want
    special_ids = {n: i for n, i in emu3_specials(vision).items()
                   if n in ("<|endoftext|>", "<|extra_200|>", "<|extra_201|>", "<|extra_203|>",
                            "<|extra_204|>") or n in vision}
    return {"cases": cases, "size_strings": sizes, "negative": negative, "special_ids": special_ids}


def t5_cases(path: Path, spm_path: Path, preprocess) -> list[dict]:
    from tokenizers import Tokenizer
    from transformers import T5Tokenizer, T5TokenizerFast

    raw = Tokenizer.from_file(str(path))
    tok = T5TokenizerFast(tokenizer_file=str(path))  # AutoTokenizer on a flan-t5 directory
    slow = T5Tokenizer(vocab_file=str(spm_path), legacy=True)
    call = dict(max_length=120, padding="max_length", truncation=True, return_attention_mask=True,
                add_special_tokens=True)  # language/t5.py get_text_embeddings
    cases = []
    for name, text in PROMPTS:
        clean = preprocess(text)
        out = tok([clean], **call)
        ids = out["input_ids"][0][: sum(out["attention_mask"][0])]
        raw_out = tok([text], **call)
        ids_raw = raw_out["input_ids"][0][: sum(raw_out["attention_mask"][0])]
        s_out = slow([clean], **call)
        slow_ids = s_out["input_ids"][0][: sum(s_out["attention_mask"][0])]
        full = hf_encode(raw, clean, True)
        assert ids == (full if len(full) <= 120 else full[:119] + [1]), name
        sjd2 = hf_encode(raw, text) + [raw.token_to_id("</s>")]
        case = {
            "name": name, "text": text, "template": "t5",
            "upstream_string": clean, "prepend_ids": [], "add_special_tokens": True,
            "max_length": 120, "truncated": len(full) > 120,
            "ids": ids, "ids_without_llamagen_preprocessing": ids_raw, "text_ids": hf_encode(raw, text),
            "sjd2_template_ids": sjd2, "sjd2_matches_upstream": sjd2 == ids,
            "sentencepiece_matches_fast": slow_ids == ids,
        }
        if slow_ids != ids:
            case["sentencepiece_ids"] = slow_ids
        cases.append(case)
    return cases


# --------------------------------------------------------------------------------------------


def versions() -> dict:
    out = {"python": platform.python_version()}
    for p in ["transformers", "tokenizers", "tiktoken", "sentencepiece", "regex", "ftfy", "beautifulsoup4"]:
        try:
            out[p] = md.version(p)
        except md.PackageNotFoundError:
            out[p] = None
    return out


def dump_json(obj, path: Path, ascii_only: bool, indent) -> None:
    """Compact (tokenizer.json) or indented with every list of numbers on one line (goldens)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(obj, ensure_ascii=ascii_only, indent=indent,
                      separators=None if indent else (",", ":"))
    if indent:
        import re

        text = re.sub(r"\[\s*(-?\d+(?:,\s*-?\d+)*)\s*\]",
                      lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text)
    path.write_text(text + "\n", encoding="utf-8")


def generate(args) -> None:
    v = versions()
    wrong = {k: v[k] for k, want in PINNED.items() if v[k] != want}
    if wrong and not args.any_version:
        sys.exit(f"generation is pinned to {PINNED}; found {wrong} (see the docstring, or --any-version)")
    preprocess, t5_src = load_llamagen_preprocessing(Path(args.llamagen))
    up_lumina = load_upstream(args.lumina, "lumina_mgpt/data/convertsation.py", "lumina_conversation")
    up_janus = load_upstream(args.janus, "janus/utils/conversation.py", "janus_conversation")
    up_emu3 = load_upstream(args.emu3, "emu3/mllm/tokenization_emu3.py", "tokenization_emu3")
    lines = corpus()

    paths = {
        "lumina": OUT / "lumina" / "tokenizer.json",
        "janus": OUT / "janus" / "tokenizer.json",
        "emu3_hf": OUT / "emu3" / "tokenizer.json",
        "t5": OUT / "t5" / "tokenizer.json",
    }
    dump_json(build_chameleon(lines), paths["lumina"], False, None)
    dump_json(build_janus(lines), paths["janus"], False, None)
    ranks = build_emu3(lines)
    (OUT / "emu3").mkdir(parents=True, exist_ok=True)
    (OUT / "emu3" / "emu3.tiktoken").write_text(emu3_tiktoken_text(ranks), encoding="utf-8")
    (OUT / "emu3" / "emu3_vision_tokens.txt").write_text("".join(t + "\n" for t in EMU3_VISION), encoding="utf-8")
    dump_json(build_emu3_hf(ranks, EMU3_VISION), paths["emu3_hf"], False, None)
    with tempfile.TemporaryDirectory() as tmp:
        spm_path = Path(tmp) / "spiece.model"
        train_t5_spm(lines, spm_path)
        dump_json(build_t5(spm_path), paths["t5"], False, None)
        t5 = t5_cases(paths["t5"], spm_path, preprocess)

    goldens = {
        "about": "Generated by scripts/tokenizer_goldens.py; see README.md beside this file.",
        "versions": v,
        "schema": {
            "ids": "the full prompt ids as the upstream code builds them from `text`",
            "upstream_string": "the exact string upstream gives its tokenizer",
            "prepend_ids": "ids upstream prepends by hand before encoding upstream_string",
            "add_special_tokens": "whether upstream's call lets the post-processor add tokens",
            "text_ids": "tokenizer.encode(text, add_special_tokens=False) (Emu3: NFC + allowed_special=all)",
            "sjd2_template_ids": "what sjd2-models' prompt.rs Template builds from `text` with this tokenizer.json",
            "sjd2_matches_upstream": "sjd2_template_ids == ids (Janus: + [<begin_of_image>]; Emu3: == prompt_ids, the part before the image header)",
        },
        "lumina": {"tokenizer": "lumina/tokenizer.json", "cases": lumina_cases(paths["lumina"], up_lumina)},
        "chameleon": {"tokenizer": "lumina/tokenizer.json", "cases": chameleon_cases(paths["lumina"])},
        "janus": {"tokenizer": "janus/tokenizer.json", "cases": janus_cases(paths["janus"], up_janus)},
        "emu3": {"tiktoken": "emu3/emu3.tiktoken", "vision_tokens": "emu3/emu3_vision_tokens.txt",
                 "hf_tokenizer": "emu3/tokenizer.json", "pat_str": EMU3_PAT,
                 "special_start_id": EMU3_SPECIAL_START_ID,
                 **emu3_cases(ranks, EMU3_VISION, paths["emu3_hf"], up_emu3)},
        "t5": {"tokenizer": "t5/tokenizer.json", "preprocessing": f"LlamaGen {t5_src.name}: T5Embedder.text_preprocessing",
               "cases": t5},
    }
    dump_json(goldens, OUT / "goldens.json", True, 1)
    checked = [n for n, m in [("Lumina-mGPT", up_lumina), ("Janus", up_janus), ("Emu3", up_emu3)] if m]
    print(f"wrote {OUT} (cross-checked with upstream code: LlamaGen, {', '.join(checked) or 'nothing else'})")
    verify(args)


def verify(args) -> None:
    """Checks the committed files with whatever `tokenizers` / `tiktoken` is installed."""
    import tokenizers
    from tokenizers import Tokenizer

    g = json.loads((OUT / "goldens.json").read_text(encoding="utf-8"))
    bad = []
    n = 0

    def check(label, got, want):
        nonlocal n
        n += 1
        if got != want:
            bad.append(f"{label}: got {got} want {want}")

    for fam in ["lumina", "chameleon", "janus", "t5"]:
        tok = Tokenizer.from_file(str(OUT / g[fam]["tokenizer"]))
        for c in g[fam]["cases"]:
            check(f"{fam}/{c['name']} text_ids", hf_encode(tok, c["text"]), c["text_ids"])
            got = c["prepend_ids"] + hf_encode(tok, c["upstream_string"], c["add_special_tokens"])
            if c.get("truncated"):
                got = got[: c["max_length"] - 1] + [got[-1]]
            check(f"{fam}/{c['name']} ids", got, c["ids"])
            tid = tok.token_to_id
            t = c["text"]
            sjd2 = {
                "lumina": lambda: [tid("<s>")] + hf_encode(tok, f"Generate an image of {c['width']}x{c['height']} "
                                                           f"according to the following prompt:\n{t}") + [tid("<reserved08706>")],
                "chameleon": lambda: [tid("<s>")] + hf_encode(tok, t),
                "janus": lambda: [tid(JANUS_BOS)] + hf_encode(tok, f"<|User|>: {t}\n\n<|Assistant|>:"),
                "t5": lambda: hf_encode(tok, t) + [tid("</s>")],
            }[fam]()
            check(f"{fam}/{c['name']} sjd2_template_ids", sjd2, c["sjd2_template_ids"])

    e = g["emu3"]
    ranks = {}
    for line in (OUT / e["tiktoken"]).read_text(encoding="utf-8").splitlines():
        if line:
            tok_b64, rank = line.split()
            ranks[base64.b64decode(tok_b64)] = int(rank)
    vision = [t.strip() for t in (OUT / e["vision_tokens"]).read_text(encoding="utf-8").splitlines() if t.strip()]
    enc = emu3_encoding(ranks, vision)
    hf = Tokenizer.from_file(str(OUT / e["hf_tokenizer"]))
    for c in e["cases"]:
        check(f"emu3/{c['name']} ids", emu3_encode(enc, c["upstream_string"]), c["ids"])
        check(f"emu3/{c['name']} text_ids", emu3_encode(enc, c["text"]), c["text_ids"])
        check(f"emu3/{c['name']} hf ids", hf_encode(hf, c["upstream_string"]), c["hf_tokenizer_json_ids"])
        check(f"emu3/{c['name']} sjd2", [hf.token_to_id("<|extra_203|>")] + hf_encode(hf, c["text"] + EMU3_POSITIVE),
              c["sjd2_template_ids"])
        # prompt.rs's Template::Emu3 on the tiktoken vocabulary: bos, then text + positive alone.
        check(f"emu3/{c['name']} prompt_ids", [enc.encode_single_token("<|extra_203|>")]
              + emu3_encode(enc, c["text"] + EMU3_POSITIVE), c["prompt_ids"])
    for s in e["size_strings"]:
        check(f"emu3/size {s['text']}", emu3_encode(enc, s["text"]), s["ids"])
        check(f"emu3/size {s['text']} hf", hf_encode(hf, s["text"]), s["hf_tokenizer_json_ids"])
    check("emu3/negative", emu3_encode(enc, e["negative"]["upstream_string"]), e["negative"]["ids"])
    try:
        tk = md.version("tiktoken")
    except md.PackageNotFoundError:
        tk = "?"
    print(f"verify: tokenizers {tokenizers.__version__}, tiktoken {tk}: {n - len(bad)} of {n} checks pass")
    for b in bad:
        print("  MISMATCH", b)
    if bad:
        sys.exit(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--llamagen", help="FoundationVision/LlamaGen checkout (or its language/t5.py)")
    ap.add_argument("--lumina", help="optional Alpha-VLLM/Lumina-mGPT checkout: cross-check the prompt string")
    ap.add_argument("--janus", help="optional deepseek-ai/Janus checkout: cross-check the sft prompt string")
    ap.add_argument("--emu3", help="optional baaivision/Emu3 checkout: cross-check ids with its Emu3Tokenizer")
    ap.add_argument("--verify", action="store_true", help="only check the committed files")
    ap.add_argument("--any-version", action="store_true", help="generate with unpinned versions")
    args = ap.parse_args()
    if args.verify:
        verify(args)
    else:
        if not args.llamagen:
            ap.error("--llamagen is required to generate (LlamaGen's caption cleaning)")
        generate(args)


if __name__ == "__main__":
    main()
