//! One configurable decoder-only transformer shared by the Llama-family adapters.
//!
//! RMSNorm, SwiGLU, multi-head or grouped-query attention with separate q/k/v projections,
//! rotate-half RoPE with a configurable theta, optional per-head q/k LayerNorm before RoPE
//! (Chameleon), pre-norm or "swin" post-norm blocks (Chameleon-30B/34B), untied output head.
//! Keys and values live in a [`KvCache`] with per-row lengths, so a window can be appended to
//! rows of different lengths and rolled back.

use burn::Tensor;
use burn::tensor::activation::silu;
use burn::tensor::{Device, Int, TensorData};
use sjd2_core::{DecodeCache, Error, KvCache, WindowPlan, apply_rope, attend};

use crate::weights::WeightLoader;

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

    fn layer(pattern: &str, i: usize) -> String {
        pattern.replace("{i}", &i.to_string())
    }
}

#[derive(Debug, Clone)]
struct HeadNorm {
    weight: Tensor<2>,
    bias: Tensor<2>,
}

#[derive(Debug, Clone)]
struct Layer {
    attn_norm: Tensor<1>,
    wq: Tensor<2>,
    wk: Tensor<2>,
    wv: Tensor<2>,
    wo: Tensor<2>,
    q_norm: Option<HeadNorm>,
    k_norm: Option<HeadNorm>,
    mlp_norm: Tensor<1>,
    gate: Tensor<2>,
    up: Tensor<2>,
    down: Tensor<2>,
}

/// The transformer: embeddings, blocks, final norm and head.
#[derive(Debug, Clone)]
pub struct Backbone {
    config: BackboneConfig,
    device: Device,
    embed: Tensor<2>,
    layers: Vec<Layer>,
    norm: Tensor<1>,
    head: Tensor<2>,
    cos: Tensor<2>,
    sin: Tensor<2>,
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

fn rms_norm<const D: usize>(x: Tensor<D>, weight: &Tensor<1>, eps: f64) -> Tensor<D> {
    let rms = (x.clone().powf_scalar(2.0).mean_dim(D - 1) + eps).sqrt();
    x / rms * weight.clone().unsqueeze::<D>()
}

impl Backbone {
    /// Loads the weights named by `names` (problems are collected by `loader`).
    ///
    /// Per-head q/k norms may be stored `[heads, head_dim]` (Hugging Face) or `[1, head_dim]`
    /// (Lumina-mGPT's fork); the latter is repeated over heads.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for inconsistent sizes.
    pub fn load(
        config: BackboneConfig,
        names: &KeyNames,
        loader: &mut WeightLoader,
        device: &Device,
    ) -> Result<Self, Error> {
        config.validate()?;
        let c = &config;
        let (d, hd) = (c.hidden, c.head_dim);
        let mut layers = Vec::with_capacity(c.layers);
        for i in 0..c.layers {
            let n = |p: &str| KeyNames::layer(p, i);
            let head_norm =
                |loader: &mut WeightLoader, prefix: &str, heads: usize| -> Option<HeadNorm> {
                    c.qk_norm_eps?;
                    let w = format!("{prefix}.weight");
                    let b = format!("{prefix}.bias");
                    let stored = loader.checkpoint().shape(&w).map(<[usize]>::to_vec);
                    let rows = match stored.as_deref() {
                        Some([1, x]) if *x == hd && heads != 1 => 1,
                        _ => heads,
                    };
                    let weight: Tensor<2> = loader.tensor(&w, [rows, hd]);
                    let bias: Tensor<2> = loader.tensor(&b, [rows, hd]);
                    Some(HeadNorm {
                        weight: weight.expand([heads, hd]),
                        bias: bias.expand([heads, hd]),
                    })
                };
            let (qn, kvn) = (c.heads * hd, c.kv_heads * hd);
            let (wq, wk, wv) = match &names.fused_qkv {
                Some(fused) => {
                    let w = loader.linear(&n(fused), qn + 2 * kvn, d);
                    (
                        w.clone().narrow(1, 0, qn),
                        w.clone().narrow(1, qn, kvn),
                        w.narrow(1, qn + kvn, kvn),
                    )
                }
                None => (
                    loader.linear(&n(&names.q), qn, d),
                    loader.linear(&n(&names.k), kvn, d),
                    loader.linear(&n(&names.v), kvn, d),
                ),
            };
            let (wq, wk) = if names.interleaved_rope {
                (
                    interleaved_to_half(wq, c.heads, hd, device),
                    interleaved_to_half(wk, c.kv_heads, hd, device),
                )
            } else {
                (wq, wk)
            };
            layers.push(Layer {
                attn_norm: loader.tensor(&n(&names.attn_norm), [d]),
                wq,
                wk,
                wv,
                wo: loader.linear(&n(&names.o), d, c.heads * hd),
                q_norm: head_norm(loader, &n(&names.q_norm), c.heads),
                k_norm: head_norm(loader, &n(&names.k_norm), c.kv_heads),
                mlp_norm: loader.tensor(&n(&names.mlp_norm), [d]),
                gate: loader.linear(&n(&names.gate), c.intermediate, d),
                up: loader.linear(&n(&names.up), c.intermediate, d),
                down: loader.linear(&n(&names.down), d, c.intermediate),
            });
        }
        let (cos, sin) = rope_tables(c.max_positions, hd, c.rope, device);
        Ok(Self {
            embed: loader.tensor(&names.embed, [c.vocab, d]),
            norm: loader.tensor(&names.final_norm, [d]),
            head: loader.linear(&names.head, c.output_vocab, d),
            layers,
            cos,
            sin,
            device: device.clone(),
            config,
        })
    }

