//! Prompt text to token ids with each family's template, through a Hugging Face
//! `tokenizer.json` (the `tokenizers` crate).

use std::path::Path;

use sjd2_core::{Error, Prompt};
use tokenizers::Tokenizer;

use crate::error::{LoadError, Result};

/// A family's prompt template. The image header (begin-of-image, size tokens) is added by the
/// model adapter, not here.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Template {
    /// Lumina-mGPT: `<s>Generate an image of {W}x{H} according to the following
    /// prompt:\n{prompt}<reserved08706>`.
    Lumina {
        /// Image width in pixels.
        width: usize,
        /// Image height in pixels.
        height: usize,
    },
    /// Chameleon / Anole: `<s>{prompt}`.
    Chameleon,
    /// Emu3 generation mode: `<|extra_203|>{prompt} masterpiece, film grained, best quality.`
    Emu3,
    /// Janus / Janus-Pro (DeepSeek SFT format): `<｜begin▁of▁sentence｜><|User|>: {prompt}\n\n<|Assistant|>:`.
    Janus,
    /// LlamaGen t2i (FLAN-T5): `{prompt}</s>`.
    T5,
    /// The text alone, with the tokenizer's own special tokens.
    Plain,
}

/// Turns prompt text into token ids for one family.
///
/// # Example
/// ```
/// use sjd2_models::prompt::{PromptTokenizer, Template};
/// let json = r#"{"version":"1.0","added_tokens":[{"id":0,"content":"<unk>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true},{"id":1,"content":"<s>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}],"normalizer":null,"pre_tokenizer":{"type":"Whitespace"},"post_processor":null,"decoder":null,"model":{"type":"WordLevel","vocab":{"<unk>":0,"<s>":1,"a":2,"red":3,"circle":4},"unk_token":"<unk>"}}"#;
/// let t = PromptTokenizer::from_json(json)?;
/// assert_eq!(t.encode("a red circle", &Template::Chameleon)?.tokens, vec![1, 2, 3, 4]);
/// assert!(t.encode("a blue circle", &Template::Chameleon).is_err()); // unknown word
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct PromptTokenizer {
    tokenizer: Tokenizer,
    max_tokens: usize,
}

impl PromptTokenizer {
    /// Loads a `tokenizer.json`.
    ///
    /// # Errors
    /// [`LoadError::Io`] or [`LoadError::Corrupt`].
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json(&text).map_err(|e| match e {
            LoadError::Corrupt { detail, .. } => LoadError::Corrupt {
                path: path.to_path_buf(),
                detail,
            },
            other => other,
        })
    }

    /// Parses a tokenizer from its JSON.
    ///
    /// # Errors
    /// [`LoadError::Corrupt`].
    pub fn from_json(json: &str) -> Result<Self> {
        let tokenizer: Tokenizer = json.parse().map_err(|e| LoadError::Corrupt {
            path: "tokenizer.json".into(),
            detail: format!("not a tokenizer: {e}"),
        })?;
        Ok(Self {
            tokenizer,
            max_tokens: 4096,
        })
    }

    /// Rejects prompts longer than `n` tokens (default 4096).
    pub fn with_max_tokens(mut self, n: usize) -> Self {
        self.max_tokens = n;
        self
    }

    /// The underlying tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Id of a token by its text (special tokens such as `<racm3:break>`).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.tokenizer.token_to_id(token)
    }

    fn special(&self, name: &str) -> std::result::Result<u32, Error> {
        self.token_id(name).ok_or_else(|| {
            Error::Unsupported(format!(
                "the tokenizer has no `{name}` token this template needs"
            ))
        })
    }

    /// Token ids of plain text (no special tokens added).
    ///
    /// # Errors
    /// [`Error::InvalidPrompt`] for words the tokenizer does not know (they would become the
    /// unknown token) and for text that fails to tokenize.
    pub fn encode_text(&self, text: &str) -> std::result::Result<Vec<u32>, Error> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| Error::InvalidPrompt {
                index: 0,
                reason: format!("cannot tokenize: {e}"),
            })?;
        let unk = ["<unk>", "[UNK]"]
            .iter()
            .find_map(|t| self.tokenizer.token_to_id(t));
        if let Some(unk) = unk {
            let unknown: Vec<&str> = enc
                .get_ids()
                .iter()
                .zip(enc.get_offsets())
                .filter(|(id, _)| **id == unk)
                .map(|(_, &(a, b))| &text[a..b])
                .collect();
            if !unknown.is_empty() {
                return Err(Error::InvalidPrompt {
                    index: 0,
                    reason: format!(
                        "unknown word(s) {}: the tokenizer has no token for them",
                        unknown
                            .iter()
                            .map(|w| format!("`{w}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            }
        }
        Ok(enc.get_ids().to_vec())
    }

    /// The prompt for `text` under `template`.
    ///
    /// # Errors
    /// [`Error::InvalidPrompt`] for empty or over-long prompts and unknown words;
    /// [`Error::Unsupported`] when the tokenizer lacks a special token the template needs.
    pub fn encode(&self, text: &str, template: &Template) -> std::result::Result<Prompt, Error> {
        if text.trim().is_empty() {
            return Err(Error::InvalidPrompt {
                index: 0,
                reason: "the prompt text is empty".into(),
            });
        }
        let mut ids = Vec::new();
        match template {
            Template::Lumina { width, height } => {
                ids.push(self.special("<s>")?);
                ids.extend(self.encode_text(&format!("Generate an image of {width}x{height} according to the following prompt:\n{text}"))?);
                ids.push(self.special("<reserved08706>")?);
            }
            Template::Chameleon => {
                ids.push(self.special("<s>")?);
                ids.extend(self.encode_text(text)?);
            }
            Template::Emu3 => {
                ids.push(self.special("<|extra_203|>")?);
                ids.extend(
                    self.encode_text(&format!("{text} masterpiece, film grained, best quality."))?,
                );
            }
            Template::Janus => {
                ids.push(self.special("<｜begin▁of▁sentence｜>")?);
                ids.extend(self.encode_text(&format!("<|User|>: {text}\n\n<|Assistant|>:"))?);
            }
            Template::T5 => {
                ids.extend(self.encode_text(text)?);
                ids.push(self.special("</s>")?);
            }
            Template::Plain => {
                let enc = self
                    .tokenizer
                    .encode(text, true)
                    .map_err(|e| Error::InvalidPrompt {
                        index: 0,
                        reason: format!("cannot tokenize: {e}"),
                    })?;
                ids.extend(enc.get_ids());
            }
        }
        if ids.len() > self.max_tokens {
            return Err(Error::InvalidPrompt {
                index: 0,
                reason: format!(
                    "{} tokens, more than the {} allowed",
                    ids.len(),
                    self.max_tokens
                ),
            });
        }
        Ok(Prompt::new(ids))
    }
}
