//! Emu3-Gen: a Llama backbone (grouped-query attention, RoPE theta 1e6) with visual tokens in
//! one vocabulary and negative-prompt guidance on log-probabilities.
//!
//! - Paper: Wang et al., "Emu3: Next-Token Prediction is All You Need" (arXiv 2409.18869).
//! - Upstream: `baaivision/Emu3`; transformers' `Emu3ForConditionalGeneration`.
//! - Weights: Hugging Face `BAAI/Emu3-Gen` (original layout: `model.*`, `lm_head.weight`),
//!   `BAAI/Emu3-Gen-hf` (transformers layout: `text_model.model.*`, `text_model.lm_head.weight`,
//!   `vqmodel.*`) or a checkpoint saved by transformers 5 (`model.text_model.*`, `lm_head.weight`,
//!   `model.vqmodel.*`): a directory with `config.json` and the safetensors shards with their index.
//!
//! The prompt (generation mode) is `BOS + text + BOI + "{H}*{W}" + <|image token|>`; the model
//! then emits `H` rows of `W` visual tokens each ended by EOL, then EOF, EOI and EOS, all forced
//! here. Guidance runs the negative prompt as its own sequence and combines log-softmax outputs.
//!
//! ```no_run
//! use sjd2_core::Device;
//! use sjd2_models::emu3::{Emu3, Emu3Image, Emu3Tokens};
//! let t = Emu3Tokens::EMU3_GEN;
//! // "90*90" as text tokens comes from the Emu3 tokenizer; ids here are placeholders.
//! let image = Emu3Image { rows: 90, cols: 90, size_tokens: vec![1, 2, 3], negative: vec![t.bos] };
//! let model = Emu3::load("Emu3-Gen", t, image, &Device::flex())?;
//! # Ok::<(), sjd2_models::LoadError>(())
//! ```

use std::path::Path;

use serde::Deserialize;
use sjd2_core::{Device, GuidanceStyle, ImageLayout};

use crate::adapter::{CodeMap, LlamaT2I, Prompting, Unconditional};
use crate::config::{TextConfig, read_json};
use crate::error::Result;
use crate::llama::{Backbone, KeyNames};
use crate::weights::{Checkpoint, WeightLoader};

/// Special token ids of an Emu3 vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Emu3Tokens {
    /// `<|endoftext|>`, used as padding.
    pub pad: u32,
    /// `<|extra_203|>`.
    pub bos: u32,
    /// `<|extra_204|>`.
    pub eos: u32,
    /// End of line `<|extra_200|>`.
    pub eol: u32,
    /// End of frame `<|extra_201|>`.
    pub eof: u32,
    /// `<|image start|>`.
    pub boi: u32,
    /// `<|image end|>`.
    pub eoi: u32,
    /// `<|image token|>`.
    pub img: u32,
    /// First visual token (code 0).
    pub visual_start: u32,
    /// Number of visual tokens (codebook size).
    pub visual_count: u32,
}

/// The names of Emu3's special tokens, as its tokenizer (`tokenization_emu3.py`) and the
/// `vocabulary_map` of transformers' `Emu3Config` spell them.
const SPECIAL_NAMES: [&str; 8] = [
    "<|endoftext|>",
    "<|extra_203|>",
    "<|extra_204|>",
    "<|extra_200|>",
    "<|extra_201|>",
    "<|image start|>",
    "<|image end|>",
    "<|image token|>",
];

/// The name of visual token `code` (`<|visual token 000000|>` …).
fn visual_name(code: u32) -> String {
    format!("<|visual token {code:06}|>")
}

impl Emu3Tokens {
    /// The ids a vocabulary gives Emu3's special and visual tokens: `id` maps a token's name to
    /// its id (the checkpoint's `vocabulary_map`, [`Emu3Tokens::from_config`], or a tokenizer).
    /// Visual tokens are counted from `<|visual token 000000|>` while their ids stay consecutive,
    /// as transformers' `Emu3ImageVocabularyMapping` reads them.
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use sjd2_models::emu3::Emu3Tokens;
    ///
    /// let mut vocab: HashMap<String, u32> = [
    ///     "<|endoftext|>", "<|extra_203|>", "<|extra_204|>", "<|extra_200|>", "<|extra_201|>",
    ///     "<|image start|>", "<|image end|>", "<|image token|>",
    /// ]
    /// .iter()
    /// .enumerate()
    /// .map(|(i, n)| (n.to_string(), i as u32))
    /// .collect();
    /// for code in 0..4 {
    ///     vocab.insert(format!("<|visual token {code:06}|>"), 20 + code);
    /// }
    /// let t = Emu3Tokens::from_vocabulary(|name| vocab.get(name).copied()).unwrap();
    /// assert_eq!((t.boi, t.img, t.visual_start, t.visual_count), (5, 7, 20, 4));
    /// vocab.remove("<|image end|>");
    /// assert_eq!(Emu3Tokens::from_vocabulary(|n| vocab.get(n).copied()).unwrap_err(), "<|image end|>");
    /// ```
    ///
    /// # Errors
    /// The name of the first token the vocabulary lacks.
    pub fn from_vocabulary(id: impl Fn(&str) -> Option<u32>) -> std::result::Result<Self, String> {
        let mut ids = [0u32; SPECIAL_NAMES.len()];
        for (slot, name) in ids.iter_mut().zip(SPECIAL_NAMES) {
            *slot = id(name).ok_or_else(|| name.to_string())?;
        }
        let [pad, bos, eos, eol, eof, boi, eoi, img] = ids;
        let visual_start = id(&visual_name(0)).ok_or_else(|| visual_name(0))?;
        let visual_count = (1..)
            .take_while(|&code| id(&visual_name(code)) == Some(visual_start + code))
            .count() as u32
            + 1;
        Ok(Self {
            pad,
            bos,
            eos,
            eol,
            eof,
            boi,
            eoi,
            img,
            visual_start,
            visual_count,
        })
    }

