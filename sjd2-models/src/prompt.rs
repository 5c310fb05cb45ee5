//! Prompt text to token ids with each family's template, through a Hugging Face
//! `tokenizer.json` (the `tokenizers` crate) or Emu3's original tiktoken vocabulary
//! (`emu3.tiktoken` + `emu3_vision_tokens.txt`, through `tiktoken-rs`).

use std::collections::HashMap;
use std::path::Path;

use sjd2_core::{Error, Prompt};
use tokenizers::Tokenizer;
use unicode_normalization::UnicodeNormalization;

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
    /// `<s>{prompt}`: Chameleon's text form without an end of turn (the demo model's template).
    Chameleon,
    /// Anole / Chameleon image generation: `<s>{prompt}<reserved08706>`, ended by the
    /// end-of-turn separator as transformers' `ChameleonProcessor` and GAIR-NLP/anole's
    /// `text2image.py` end it.
    Anole,
    /// Emu3 generation mode: `<|extra_203|>{prompt} masterpiece, film grained, best quality.`
    Emu3,
    /// Janus / Janus-Pro (DeepSeek SFT format, the prompt stripped as Janus'
    /// `VLChatProcessor` strips it): `<｜begin▁of▁sentence｜><|User|>: {prompt}\n\n<|Assistant|>:`.
    Janus,
    /// LlamaGen t2i (FLAN-T5): `{clean_caption(prompt)}</s>`, the prompt cleaned first as
    /// LlamaGen's `t5.py` cleans captions ([`crate::caption::clean_caption`]) and cut to
    /// [`T5_MAX_TOKENS`]; characters the vocabulary lacks become `<unk>` as upstream encodes
    /// them.
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
    backend: Backend,
    max_tokens: usize,
}

#[derive(Clone)]
enum Backend {
    HuggingFace(Box<Tokenizer>),
    Tiktoken(std::sync::Arc<Tiktoken>),
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::HuggingFace(_) => f.write_str("HuggingFace(tokenizer.json)"),
            Backend::Tiktoken(t) => write!(
                f,
                "Tiktoken({} ranks, {} special tokens)",
                t.ranks.len(),
                t.specials.len()
            ),
        }
    }
}

/// A tiktoken vocabulary with its special tokens, as Emu3's `Emu3Tokenizer` builds it.
struct Tiktoken {
    bpe: tiktoken_rs::CoreBPE,
    ranks: HashMap<Vec<u8>, u32>,
    specials: HashMap<String, u32>,
}

impl Tiktoken {
    /// NFC-normalized text with every special token allowed, as `Emu3Tokenizer.tokenize`.
    fn encode(&self, text: &str) -> std::result::Result<Vec<u32>, Error> {
        let text: String = text.nfc().collect();
        let allowed = self.bpe.special_tokens();
        self.bpe
            .encode(&text, &allowed)
            .map(|(ids, _)| ids)
            .map_err(|e| Error::InvalidPrompt {
                index: 0,
                reason: format!("cannot tokenize: {e}"),
            })
    }
}

/// The FLAN-T5 tokens LlamaGen feeds (`t5_feature_max_len`): [`Template::T5`] cuts longer
/// captions there, keeping `</s>`.
pub const T5_MAX_TOKENS: usize = 120;

