//! Backbone sizes of the published checkpoints (the loaders read `config.json`; these presets
//! document the sizes and let tools size memory before loading). Sources: the upstream configs
//! as summarized in the project's MODELS.md (`ChameleonConfig` defaults, `configuration_emu3.py`,
//! the Janus-Pro-7B `language_config`).

use crate::llama::{BackboneConfig, NormPlacement, RopeKind};

#[allow(clippy::too_many_arguments)] // a private table helper
fn llama(
    hidden: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    intermediate: usize,
    vocab: usize,
    eps: f64,
    theta: f64,
    max_positions: usize,
) -> BackboneConfig {
    BackboneConfig {
        hidden,
        layers,
        heads,
        kv_heads,
        head_dim: hidden / heads,
        intermediate,
        vocab,
        output_vocab: vocab,
        rms_eps: eps,
        rope: RopeKind::Sequence { theta },
        max_positions,
        qk_norm_eps: None,
        norm: NormPlacement::Pre,
    }
}

/// Lumina-mGPT-7B / Chameleon-7B / Anole-7B: 32 layers, 32 heads (MHA), SwiGLU 11008, vocabulary
/// 65536, per-head q/k LayerNorm, RoPE 10000, 4096 positions.
pub fn chameleon_7b() -> BackboneConfig {
    BackboneConfig {
        qk_norm_eps: Some(1e-5),
        ..llama(4096, 32, 32, 32, 11_008, 65_536, 1e-5, 10_000.0, 4096)
    }
}

/// Emu3-Gen (8B): 32 layers, 32 query heads over 8 key/value heads, SwiGLU 14336, vocabulary
/// 184622, RoPE 1e6, 9216 positions.
pub fn emu3_gen() -> BackboneConfig {
    llama(4096, 32, 32, 8, 14_336, 184_622, 1e-5, 1_000_000.0, 9216)
}

/// Janus-Pro-7B's language model: 30 layers, 32 heads (MHA), SwiGLU 11008, vocabulary 102400,
/// RMSNorm 1e-6, RoPE 10000, 16384 positions.
pub fn janus_pro_7b() -> BackboneConfig {
    llama(4096, 30, 32, 32, 11_008, 102_400, 1e-6, 10_000.0, 16_384)
}

/// Janus-Pro-1B's language model (DeepSeek-LLM 1.3B, as in transformers'
/// `convert_deepseek_vl_weights_to_hf.py` text config): width 2048, 24 layers, 16 heads (MHA),
/// SwiGLU 5632, vocabulary 102400, RMSNorm 1e-6, RoPE 10000, 16384 positions.
pub fn janus_pro_1b() -> BackboneConfig {
    llama(2048, 24, 16, 16, 5632, 102_400, 1e-6, 10_000.0, 16_384)
}

/// Parameters of a backbone (embedding, blocks, head), for memory planning.
pub fn parameter_count(c: &BackboneConfig) -> usize {
    let attn = c.hidden * c.heads * c.head_dim * 2 + c.hidden * c.kv_heads * c.head_dim * 2;
    let mlp = 3 * c.hidden * c.intermediate;
    let norms = 2 * c.hidden
        + c.qk_norm_eps
            .map_or(0, |_| 2 * (c.heads + c.kv_heads) * c.head_dim);
    c.vocab * c.hidden + c.layers * (attn + mlp + norms) + c.hidden + c.hidden * c.output_vocab
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid_and_sized_like_the_papers() {
        for (c, billions) in [
            (chameleon_7b(), 7.0),
            (emu3_gen(), 8.5),
            (janus_pro_7b(), 6.9),
            (janus_pro_1b(), 1.6),
        ] {
            c.validate().unwrap();
            let b = parameter_count(&c) as f64 / 1e9;
            assert!((b - billions).abs() < 0.6, "{b} B parameters");
        }
    }
}
