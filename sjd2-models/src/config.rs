//! Hugging Face `config.json` mirrors shared by the Llama-family adapters.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::{LoadError, Result};
use crate::llama::{BackboneConfig, NormPlacement, RopeKind};

/// `rope_parameters` (transformers 5) or the legacy top-level `rope_theta`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct RopeParameters {
    /// RoPE base.
    pub rope_theta: f64,
}

/// The fields of a Llama-family text config that the backbone needs (serde mirror of the
/// upstream `config.json`; unknown fields are ignored).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct TextConfig {
    /// Model width.
    pub hidden_size: usize,
    /// Blocks.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (defaults to `num_attention_heads`).
    pub num_key_value_heads: Option<usize>,
    /// Head width (defaults to `hidden_size / num_attention_heads`).
    pub head_dim: Option<usize>,
    /// SwiGLU width.
    pub intermediate_size: usize,
    /// Vocabulary.
    pub vocab_size: usize,
    /// RMSNorm epsilon.
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// Legacy RoPE base.
    pub rope_theta: Option<f64>,
    /// transformers 5 RoPE parameters.
    pub rope_parameters: Option<RopeParameters>,
    /// Context length.
    #[serde(default = "default_positions")]
    pub max_position_embeddings: usize,
    /// Chameleon-30B/34B post-norm blocks.
    #[serde(default)]
    pub swin_norm: bool,
    /// Chameleon's token-name map (used to find image tokens by name).
    #[serde(default)]
    pub vocabulary_map: BTreeMap<String, u32>,
}

fn default_eps() -> f64 {
    1e-5
}

fn default_positions() -> usize {
    4096
}

impl TextConfig {
    /// The backbone configuration, with per-head q/k norm when `qk_norm` is set.
    pub fn backbone(&self, qk_norm: bool) -> BackboneConfig {
        BackboneConfig {
            hidden: self.hidden_size,
            layers: self.num_hidden_layers,
            heads: self.num_attention_heads,
            kv_heads: self.num_key_value_heads.unwrap_or(self.num_attention_heads),
            head_dim: self
                .head_dim
                .unwrap_or(self.hidden_size / self.num_attention_heads.max(1)),
            intermediate: self.intermediate_size,
            vocab: self.vocab_size,
            output_vocab: self.vocab_size,
            rms_eps: self.rms_norm_eps,
            rope: RopeKind::Sequence {
                theta: self
                    .rope_parameters
                    .as_ref()
                    .map(|r| r.rope_theta)
                    .or(self.rope_theta)
                    .unwrap_or(10_000.0),
            },
            max_positions: self.max_position_embeddings,
            qk_norm_eps: qk_norm.then_some(1e-5),
            norm: if self.swin_norm {
                NormPlacement::Swin
            } else {
                NormPlacement::Pre
            },
        }
    }
}

/// Reads and parses a JSON file.
///
/// # Errors
/// [`LoadError::Io`] or [`LoadError::Corrupt`].
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| LoadError::Corrupt {
        path: path.to_path_buf(),
        detail: format!("invalid config: {e}"),
    })
}
