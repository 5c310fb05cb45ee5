//! The demo model's text vocabulary: a word-level `tokenizer.json` covering every word the
//! caption templates of [`crate::shapes`] can produce, so that users' prompts in the same
//! language tokenize and anything else is reported as an unknown word.

use crate::shapes::{Colour, Shape};

/// Special tokens, in id order: unknown, padding, begin and end of sequence.
pub const SPECIAL_TOKENS: [&str; 4] = ["<unk>", "<pad>", "<s>", "</s>"];

/// Every caption word, sorted and deduplicated (punctuation included as its own token).
pub fn caption_words() -> Vec<String> {
    let mut words: Vec<String> = [
        "a", "an", "and", ",", "picture", "of", "image", "showing", "there", "is", "small",
        "little", "tiny", "large", "big", "in", "the", "top", "bottom", "left", "right", "corner",
        "at", "on", "center", "to", "its", "below", "above", "it",
    ]
    .iter()
    .map(|w| (*w).to_string())
    .collect();
    words.extend(Shape::ALL.iter().map(|s| s.word().to_string()));
    words.extend(Colour::ALL.iter().map(|c| c.word().to_string()));
    words.sort();
    words.dedup();
    words
}

/// The `tokenizer.json` text: a Hugging Face word-level model with a whitespace-and-punctuation
/// pre-tokenizer, lower-casing normalizer, the special tokens first, then [`caption_words`].
pub fn tokenizer_json() -> String {
    let mut vocab = serde_json::Map::new();
    let mut added = Vec::new();
    for (i, s) in SPECIAL_TOKENS.iter().enumerate() {
        vocab.insert((*s).to_string(), i.into());
        added.push(serde_json::json!({
            "id": i, "content": s, "single_word": false, "lstrip": false, "rstrip": false,
            "normalized": false, "special": true
        }));
    }
    for (i, w) in caption_words().iter().enumerate() {
        vocab.insert(w.clone(), (SPECIAL_TOKENS.len() + i).into());
    }
    serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"}
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shapes::Sample;
    use sjd2_models::prompt::{PromptTokenizer, Template};

    #[test]
    fn every_generated_caption_tokenizes_without_unknown_words() {
        let t = PromptTokenizer::from_json(&tokenizer_json()).unwrap();
        for i in 0..500 {
            let caption = Sample::generate(9, i, 8).caption;
            let ids = t
                .encode_text(&caption)
                .unwrap_or_else(|e| panic!("{caption}: {e}"));
            assert!(!ids.is_empty());
        }
        let p = t
            .encode("A Red Circle in the top left corner", &Template::Chameleon)
            .unwrap();
        assert_eq!(p.tokens[0], 2, "<s> first");
        let e = t
            .encode("a mauve circle", &Template::Chameleon)
            .unwrap_err();
        assert!(e.to_string().contains("`mauve`"), "{e}");
    }

    #[test]
    fn vocabulary_is_small_and_stable() {
        let words = caption_words();
        assert!(words.len() < 64, "{} words", words.len());
        assert_eq!(words, caption_words());
        assert!(words.contains(&"star".to_string()) && words.contains(&"cyan".to_string()));
    }
}