    /// The ids recorded in a transformers `config.json` (`vocabulary_map`, Emu3-Gen-hf and
    /// conversions); `Ok(None)` when the config has no map (the original layout: take the ids
    /// from the tokenizer with [`Emu3Tokens::from_vocabulary`]).
    ///
    /// # Errors
    /// [`LoadError::Config`](crate::LoadError::Config) for an unreadable config or a map without
    /// a token Emu3 needs.
    pub fn from_config(path: impl AsRef<Path>) -> Result<Option<Self>> {
        let path = path.as_ref();
        let config: serde_json::Value = read_json(path)?;
        let Some(map) = config.get("vocabulary_map").and_then(|m| m.as_object()) else {
            return Ok(None);
        };
        Self::from_vocabulary(|name| map.get(name)?.as_u64().map(|v| v as u32))
            .map(Some)
            .map_err(|name| crate::LoadError::Config {
                path: path.to_path_buf(),
                field: "vocabulary_map".into(),
                reason: format!("has no `{name}`"),
            })
    }

    /// The ids of the released Emu3 tokenizer (`tokenization_emu3.py`).
    pub const EMU3_GEN: Emu3Tokens = Emu3Tokens {
        pad: 151_643,
        bos: 151_849,
        eos: 151_850,
        eol: 151_846,
        eof: 151_847,
        boi: 151_852,
        eoi: 151_853,
        img: 151_851,
        visual_start: 151_854,
        visual_count: 32_768,
    };
}

/// The image to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emu3Image {
    /// Rows of visual tokens (`H`).
    pub rows: usize,
    /// Visual tokens per row (`W`).
    pub cols: usize,
    /// The text tokens of `"{H}*{W}"` from the Emu3 tokenizer.
    pub size_tokens: Vec<u32>,
    /// The default negative prompt (without the image prefix), used when a prompt has none.
    pub negative: Vec<u32>,
}

#[derive(Deserialize)]
struct Emu3ConfigJson {
    text_config: Option<TextConfig>,
    #[serde(flatten)]
    top: Option<serde_json::Value>,
}

/// Loader for Emu3.
#[derive(Debug, Clone, Copy)]
pub struct Emu3;

impl Emu3 {
    /// Loads `dir/config.json` and the language model's weights in either key layout (strict;
    /// the image tokenizer's `vqmodel.*` tensors are ignored here).
    ///
    /// # Errors
    /// [`crate::LoadError`] naming the file, field or tensors at fault.
    pub fn load(
        dir: impl AsRef<Path>,
        tokens: Emu3Tokens,
        image: Emu3Image,
        device: &Device,
    ) -> Result<LlamaT2I> {
        let dir = dir.as_ref();
        let config_path = dir.join("config.json");
        let raw: Emu3ConfigJson = read_json(&config_path)?;
        let text: TextConfig = match raw.text_config {
            Some(t) => t,
            None => serde_json::from_value(raw.top.unwrap_or_default()).map_err(|e| {
                crate::LoadError::Corrupt {
                    path: config_path.clone(),
                    detail: format!("neither `text_config` nor top-level Llama fields: {e}"),
                }
            })?,
        };
        let checkpoint = Checkpoint::open(dir)?;
        let has = |n: &str| checkpoint.shape(n).is_some();
        let names = if has("text_model.model.embed_tokens.weight") {
            KeyNames::hugging_face("text_model.model.", "text_model.lm_head.weight")
        } else if has("model.text_model.embed_tokens.weight") {
            // As transformers 5 saves `Emu3ForConditionalGeneration` (its conversion mapping:
            // `text_model.lm_head` → `lm_head`, `text_model` → `model.text_model`, `vqmodel` →
            // `model.vqmodel`).
            KeyNames::hugging_face("model.text_model.", "lm_head.weight")
        } else {
            KeyNames::hugging_face("model.", "lm_head.weight")
        };
        let mut loader = WeightLoader::new(checkpoint, device);
        let backbone = Backbone::load(text.backbone(false), &names, &mut loader, device)?;
        loader.finish(|n| n.starts_with("vqmodel.") || n.starts_with("model.vqmodel."))?;
        let layout = ImageLayout::new(
            tokens.visual_start..tokens.visual_start + tokens.visual_count,
            image.rows,
            image.cols,
            Some(tokens.eol),
            vec![tokens.eof, tokens.eoi, tokens.eos],
        )?;
        let mut prefix = vec![tokens.boi];
        prefix.extend(&image.size_tokens);
        prefix.push(tokens.img);
        let prompting = Prompting {
            image_prefix: prefix,
            unconditional: Unconditional::Tokens(image.negative),
            pad: tokens.pad,
        };
        Ok(LlamaT2I::new(
            backbone,
            layout,
            GuidanceStyle::LogSoftmax,
            prompting,
            device,
        )?
        .with_code_map(CodeMap::Offset(tokens.visual_start)))
    }
}
