#!/usr/bin/env python3
"""Reference outputs of LlamaGen's caption cleaning for the unit tests of
`sjd2_models::caption` (sjd2-models/src/caption.rs).

LlamaGen (FoundationVision/LlamaGen, `language/t5.py`) cleans every caption before FLAN-T5:
`T5Embedder.text_preprocessing` runs `clean_caption` twice, because `use_text_preprocessing`
defaults to True and neither `autoregressive/sample/sample_t2i.py` nor
`language/extract_t5_feature.py` (training features) passes it.

This script runs upstream's own `T5Embedder.clean_caption` / `text_preprocessing`, imported
from a local copy of LlamaGen's `language/t5.py` (not an extraction). `t5.py` imports torch,
transformers and huggingface_hub at module level, but the cleaning code needs none of them:
those three modules are replaced by empty stand-ins before the import, and the embedder is
created without `__init__` (which would download FLAN-T5), so only `re`, `html`, `urllib`,
`ftfy` and `beautifulsoup4` run.

Usage (offline; `pip install ftfy beautifulsoup4`):
    python3 scripts/caption_goldens.py /path/to/LlamaGen/language/t5.py
(the committed fixture was made from LlamaGen commit ce98ec41, whose t5.py dates from 5a50452d;
its sha256 is in the file) writes sjd2-models/tests/fixtures/captions/clean_caption.json:
    {"generator", "upstream", "versions", "cases": [{"input", "once", "output",
     "known_difference"?}]}
where `output` is `text_preprocessing(input)` (two passes, what LlamaGen feeds its tokenizer)
and `once` a single `clean_caption(input)`. The inputs are the hand-written CAPTIONS, each aimed
at one or more steps, then GENERATED random joins of FRAGMENTS (fixed seed) for the interplay
of the steps. `known_difference` marks the few cases in which the
Rust port knowingly differs (the reason is in the field); the Rust test skips those.

The output depends on the Python, ftfy, beautifulsoup4 and Unicode database versions, which are
recorded in the file. Running the script twice gives the same bytes.
"""
import hashlib
import importlib.util
import json
import platform
import random
import sys
import types
import unicodedata
import warnings
from pathlib import Path

import bs4
import ftfy

root = Path(__file__).resolve().parent.parent
out = root / "sjd2-models/tests/fixtures/captions/clean_caption.json"

