//! One configurable decoder-only transformer shared by the Llama-family adapters.
//!
//! RMSNorm, SwiGLU, multi-head or grouped-query attention with separate q/k/v projections,
//! rotate-half RoPE with a configurable theta, optional per-head q/k LayerNorm before RoPE
//! (Chameleon), pre-norm or "swin" post-norm blocks (Chameleon-30B/34B), untied output head.
//! Keys and values live in a [`KvCache`] with per-row lengths, so a window can be appended to
//! rows of different lengths and rolled back.
//!
//! [`Backbone`] is a burn [`Module`] with trainable parameters: the same weights and the same
//! block code serve inference ([`Backbone::forward`], cached, windowed, rolled back) and training
//! ([`Backbone::forward_sequence`], a whole causal sequence on an autodiff device, no cache).
//! Its parameter paths follow the Hugging Face Llama names without the family prefix
//! (`layers.{i}.self_attn.q_proj.weight`, `layers.{i}.mlp.gate_proj.weight`, `norm.gamma`,
//! `lm_head.weight`), with linear weights stored `[in, out]` as burn's `Linear` does.

mod layers;
mod load;
mod rope;

use burn::Tensor;
use burn::module::Module;
use burn::nn::{Embedding, Initializer, Linear, LinearConfig, RmsNorm};
use burn::tensor::{Bool, Device, Int, TensorData};
use sjd2_core::{DecodeCache, Error, KvCache, WindowPlan, causal_mask};

pub use crate::weights::NamedTensor;
use layers::KeyValues;
pub use layers::{Block, HeadNorm, SelfAttention, SwiGlu};

/// Where the block norms sit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NormPlacement {
    /// `h = x + attn(norm(x)); out = h + mlp(norm(h))` (Llama).
    #[default]
    Pre,
    /// `h = x + norm(attn(x)); out = h + norm(mlp(h))` (Chameleon `swin_norm`).
    Swin,
}

/// Rotary position embedding of a [`Backbone`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RopeKind {
    /// 1-D RoPE over the sequence position with base `theta` (rotate-half layout).
    Sequence {
        /// Base.
        theta: f64,
    },
    /// LlamaGen's 2-D RoPE: positions `0..cond_len` (the condition) get a zero rotation table,
    /// which zeroes their queries and keys exactly as upstream; position `cond_len + i` rotates
    /// the first half of each head's frequency pairs by the grid row of cell `i` and the second
    /// half by its column.
    Grid2d {
        /// Base.
        theta: f64,
        /// Condition positions.
        cond_len: usize,
        /// Grid width.
        grid_cols: usize,
    },
}

/// Sizes and options of a [`Backbone`].
#[derive(Debug, Clone, PartialEq)]
pub struct BackboneConfig {
    /// Model width.
    pub hidden: usize,
    /// Transformer blocks.
    pub layers: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (`heads` for MHA).
    pub kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// SwiGLU hidden width.
    pub intermediate: usize,
    /// Input vocabulary (rows of the embedding table).
    pub vocab: usize,
    /// Output vocabulary (columns of the head).
    pub output_vocab: usize,
    /// RMSNorm epsilon.
    pub rms_eps: f64,
    /// Rotary position embedding.
    pub rope: RopeKind,
    /// Longest sequence.
    pub max_positions: usize,
    /// Per-head LayerNorm of q and k before RoPE, with this epsilon (Chameleon).
    pub qk_norm_eps: Option<f64>,
    /// Norm placement.
    pub norm: NormPlacement,
}

