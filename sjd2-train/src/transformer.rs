//! The demo model's transformer as a trainable burn module: a pre-norm Llama (RMSNorm, rotate-half
//! RoPE, multi-head causal attention, SwiGLU, untied head) that computes exactly what
//! [`sjd2_models::llama::Backbone`] computes at inference, exported under the Hugging Face names
//! [`sjd2_models::demo::DemoModel`] loads.

use burn::module::Module;
use burn::nn::{
    Embedding, EmbeddingConfig, Initializer, Linear, LinearConfig, RmsNorm, RmsNormConfig,
};
use burn::tensor::activation::{silu, softmax};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use sjd2_models::demo::DemoConfig;

use crate::checkpoint::{NamedTensor, named_parameters};
use crate::error::Result;

fn linear(i: usize, o: usize, device: &Device) -> Linear {
    LinearConfig::new(i, o).with_bias(false).init(device)
}

/// One transformer block.
#[derive(Module, Debug)]
pub struct Block {
    attn_norm: RmsNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    mlp_norm: RmsNorm,
    gate: Linear,
    up: Linear,
    down: Linear,
}

/// The trainable demo transformer.
#[derive(Module, Debug)]
pub struct DemoTransformer {
    embed: Embedding,
    layers: Vec<Block>,
    norm: RmsNorm,
    head: Linear,
    heads: usize,
    theta: f64,
}

/// Rotate-half RoPE tables `[len, head_dim]` for positions `0..len`.
fn rope_tables(len: usize, head_dim: usize, theta: f64, device: &Device) -> (Tensor<2>, Tensor<2>) {
    let half = head_dim / 2;
    let mut cos = Vec::with_capacity(len * head_dim);
    let mut sin = Vec::with_capacity(len * head_dim);
    for p in 0..len {
        for j in 0..head_dim {
            let i = j % half;
            let inv = theta.powf(-2.0 * i as f64 / head_dim as f64);
            let a = p as f64 * inv;
            cos.push(a.cos() as f32);
            sin.push(a.sin() as f32);
        }
    }
    (
        Tensor::from_data(TensorData::new(cos, [len, head_dim]), device),
        Tensor::from_data(TensorData::new(sin, [len, head_dim]), device),
    )
}

/// The transpose of a row-major `r × c` matrix.
/// Trainer parameter paths and their Hugging Face Llama names outside the blocks, and whether
/// the tensor is stored transposed (burn's `Linear` keeps `[in, out]`, the files `[out, in]`).
const TOP_NAMES: [(&str, &str, bool); 3] = [
    ("embed.weight", "model.embed_tokens.weight", false),
    ("norm.gamma", "model.norm.weight", false),
    ("head.weight", "lm_head.weight", true),
];

/// The same inside block `i` (`layers.{i}.…` ↔ `model.layers.{i}.…`).
const LAYER_NAMES: [(&str, &str, bool); 9] = [
    ("attn_norm.gamma", "input_layernorm.weight", false),
    ("mlp_norm.gamma", "post_attention_layernorm.weight", false),
    ("q.weight", "self_attn.q_proj.weight", true),
    ("k.weight", "self_attn.k_proj.weight", true),
    ("v.weight", "self_attn.v_proj.weight", true),
    ("o.weight", "self_attn.o_proj.weight", true),
    ("gate.weight", "mlp.gate_proj.weight", true),
    ("up.weight", "mlp.up_proj.weight", true),
    ("down.weight", "mlp.down_proj.weight", true),
];

/// Maps a name through the tables, trainer → Hugging Face (`to_hf`) or back, with whether the
/// tensor is stored transposed; `None` for names the tables lack.
fn rename(name: &str, to_hf: bool) -> Option<(String, bool)> {
    let (from_prefix, to_prefix) = if to_hf {
        ("layers.", "model.layers.")
    } else {
        ("model.layers.", "layers.")
    };
    let lookup = |table: &[(&str, &str, bool)], key: &str| {
        table.iter().find_map(|&(t, h, transpose)| {
            let (from, to) = if to_hf { (t, h) } else { (h, t) };
            (from == key).then(|| (to.to_string(), transpose))
        })
    };
    if let Some(found) = lookup(&TOP_NAMES, name) {
        return Some(found);
    }
    let (i, field) = name.strip_prefix(from_prefix)?.split_once('.')?;
    i.parse::<usize>().ok()?;
    let (to, transpose) = lookup(&LAYER_NAMES, field)?;
    Some((format!("{to_prefix}{i}.{to}"), transpose))
}

/// The Hugging Face name of a trainer parameter path, and whether it is stored transposed.
fn hf_name(path: &str) -> Option<(String, bool)> {
    rename(path, true)
}

/// The trainer parameter path of a Hugging Face name, and whether it is stored transposed.
fn trainer_path(name: &str) -> Option<(String, bool)> {
    rename(name, false)
}

fn transpose2(v: &[f32], r: usize, c: usize) -> Vec<f32> {
    let mut t = vec![0.0; v.len()];
    for i in 0..r {
        for j in 0..c {
            t[j * r + i] = v[i * c + j];
        }
    }
    t
}