# Captions, each aimed at one or more steps of `clean_caption` (in upstream's order).
CAPTIONS = [
    # LlamaGen's own example prompts (autoregressive/sample/sample_t2i.py).
    "A portrait photo of a kangaroo wearing an orange hoodie and blue sunglasses standing on the grassin front of the Sydney Opera House holding a sign on the chest that says Welcome Friends!",
    "A blue Porsche 356 parked in front of a yellow brick wall.",
    "A photo of an astronaut riding a horse in the forest. There is a river in front of them with water lilies.",
    "A map of the United States made out of sushi. It is on a table next to a glass of red wine.",
    # plain text, strip + lower
    "a photo of a cat",
    "   UPPER Case Prompt   ",
    "",
    "   ",
    "!!!",
    # urllib.parse.unquote_plus
    "a%20red%20car+on+the+road",
    "caf%C3%A9 latte, 100% cotton",
    "bad %FF byte and %e2%82 cut",
    "50%25 off",
    # <person>
    "<person> riding a bike with <person>",
    # urls (both url patterns)
    "check https://www.example.com/path?x=1 for details",
    "visit www.example.org today",
    "example.com/page-1 is great",
    "email me at user@mail.com",
    "site.co.uk banner and https://t.co/abc123",
    "http:foo and https:/bar",
    "github.com@home is not a url",
    "www:something odd",
    "photo from flickr.com/photos/123/ by someone",
    # html (BeautifulSoup html.parser .text)
    "<b>bold</b> and <i>italic</i> text",
    '<p class="x">paragraph</p><br/>new line',
    "<script>alert(1)</script>safe text",
    "<style>p {color: red}</style>styled",
    "<!-- a comment -->visible",
    "a < b and c > d",
    "<a href='http://x.com/a.jpg'>link text</a>",
    "<!DOCTYPE html><html><body>doc</body></html>",
    "<unclosed tag",
    "fish &amp; chips",
    "Tom &amp;amp; Jerry &amp;quot;cat&amp;quot;",
    "&quot;quoted&quot; text",
    "&lt;div&gt; literal",
    "caf&eacute; &copy; 2020 &nbsp;non&nbsp;breaking",
    "&#39;single&#39; &#x27;hex&#x27; &#8212; dash &#150; cp1252",
    "unknown &foo; entity and &amp at the end &amp",
    "&NewLine;html5&bigstar;entities",
    # @mentions
    "photo by @john_doe123 on twitter @user",
    # CJK ranges (kana and hangul stay)
    "一只猫 a cat 日本の猫",
    "한국어 korean ㈱ company ㍻ era",
    # dashes and quotes
    "well\u2014known en\u2013dash \u2010hyphen\u2011 a---b \u301cwave",
    "\u00abguillemets\u00bb and \u201ccurly\u201d and \u2018single\u2019 and `backtick\u00b4",
    '"""AUSVERKAUFT""" and \'\'two\'\'',
    # &quot; / &amp after html parsing, ip addresses, article ids, \n
    "say &amp;quot hello &amp;amp bye",
    "server at 192.168.0.1 is down, version 1.2.3.4.5",
    "meeting at 3:45 <br>",
    "line one\\nline two\nline three",
    # "#123", "#12345", "123456"
    "issue #123 fixed, #1234 four, #12345 five, #12 #tag #1a",
    "123456 items and 12345 items, order 9876543210",
    # filenames
    "download photo_001.png now, also file.pdf.zip and my-file.jpeg",
    "webp images and png image here",
    # quotes and dots, bad punctuation, " . "
    "wow!!! really??? ... end... start. a . b",
    "price ~$20* (approx) [new] {set} |pipe| back\\slash /slash",
    "\u00ae\u2122\u00a9\u2022\u00a7\u00bf\u00a1 \u00bd cup of \u00be sugar \u00b7 \u00ba",
    # this-is-my-cute-cat / this_is_my_cute_cat
    "this-is-my-cute-cat",
    "this_is_my_cute_cat",
    "a-b-c-d and well-known",
    # letter/digit codes
    "jc6640 model jc6640vc part 6640vc231 sku",
    "j2d1a2a code ab12cd34 test x1y2z3 and a1b2",
    # shipping / download / click / extensions / page
    "free shipping worldwide, worldwide free shipping on orders",
    "free download or download free or just download",
    "click here for more, click for details, click on image",
    "page 12 of 30",
    # sizes
    "1920x1080 wallpaper, 4.5x3 inches, 10\u00d720 cm, 3\u04454 cyr, 1.5x2.5.",
    # " : ", "\D[,./]\b", whitespace
    "title : subtitle a,b,c 1,000 end.start a/b",
    "tab\tseparated   many    spaces",
    # leading and trailing characters, quote stripping
    "-leading dash",
    "trailing comma,",
    "'quoted phrase'",
    '"double quoted"',
    ".hidden",
    ":colon start;",
    "plus+",
    # non-ASCII letters, case mapping
    "Caf\u00e9 in Z\u00fcrich, na\u00efve fa\u00e7ade",
    "\u03a3\u038a\u03a3\u03a5\u03a6\u039f\u03a3 greek, \u0130stanbul, STRASSE stra\u00dfe",
    "cafe\u0301 decomposed and \u212b angstrom",
    # emoji
    "a cat \U0001f431 with a hat \U0001f3a9 \u2764\ufe0f love",
    # mojibake (ftfy), C1 controls, ligatures, widths, line breaks, controls
    "don\u00e2\u20ac\u2122t stop, it\u00e2\u20ac\u2122s a dog\u2019s life",
    "caf\u00c3\u00a9 latte, \u00c3\u00bcber",
    "\u0093smart\u0094 c1 quotes \u0085 and \u0080",
    "\u00e2\u20ac\u00a6 ellipsis",
    "\uff26\uff35\uff2c\uff2c\uff37\uff29\uff24\uff34\uff28 \uff54\uff45\uff58\uff54 \uff11\uff12\uff13 \uff03hashtag \uff20name",
    "\ufb01ne \ufb02ow ligatures \u3000 ideographic space",
    "zero\u200bwidth bom\ufeffchar bell\x07char \x1cfile sep\x1f",
    "ansi \x1b[31mred\x1b[0m text",
    "crlf\r\nline\u2028sep\u2029para",
    # realistic scraped captions
    "Photo: A beautiful sunset over the ocean, 4K wallpaper (3840x2160) - free download at www.wallpapers.com",
    "Buy Now!!! Nike Air Max 90 Size 10.5 SKU: AB1234 - FREE SHIPPING",
    "IMG_20190101_123456.jpg",
    "Stock Photo - Happy family at the beach; 2019 \u00a9 Getty Images #family #beach",
    "Vintage poster \u201cVisit Paris\u201d \u2013 1920s, 50 x 70 cm",
    "A girl with a pearl earring, oil on canvas, c. 1665 by Johannes Vermeer.",
    # more html.parser / beautifulsoup4 behaviour
    "<rt>ruby</rt> text <template>hidden</template>shown <![CDATA[kept]]> cdata",
    "a<br>  </br>  b",
    "<b\x00>junk tag",
    "&#128; euro &ampx; &AMP; &a",
    "fish \uff06amp; chips \uff06lt;b\uff06gt;",
    # Python's whitespace, word and digit classes, case mapping, NFC
    "\x1c  padded \x1f",
    "\u03a3\u0391\u03a3 \u039f\u0394\u039f\u03a3",
    "nai\u0308ve \uf900 compat",
    "abc1234\u00e9 and _abc123",
    "\u0661\u0662\u0663\u0664\u0665\u0666\u0667 digits #\u0661\u0662\u0663 hash",
    "tag#123abc and a#1 b",
    "click on click on y, xclick for more",
    "see ex.com, ex.ru/x/, ex.it/y@z",
    # more mojibake
    "\u00e0\u00a4\u00a4\u00e0\u00a4\u00a4 hindi",
    "\u00e2\u20ac\u0153quote\u00e2\u20ac\x9d end",
    "\u00e2\u20ac\u00a2 bullet \u00e2\u20ac\u201d dash",
    "voil\u00e0  deux espaces",
    "\u00c3\xa0 la carte",
    # known differences (see KNOWN_DIFFERENCES)
    "10\u00d7\u00b2 area",
    "price &#128;\u00e9",
]

