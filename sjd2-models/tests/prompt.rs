//! Prompt templates through a small word-level `tokenizer.json` built here, and prompt text to
//! image tokens end to end on the Chameleon fixture.
#![allow(clippy::unwrap_used)]

mod common;

use common::fixtures;
use sjd2_core::{Device, Error};
use sjd2_models::Unconditional;
use sjd2_models::chameleon::{Chameleon, ChameleonImage};
use sjd2_models::prompt::{PromptTokenizer, Template};
use sjd2_sampler::{DecoderConfig, Sjd2Decoder};

const SPECIALS: [&str; 7] = [
    "<unk>",
    "<s>",
    "</s>",
    "<reserved08706>",
    "<|extra_203|>",
    "<｜begin▁of▁sentence｜>",
    "<racm3:break>",
];
const WORDS: [&str; 24] = [
    "Generate",
    "an",
    "image",
    "of",
    "512x512",
    "according",
    "to",
    "the",
    "following",
    "prompt",
    ":",
    "a",
    "red",
    "circle",
    "masterpiece",
    ",",
    "film",
    "grained",
    "best",
    "quality",
    ".",
    "<|User|>",
    "<|Assistant|>",
    "blue",
];

/// Word-level tokenizer: specials get ids 0.., words follow; ids start at `offset` for words.
fn tokenizer_json(offset: u32) -> String {
    let mut vocab = serde_json::Map::new();
    let mut added = Vec::new();
    for (i, s) in SPECIALS.iter().enumerate() {
        vocab.insert((*s).into(), (i as u32).into());
        added.push(serde_json::json!({"id": i, "content": s, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}));
    }
    for (i, w) in WORDS.iter().enumerate() {
        vocab.insert((*w).into(), (offset + i as u32).into());
    }
    for (i, w) in ["<|User|>", "<|Assistant|>"].iter().enumerate() {
        added.push(serde_json::json!({"id": offset + 21 + i as u32, "content": w, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": false}));
    }
    common::word_level_tokenizer(&vocab, "<unk>", serde_json::json!(added)).to_string()
}

fn word(w: &str) -> u32 {
    40 + WORDS.iter().position(|x| *x == w).unwrap() as u32
}

#[test]
fn templates_produce_the_family_prompts() {
    let t = PromptTokenizer::from_json(&tokenizer_json(40)).unwrap();
    let lumina = t
        .encode(
            "a red circle",
            &Template::Lumina {
                width: 512,
                height: 512,
            },
        )
        .unwrap();
    let mut want = vec![1];
    want.extend(
        [
            "Generate",
            "an",
            "image",
            "of",
            "512x512",
            "according",
            "to",
            "the",
            "following",
            "prompt",
            ":",
            "a",
            "red",
            "circle",
        ]
        .map(word),
    );
    want.push(3);
    assert_eq!(lumina.tokens, want);
    let emu3 = t.encode("a red circle", &Template::Emu3).unwrap();
    assert_eq!(emu3.tokens[0], 4);
    assert_eq!(emu3.tokens[1..4], ["a", "red", "circle"].map(word));
    assert_eq!(*emu3.tokens.last().unwrap(), word("."));
    let janus = t.encode("a red circle", &Template::Janus).unwrap();
    assert_eq!(janus.tokens[..3], [5, word("<|User|>"), word(":")]);
    assert_eq!(
        janus.tokens[janus.tokens.len() - 2..],
        [word("<|Assistant|>"), word(":")]
    );
    assert_eq!(
        t.encode("red circle", &Template::T5).unwrap().tokens,
        vec![word("red"), word("circle"), 2]
    );
    assert_eq!(
        t.encode("a circle", &Template::Chameleon).unwrap().tokens,
        vec![1, word("a"), word("circle")]
    );
}

#[test]
fn bad_prompts_are_clear_errors() {
    let t = PromptTokenizer::from_json(&tokenizer_json(40)).unwrap();
    let e = t
        .encode("a green circle", &Template::Chameleon)
        .unwrap_err();
    assert!(
        matches!(&e, Error::InvalidPrompt { reason, .. } if reason.contains("`green`")),
        "{e}"
    );
    assert!(matches!(
        t.encode("   ", &Template::Chameleon).unwrap_err(),
        Error::InvalidPrompt { .. }
    ));
    let short = t.clone().with_max_tokens(3);
    assert!(matches!(
        short
            .encode("a red circle", &Template::Chameleon)
            .unwrap_err(),
        Error::InvalidPrompt { .. }
    ));
    let json = tokenizer_json(40).replace("<reserved08706>", "<reserved00000>");
    let t2 = PromptTokenizer::from_json(&json).unwrap();
    assert!(matches!(
        t2.encode(
            "a circle",
            &Template::Lumina {
                width: 512,
                height: 512
            }
        )
        .unwrap_err(),
        Error::Unsupported(_)
    ));
    assert!(PromptTokenizer::from_json("{}").is_err());
    assert!(PromptTokenizer::from_file("/nonexistent/tokenizer.json").is_err());
}

#[test]
fn prompt_text_to_image_tokens_on_the_chameleon_fixture() {
    let t = PromptTokenizer::from_json(&tokenizer_json(40)).unwrap();
    let image = ChameleonImage {
        rows: 3,
        cols: 3,
        prefix: vec![37, 52, 53],
        row_end: Some(51),
        end_tokens: vec![36],
        unconditional: Unconditional::PrefixOnly,
    };
    let (model, _) = Chameleon::load(
        fixtures().join("chameleon/hf"),
        |_| Ok(image),
        &Device::flex(),
    )
    .unwrap();
    let prompt = t
        .encode("a red circle", &Template::Chameleon)
        .unwrap()
        .with_seed(3);
    let cfg = DecoderConfig {
        window_len: sjd2_sampler::Window::Fixed(4),
        guidance_scale: 3.0,
        ..DecoderConfig::sjd2()
    };
    let g = Sjd2Decoder::new(model, cfg)
        .unwrap()
        .generate(&prompt)
        .unwrap();
    assert_eq!(g.tokens.len(), 3 * 4 + 1);
    assert!(
        g.tokens
            .iter()
            .enumerate()
            .all(|(i, &x)| if i % 4 == 3 && i < 12 {
                x == 51
            } else if i == 12 {
                x == 36
            } else {
                (4..36).contains(&x)
            })
    );
}