impl BackboneConfig {
    /// Checks the sizes.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the field.
    pub fn validate(&self) -> Result<(), Error> {
        for (field, v) in [
            ("hidden_size", self.hidden),
            ("num_hidden_layers", self.layers),
            ("num_attention_heads", self.heads),
            ("num_key_value_heads", self.kv_heads),
            ("intermediate_size", self.intermediate),
            ("vocab_size", self.vocab),
            ("max_position_embeddings", self.max_positions),
        ] {
            if v == 0 {
                return Err(Error::config(field, "must be >= 1"));
            }
        }
        if !self.heads.is_multiple_of(self.kv_heads) {
            return Err(Error::config(
                "num_key_value_heads",
                format!(
                    "must divide num_attention_heads ({} vs {})",
                    self.kv_heads, self.heads
                ),
            ));
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            return Err(Error::config(
                "head_dim",
                format!("must be even and >= 2 (got {})", self.head_dim),
            ));
        }
        Ok(())
    }
}

/// Tensor names of a checkpoint layout. `{i}` in layer names stands for the layer index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyNames {
    /// Token embedding table.
    pub embed: String,
    /// A fused `[q; k; v]` projection (LlamaGen's `wqkv`), used instead of `q`, `k`, `v`.
    pub fused_qkv: Option<String>,
    /// Whether q/k features are stored for interleaved-pair RoPE (Meta layout); they are then
    /// permuted at load time to the rotate-half layout this backbone computes.
    pub interleaved_rope: bool,
    /// Query projection.
    pub q: String,
    /// Key projection.
    pub k: String,
    /// Value projection.
    pub v: String,
    /// Output projection.
    pub o: String,
    /// Per-head q LayerNorm prefix (`.weight`, `.bias` appended).
    pub q_norm: String,
    /// Per-head k LayerNorm prefix.
    pub k_norm: String,
    /// SwiGLU gate.
    pub gate: String,
    /// SwiGLU up.
    pub up: String,
    /// SwiGLU down.
    pub down: String,
    /// Norm before attention (after it with swin).
    pub attn_norm: String,
    /// Norm before the MLP (after it with swin).
    pub mlp_norm: String,
    /// Final norm.
    pub final_norm: String,
    /// Output head.
    pub head: String,
}

impl KeyNames {
    /// The Hugging Face Llama names under `prefix` (for example `model.` or `text_model.model.`)
    /// with the head called `head`.
    pub fn hugging_face(prefix: &str, head: &str) -> Self {
        let l = |s: &str| format!("{prefix}layers.{{i}}.{s}");
        Self {
            embed: format!("{prefix}embed_tokens.weight"),
            fused_qkv: None,
            interleaved_rope: false,
            q: l("self_attn.q_proj.weight"),
            k: l("self_attn.k_proj.weight"),
            v: l("self_attn.v_proj.weight"),
            o: l("self_attn.o_proj.weight"),
            q_norm: l("self_attn.q_norm"),
            k_norm: l("self_attn.k_norm"),
            gate: l("mlp.gate_proj.weight"),
            up: l("mlp.up_proj.weight"),
            down: l("mlp.down_proj.weight"),
            attn_norm: l("input_layernorm.weight"),
            mlp_norm: l("post_attention_layernorm.weight"),
            final_norm: format!("{prefix}norm.weight"),
            head: head.to_string(),
        }
    }

    /// LlamaGen's `gpt.py` names (`tok_embeddings`, fused `attention.wqkv`, `feed_forward.w1/w3/w2`,
    /// `output`), with interleaved RoPE.
    pub fn llamagen() -> Self {
        let l = |s: &str| format!("layers.{{i}}.{s}");
        Self {
            embed: "tok_embeddings.weight".into(),
            fused_qkv: Some(l("attention.wqkv.weight")),
            interleaved_rope: true,
            q: String::new(),
            k: String::new(),
            v: String::new(),
            o: l("attention.wo.weight"),
            q_norm: String::new(),
            k_norm: String::new(),
            gate: l("feed_forward.w1.weight"),
            up: l("feed_forward.w3.weight"),
            down: l("feed_forward.w2.weight"),
            attn_norm: l("attention_norm.weight"),
            mlp_norm: l("ffn_norm.weight"),
            final_norm: "norm.weight".into(),
            head: "output.weight".into(),
        }
    }