# Generated captions: random joins of fragments that exercise the steps' interplay (fixed seed).
FRAGMENTS = [
    "a", "B", "cat", " ", "  ", "\n", "\t", "1", "23", "456", "1234567", ".", ",", "/", "-", "_", ":", ";",
    "'", '"', "!", "?", "#", "@", "&", "<", ">", "%", "+", "=", "x", "www.", ".com", ".co", ".org",
    "http://", "https:", "www:", "/path", "@home", "<b>", "</b>", "<br/>", "<p class='a>b'>", "<script>",
    "</script>", "<!--", "-->", "<!", "<?", "</", "<![CDATA[", "]]>", "&amp;", "&amp", "&quot;", "&quot",
    "&lt;", "&#39;", "&#x27;", "&#150;", "&#", "&foo;", "&NewLine;", "&nbsp;", "\u00e9", "\u00c9",
    "\u00fc", "\u0130", "\u03a3", "\u03c9", "\u732b", "\u306e", "\ud55c", "\u3231", "\U0001f431",
    "\u0301", "\u200b", "\ufeff", "\x1c", "\x07", "\u00a0", "\ufb01", "\uff26", "\uff03", "\u3000",
    "\u2028", "\r\n", "\u2014", "\u2013", "\u201c", "\u201d", "\u2018", "\u2019", "\u00ab", "\u00bb",
    "`", "\u00b4", "\u00a9", "\u00ae", "\u2122", "\u00bd", "\u00b7", "~", "*", "(", ")", "[", "]", "{",
    "}", "|", "\\", "\\n", "...", "..", " . ", " : ", "jc6640", "ab12cd", "6640vc231", "j2d1a2a",
    "1920x1080", "1.5x2", "3\u00d74", "192.168.0.1", "page 3", "click on it", "free shipping",
    "free download", "png image", ".jpg", "file.png", "1:23 ", "%20", "%C3%A9", "%ZZ", "<person>",
    "this-is", "_x_", "\u0661\u0662\u0663", "\u0149", "<template>", "</template>", "<rt>", "</rt>",
    "&#0;", "&#x9D;", "<a b=c/>", "<b", "</ b>", "&a-b",
]
GENERATED = 150
GENERATED_SEED = 20240611


