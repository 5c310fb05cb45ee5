//! Chameleon, Lumina-mGPT and Anole: one backbone with per-head q/k LayerNorm.
//!
//! - Paper: Chameleon Team, "Chameleon: Mixed-Modal Early-Fusion Foundation Models"
//!   (arXiv 2405.09818); Liu et al., "Lumina-mGPT" (arXiv 2408.02657); Chern et al., "ANOLE"
//!   (arXiv 2407.06135).
//! - Upstream: `facebookresearch/chameleon`, `Alpha-VLLM/Lumina-mGPT`, `GAIR-NLP/anole`;
//!   transformers' `ChameleonForConditionalGeneration`.
//! - Weights: Hugging Face `Alpha-VLLM/Lumina-mGPT-7B-768` (and -512, -1024, -34B-512),
//!   `leloy/Anole-7b-v0.1-hf`: a directory with `config.json` and `model.safetensors` or
//!   `model.safetensors.index.json` plus its shards.
//!
//! Image generation needs the **raw** head output: transformers masks every image token's logit
//! in `forward`, Lumina-mGPT does not; this adapter never masks. Lumina-mGPT's image span is
//! `<racm3:break>`, two size tokens, rows of image tokens each ended by `<reserved08799>`, then
//! `<eoss>`; its unconditional branch starts at `<racm3:break>` in its own cache row.
//!
//! Load a checkpoint (once the weights are downloaded):
//! ```no_run
//! use sjd2_core::Device;
//! use sjd2_models::chameleon::{Chameleon, ChameleonImage};
//! let device = Device::flex();
//! let (model, _vocab) = Chameleon::load("Lumina-mGPT-7B-768", |v| ChameleonImage::lumina(v, 768, 768), &device)?;
//! # Ok::<(), sjd2_models::LoadError>(())
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sjd2_core::{Device, GuidanceStyle, ImageLayout};

use crate::adapter::{CodeMap, LlamaT2I, Prompting, Unconditional};
use crate::config::{TextConfig, read_json};
use crate::error::{LoadError, Result};
use crate::llama::{Backbone, KeyNames};
use crate::weights::{Checkpoint, WeightLoader};

/// Chameleon's token-name vocabulary (`vocabulary_map` of `config.json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChameleonVocab {
    by_name: BTreeMap<String, u32>,
    /// Image token ids in order of their VQ codes: `image_ids[code] = id`.
    image_ids: Vec<u32>,
    /// VQ code of each id in the image range (`None` outside).
    code_of: BTreeMap<u32, u32>,
}

/// Parses `IMGIMG<digits written as A–J>Z` into the VQ code.
fn image_code(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("IMGIMG")?.strip_suffix('Z')?;
    if digits.is_empty() {
        return None;
    }
    digits.chars().try_fold(0u32, |acc, c| {
        let d = (c as u32).checked_sub('A' as u32).filter(|&d| d < 10)?;
        acc.checked_mul(10)?.checked_add(d)
    })
}

impl ChameleonVocab {
    /// Builds the vocabulary from the name → id map.
    ///
    /// # Errors
    /// [`LoadError::Config`] when the map holds no image tokens or their codes are not
    /// `0..n`.
    pub fn new(by_name: BTreeMap<String, u32>, origin: &Path) -> Result<Self> {
        let mut pairs: Vec<(u32, u32)> = by_name
            .iter()
            .filter_map(|(n, &id)| image_code(n).map(|c| (c, id)))
            .collect();
        pairs.sort_unstable();
        let bad = |reason: String| LoadError::Config {
            path: origin.to_path_buf(),
            field: "vocabulary_map".into(),
            reason,
        };
        if pairs.is_empty() {
            return Err(bad("holds no IMGIMG…Z image tokens".into()));
        }
        if let Some((i, (c, _))) = pairs.iter().enumerate().find(|(i, (c, _))| *c != *i as u32) {
            return Err(bad(format!(
                "image codes are not contiguous: code {c} at position {i}"
            )));
        }
        let image_ids: Vec<u32> = pairs.iter().map(|&(_, id)| id).collect();
        let code_of = pairs.iter().map(|&(c, id)| (id, c)).collect();
        Ok(Self {
            by_name,
            image_ids,
            code_of,
        })
    }

    /// Id of a named token.
    pub fn id(&self, name: &str) -> Option<u32> {
        self.by_name.get(name).copied()
    }

    /// VQ code of an image token id.
    pub fn code(&self, id: u32) -> Option<u32> {
        self.code_of.get(&id).copied()
    }

    /// Token id of a VQ code.
    pub fn token(&self, code: u32) -> Option<u32> {
        self.image_ids.get(code as usize).copied()
    }