    /// Meta's consolidated-checkpoint names (Chameleon-7B, GAIR's Anole-7b-v0.1:
    /// `tok_embeddings`, `attention.wq/wk/wv/wo`, `attention.q_normalization` /
    /// `k_normalization` as one `[head_dim]` affine shared by every head, `feed_forward.w1/w3/w2`,
    /// `attention_norm`, `ffn_norm`, `output`), with interleaved RoPE. The mapping follows
    /// transformers' `convert_chameleon_weights_to_hf.py`.
    pub fn meta() -> Self {
        let l = |s: &str| format!("layers.{{i}}.{s}");
        Self {
            fused_qkv: None,
            q: l("attention.wq.weight"),
            k: l("attention.wk.weight"),
            v: l("attention.wv.weight"),
            q_norm: l("attention.q_normalization"),
            k_norm: l("attention.k_normalization"),
            // The rest as LlamaGen names it (both follow Meta's Llama code).
            ..Self::llamagen()
        }
    }

    fn layer(pattern: &str, i: usize) -> String {
        pattern.replace("{i}", &i.to_string())
    }
}

/// The transformer: embeddings, blocks, final norm and head, as a burn module.
///
/// Rotary tables are constants of the module (not parameters, not saved).
#[derive(Module, Debug)]
pub struct Backbone {
    /// Token embeddings `[vocab, hidden]`.
    pub embed_tokens: Embedding,
    /// Transformer blocks.
    pub layers: Vec<Block>,
    /// Final RMSNorm.
    pub norm: RmsNorm,
    /// Output head `[hidden, output_vocab]`.
    pub lm_head: Linear,
    cos: Tensor<2>,
    sin: Tensor<2>,
    #[module(skip)]
    config: BackboneConfig,
    #[module(skip)]
    source_names: Option<KeyNames>,
}

/// What a forward pass returns.
#[derive(Debug, Clone)]
pub struct BackboneOutput {
    /// Final hidden states after the last norm, `[rows, len, hidden]`.
    pub hidden: Tensor<3>,
    /// When requested: the input embeddings and the output of every block but the last
    /// (the Hugging Face `hidden_states` convention without the final entry).
    pub layer_states: Vec<Tensor<3>>,
}

/// How the parameters of a new [`Backbone`] are drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Init {
    /// burn's defaults for `Linear` (Kaiming uniform), embeddings N(0, 0.02): for training.
    Train,
    /// Every matrix N(0, 0.02): for timing and memory at a published shape.
    Normal,
    /// Zeros, for parameters about to be loaded (never allocated when they are).
    Zeros,
}

