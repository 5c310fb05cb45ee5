//! Arbitrary text through a word-level tokenizer and every prompt template (FLAN-T5's cleans the
//! caption first), and through Emu3's tiktoken vocabulary (the repository's small one).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sjd2_models::prompt::{PromptTokenizer, Template};

fn tokenizer() -> &'static PromptTokenizer {
    static T: OnceLock<PromptTokenizer> = OnceLock::new();
    T.get_or_init(|| {
        let json = r#"{"version":"1.0","added_tokens":[{"id":0,"content":"<unk>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true},{"id":1,"content":"<s>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true},{"id":2,"content":"</s>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}],"normalizer":null,"pre_tokenizer":{"type":"Whitespace"},"post_processor":null,"decoder":null,"model":{"type":"WordLevel","vocab":{"<unk>":0,"<s>":1,"</s>":2,"a":3,"red":4,"circle":5,"Generate":6,"an":7,"image":8},"unk_token":"<unk>"}}"#;
        PromptTokenizer::from_json(json).expect("the fuzz tokenizer parses").with_max_tokens(64)
    })
}

fn emu3() -> &'static PromptTokenizer {
    static T: OnceLock<PromptTokenizer> = OnceLock::new();
    T.get_or_init(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../sjd2-models/tests/fixtures/tokenizers/emu3");
        PromptTokenizer::from_emu3_tiktoken(
            format!("{dir}/emu3.tiktoken"),
            format!("{dir}/emu3_vision_tokens.txt"),
        )
        .expect("the fixture vocabulary loads")
        .with_max_tokens(256)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let t = tokenizer();
    for template in [Template::Lumina { width: 512, height: 512 }, Template::Chameleon, Template::Anole, Template::Emu3, Template::Janus, Template::T5, Template::Plain] {
        let _ = t.encode(text, &template);
    }
    let _ = t.encode_text(text);
    let _ = emu3().encode(text, &Template::Emu3);
    let _ = sjd2_models::caption::clean_caption(text);
});