    /// A backbone with random weights (normal, std 0.02; norms 1), created on the device in its
    /// default float dtype: for timing and memory measurements at a published model's shape
    /// without its weights.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for inconsistent sizes.
    pub fn random(config: BackboneConfig, device: &Device) -> Result<Self, Error> {
        use burn::tensor::Distribution;
        config.validate()?;
        let c = &config;
        let (d, hd) = (c.hidden, c.head_dim);
        let w = |rows: usize, cols: usize| {
            Tensor::<2>::random([rows, cols], Distribution::Normal(0.0, 0.02), device)
        };
        let ones = |n: usize| Tensor::<1>::ones([n], device);
        let head_norm = |heads: usize| {
            c.qk_norm_eps.map(|_| HeadNorm {
                weight: Tensor::ones([heads, hd], device),
                bias: Tensor::zeros([heads, hd], device),
            })
        };
        let layers = (0..c.layers)
            .map(|_| Layer {
                attn_norm: ones(d),
                wq: w(d, c.heads * hd),
                wk: w(d, c.kv_heads * hd),
                wv: w(d, c.kv_heads * hd),
                wo: w(c.heads * hd, d),
                q_norm: head_norm(c.heads),
                k_norm: head_norm(c.kv_heads),
                mlp_norm: ones(d),
                gate: w(d, c.intermediate),
                up: w(d, c.intermediate),
                down: w(c.intermediate, d),
            })
            .collect();
        let (cos, sin) = rope_tables(c.max_positions, hd, c.rope, device);
        Ok(Self {
            embed: w(c.vocab, d),
            norm: ones(d),
            head: w(d, c.output_vocab),
            layers,
            cos,
            sin,
            device: device.clone(),
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &BackboneConfig {
        &self.config
    }

    /// The token embedding table `[vocab, hidden]`.
    pub fn embedding_table(&self) -> &Tensor<2> {
        &self.embed
    }

    /// Token embeddings.
    ///
    /// # Shapes
    /// - `ids`: `[rows, len]`; returns `[rows, len, hidden]`
    pub fn embed(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        burn::tensor::module::embedding(self.embed.clone(), ids)
    }

    /// An empty cache.
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
            &self.device,
        )
    }

    /// The output head applied to final hidden states: `[rows, len, output_vocab]`.
    pub fn logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        hidden.matmul(self.head.clone().unsqueeze())
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
        let idx = Tensor::<1, Int>::from_data(TensorData::new(pos, [rows * len]), &self.device);
        let cos = self
            .cos
            .clone()
            .select(0, idx.clone())
            .reshape([rows, len, 1, hd]);
        let sin = self.sin.clone().select(0, idx).reshape([rows, len, 1, hd]);
        (cos, sin)
    }

    fn head_norm(x: Tensor<4>, norm: &Option<HeadNorm>, eps: f64) -> Tensor<4> {
        let Some(n) = norm else {
            return x;
        };
        let mean = x.clone().mean_dim(3);
        let centered = x - mean;
        let var = centered.clone().powf_scalar(2.0).mean_dim(3);
        let normed = centered / (var + eps).sqrt();
        normed * n.weight.clone().unsqueeze::<4>() + n.bias.clone().unsqueeze::<4>()
    }

