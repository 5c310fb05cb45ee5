//! A tiny seeded Llama-style transformer implementing [`JacobiDenoiser`].

use burn::Tensor;
use burn::tensor::activation::silu;
use burn::tensor::{Device, Int, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::cache::{DecodeCache, KvCache, WindowPlan, apply_rope, attend};
use crate::denoiser::{ImageLayout, JacobiDenoiser, PromptRow, Role, ids_tensor, prefill_ragged};
use crate::error::{Error, Result, tensor_to_vec};

/// Sizes of a [`ToyModel`]. Token ids are laid out as: image tokens `0..image_vocab`, the row-end
/// token, the end-of-image token, the unconditional (null) token, then `text_vocab` text tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct ToyConfig {
    /// Image token ids.
    pub image_vocab: usize,
    /// Text token ids (prompt vocabulary).
    pub text_vocab: usize,
    /// Image grid rows.
    pub rows: usize,
    /// Image grid columns.
    pub cols: usize,
    /// Whether each row ends with a forced row-end token.
    pub row_end: bool,
    /// Whether an end-of-image token follows the grid.
    pub end_of_image: bool,
    /// Model width.
    pub hidden: usize,
    /// Attention heads (`hidden` must be a multiple, with an even head size).
    pub heads: usize,
    /// Transformer blocks.
    pub layers: usize,
    /// Standard deviation of the logits at initialization (larger = peakier distributions).
    pub logit_scale: f32,
    /// Weight seed.
    pub seed: u64,
}

impl Default for ToyConfig {
    fn default() -> Self {
        Self {
            image_vocab: 4,
            text_vocab: 4,
            rows: 2,
            cols: 2,
            row_end: true,
            end_of_image: false,
            hidden: 16,
            heads: 2,
            layers: 2,
            logit_scale: 1.5,
            seed: 0,
        }
    }
}

impl ToyConfig {
    /// The row-end token id.
    pub fn row_end_token(&self) -> u32 {
        self.image_vocab as u32
    }

    /// The end-of-image token id.
    pub fn end_of_image_token(&self) -> u32 {
        self.image_vocab as u32 + 1
    }

    /// The unconditional (null) token id: the default negative prompt.
    pub fn null_token(&self) -> u32 {
        self.image_vocab as u32 + 2
    }

    /// The id of text token `i`.
    pub fn text_token(&self, i: usize) -> u32 {
        (self.image_vocab + 3 + i) as u32
    }

    /// Total vocabulary.
    pub fn vocab(&self) -> usize {
        self.image_vocab + 3 + self.text_vocab
    }
}

#[derive(Debug, Clone)]
struct Block {
    norm1: Tensor<1>,
    wq: Tensor<2>,
    wk: Tensor<2>,
    wv: Tensor<2>,
    wo: Tensor<2>,
    norm2: Tensor<1>,
    w1: Tensor<2>,
    w3: Tensor<2>,
    w2: Tensor<2>,
}

/// A 1-2 layer random transformer (RMSNorm, rotate-half RoPE, SwiGLU, untied head) whose exact
/// sequence distribution can be enumerated for short images. Deterministic for a given
/// [`ToyConfig::seed`] on every device.
#[derive(Debug, Clone)]
pub struct ToyModel {
    config: ToyConfig,
    layout: ImageLayout,
    device: Device,
    embed: Tensor<2>,
    blocks: Vec<Block>,
    norm: Tensor<1>,
    head: Tensor<2>,
}

fn normal(rng: &mut ChaCha8Rng, shape: [usize; 2], std: f32, device: &Device) -> Tensor<2> {
    let v: Vec<f32> = (0..shape[0] * shape[1])
        .map(|_| {
            let z: f32 = StandardNormal.sample(rng);
            z * std
        })
        .collect();
    Tensor::from_data(TensorData::new(v, shape), device)
}

fn gain(rng: &mut ChaCha8Rng, dim: usize, device: &Device) -> Tensor<1> {
    let v: Vec<f32> = (0..dim)
        .map(|_| {
            let z: f32 = StandardNormal.sample(rng);
            1.0 + 0.1 * z
        })
        .collect();
    Tensor::from_data(TensorData::new(v, [dim]), device)
}