impl Backbone {
    /// A backbone whose parameters are drawn by `init` (lazily: nothing is allocated for a
    /// parameter that is loaded before its first use). `head_rows(layer, is_query)` gives the
    /// rows of each per-head norm (heads, or 1 for a norm shared by every head).
    fn initialized(
        config: BackboneConfig,
        init: Init,
        head_rows: &dyn Fn(usize, bool) -> usize,
        device: &Device,
    ) -> Result<Self, Error> {
        config.validate()?;
        let c = &config;
        let (d, hd) = (c.hidden, c.head_dim);
        let normal = Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        };
        let linear = |i: usize, o: usize| {
            let lc = LinearConfig::new(i, o).with_bias(false);
            match init {
                Init::Train => lc.init(device),
                Init::Normal => lc.with_initializer(normal.clone()).init(device),
                Init::Zeros => lc.with_initializer(Initializer::Zeros).init(device),
            }
        };
        let rms = |n: usize| RmsNorm {
            gamma: Initializer::Ones.init([n], device),
            epsilon: c.rms_eps,
        };
        let head_norm = |layer: usize, query: bool| {
            let rows = head_rows(layer, query);
            c.qk_norm_eps.map(|eps| HeadNorm {
                weight: Initializer::Ones.init([rows, hd], device),
                bias: Initializer::Zeros.init([rows, hd], device),
                eps,
            })
        };
        let layers = (0..c.layers)
            .map(|i| Block {
                input_layernorm: rms(d),
                self_attn: SelfAttention {
                    q_proj: linear(d, c.heads * hd),
                    k_proj: linear(d, c.kv_heads * hd),
                    v_proj: linear(d, c.kv_heads * hd),
                    o_proj: linear(c.heads * hd, d),
                    q_norm: head_norm(i, true),
                    k_norm: head_norm(i, false),
                    heads: c.heads,
                    kv_heads: c.kv_heads,
                    head_dim: hd,
                },
                post_attention_layernorm: rms(d),
                mlp: SwiGlu {
                    gate_proj: linear(d, c.intermediate),
                    up_proj: linear(d, c.intermediate),
                    down_proj: linear(c.intermediate, d),
                },
                placement: c.norm,
            })
            .collect();
        let embed = match init {
            Init::Zeros => Initializer::Zeros,
            Init::Train | Init::Normal => normal.clone(),
        };
        let (cos, sin) = rope::tables(c.max_positions, hd, c.rope, device);
        Ok(Self {
            embed_tokens: Embedding {
                weight: embed.init([c.vocab, d], device),
            },
            layers,
            norm: rms(d),
            lm_head: linear(d, c.output_vocab),
            cos,
            sin,
            config,
            source_names: None,
        })
    }

    /// A trainable backbone with fresh parameters (burn's default `Linear` initialization,
    /// embeddings N(0, 0.02), norms 1), on `device` (an autodiff device to train it).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for inconsistent sizes.
    pub fn new(config: BackboneConfig, device: &Device) -> Result<Self, Error> {
        Self::initialized_per_head(config, Init::Train, device)
    }

    /// A backbone with random weights (normal, std 0.02; norms 1), created on the device in its
    /// default float dtype: for timing and memory measurements at a published model's shape
    /// without its weights.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for inconsistent sizes.
    pub fn random(config: BackboneConfig, device: &Device) -> Result<Self, Error> {
        Self::initialized_per_head(config, Init::Normal, device)
    }

    /// [`Backbone::initialized`] with one q/k norm row per head.
    fn initialized_per_head(
        config: BackboneConfig,
        init: Init,
        device: &Device,
    ) -> Result<Self, Error> {
        let (heads, kv_heads) = (config.heads, config.kv_heads);
        let rows = move |_, query| if query { heads } else { kv_heads };
        Self::initialized(config, init, &rows, device)
    }

    /// The same backbone with rotary tables for `positions` positions (at least its own), for
    /// sequences longer than the checkpoint's `max_position_embeddings`: 1-D RoPE has no limit
    /// of its own, and transformers computes it for whatever positions it is given, so a
    /// Lumina-mGPT 1024² image (4 162 positions: 64 rows of 65 tokens and two end tokens) runs as upstream runs it.
    ///
    /// # Errors
    /// [`Error::Unsupported`] for LlamaGen's 2-D RoPE, whose table is the image grid.
    pub fn with_max_positions(mut self, positions: usize) -> Result<Self, Error> {
        if !matches!(self.config.rope, RopeKind::Sequence { .. }) {
            return Err(Error::Unsupported(format!(
                "{positions} positions: a 2-D RoPE backbone covers its image grid only"
            )));
        }
        if positions > self.config.max_positions {
            let device = self.cos.device();
            let (cos, sin) =
                rope::tables(positions, self.config.head_dim, self.config.rope, &device);
            self.cos = cos;
            self.sin = sin;
            self.config.max_positions = positions;
        }
        Ok(self)
    }

    /// Every parameter under the names of `names` in the checkpoint layout (`[out, in]` linear
    /// weights, the fused projection and interleaved RoPE features where `names` uses them), as
    /// `f32` host values: what [`Backbone::load`] reads back.
    ///
    /// # Errors
    /// [`Error::TensorData`] when a parameter cannot be read back.
    pub fn export(&self, names: &KeyNames) -> Result<Vec<NamedTensor>, Error> {
        crate::weights::export_table(self, load::name_table(&self.config, names))
    }

    /// The checkpoint names it was loaded with ([`Backbone::load`]); `None` for a new backbone.
    /// [`Backbone::export`] with them writes it back in the layout it came from.
    pub fn source_names(&self) -> Option<&KeyNames> {
        self.source_names.as_ref()
    }

    /// The configuration.
    pub fn config(&self) -> &BackboneConfig {
        &self.config
    }

    /// The token embedding table `[vocab, hidden]`.
    pub fn embedding_table(&self) -> Tensor<2> {
        self.embed_tokens.weight.val()
    }

    /// Token embeddings.
    ///
    /// # Shapes
    /// - `ids`: `[rows, len]`; returns `[rows, len, hidden]`
    pub fn embed(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        self.embed_tokens.forward(ids)
    }

    /// An empty cache on the backbone's device.
    ///
    /// # Errors
    /// Zero sizes.
    pub fn new_cache(&self, rows: usize, capacity: usize) -> Result<KvCache, Error> {
        let c = &self.config;
        KvCache::new(
            c.layers,
            rows,
            capacity,
            c.kv_heads,
            c.head_dim,
            &self.cos.device(),
        )
    }

    /// The output head applied to final hidden states: `[rows, len, output_vocab]`.
    pub fn logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        self.lm_head.forward(hidden)
    }

    /// The output head's rows `range` only: `[rows, len, range.len()]`, equal to
    /// [`Backbone::logits`] narrowed to `range` without computing the other entries.
    pub fn logits_in(&self, hidden: Tensor<3>, range: std::ops::Range<usize>) -> Tensor<3> {
        let weight = self
            .lm_head
            .weight
            .val()
            .narrow(1, range.start, range.len());
        hidden.matmul(weight.unsqueeze())
    }

    /// Rotate-half cos/sin tables `[rows, len, 1, head_dim]` for the plan's positions, gathered
    /// once per forward pass and shared by every layer.
    fn rope_tables_for(&self, plan: &WindowPlan) -> (Tensor<4>, Tensor<4>) {
        let (rows, len, hd) = (plan.positions.len(), plan.len, self.config.head_dim);
        let last = self.config.max_positions.saturating_sub(1);
        let pos: Vec<i64> = plan
            .positions
            .iter()
            .flatten()
            .map(|&q| q.min(last) as i64)
            .collect();
        let device = self.cos.device();
        let idx = Tensor::<1, Int>::from_data(TensorData::new(pos, [rows * len]), &device);
        let cos = self
            .cos
            .clone()
            .select(0, idx.clone())
            .reshape([rows, len, 1, hd]);
        let sin = self.sin.clone().select(0, idx).reshape([rows, len, 1, hd]);
        (cos, sin)
    }

    fn check_width(&self, what: &str, dims: [usize; 3], rows: Option<usize>) -> Result<(), Error> {
        let [r, len, d] = dims;
        if rows.is_some_and(|rows| rows != r) || d != self.config.hidden || len == 0 {
            return Err(Error::Shape {
                what: what.into(),
                expected: vec![rows.unwrap_or(r), 0, self.config.hidden],
                got: dims.to_vec(),
            });
        }
        Ok(())
    }

    /// Appends `embeddings` to every cache row and runs the blocks (inference).
    ///
    /// # Shapes
    /// - `embeddings`: `[rows, len, hidden]`
    ///
    /// # Errors
    /// [`Error::Shape`] for a wrong input, [`Error::SequenceTooLong`] when the cache is full.
    pub fn forward(
        &self,
        cache: &mut KvCache,
        embeddings: Tensor<3>,
        keep_layer_states: bool,
    ) -> Result<BackboneOutput, Error> {
        let dims = embeddings.dims();
        self.check_width("window embeddings", dims, Some(cache.rows()))?;
        let plan = cache.plan(dims[1], &embeddings.device())?;
        let (cos, sin) = self.rope_tables_for(&plan);
        let mut layer_states = Vec::new();
        let mut x = embeddings;
        for (layer, block) in self.layers.iter().enumerate() {
            if keep_layer_states {
                layer_states.push(x.clone());
            }
            let kv = KeyValues::Cached {
                cache: &mut *cache,
                plan: &plan,
                layer,
            };
            x = block.forward(x, &cos, &sin, kv)?;
        }
        cache.commit(&plan);
        Ok(BackboneOutput {
            hidden: self.norm.forward(x),
            layer_states,
        })
    }

    /// Runs the blocks over whole sequences at positions `0..len` with causal attention and no
    /// cache: the training forward (autodiff flows through every parameter), equal to feeding
    /// the same embeddings through [`Backbone::forward`] into an empty cache.
    ///
    /// # Shapes
    /// - `embeddings`: `[rows, len, hidden]`; returns final hidden states `[rows, len, hidden]`
    ///
    /// # Errors
    /// [`Error::Shape`] for a wrong width, [`Error::SequenceTooLong`] beyond `max_positions`.
    pub fn forward_sequence(&self, embeddings: Tensor<3>) -> Result<Tensor<3>, Error> {
        self.forward_sequence_hiding(embeddings, &[])
    }

    /// [`Backbone::forward_sequence`] where the first `hidden_prefix[r]` keys of row `r` are
    /// hidden from every query but their own, as LlamaGen hides the left padding of a caption
    /// (the decoder's [`KvCache::set_hidden_prefix`]). An empty slice hides nothing.
    ///
    /// # Shapes
    /// - `embeddings`: `[rows, len, hidden]`; returns final hidden states `[rows, len, hidden]`
    ///
    /// # Errors
    /// [`Error::Shape`] for a wrong width or a `hidden_prefix` of another length than the rows,
    /// [`Error::SequenceTooLong`] beyond `max_positions`.
    pub fn forward_sequence_hiding(
        &self,
        embeddings: Tensor<3>,
        hidden_prefix: &[usize],
    ) -> Result<Tensor<3>, Error> {
        let dims = embeddings.dims();
        if !hidden_prefix.is_empty() && hidden_prefix.len() != dims[0] {
            return Err(Error::Shape {
                what: "hidden prefix lengths".into(),
                expected: vec![dims[0]],
                got: vec![hidden_prefix.len()],
            });
        }
        self.check_width("sequence embeddings", dims, None)?;
        let len = dims[1];
        if len > self.config.max_positions {
            return Err(Error::SequenceTooLong {
                what: "training sequence".into(),
                needed: len,
                max: self.config.max_positions,
            });
        }
        let hd = self.config.head_dim;
        let device = embeddings.device();
        let cos = self.cos.clone().narrow(0, 0, len).reshape([1, len, 1, hd]);
        let sin = self.sin.clone().narrow(0, 0, len).reshape([1, len, 1, hd]);
        let mask = if hidden_prefix.iter().all(|&h| h == 0) {
            causal_mask(len, &device)
        } else {
            let rows = dims[0];
            let mut hide = vec![false; rows * len * len];
            for (r, &h) in hidden_prefix.iter().enumerate() {
                for q in 0..len {
                    for k in 0..len {
                        hide[(r * len + q) * len + k] = k > q || (k < h && k != q);
                    }
                }
            }
            Tensor::<4, Bool>::from_data(TensorData::new(hide, [rows, 1, len, len]), &device)
        };
        let mut x = embeddings;
        for block in &self.layers {
            x = block.forward(x, &cos, &sin, KeyValues::Causal { mask: &mask })?;
        }
        Ok(self.norm.forward(x))
    }
}