    /// Appends `embeddings` to every cache row and runs the blocks.
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
        let c = &self.config;
        let [rows, len, d] = embeddings.dims();
        if rows != cache.rows() || d != c.hidden || len == 0 {
            return Err(Error::Shape {
                what: "window embeddings".into(),
                expected: vec![cache.rows(), 0, c.hidden],
                got: vec![rows, len, d],
            });
        }
        let plan = cache.plan(len, &self.device)?;
        let (cos, sin) = self.rope_tables_for(&plan);
        let (h, kv, hd) = (c.heads, c.kv_heads, c.head_dim);
        let mut layer_states = Vec::new();
        let mut x = embeddings;
        for (l, layer) in self.layers.iter().enumerate() {
            if keep_layer_states {
                layer_states.push(x.clone());
            }
            let attn_in = match c.norm {
                NormPlacement::Pre => rms_norm(x.clone(), &layer.attn_norm, c.rms_eps),
                NormPlacement::Swin => x.clone(),
            };
            let q = attn_in
                .clone()
                .matmul(layer.wq.clone().unsqueeze())
                .reshape([rows, len, h, hd]);
            let k = attn_in
                .clone()
                .matmul(layer.wk.clone().unsqueeze())
                .reshape([rows, len, kv, hd]);
            let v = attn_in
                .matmul(layer.wv.clone().unsqueeze())
                .reshape([rows, len, kv, hd]);
            let eps = c.qk_norm_eps.unwrap_or(1e-5);
            let q = apply_rope(Self::head_norm(q, &layer.q_norm, eps), &cos, &sin).swap_dims(1, 2);
            let k = apply_rope(Self::head_norm(k, &layer.k_norm, eps), &cos, &sin);
            let (keys, values) = cache.update(l, &plan, k, v)?;
            let att = attend(q, keys, values, &plan, 1.0 / (hd as f64).sqrt());
            let att = att.matmul(layer.wo.clone().unsqueeze());
            x = match c.norm {
                NormPlacement::Pre => x + att,
                NormPlacement::Swin => x + rms_norm(att, &layer.attn_norm, c.rms_eps),
            };
            let mlp_in = match c.norm {
                NormPlacement::Pre => rms_norm(x.clone(), &layer.mlp_norm, c.rms_eps),
                NormPlacement::Swin => x.clone(),
            };
            let ff = silu(mlp_in.clone().matmul(layer.gate.clone().unsqueeze()))
                * mlp_in.matmul(layer.up.clone().unsqueeze());
            let ff = ff.matmul(layer.down.clone().unsqueeze());
            x = match c.norm {
                NormPlacement::Pre => x + ff,
                NormPlacement::Swin => x + rms_norm(ff, &layer.mlp_norm, c.rms_eps),
            };
        }
        cache.commit(&plan);
        Ok(BackboneOutput {
            hidden: rms_norm(x, &self.norm, c.rms_eps),
            layer_states,
        })
    }
}

/// Reorders the output features of a `[in, heads·head_dim]` projection from interleaved pairs
/// `(2k, 2k+1)` to the rotate-half layout `(k, k + head_dim/2)`. Applied to both q and k it leaves
/// attention scores unchanged while letting one RoPE implementation serve both layouts.
fn interleaved_to_half(w: Tensor<2>, heads: usize, head_dim: usize, device: &Device) -> Tensor<2> {
    let half = head_dim / 2;
    let idx: Vec<i64> = (0..heads)
        .flat_map(|h| {
            let base = (h * head_dim) as i64;
            (0..half)
                .map(move |k| base + 2 * k as i64)
                .chain((0..half).map(move |k| base + 2 * k as i64 + 1))
        })
        .collect();
    let n = idx.len();
    w.select(1, Tensor::from_data(TensorData::new(idx, [n]), device))
}

/// Rotation angles of frequency pair `k` (shared by dims `k` and `k + head_dim/2`) at `pos`;
/// `None` for a zero rotation table (LlamaGen's condition positions).
fn rope_angles(pos: usize, head_dim: usize, rope: RopeKind) -> Option<Vec<f32>> {
    let half = head_dim / 2;
    match rope {
        RopeKind::Sequence { theta } => Some(
            (0..half)
                .map(|k| {
                    // Hugging Face computes the inverse frequencies in f32.
                    let inv = 1.0f32 / (theta as f32).powf((2 * k) as f32 / head_dim as f32);
                    pos as f32 * inv
                })
                .collect(),
        ),
        RopeKind::Grid2d {
            theta,
            cond_len,
            grid_cols,
        } => {
            let cell = pos.checked_sub(cond_len)?;
            let (row, col) = (cell / grid_cols.max(1), cell % grid_cols.max(1));
            let quarter = half / 2;
            Some(
                (0..half)
                    .map(|k| {
                        let (t, j) = if k < quarter {
                            (row, k)
                        } else {
                            (col, k - quarter)
                        };
                        let f = 1.0f32 / (theta as f32).powf((2 * j) as f32 / half as f32);
                        t as f32 * f
                    })
                    .collect(),
            )
        }
    }
}

fn rope_tables(
    max_positions: usize,
    head_dim: usize,
    rope: RopeKind,
    device: &Device,
) -> (Tensor<2>, Tensor<2>) {
    let mut cos = Vec::with_capacity(max_positions * head_dim);
    let mut sin = Vec::with_capacity(max_positions * head_dim);
    for p in 0..max_positions {
        match rope_angles(p, head_dim, rope) {
            Some(a) => {
                for _ in 0..2 {
                    cos.extend(a.iter().map(|x| x.cos()));
                    sin.extend(a.iter().map(|x| x.sin()));
                }
            }
            None => {
                cos.extend(std::iter::repeat_n(0.0, head_dim));
                sin.extend(std::iter::repeat_n(0.0, head_dim));
            }
        }
    }
    let shape = [max_positions, head_dim];
    (
        Tensor::from_data(TensorData::new(cos, shape), device),
        Tensor::from_data(TensorData::new(sin, shape), device),
    )
}