fn rms_norm<const D: usize>(x: Tensor<D>, weight: &Tensor<1>) -> Tensor<D> {
    let rms = (x.clone().powf_scalar(2.0).mean_dim(D - 1) + 1e-5).sqrt();
    x / rms * weight.clone().unsqueeze::<D>()
}

impl ToyModel {
    /// Builds the model with random weights drawn from `config.seed`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for inconsistent sizes.
    pub fn new(config: ToyConfig, device: &Device) -> Result<Self> {
        if config.heads == 0
            || !config.hidden.is_multiple_of(config.heads)
            || !(config.hidden / config.heads).is_multiple_of(2)
        {
            return Err(Error::config(
                "heads",
                "hidden must be a multiple of heads with an even head size",
            ));
        }
        let layout = ImageLayout::new(
            0..config.image_vocab as u32,
            config.rows,
            config.cols,
            config.row_end.then(|| config.row_end_token()),
            if config.end_of_image {
                vec![config.end_of_image_token()]
            } else {
                vec![]
            },
        )?;
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let d = config.hidden;
        let f = 2 * d;
        let s = 1.0 / (d as f32).sqrt();
        let blocks = (0..config.layers)
            .map(|_| Block {
                norm1: gain(&mut rng, d, device),
                wq: normal(&mut rng, [d, d], s, device),
                wk: normal(&mut rng, [d, d], s, device),
                wv: normal(&mut rng, [d, d], s, device),
                wo: normal(&mut rng, [d, d], s, device),
                norm2: gain(&mut rng, d, device),
                w1: normal(&mut rng, [d, f], s, device),
                w3: normal(&mut rng, [d, f], s, device),
                w2: normal(&mut rng, [f, d], 1.0 / (f as f32).sqrt(), device),
            })
            .collect();
        Ok(Self {
            embed: normal(&mut rng, [config.vocab(), d], 1.0, device),
            norm: gain(&mut rng, d, device),
            head: normal(
                &mut rng,
                [d, config.vocab()],
                config.logit_scale * s,
                device,
            ),
            blocks,
            layout,
            device: device.clone(),
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ToyConfig {
        &self.config
    }

    /// Rotate-half cos/sin tables `[rows, len, 1, head_dim]` for the plan's positions.
    fn rope_tables(&self, plan: &WindowPlan) -> (Tensor<4>, Tensor<4>) {
        let hd = self.config.hidden / self.config.heads;
        let half = hd / 2;
        let (rows, len) = (plan.positions.len(), plan.len);
        let mut cos = Vec::with_capacity(rows * len * hd);
        let mut sin = Vec::with_capacity(rows * len * hd);
        for &p in plan.positions.iter().flatten() {
            for i in 0..hd {
                let a = p as f64 * 10000f64.powf(-2.0 * (i % half) as f64 / hd as f64);
                cos.push(a.cos() as f32);
                sin.push(a.sin() as f32);
            }
        }
        let shape = [rows, len, 1, hd];
        (
            Tensor::from_data(TensorData::new(cos, shape), &self.device),
            Tensor::from_data(TensorData::new(sin, shape), &self.device),
        )
    }

    fn check_tokens(&self, tokens: &[u32], index: usize) -> Result<()> {
        if tokens.is_empty() {
            return Err(Error::InvalidPrompt {
                index,
                reason: "the prompt is empty".into(),
            });
        }
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= self.config.vocab()) {
            return Err(Error::TokenOutOfRange {
                what: format!("prompt {index}"),
                token: t,
                allowed: format!("0..{}", self.config.vocab()),
            });
        }
        Ok(())
    }

    fn row_tokens<'a>(&self, row: &'a PromptRow<'_>) -> std::borrow::Cow<'a, [u32]> {
        match (row.role, &row.prompt.image_condition) {
            (Role::Conditional, _) => row.prompt.tokens.as_slice().into(),
            (Role::ImageConditioned, Some(i)) => i.as_slice().into(),
            (Role::Unconditional | Role::ImageConditioned, _) => match &row.prompt.negative {
                Some(n) => n.as_slice().into(),
                None => vec![self.config.null_token()].into(),
            },
        }
    }

    /// Logits for every position of `tokens` from a fresh cache: the uncached reference pass.
    ///
    /// # Shapes
    /// - returns `[tokens.len(), vocab]` row-major
    ///
    /// # Errors
    /// Tokens outside the vocabulary.
    pub fn full_pass(&self, tokens: &[u32]) -> Result<Vec<f32>> {
        self.check_tokens(tokens, 0)?;
        let mut cache = self.new_cache(1, tokens.len())?;
        let ids = ids_tensor(tokens, [1, tokens.len()], &self.device);
        let logits = self.forward(&mut cache, self.embed_tokens(ids)?)?;
        tensor_to_vec(logits, "toy logits")
    }
}

impl JacobiDenoiser for ToyModel {
    type Cache = KvCache;

    fn device(&self) -> Device {
        self.device.clone()
    }

    fn vocab_size(&self) -> usize {
        self.config.vocab()
    }

    fn hidden_size(&self) -> usize {
        self.config.hidden
    }

    fn max_sequence_len(&self) -> usize {
        4096
    }

    fn layout(&self) -> &ImageLayout {
        &self.layout
    }

    fn prompt_len(&self, row: &PromptRow<'_>) -> Result<usize> {
        let t = self.row_tokens(row);
        self.check_tokens(&t, 0)?;
        Ok(t.len())
    }

    fn new_cache(&self, rows: usize, capacity: usize) -> Result<KvCache> {
        let c = &self.config;
        KvCache::new(
            c.layers,
            rows,
            capacity,
            c.heads,
            c.hidden / c.heads,
            &self.device,
        )
    }

    fn prefill(&self, cache: &mut KvCache, rows: &[PromptRow<'_>]) -> Result<Tensor<2>> {
        let seqs: Vec<_> = rows.iter().map(|r| self.row_tokens(r)).collect();
        for (i, s) in seqs.iter().enumerate() {
            self.check_tokens(s, i)?;
        }
        prefill_ragged(
            cache,
            &seqs,
            self.config.null_token(),
            &self.device,
            |cache, ids| {
                let embeds = self.embed_tokens(ids)?;
                self.forward(cache, embeds)
            },
        )
    }

    fn embed_tokens(&self, tokens: Tensor<2, Int>) -> Result<Tensor<3>> {
        Ok(burn::tensor::module::embedding(self.embed.clone(), tokens))
    }

    fn forward(&self, cache: &mut KvCache, embeddings: Tensor<3>) -> Result<Tensor<3>> {
        let [rows, len, d] = embeddings.dims();
        if rows != cache.rows() || d != self.config.hidden || len == 0 {
            return Err(Error::Shape {
                what: "window embeddings".into(),
                expected: vec![cache.rows(), 0, self.config.hidden],
                got: vec![rows, len, d],
            });
        }
        let plan = cache.plan(len, &self.device)?;
        let (cos, sin) = self.rope_tables(&plan);
        let heads = self.config.heads;
        let hd = d / heads;
        let mut x = embeddings;
        for (l, b) in self.blocks.iter().enumerate() {
            let h = rms_norm(x.clone(), &b.norm1);
            let q = h
                .clone()
                .matmul(b.wq.clone().unsqueeze())
                .reshape([rows, len, heads, hd]);
            let k = h
                .clone()
                .matmul(b.wk.clone().unsqueeze())
                .reshape([rows, len, heads, hd]);
            let v = h
                .matmul(b.wv.clone().unsqueeze())
                .reshape([rows, len, heads, hd]);
            let q = apply_rope(q, &cos, &sin).swap_dims(1, 2);
            let k = apply_rope(k, &cos, &sin);
            let (keys, values) = cache.update(l, &plan, k, v)?;
            let att = attend(q, keys, values, &plan.mask, 1.0 / (hd as f64).sqrt());
            x = x + att.matmul(b.wo.clone().unsqueeze());
            let h = rms_norm(x.clone(), &b.norm2);
            let ff = silu(h.clone().matmul(b.w1.clone().unsqueeze()))
                * h.matmul(b.w3.clone().unsqueeze());
            x = x + ff.matmul(b.w2.clone().unsqueeze());
        }
        cache.commit(&plan);
        Ok(rms_norm(x, &self.norm).matmul(self.head.clone().unsqueeze()))
    }

    fn image_embedding_table(&self) -> Result<Tensor<2>> {
        Ok(self.embed.clone().narrow(0, 0, self.config.image_vocab))
    }
}