    /// The image-conditioned prompt of three-way guidance for `tokens` (a prompt with images in
    /// it): the prompt without its text, keeping `<s>`, the image tokens and their
    /// `<racm3:break>` / `<eoss>` brackets, as Chameleon's inference code builds that row
    /// (`_split_inputs_for_cfg` in `facebookresearch/chameleon`). Give it to the decoder with
    /// [`Prompt::with_image_condition`](sjd2_core::Prompt::with_image_condition) and set
    /// `image_guidance_scale` (upstream 1.2); a text-only prompt needs none (its
    /// image-conditioned row is the unconditional one).
    pub fn image_condition(&self, tokens: &[u32]) -> Vec<u32> {
        let kept: Vec<u32> = ["<s>", "<racm3:break>", "<eoss>"]
            .iter()
            .filter_map(|n| self.id(n))
            .collect();
        tokens
            .iter()
            .copied()
            .filter(|t| kept.contains(t) || self.code_of.contains_key(t))
            .collect()
    }

    /// The contiguous id range of image tokens.
    ///
    /// # Errors
    /// [`LoadError::Config`] if the ids are not contiguous.
    pub fn image_range(&self, origin: &Path) -> Result<std::ops::Range<u32>> {
        let lo = self.image_ids.iter().copied().min().unwrap_or(0);
        let hi = self.image_ids.iter().copied().max().unwrap_or(0) + 1;
        if (hi - lo) as usize != self.image_ids.len() {
            return Err(LoadError::Config {
                path: origin.to_path_buf(),
                field: "vocabulary_map".into(),
                reason: format!("image token ids {lo}..{hi} are not contiguous"),
            });
        }
        Ok(lo..hi)
    }
}

/// The generated span of a Chameleon-family image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChameleonImage {
    /// Grid rows.
    pub rows: usize,
    /// Grid columns.
    pub cols: usize,
    /// Tokens prefilled before the first image token (begin-of-image, size tokens).
    pub prefix: Vec<u32>,
    /// Forced token after each row.
    pub row_end: Option<u32>,
    /// Forced tokens after the grid.
    pub end_tokens: Vec<u32>,
    /// Unconditional row when a prompt has no negative prompt.
    pub unconditional: Unconditional,
}

impl ChameleonImage {
    fn named(vocab: &ChameleonVocab, name: &str) -> Result<u32> {
        vocab.id(name).ok_or_else(|| LoadError::Config {
            path: PathBuf::from("config.json"),
            field: "vocabulary_map".into(),
            reason: format!("has no token `{name}`"),
        })
    }

    /// Lumina-mGPT's layout for a `height × width` pixel image (multiples of 32):
    /// `<racm3:break>`, `<reserved{8800+h/32}>`, `<reserved{8800+w/32}>`, then `h/16` rows of `w/16`
    /// image tokens each ended by `<reserved08799>`, then `<eoss>` and `<reserved08706>`;
    /// unconditional rows start at `<racm3:break>`.
    ///
    /// # Errors
    /// [`LoadError::Config`] for sizes that are not multiples of 32 or tokens missing from the
    /// vocabulary.
    pub fn lumina(vocab: &ChameleonVocab, height: usize, width: usize) -> Result<Self> {
        if height == 0 || width == 0 || !height.is_multiple_of(32) || !width.is_multiple_of(32) {
            return Err(LoadError::Config {
                path: PathBuf::from("image size"),
                field: "height/width".into(),
                reason: format!("must be positive multiples of 32 (got {height}x{width})"),
            });
        }
        let reserved = |n: usize| Self::named(vocab, &format!("<reserved{n:05}>"));
        Ok(Self {
            rows: height / 16,
            cols: width / 16,
            prefix: vec![
                Self::named(vocab, "<racm3:break>")?,
                reserved(8800 + height / 32)?,
                reserved(8800 + width / 32)?,
            ],
            row_end: Some(reserved(8799)?),
            end_tokens: vec![Self::named(vocab, "<eoss>")?, reserved(8706)?],
            unconditional: Unconditional::PrefixOnly,
        })
    }

    /// Chameleon / Anole's layout: `<racm3:break>` then a 32×32 grid, then `<eoss>`; the
    /// unconditional row is `<s><racm3:break>`.
    ///
    /// # Errors
    /// [`LoadError::Config`] for tokens missing from the vocabulary.
    pub fn anole(vocab: &ChameleonVocab) -> Result<Self> {
        Ok(Self {
            rows: 32,
            cols: 32,
            prefix: vec![Self::named(vocab, "<racm3:break>")?],
            row_end: None,
            end_tokens: vec![Self::named(vocab, "<eoss>")?],
            unconditional: Unconditional::Tokens(vec![Self::named(vocab, "<s>")?]),
        })
    }
}

