//! Golden tokenizer ids: every family's prompt template against the ids its upstream code
//! builds, on small vocabularies in each real format with the published settings
//! (`tests/fixtures/tokenizers`, written by `scripts/tokenizer_goldens.py` with transformers,
//! tokenizers and tiktoken; its README says which upstream path made each id).
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use serde_json::Value;
use sjd2_models::emu3::Emu3Tokens;
use sjd2_models::prompt::{PromptTokenizer, Template};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizers")
}

fn goldens() -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("goldens.json")).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn tokenizer(family: &Value) -> PromptTokenizer {
    PromptTokenizer::from_file(dir().join(family["tokenizer"].as_str().unwrap())).unwrap()
}

/// Every case of `family`: the template's ids equal upstream's (`expected` picks them), and the
/// plain text's ids equal the tokenizer's own.
fn check(
    family: &str,
    template: impl Fn(&Value) -> Template,
    expected: impl Fn(&Value) -> Vec<u32>,
) {
    let g = goldens();
    let tok = tokenizer(&g[family]);
    let cases = g[family]["cases"].as_array().unwrap();
    assert!(cases.len() >= 20, "{family}: {} cases", cases.len());
    for case in cases {
        let (name, text) = (
            case["name"].as_str().unwrap(),
            case["text"].as_str().unwrap(),
        );
        let got = tok.encode(text, &template(case)).unwrap().tokens;
        assert_eq!(got, expected(case), "{family} `{name}`: {text:?}");
    }
}

#[test]
fn lumina_template_matches_upstream() {
    check(
        "lumina",
        |c| Template::Lumina {
            width: c["width"].as_u64().unwrap() as usize,
            height: c["height"].as_u64().unwrap() as usize,
        },
        |c| ids(&c["ids"]),
    );
}

#[test]
fn anole_template_matches_upstream() {
    check("chameleon", |_| Template::Anole, |c| ids(&c["ids"]));
}

#[test]
fn janus_template_matches_upstream() {
    // Upstream's string ends with `<begin_of_image>`, which the model appends as its image
    // prefix.
    check(
        "janus",
        |_| Template::Janus,
        |c| {
            let mut v = ids(&c["ids"]);
            assert_eq!(v.pop(), Some(642), "{c}");
            v
        },
    );
}

#[test]
fn t5_template_matches_llamagen() {
    // LlamaGen cleans the caption before FLAN-T5 (`t5.py`'s `text_preprocessing`).
    check("t5", |_| Template::T5, |c| ids(&c["ids"]));
}

#[test]
fn emu3_tiktoken_matches_upstream() {
    let g = goldens();
    let e = &g["emu3"];
    let tok = PromptTokenizer::from_emu3_tiktoken(
        dir().join(e["tiktoken"].as_str().unwrap()),
        dir().join(e["vision_tokens"].as_str().unwrap()),
    )
    .unwrap();
    for case in e["cases"].as_array().unwrap() {
        let (name, text) = (
            case["name"].as_str().unwrap(),
            case["text"].as_str().unwrap(),
        );
        let got = tok.encode(text, &Template::Emu3).unwrap().tokens;
        assert_eq!(got, ids(&case["prompt_ids"]), "emu3 `{name}`: {text:?}");
        assert_eq!(
            tok.encode_text(text).unwrap(),
            ids(&case["text_ids"]),
            "emu3 `{name}`"
        );
    }
    // The size string splits into single digits, as the model was trained.
    for s in e["size_strings"].as_array().unwrap() {
        let text = s["text"].as_str().unwrap();
        assert_eq!(tok.encode_text(text).unwrap(), ids(&s["ids"]), "{text}");
    }
    let negative = &e["negative"];
    let mut got = vec![tok.token_id("<|extra_203|>").unwrap()];
    got.extend(tok.encode_text(negative["text"].as_str().unwrap()).unwrap());
    assert_eq!(got, ids(&negative["prompt_ids"]));
    // Special ids count from 151 643 in the vision file's order; the image-token ids are read
    // from the vocabulary, not assumed.
    for (name, id) in e["special_ids"].as_object().unwrap() {
        assert_eq!(
            tok.token_id(name),
            Some(id.as_u64().unwrap() as u32),
            "{name}"
        );
    }
    let t = Emu3Tokens::from_vocabulary(|n| tok.token_id(n)).unwrap();
    assert_eq!(
        (t.bos, t.img, t.boi, t.eoi),
        (151_849, 151_851, 151_852, 151_853)
    );
    assert_eq!((t.visual_start, t.visual_count), (151_854, 8));
}

#[test]
fn emu3_vocabulary_files_with_errors_are_refused_with_the_line() {
    let tmp = tempfile::tempdir().unwrap();
    let vision = dir().join("emu3/emu3_vision_tokens.txt");
    for (content, what) in [
        ("IQ== 0\nIQ== 1\n", "duplicate"),
        ("IQ== zero\n", "line 1"),
        ("not base64! 3\n", "line 1"),
        ("IQ==\n", "line 1"),
    ] {
        let vocab = tmp.path().join("emu3.tiktoken");
        std::fs::write(&vocab, content).unwrap();
        let e = PromptTokenizer::from_emu3_tiktoken(&vocab, &vision).unwrap_err();
        assert!(e.to_string().contains(what), "{content:?}: {e}");
    }
    let e =
        PromptTokenizer::from_emu3_tiktoken(tmp.path().join("none.tiktoken"), &vision).unwrap_err();
    assert!(e.to_string().contains("none.tiktoken"), "{e}");
}
