//! The FLAN-T5 encoder that turns a caption into LlamaGen t2i's caption embeddings.
//!
//! - Paper: Chung et al., "Scaling Instruction-Finetuned Language Models" (arXiv 2210.11416);
//!   Raffel et al., T5 (arXiv 1910.10683).
//! - Weights: Hugging Face `google/flan-t5-xl` (`model.safetensors` shards, transformers names
//!   `shared.weight`, `encoder.block.{i}.layer.{0,1}.*`, `encoder.final_layer_norm.weight`).
//!
//! T5 specifics: RMS layer norm without mean subtraction, unscaled attention scores plus a learned
//! bidirectional relative-position bias (from block 0, shared by all blocks), gated-GELU (tanh)
//! feed-forward. LlamaGen feeds the `last_hidden_state` of up to 120 tokens.

use std::path::Path;

use burn::Tensor;
use burn::tensor::activation::{gelu_approximate, softmax};
use burn::tensor::{Device, Int, TensorData};
use serde::Deserialize;

use crate::adapter::CaptionEncoder;
use crate::config::read_json;
use crate::error::Result;
use crate::weights::{Checkpoint, WeightLoader};

/// The `config.json` fields the encoder needs.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct T5Config {
    /// Model width.
    pub d_model: usize,
    /// Width of one head.
    pub d_kv: usize,
    /// Feed-forward width.
    pub d_ff: usize,
    /// Encoder blocks.
    pub num_layers: usize,
    /// Heads.
    pub num_heads: usize,
    /// Vocabulary.
    pub vocab_size: usize,
    /// Relative-position buckets.
    #[serde(default = "buckets")]
    pub relative_attention_num_buckets: usize,
    /// Relative-position range.
    #[serde(default = "distance")]
    pub relative_attention_max_distance: usize,
    /// Layer-norm epsilon.
    #[serde(default = "eps")]
    pub layer_norm_epsilon: f64,
    /// End-of-sequence id (`</s>`, 1 in T5's vocabulary): kept when a caption is truncated.
    #[serde(default = "eos")]
    pub eos_token_id: u32,
}

fn buckets() -> usize {
    32
}
fn distance() -> usize {
    128
}
fn eps() -> f64 {
    1e-6
}
fn eos() -> u32 {
    1
}

#[derive(Debug, Clone)]
struct Block {
    attn_norm: Tensor<1>,
    q: Tensor<2>,
    k: Tensor<2>,
    v: Tensor<2>,
    o: Tensor<2>,
    ff_norm: Tensor<1>,
    wi_0: Tensor<2>,
    wi_1: Tensor<2>,
    wo: Tensor<2>,
}

/// A T5 encoder stack.
#[derive(Debug, Clone)]
pub struct T5Encoder {
    config: T5Config,
    device: Device,
    embed: Tensor<2>,
    blocks: Vec<Block>,
    relative_bias: Tensor<2>,
    final_norm: Tensor<1>,
    max_tokens: usize,
}

/// Encoder outputs.
#[derive(Debug, Clone)]
pub struct T5Output {
    /// `[batch, len, d_model]` after the final norm.
    pub last_hidden_state: Tensor<3>,
    /// The input embeddings and every block's output but the last (then `last_hidden_state`
    /// completes the Hugging Face `hidden_states` tuple).
    pub hidden_states: Vec<Tensor<3>>,
}

fn t5_norm(x: Tensor<3>, w: &Tensor<1>, eps: f64) -> Tensor<3> {
    let var = x.clone().powf_scalar(2.0).mean_dim(2);
    x / (var + eps).sqrt() * w.clone().unsqueeze::<3>()
}

/// T5's bidirectional relative-position bucket of `relative = key − query`.
pub fn relative_bucket(relative: i64, num_buckets: usize, max_distance: usize) -> usize {
    let half = (num_buckets / 2) as i64;
    let mut bucket = if relative > 0 { half } else { 0 };
    let n = relative.abs();
    let max_exact = half / 2;
    if n < max_exact {
        bucket += n;
    } else {
        let scaled = ((n as f64 / max_exact as f64).ln()
            / (max_distance as f64 / max_exact as f64).ln()
            * (half - max_exact) as f64) as i64;
        bucket += (max_exact + scaled).min(half - 1);
    }
    bucket as usize
}