/// Meta's `params.json` (model arguments under `model`), as transformers'
/// `convert_chameleon_weights_to_hf.py` reads it.
#[derive(Debug, serde::Deserialize)]
struct MetaParams {
    model: MetaModel,
}

#[derive(Debug, serde::Deserialize)]
struct MetaModel {
    dim: usize,
    n_layers: usize,
    n_heads: usize,
    n_kv_heads: Option<usize>,
    norm_eps: f64,
    rope_theta: Option<f64>,
    ffn_dim_multiplier: Option<f64>,
    multiple_of: Option<usize>,
    #[serde(default)]
    swin_norm: bool,
    qk_normalization: Option<bool>,
}

/// A file of Meta's release (`text_tokenizer.json`, `vqgan.ckpt`) for the weights in `dir`:
/// beside them, in `dir/tokenizer/`, or where the release keeps it relative to `models/7b/`
/// (`tokenizer/`).
pub fn release_file(dir: &Path, name: &str) -> Option<PathBuf> {
    [
        dir.join(name),
        dir.join("tokenizer").join(name),
        dir.join("../../tokenizer").join(name),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

/// The configuration of a Meta-layout Chameleon directory (`params.json`, the vocabulary of
/// the release's `text_tokenizer.json`, with `<reserved08707>` named `<image>` as transformers
/// names it), mapped as transformers' converter maps it: SwiGLU width
/// `multiple_of · ⌈int(ffn_dim_multiplier · int(8·dim/3)) / multiple_of⌉`, RoPE 10 000 unless
/// given, 4 096 positions (16 384 when theta is above 10 000), q/k LayerNorm on. Returns the
/// configuration and the tokenizer file it read.
///
/// # Errors
/// [`LoadError::Config`] for a missing field, a checkpoint without q/k normalization, or no
/// `text_tokenizer.json`; [`LoadError::Io`] / [`LoadError::Corrupt`] for unreadable files.
pub fn meta_config(dir: &Path) -> Result<(TextConfig, PathBuf)> {
    let params_path = dir.join("params.json");
    let params: MetaParams = read_json(&params_path)?;
    let m = params.model;
    if m.qk_normalization == Some(false) {
        return Err(LoadError::Config {
            path: params_path,
            field: "model.qk_normalization".into(),
            reason: "is false: Chameleon normalizes queries and keys".into(),
        });
    }
    let tokenizer = release_file(dir, "text_tokenizer.json").ok_or_else(|| LoadError::Config {
        path: dir.join("text_tokenizer.json"),
        field: "text_tokenizer.json".into(),
        reason: "not found beside the weights, in tokenizer/ or in ../../tokenizer/ (the \
                 release's layout): it holds the vocabulary"
            .into(),
    })?;
    let text = std::fs::read_to_string(&tokenizer).map_err(|source| LoadError::Io {
        path: tokenizer.clone(),
        source,
    })?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| LoadError::Corrupt {
        path: tokenizer.clone(),
        detail: e.to_string(),
    })?;
    let mut vocabulary: BTreeMap<String, u32> = json["model"]["vocab"]
        .as_object()
        .ok_or_else(|| LoadError::Config {
            path: tokenizer.clone(),
            field: "model.vocab".into(),
            reason: "is missing".into(),
        })?
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), u32::try_from(v.as_u64()?).ok()?)))
        .collect();
    if let Some(id) = vocabulary.remove("<reserved08707>") {
        vocabulary.insert("<image>".into(), id);
    }
    let vocab_size = vocabulary.values().max().map_or(0, |&m| m as usize + 1);
    let multiple_of = m.multiple_of.unwrap_or(256);
    let base = 8 * m.dim / 3;
    let scaled = (m.ffn_dim_multiplier.unwrap_or(1.0) * base as f64) as usize;
    let theta = m.rope_theta.unwrap_or(10_000.0);
    let config = serde_json::json!({
        "hidden_size": m.dim,
        "num_hidden_layers": m.n_layers,
        "num_attention_heads": m.n_heads,
        "num_key_value_heads": m.n_kv_heads.unwrap_or(m.n_heads),
        "intermediate_size": scaled.div_ceil(multiple_of.max(1)) * multiple_of,
        "vocab_size": vocab_size,
        "rms_norm_eps": m.norm_eps,
        "rope_theta": theta,
        "max_position_embeddings": if theta > 10_000.0 { 16_384 } else { 4_096 },
        "swin_norm": m.swin_norm,
        "vocabulary_map": vocabulary,
    });
    let config = serde_json::from_value(config).map_err(|e| LoadError::Config {
        path: params_path,
        field: "model".into(),
        reason: e.to_string(),
    })?;
    Ok((config, tokenizer))
}