/// Emu3's pre-tokenizer pattern (Qwen's: single digits, letters with one leading
/// non-letter, punctuation runs), `PAT_STR` of `baaivision/Emu3`'s `tokenization_emu3.py`.
pub const EMU3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The id of Emu3's first special token, whatever the number of ranks
/// (`SPECIAL_START_ID` of `tokenization_emu3.py`).
pub const EMU3_SPECIAL_START: u32 = 151_643;

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
            backend: Backend::HuggingFace(Box::new(tokenizer)),
            max_tokens: 4096,
        })
    }

    /// Loads Emu3's original vocabulary (BAAI/Emu3-Gen ships no `tokenizer.json`):
    /// `vocab` is `emu3.tiktoken` (a base64 token and its rank per line), `vision_tokens` is
    /// `emu3_vision_tokens.txt` (one special token per line). As `Emu3Tokenizer` does, the
    /// special tokens `<|endoftext|>`, `<|im_start|>`, `<|im_end|>`, `<|extra_0|>` …
    /// `<|extra_204|>` and then the file's lines take ids from [`EMU3_SPECIAL_START`], text is
    /// NFC-normalized, split by [`EMU3_PATTERN`] and special tokens in it are recognized.
    ///
    /// # Errors
    /// [`LoadError::Io`] for unreadable files, [`LoadError::Corrupt`] naming the line of a bad
    /// rank or a duplicate token or rank.
    pub fn from_emu3_tiktoken(
        vocab: impl AsRef<Path>,
        vision_tokens: impl AsRef<Path>,
    ) -> Result<Self> {
        use base64::Engine;
        let (vocab, vision_tokens) = (vocab.as_ref(), vision_tokens.as_ref());
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| LoadError::Io {
                path: p.to_path_buf(),
                source,
            })
        };
        let bad = |p: &Path, detail: String| LoadError::Corrupt {
            path: p.to_path_buf(),
            detail,
        };
        let mut ranks: HashMap<Vec<u8>, u32> = HashMap::new();
        let mut seen = std::collections::HashSet::new();
        for (n, line) in read(vocab)?
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let mut parts = line.split_whitespace();
            let (Some(token), Some(rank), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(bad(vocab, format!("line {}: not `<base64> <rank>`", n + 1)));
            };
            let token = base64::engine::general_purpose::STANDARD
                .decode(token)
                .map_err(|e| bad(vocab, format!("line {}: {e}", n + 1)))?;
            let rank: u32 = rank
                .parse()
                .map_err(|e| bad(vocab, format!("line {}: rank: {e}", n + 1)))?;
            if rank >= EMU3_SPECIAL_START
                || !seen.insert(rank)
                || ranks.insert(token, rank).is_some()
            {
                return Err(bad(
                    vocab,
                    format!(
                        "line {}: duplicate or out-of-range token or rank {rank}",
                        n + 1
                    ),
                ));
            }
        }
        let fixed = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"].map(String::from);
        let extras = (0..205).map(|i| format!("<|extra_{i}|>"));
        let vision: Vec<String> = read(vision_tokens)?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        let mut specials = HashMap::new();
        for (i, name) in fixed.into_iter().chain(extras).chain(vision).enumerate() {
            if specials
                .insert(name.clone(), EMU3_SPECIAL_START + i as u32)
                .is_some()
            {
                return Err(bad(vision_tokens, format!("`{name}` is listed twice")));
            }
        }
        let bpe = tiktoken_rs::CoreBPE::new(
            ranks.clone().into_iter().collect(),
            specials.clone().into_iter().collect(),
            EMU3_PATTERN,
        )
        .map_err(|e| bad(vocab, format!("cannot build the BPE: {e}")))?;
        Ok(Self {
            backend: Backend::Tiktoken(std::sync::Arc::new(Tiktoken {
                bpe,
                ranks,
                specials,
            })),
            max_tokens: 4096,
        })
    }

    /// Rejects prompts longer than `n` tokens (default 4096).
    pub fn with_max_tokens(mut self, n: usize) -> Self {
        self.max_tokens = n;
        self
    }

    /// The underlying Hugging Face tokenizer (`None` for a tiktoken vocabulary).
    pub fn tokenizer(&self) -> Option<&Tokenizer> {
        match &self.backend {
            Backend::HuggingFace(t) => Some(t),
            Backend::Tiktoken(_) => None,
        }
    }

    /// Id of a token by its text (special tokens such as `<racm3:break>`).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        match &self.backend {
            Backend::HuggingFace(t) => t.token_to_id(token),
            Backend::Tiktoken(t) => t
                .specials
                .get(token)
                .or_else(|| t.ranks.get(token.as_bytes()))
                .copied(),
        }
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
        self.encode_checked(text, true)
    }

    fn encode_checked(
        &self,
        text: &str,
        reject_unknown: bool,
    ) -> std::result::Result<Vec<u32>, Error> {
        let tokenizer = match &self.backend {
            Backend::HuggingFace(t) => t,
            Backend::Tiktoken(t) => return t.encode(text),
        };
        let enc = tokenizer
            .encode(text, false)
            .map_err(|e| Error::InvalidPrompt {
                index: 0,
                reason: format!("cannot tokenize: {e}"),
            })?;
        let unk = ["<unk>", "[UNK]"]
            .iter()
            .find_map(|t| tokenizer.token_to_id(t));
        if let Some(unk) = unk.filter(|_| reject_unknown) {
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
            Template::Anole => {
                ids.push(self.special("<s>")?);
                ids.extend(self.encode_text(text)?);
                ids.push(self.special("<reserved08706>")?);
            }
            Template::Emu3 => {
                ids.push(self.special("<|extra_203|>")?);
                ids.extend(
                    self.encode_text(&format!("{text} masterpiece, film grained, best quality."))?,
                );
            }
            Template::Janus => {
                ids.push(self.special("<｜begin▁of▁sentence｜>")?);
                let text = text.trim();
                ids.extend(self.encode_text(&format!("<|User|>: {text}\n\n<|Assistant|>:"))?);
            }
            Template::T5 => {
                ids.extend(self.encode_checked(&crate::caption::clean_caption(text), false)?);
                // LlamaGen tokenizes with `max_length=120, truncation=True`: a longer caption is
                // cut, its `</s>` kept.
                ids.truncate(T5_MAX_TOKENS - 1);
                ids.push(self.special("</s>")?);
            }
            Template::Plain => match &self.backend {
                Backend::HuggingFace(t) => {
                    let enc = t.encode(text, true).map_err(|e| Error::InvalidPrompt {
                        index: 0,
                        reason: format!("cannot tokenize: {e}"),
                    })?;
                    ids.extend(enc.get_ids());
                }
                Backend::Tiktoken(t) => ids.extend(t.encode(text)?),
            },
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
