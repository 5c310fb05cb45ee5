//! The layers of a [`super::Backbone`] block as burn modules: per-head q/k LayerNorm, attention
//! over a rollback KV cache or a whole causal sequence, SwiGLU, and the block itself.

use burn::module::{Module, Param};
use burn::nn::{Linear, RmsNorm};
use burn::tensor::activation::silu;
use burn::tensor::{Bool, Tensor};
use sjd2_core::{Error, KvCache, WindowPlan, apply_rope, attend};

use super::NormPlacement;

/// Chameleon's per-head LayerNorm of queries or keys (over `head_dim`, before RoPE). The affine
/// parameters are `[rows, head_dim]` with `rows` either the head count (Hugging Face) or 1
/// (Lumina-mGPT's fork, shared by every head).
#[derive(Module, Debug)]
pub struct HeadNorm {
    /// Scale `[rows, head_dim]`.
    pub weight: Param<Tensor<2>>,
    /// Shift `[rows, head_dim]`.
    pub bias: Param<Tensor<2>>,
    /// Epsilon.
    pub eps: f64,
}

impl HeadNorm {
    /// Normalizes `[rows, len, heads, head_dim]` over the last dimension.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mean = x.clone().mean_dim(3);
        let centered = x - mean;
        let var = centered.clone().powf_scalar(2.0).mean_dim(3);
        let normed = centered / (var + self.eps).sqrt();
        normed * self.weight.val().unsqueeze::<4>() + self.bias.val().unsqueeze::<4>()
    }
}

/// Where the keys and values of an attention layer come from.
pub(crate) enum KeyValues<'a> {
    /// A window appended to a rollback cache (inference).
    Cached {
        /// The cache.
        cache: &'a mut KvCache,
        /// This pass's plan.
        plan: &'a WindowPlan,
        /// Layer index in the cache.
        layer: usize,
    },
    /// The sequence's own keys and values under a causal mask (training, uncached scoring).
    Causal {
        /// `[1, 1, len, len]`, or `[rows, 1, len, len]` with per-row hidden keys (`true` = hidden).
        mask: &'a Tensor<4, Bool>,
    },
}

/// Multi-head or grouped-query attention with separate q/k/v projections, optional per-head q/k
/// norms and rotate-half RoPE.
#[derive(Module, Debug)]
pub struct SelfAttention {
    /// Query projection `[hidden, heads·head_dim]`.
    pub q_proj: Linear,
    /// Key projection `[hidden, kv_heads·head_dim]`.
    pub k_proj: Linear,
    /// Value projection `[hidden, kv_heads·head_dim]`.
    pub v_proj: Linear,
    /// Output projection `[heads·head_dim, hidden]`.
    pub o_proj: Linear,
    /// Per-head query norm (Chameleon).
    pub q_norm: Option<HeadNorm>,
    /// Per-head key norm (Chameleon).
    pub k_norm: Option<HeadNorm>,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
}

impl SelfAttention {
    /// Attention output `[rows, len, hidden]` of normalized inputs `[rows, len, hidden]`, with
    /// RoPE tables `[rows or 1, len, 1, head_dim]`.
    pub(crate) fn forward(
        &self,
        x: Tensor<3>,
        cos: &Tensor<4>,
        sin: &Tensor<4>,
        kv: KeyValues<'_>,
    ) -> Result<Tensor<3>, Error> {
        let [rows, len, _] = x.dims();
        let (h, kvh, hd) = (self.heads, self.kv_heads, self.head_dim);
        let q = self.q_proj.forward(x.clone()).reshape([rows, len, h, hd]);
        let k = self.k_proj.forward(x.clone()).reshape([rows, len, kvh, hd]);
        let v = self.v_proj.forward(x).reshape([rows, len, kvh, hd]);
        let q = match &self.q_norm {
            Some(norm) => norm.forward(q),
            None => q,
        };
        let k = match &self.k_norm {
            Some(norm) => norm.forward(k),
            None => k,
        };
        let q = apply_rope(q, cos, sin).swap_dims(1, 2);
        let k = apply_rope(k, cos, sin);
        let scale = 1.0 / (hd as f64).sqrt();
        let att = match kv {
            KeyValues::Cached { cache, plan, layer } => {
                let (keys, values) = cache.update(layer, plan, k, v)?;
                attend(q, keys, values, &plan.mask, scale)
            }
            KeyValues::Causal { mask } => {
                attend(q, k.swap_dims(1, 2), v.swap_dims(1, 2), mask, scale)
            }
        };
        Ok(self.o_proj.forward(att))
    }
}

/// SwiGLU feed-forward: `down(silu(gate(x)) · up(x))`.
#[derive(Module, Debug)]
pub struct SwiGlu {
    /// Gate `[hidden, intermediate]`.
    pub gate_proj: Linear,
    /// Up `[hidden, intermediate]`.
    pub up_proj: Linear,
    /// Down `[intermediate, hidden]`.
    pub down_proj: Linear,
}

impl SwiGlu {
    /// `[.., hidden]` → `[.., hidden]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let gated = silu(self.gate_proj.forward(x.clone())) * self.up_proj.forward(x);
        self.down_proj.forward(gated)
    }
}

/// One transformer block, pre-norm (Llama) or swin post-norm (Chameleon-30B/34B).
#[derive(Module, Debug)]
pub struct Block {
    /// Norm before attention (after it with swin).
    pub input_layernorm: RmsNorm,
    /// Attention.
    pub self_attn: SelfAttention,
    /// Norm before the MLP (after it with swin).
    pub post_attention_layernorm: RmsNorm,
    /// Feed-forward.
    pub mlp: SwiGlu,
    /// Norm placement.
    #[module(skip)]
    pub placement: NormPlacement,
}

impl Block {
    /// `[rows, len, hidden]` → `[rows, len, hidden]`.
    pub(crate) fn forward(
        &self,
        x: Tensor<3>,
        cos: &Tensor<4>,
        sin: &Tensor<4>,
        kv: KeyValues<'_>,
    ) -> Result<Tensor<3>, Error> {
        Ok(match self.placement {
            NormPlacement::Pre => {
                let x = x.clone()
                    + self
                        .self_attn
                        .forward(self.input_layernorm.forward(x), cos, sin, kv)?;
                x.clone() + self.mlp.forward(self.post_attention_layernorm.forward(x))
            }
            NormPlacement::Swin => {
                let att = self.self_attn.forward(x.clone(), cos, sin, kv)?;
                let x = x + self.input_layernorm.forward(att);
                let ff = self.mlp.forward(x.clone());
                x + self.post_attention_layernorm.forward(ff)
            }
        })
    }
}