/// Loader for the Chameleon family.
#[derive(Debug, Clone, Copy)]
pub struct Chameleon;

impl Chameleon {
    /// Loads `dir/config.json` and the weights in `dir` (strict: missing, unexpected and
    /// mis-shaped tensors are errors; the `model.vqmodel.*` image tokenizer is ignored here).
    /// A directory of Meta's release layout (Chameleon-7B, GAIR's Anole-7b-v0.1:
    /// `models/7b/consolidated.pth` with `params.json`, bf16, interleaved RoPE) loads as it is:
    /// its sizes from `params.json` ([`meta_config`]), its vocabulary from
    /// `tokenizer/text_tokenizer.json` of the release.
    ///
    /// `image` builds the image layout from the vocabulary (for example
    /// `|v| ChameleonImage::lumina(v, 768, 768)`).
    ///
    /// # Errors
    /// [`LoadError`] naming the file, field or tensors at fault.
    pub fn load(
        dir: impl AsRef<Path>,
        image: impl FnOnce(&ChameleonVocab) -> Result<ChameleonImage>,
        device: &Device,
    ) -> Result<(LlamaT2I, ChameleonVocab)> {
        let dir = dir.as_ref();
        // Meta's release: `params.json` beside `consolidated.pth` (Anole's `models/7b/` also
        // holds a 45-byte `config.json` that is not transformers').
        let meta = dir.join("params.json").is_file()
            && (dir.join("consolidated.pth").is_file() || !dir.join("config.json").is_file());
        let (mut config, config_path, names) = if meta {
            let (config, vocabulary) = meta_config(dir)?;
            (config, vocabulary, KeyNames::meta())
        } else {
            let path = dir.join("config.json");
            let names = KeyNames::hugging_face("model.", "lm_head.weight");
            (read_json::<TextConfig>(&path)?, path, names)
        };
        let checkpoint = Checkpoint::open(dir)?;
        if names.interleaved_rope
            && let Some(&[rows, _]) = checkpoint.shape(&names.embed)
        {
            // The release's embedding is the vocabulary's true size (65 536).
            config.vocab_size = rows;
        }
        let vocab = ChameleonVocab::new(config.vocabulary_map.clone(), &config_path)?;
        let image = image(&vocab)?;
        let mut loader = WeightLoader::new(checkpoint, device);
        let backbone = Backbone::load(config.backbone(true), &names, &mut loader, device)?;
        // Meta's files keep the RoPE frequencies (`rope.freqs`), which nothing reads.
        loader.finish(|n| n.starts_with("model.vqmodel.") || n == "rope.freqs")?;
        let layout = ImageLayout::new(
            vocab.image_range(&config_path)?,
            image.rows,
            image.cols,
            image.row_end,
            image.end_tokens.clone(),
        )?;
        let pad = vocab.id("<pad>").unwrap_or(0);
        let prompting = Prompting {
            image_prefix: image.prefix,
            unconditional: image.unconditional,
            pad,
        };
        let range = vocab.image_range(&config_path)?;
        let codes = range
            .clone()
            .map(|id| vocab.code(id).unwrap_or(0))
            .collect();
        let model = LlamaT2I::new(
            backbone,
            layout,
            GuidanceStyle::RawLogits,
            prompting,
            device,
        )?
        .with_code_map(CodeMap::Table {
            start: range.start,
            codes,
        });
        Ok((model, vocab))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_condition_keeps_bos_and_bracketed_images() {
        let names = [
            ("<s>", 1),
            ("<racm3:break>", 7),
            ("<eoss>", 8),
            ("a", 20),
            ("cat", 21),
            ("IMGIMGAZ", 30),
            ("IMGIMGBZ", 31),
        ];
        let v = ChameleonVocab::new(
            names.iter().map(|(n, i)| (n.to_string(), *i)).collect(),
            Path::new("config.json"),
        )
        .unwrap();
        let prompt = [1, 20, 7, 30, 31, 8, 21, 20];
        assert_eq!(v.image_condition(&prompt), vec![1, 7, 30, 31, 8]);
        assert_eq!(v.image_condition(&[1, 20, 21]), vec![1]);
    }

    #[test]
    fn image_token_names_parse_to_codes() {
        assert_eq!(image_code("IMGIMGAZ"), Some(0));
        assert_eq!(image_code("IMGIMGBAZ"), Some(10));
        assert_eq!(image_code("IMGIMGHBJEZ"), Some(7194));
        assert_eq!(image_code("IMGIMGZ"), None);
        assert_eq!(image_code("IMGIMGKZ"), None);
        assert_eq!(image_code("<eoss>"), None);
    }
}