def generated_captions():
    rng = random.Random(GENERATED_SEED)
    return ["".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(2, 12))) for _ in range(GENERATED)]


# Cases where the Rust port knowingly differs from upstream; the reason goes into the file.
KNOWN_DIFFERENCES = {
    "10\u00d7\u00b2 area": "ftfy's badness heuristic decides whether a lowercase two-byte sequence "
    "(here U+00D7 U+00B2) is mojibake; the port never re-decodes sequences led by U+00D7 or U+00DF",
    "price &#128;\u00e9": "ftfy re-decodes the whole segment as MacRoman (U+20AC U+00E9 -> U+06CE); "
    "the port only repairs UTF-8 read as windows-1252",
}


def load_upstream(t5_py):
    """Imports LlamaGen's t5.py with stand-ins for its model-only imports."""
    stubs = {
        "torch": {},
        "transformers": {"T5EncoderModel": object, "AutoTokenizer": object},
        "huggingface_hub": {"hf_hub_download": None},
    }
    for name, attrs in stubs.items():
        module = types.ModuleType(name)
        for key, value in attrs.items():
            setattr(module, key, value)
        sys.modules[name] = module
    spec = importlib.util.spec_from_file_location("llamagen_t5", t5_py)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    embedder = module.T5Embedder.__new__(module.T5Embedder)  # no weights, no download
    embedder.use_text_preprocessing = True  # upstream's default, used by sample_t2i.py
    return embedder


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    t5_py = Path(sys.argv[1])
    source = t5_py.read_bytes()
    embedder = load_upstream(t5_py)

    cases = []
    seen = set()
    for caption in CAPTIONS + generated_captions():
        if caption in seen:
            continue
        seen.add(caption)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # bs4's MarkupResemblesLocatorWarning
            once = embedder.clean_caption(caption)
            output = embedder.text_preprocessing(caption)
        case = {"input": caption, "once": once, "output": output}
        if caption in KNOWN_DIFFERENCES:
            case["known_difference"] = KNOWN_DIFFERENCES[caption]
        cases.append(case)
    assert set(KNOWN_DIFFERENCES) <= seen, "a known difference names no caption"

    doc = {
        "generator": "scripts/caption_goldens.py",
        "upstream": {
            "repository": "FoundationVision/LlamaGen",
            "file": "language/t5.py",
            "sha256": hashlib.sha256(source).hexdigest(),
            "function": "T5Embedder.text_preprocessing (clean_caption twice); once = one clean_caption",
        },
        "versions": {
            "python": platform.python_version(),
            "unicodedata": unicodedata.unidata_version,
            "ftfy": ftfy.__version__,
            "beautifulsoup4": bs4.__version__,
        },
        "cases": cases,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, ensure_ascii=True, indent=1) + "\n", encoding="utf-8")
    print(f"{len(cases)} cases -> {out.relative_to(root)}")


if __name__ == "__main__":
    main()