fn rope(x: Tensor<4>, cos: &Tensor<2>, sin: &Tensor<2>) -> Tensor<4> {
    // x: [b, h, len, hd]
    let [b, h, l, hd] = x.dims();
    let half = hd / 2;
    let x1 = x.clone().narrow(3, 0, half);
    let x2 = x.clone().narrow(3, half, half);
    let rot = Tensor::cat(vec![x2.neg(), x1], 3);
    let c = cos.clone().reshape([1, 1, l, hd]).expand([b, h, l, hd]);
    let s = sin.clone().reshape([1, 1, l, hd]).expand([b, h, l, hd]);
    x * c + rot * s
}

impl DemoTransformer {
    /// A randomly initialized transformer for `config`.
    pub fn new(config: &DemoConfig, device: &Device) -> Self {
        let d = config.hidden;
        let v = config.vocab();
        let norm = || {
            RmsNormConfig::new(d)
                .with_epsilon(config.rms_eps)
                .init(device)
        };
        Self {
            embed: EmbeddingConfig::new(v, d)
                .with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: 0.02,
                })
                .init(device),
            layers: (0..config.layers)
                .map(|_| Block {
                    attn_norm: norm(),
                    q: linear(d, d, device),
                    k: linear(d, d, device),
                    v: linear(d, d, device),
                    o: linear(d, d, device),
                    mlp_norm: norm(),
                    gate: linear(d, config.intermediate, device),
                    up: linear(d, config.intermediate, device),
                    down: linear(config.intermediate, d, device),
                })
                .collect(),
            norm: norm(),
            head: linear(d, v, device),
            heads: config.heads,
            theta: config.rope_theta,
        }
    }

    /// Token embeddings `[b, len, hidden]`.
    pub fn embed(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        self.embed.forward(ids)
    }

    /// The embedding table `[vocab, hidden]`.
    pub fn embedding_table(&self) -> Tensor<2> {
        self.embed.weight.val()
    }

    /// Logits `[b, len, vocab]` of input embeddings `[b, len, hidden]` at positions `0..len`
    /// with causal attention.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, l, d] = x.dims();
        let device = x.device();
        let h = self.heads;
        let hd = d / h;
        let (cos, sin) = rope_tables(l, hd, self.theta, &device);
        let mask = Tensor::<2, Bool>::tril_mask([l, l], 0, &device)
            .reshape([1, 1, l, l])
            .expand([b, h, l, l]);
        let mut x = x;
        for blk in &self.layers {
            let n = blk.attn_norm.forward(x.clone());
            let split = |t: Tensor<3>| t.reshape([b, l, h, hd]).swap_dims(1, 2);
            let q = rope(split(blk.q.forward(n.clone())), &cos, &sin);
            let k = rope(split(blk.k.forward(n.clone())), &cos, &sin);
            let v = split(blk.v.forward(n));
            let scores = q.matmul(k.swap_dims(2, 3)) / (hd as f64).sqrt();
            let att = softmax(scores.mask_fill(mask.clone(), f32::NEG_INFINITY), 3);
            let o = att.matmul(v).swap_dims(1, 2).reshape([b, l, d]);
            x = x + blk.o.forward(o);
            let n = blk.mlp_norm.forward(x.clone());
            x = x + blk
                .down
                .forward(silu(blk.gate.forward(n.clone())) * blk.up.forward(n));
        }
        self.head.forward(self.norm.forward(x))
    }

    /// A transformer for `config` initialized from an inference checkpoint (the
    /// `base.safetensors` / `sjd2.safetensors` of a demo model directory, any stored dtype), so
    /// that training can continue from a shipped model.
    ///
    /// # Errors
    /// Unreadable files; missing, unexpected or mis-shaped tensors (named).
    pub fn from_inference(
        config: &DemoConfig,
        path: &std::path::Path,
        device: &Device,
    ) -> Result<Self> {
        let mut values = std::collections::BTreeMap::new();
        for (name, shape, v) in crate::checkpoint::read_named(path)? {
            // Unknown names pass through so that `assign_named` reports them as unexpected.
            let (path_name, transpose) = trainer_path(&name).unwrap_or((name.clone(), false));
            let entry = if transpose && shape.len() == 2 {
                (vec![shape[1], shape[0]], transpose2(&v, shape[0], shape[1]))
            } else {
                (shape, v)
            };
            values.insert(path_name, entry);
        }
        crate::checkpoint::assign_named(
            Self::new(config, device),
            values,
            &path.display().to_string(),
        )
    }

    /// The inference tensors under Hugging Face Llama names (linear weights transposed to
    /// `[out, in]`).
    ///
    /// # Errors
    /// Unreadable parameters.
    pub fn export(&self) -> Result<Vec<NamedTensor>> {
        let mut out = Vec::new();
        for (path, shape, v) in named_parameters(self)? {
            let (name, transpose) = hf_name(&path).ok_or_else(|| {
                crate::TrainError::Tensor(format!("unexpected parameter `{path}`"))
            })?;
            if transpose && shape.len() == 2 {
                let (r, c) = (shape[0], shape[1]);
                out.push((name, vec![c, r], transpose2(&v, r, c)));
            } else {
                out.push((name, shape, v));
            }
        }
        Ok(out)
    }
}