impl T5Encoder {
    /// Loads `dir/config.json` and the encoder weights in `dir` (decoder tensors, if present,
    /// are ignored). Captions are truncated to `max_tokens` tokens (120 for LlamaGen), keeping a final
    /// `</s>`.
    ///
    /// # Errors
    /// [`crate::LoadError`] naming the file, field or tensors at fault.
    pub fn load(dir: impl AsRef<Path>, max_tokens: usize, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        let config: T5Config = read_json(&dir.join("config.json"))?;
        let mut loader = WeightLoader::new(Checkpoint::open(dir)?, device);
        let (d, inner, ff) = (config.d_model, config.num_heads * config.d_kv, config.d_ff);
        let blocks = (0..config.num_layers)
            .map(|i| {
                let p = format!("encoder.block.{i}.layer");
                Block {
                    attn_norm: loader.tensor(&format!("{p}.0.layer_norm.weight"), [d]),
                    q: loader.linear(&format!("{p}.0.SelfAttention.q.weight"), inner, d),
                    k: loader.linear(&format!("{p}.0.SelfAttention.k.weight"), inner, d),
                    v: loader.linear(&format!("{p}.0.SelfAttention.v.weight"), inner, d),
                    o: loader.linear(&format!("{p}.0.SelfAttention.o.weight"), d, inner),
                    ff_norm: loader.tensor(&format!("{p}.1.layer_norm.weight"), [d]),
                    wi_0: loader.linear(&format!("{p}.1.DenseReluDense.wi_0.weight"), ff, d),
                    wi_1: loader.linear(&format!("{p}.1.DenseReluDense.wi_1.weight"), ff, d),
                    wo: loader.linear(&format!("{p}.1.DenseReluDense.wo.weight"), d, ff),
                }
            })
            .collect();
        let relative_bias = loader.tensor(
            "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
            [config.relative_attention_num_buckets, config.num_heads],
        );
        let embed = loader.tensor("shared.weight", [config.vocab_size, d]);
        let final_norm = loader.tensor("encoder.final_layer_norm.weight", [d]);
        loader.finish(|n| {
            n.starts_with("decoder.") || n == "encoder.embed_tokens.weight" || n == "lm_head.weight"
        })?;
        Ok(Self {
            config,
            device: device.clone(),
            embed,
            blocks,
            relative_bias,
            final_norm,
            max_tokens,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &T5Config {
        &self.config
    }

    fn position_bias(&self, len: usize) -> Tensor<4> {
        let c = &self.config;
        let mut idx = Vec::with_capacity(len * len);
        for q in 0..len {
            for k in 0..len {
                idx.push(relative_bucket(
                    k as i64 - q as i64,
                    c.relative_attention_num_buckets,
                    c.relative_attention_max_distance,
                ) as i64);
            }
        }
        let idx = Tensor::<1, Int>::from_data(TensorData::new(idx, [len * len]), &self.device);
        self.relative_bias
            .clone()
            .select(0, idx)
            .reshape([len, len, c.num_heads])
            .permute([2, 0, 1])
            .unsqueeze_dim::<4>(0)
    }

    /// Encodes a padded batch.
    ///
    /// # Shapes
    /// - `ids`: `[batch, len]`; `mask`: `batch·len` flags, `true` for real tokens
    ///
    /// # Errors
    /// [`sjd2_core::Error::Shape`] when the mask does not match.
    pub fn encode(&self, ids: Tensor<2, Int>, mask: &[bool]) -> sjd2_core::Result<T5Output> {
        let [b, len] = ids.dims();
        if mask.len() != b * len {
            return Err(sjd2_core::Error::Shape {
                what: "T5 attention mask".into(),
                expected: vec![b * len],
                got: vec![mask.len()],
            });
        }
        let c = &self.config;
        let (h, dk) = (c.num_heads, c.d_kv);
        let key_bias: Vec<f32> = mask
            .iter()
            .map(|&m| if m { 0.0 } else { f32::MIN })
            .collect();
        let key_bias = Tensor::<2>::from_data(TensorData::new(key_bias, [b, len]), &self.device)
            .reshape([b, 1, 1, len]);
        let bias = self.position_bias(len) + key_bias;
        let mut x = burn::tensor::module::embedding(self.embed.clone(), ids);
        let mut hidden_states = Vec::with_capacity(self.blocks.len());
        for blk in &self.blocks {
            hidden_states.push(x.clone());
            let n = t5_norm(x.clone(), &blk.attn_norm, c.layer_norm_epsilon);
            let split = |w: &Tensor<2>| {
                n.clone()
                    .matmul(w.clone().unsqueeze())
                    .reshape([b, len, h, dk])
                    .swap_dims(1, 2)
            };
            let (q, k, v) = (split(&blk.q), split(&blk.k), split(&blk.v));
            let scores = q.matmul(k.swap_dims(2, 3)) + bias.clone();
            let att = softmax(scores, 3)
                .matmul(v)
                .swap_dims(1, 2)
                .reshape([b, len, h * dk]);
            x = x + att.matmul(blk.o.clone().unsqueeze());
            let n = t5_norm(x.clone(), &blk.ff_norm, c.layer_norm_epsilon);
            let gate = gelu_approximate(n.clone().matmul(blk.wi_0.clone().unsqueeze()));
            let up = n.matmul(blk.wi_1.clone().unsqueeze());
            x = x + (gate * up).matmul(blk.wo.clone().unsqueeze());
        }
        Ok(T5Output {
            last_hidden_state: t5_norm(x, &self.final_norm, c.layer_norm_epsilon),
            hidden_states,
        })
    }
}

impl CaptionEncoder for T5Encoder {
    fn encode(&self, tokens: &[u32]) -> sjd2_core::Result<Tensor<2>> {
        // Truncated as transformers' tokenizer truncates with special tokens: the caption is cut
        // and a final `</s>` kept (LlamaGen's `t5.py` tokenizes with `truncation=True`).
        let eos = self.config.eos_token_id;
        let mut tokens = tokens.to_vec();
        if tokens.len() > self.max_tokens {
            let ends_with_eos = tokens.last() == Some(&eos);
            tokens.truncate(self.max_tokens);
            if let (true, Some(last)) = (ends_with_eos, tokens.last_mut()) {
                *last = eos;
            }
        }
        if tokens.is_empty() {
            return Err(sjd2_core::Error::InvalidPrompt {
                index: 0,
                reason: "the caption has no tokens".into(),
            });
        }
        if let Some(&t) = tokens
            .iter()
            .find(|&&t| t as usize >= self.config.vocab_size)
        {
            return Err(sjd2_core::Error::TokenOutOfRange {
                what: "caption".into(),
                token: t,
                allowed: format!("0..{}", self.config.vocab_size),
            });
        }
        let ids: Vec<i64> = tokens.iter().map(|&t| i64::from(t)).collect();
        let n = ids.len();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, n]), &self.device);
        let out = T5Encoder::encode(self, ids, &vec![true; n])?;
        Ok(out.last_hidden_state.squeeze_dim::<2>(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_match_t5() {
        // Values of transformers' _relative_position_bucket(bidirectional, 32 buckets, 128).
        assert_eq!(relative_bucket(0, 32, 128), 0);
        assert_eq!(relative_bucket(-3, 32, 128), 3);
        assert_eq!(relative_bucket(3, 32, 128), 19);
        assert_eq!(relative_bucket(-8, 32, 128), 8);
        assert_eq!(relative_bucket(-200, 32, 128), 15);
        assert_eq!(relative_bucket(200, 32, 128), 31);
    }
}
