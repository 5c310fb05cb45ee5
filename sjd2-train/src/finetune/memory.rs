//! How much memory a fine-tune needs on each device, before buying the device: an estimate from
//! the backbone's sizes, the sequence length, the micro-batch and LoRA or full training
//! ([`estimate`]), broken down the way burn 0.22 spends it ([`TrainingMemory`]).
//!
//! The terms follow burn's design (docs/finetuning.md, "Memory and time per device"):
//! - every device holds all the weights (no FSDP / ZeRO-3 in burn);
//! - gradients and AdamW's two moments are kept for each trained parameter in its own dtype (no
//!   f32 master copy);
//! - burn's LoRA composes `W + s·A·B` into a dense weight at every forward and autodiff keeps it
//!   for backward: one more copy of every adapted weight during a step;
//! - attention scores are materialized (no fused attention), and every layer's activations are
//!   kept for backward (no activation checkpointing in the trainer).
//!
//! The activation coefficients were measured on the CPU backend with `examples/finetune_memory.rs`
//! (docs/benchmarks.md), where the estimate is within the tolerance stated there.

use sjd2_models::llama::BackboneConfig;
use sjd2_models::presets::parameter_count;

/// Which weights a fine-tune trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trained {
    /// Every backbone parameter.
    Full,
    /// LoRA adapters of this rank on the attention projections (`attention_only`) or on the
    /// attention and MLP projections.
    Lora {
        /// Adapter rank.
        rank: usize,
        /// Only q, k, v and o.
        attention_only: bool,
    },
}

/// Bytes per device of one training step, by what holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrainingMemory {
    /// The model's weights.
    pub weights: u64,
    /// Trained parameters (the adapters; zero extra for full fine-tuning, whose trained
    /// parameters are the weights).
    pub adapters: u64,
    /// Gradients of the trained parameters.
    pub gradients: u64,
    /// AdamW's first and second moments.
    pub optimizer: u64,
    /// The composed `W + s·A·B` of every adapted weight, kept for backward (LoRA only).
    pub composed: u64,
    /// Activations kept for backward in the transformer blocks (attention scores included).
    pub activations: u64,
    /// Logits, their log-softmax and its gradient.
    pub logits: u64,
}

impl TrainingMemory {
    /// The sum of every term.
    pub fn total(&self) -> u64 {
        self.weights
            + self.adapters
            + self.gradients
            + self.optimizer
            + self.composed
            + self.activations
            + self.logits
    }

    /// Everything but the weights: what a step adds to a model already loaded.
    pub fn training(&self) -> u64 {
        self.total() - self.weights
    }
}

/// Parameters of the adapters of one layer (`r·(in + out)` per adapted projection) and the
/// elements of the weights they adapt.
fn adapted(c: &BackboneConfig, rank: usize, attention_only: bool) -> (u64, u64) {
    let (d, q, kv, f) = (
        c.hidden as u64,
        (c.heads * c.head_dim) as u64,
        (c.kv_heads * c.head_dim) as u64,
        c.intermediate as u64,
    );
    let r = rank as u64;
    let mut shapes = vec![(d, q), (d, kv), (d, kv), (q, d)];
    if !attention_only {
        shapes.extend([(d, f), (d, f), (f, d)]);
    }
    let params = shapes.iter().map(|(i, o)| r * (i + o)).sum();
    let weights = shapes.iter().map(|(i, o)| i * o).sum();
    (params, weights)
}

/// Activation elements kept per token of one layer, besides attention scores: norm inputs and
/// outputs, q / k / v before and after RoPE, the attention output, the SwiGLU branches and their
/// product, the residuals and the LoRA branches. Counting the tensors autodiff keeps gives about
/// `6d + 3q + 4kv + 4f`; the coefficients here are that count scaled to the peaks measured on
/// the CPU backend (temporaries alive at the peak), see the module docs.
fn activation_elements_per_token(c: &BackboneConfig) -> u64 {
    let (d, q, kv, f) = (
        c.hidden as u64,
        (c.heads * c.head_dim) as u64,
        (c.kv_heads * c.head_dim) as u64,
        c.intermediate as u64,
    );
    10 * d + 5 * q + 7 * kv + 7 * f
}

/// Copies of the `heads × L²` attention scores alive per layer at the peak (scores, masked
/// scores, probabilities; measured on the CPU backend).
const SCORE_COPIES: u64 = 3;

/// The memory per device of one training step of `micro_batch` sequences of `seq_len` tokens on
/// a backbone of `config`, its weights and computation in a dtype of `bytes` bytes (2 for
/// bf16/f16, 4 for f32). Data-parallel training on several devices needs this on each.
///
/// ```
/// use sjd2_train::finetune::memory::{Trained, estimate};
/// let c = sjd2_models::presets::chameleon_7b();
/// let lora = estimate(&c, 2400, 1, Trained::Lora { rank: 16, attention_only: false }, 2);
/// let full = estimate(&c, 2400, 1, Trained::Full, 2);
/// assert!(lora.total() < full.total());
/// assert_eq!(lora.weights, full.weights);
/// ```
pub fn estimate(
    config: &BackboneConfig,
    seq_len: usize,
    micro_batch: usize,
    trained: Trained,
    bytes: u64,
) -> TrainingMemory {
    let params = parameter_count(config) as u64;
    let layers = config.layers as u64;
    let (adapters, composed, trainable) = match trained {
        Trained::Full => (0, 0, params),
        Trained::Lora {
            rank,
            attention_only,
        } => {
            let (p, w) = adapted(config, rank, attention_only);
            (layers * p, layers * w, layers * p)
        }
    };
    let tokens = (seq_len * micro_batch) as u64;
    let scores = SCORE_COPIES * (micro_batch * config.heads) as u64 * (seq_len as u64).pow(2);
    let activations = layers * (tokens * activation_elements_per_token(config) + scores);
    TrainingMemory {
        weights: params * bytes,
        adapters: adapters * bytes,
        gradients: trainable * bytes,
        optimizer: 2 * trainable * bytes,
        composed: composed * bytes,
        activations: activations * bytes,
        logits: 3 * tokens * config.output_vocab as u64 * bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lora_needs_a_fraction_of_full_fine_tuning_states() {
        let c = sjd2_models::presets::janus_pro_7b();
        let lora = estimate(
            &c,
            600,
            1,
            Trained::Lora {
                rank: 16,
                attention_only: false,
            },
            2,
        );
        let full = estimate(&c, 600, 1, Trained::Full, 2);
        // Full: weights, gradients and two moments, 4 copies of ~6.9 B parameters in bf16.
        let p = parameter_count(&c) as u64;
        assert_eq!(full.weights + full.gradients + full.optimizer, 4 * 2 * p);
        // LoRA r16 on 7 projections of 30 layers: about 40 M parameters, 0.6 % of the model.
        let share = lora.adapters as f64 / lora.weights as f64;
        assert!((0.003..0.01).contains(&share), "{share}");
        assert!(lora.composed > 0 && full.composed == 0);
        assert!(lora.training() < full.training() / 2);
        // Attention scores grow with the square of the length.
        let long = estimate(&c, 1200, 1, Trained::Full, 2);
        assert!(long.activations > 2 * full.activations);
    }
}
