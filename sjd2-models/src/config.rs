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

/// A Llama text config as transformers reads it: fields the file omits take `LlamaConfig`'s
/// defaults (width 4096, 32 layers, 32 heads, SwiGLU 11008, vocabulary 32000, RMSNorm 1e-6,
/// RoPE 10000, 2048 positions; `transformers/models/llama/configuration_llama.py`). Janus'
/// original `config.json` relies on them: its `language_config` lists only
/// `max_position_embeddings`, `model_type`, `num_hidden_layers`, `torch_dtype` and `vocab_size`.
///
/// # Errors
/// [`LoadError::Corrupt`] naming `path` when the value is not a text config.
pub fn llama_text_config(value: serde_json::Value, path: &Path) -> Result<TextConfig> {
    let mut value = value;
    if let Some(o) = value.as_object_mut() {
        let rope_given = o.contains_key("rope_theta") || o.contains_key("rope_parameters");
        for (key, default) in [
            ("hidden_size", serde_json::json!(4096)),
            ("intermediate_size", serde_json::json!(11_008)),
            ("num_hidden_layers", serde_json::json!(32)),
            ("num_attention_heads", serde_json::json!(32)),
            ("vocab_size", serde_json::json!(32_000)),
            ("rms_norm_eps", serde_json::json!(1e-6)),
            ("max_position_embeddings", serde_json::json!(2048)),
        ] {
            o.entry(key).or_insert(default);
        }
        if !rope_given {
            o.insert("rope_theta".into(), serde_json::json!(10_000.0));
        }
    }
    serde_json::from_value(value).map_err(|e| LoadError::Corrupt {
        path: path.to_path_buf(),
        detail: format!("invalid text config: {e}"),
    })
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

/// The `key` section of the `config.json` beside a checkpoint given as a directory or as one of
/// its files (the whole file for `None`), with the file's path; `Ok(None)` without the file or
/// the section.
///
/// # Errors
/// [`LoadError::Corrupt`] for a `config.json` that is not JSON.
pub(crate) fn config_beside(
    checkpoint: &Path,
    key: Option<&str>,
) -> Result<Option<(serde_json::Value, String)>> {
    let dir = if checkpoint.is_dir() {
        checkpoint
    } else {
        checkpoint.parent().unwrap_or(Path::new(""))
    };
    let path = dir.join("config.json");
    let json: serde_json::Value = match read_json(&path) {
        Ok(v) => v,
        Err(LoadError::Io { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let section = match key {
        Some(k) => json.get(k).cloned(),
        None => Some(json),
    };
    Ok(section.map(|v| (v, path.display().to_string())))
}

/// A size field of a JSON config, under the first of `names` present (`Ok(None)` when none
/// is); `origin` names the file in the error.
///
/// # Errors
/// [`LoadError::Config`] when the field is not a non-negative integer.
pub(crate) fn json_size(
    config: &serde_json::Value,
    names: &[&str],
    origin: &str,
) -> Result<Option<usize>> {
    json_field(config, names, origin, "a non-negative integer", |v| {
        v.as_u64().map(|n| n as usize)
    })
}

/// A list-of-sizes field of a JSON config, as [`json_size`].
///
/// # Errors
/// [`LoadError::Config`] when the field is not a list of non-negative integers.
pub(crate) fn json_sizes(
    config: &serde_json::Value,
    names: &[&str],
    origin: &str,
) -> Result<Option<Vec<usize>>> {
    json_field(
        config,
        names,
        origin,
        "a list of non-negative integers",
        |v| {
            v.as_array()?
                .iter()
                .map(|x| x.as_u64().map(|n| n as usize))
                .collect()
        },
    )
}

fn json_field<T>(
    config: &serde_json::Value,
    names: &[&str],
    origin: &str,
    what: &str,
    read: impl Fn(&serde_json::Value) -> Option<T>,
) -> Result<Option<T>> {
    let Some((name, value)) = names.iter().find_map(|&n| config.get(n).map(|v| (n, v))) else {
        return Ok(None);
    };
    read(value).map(Some).ok_or_else(|| LoadError::Config {
        path: origin.into(),
        field: name.into(),
        reason: format!("must be {what}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn janus_pro_7b_original_language_config_takes_llama_defaults() {
        // deepseek-ai/Janus-Pro-7B config.json `language_config`, verbatim (MODELS.md §5).
        let published = serde_json::json!({
            "max_position_embeddings": 16384,
            "model_type": "llama",
            "num_hidden_layers": 30,
            "torch_dtype": "bfloat16",
            "vocab_size": 102400
        });
        let c = llama_text_config(published, Path::new("config.json")).unwrap();
        assert_eq!(c.backbone(false), crate::presets::janus_pro_7b());
    }

    #[test]
    fn given_fields_win_over_llama_defaults() {
        let given = serde_json::json!({
            "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
            "intermediate_size": 160, "vocab_size": 96, "rms_norm_eps": 1e-5,
            "rope_parameters": {"rope_theta": 5e5, "rope_type": "default"}
        });
        let b = llama_text_config(given, Path::new("c.json"))
            .unwrap()
            .backbone(false);
        assert_eq!(
            (b.hidden, b.layers, b.heads, b.intermediate),
            (64, 2, 4, 160)
        );
        assert_eq!(b.rms_eps, 1e-5);
        assert_eq!(b.rope, RopeKind::Sequence { theta: 5e5 });
        let bad = llama_text_config(
            serde_json::json!({"hidden_size": "wide"}),
            Path::new("c.json"),
        );
        assert!(bad.unwrap_err().to_string().contains("c.json"));
    }
}
