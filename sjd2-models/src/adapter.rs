//! [`LlamaT2I`]: a [`Backbone`] with a family's prompt conventions, as a [`JacobiDenoiser`].
//!
//! Families differ in three places, each an enum here: how image tokens enter and leave the
//! transformer ([`ImageIo`]), how the prompt enters ([`Conditioning`]), and the image layout and
//! guidance style.

use std::borrow::Cow;

use burn::Tensor;
use burn::tensor::activation::{gelu, gelu_approximate};
use burn::tensor::{Device, Int, TensorData};
use sjd2_core::{
    Error, GuidanceStyle, ImageLayout, JacobiDenoiser, KvCache, PromptRow, Result, Role,
    prefill_ragged,
};

use crate::llama::Backbone;
use crate::weights::WeightLoader;

/// The GELU variant of an [`Mlp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gelu {
    /// `x·Φ(x)` with the exact error function (Janus).
    Erf,
    /// The tanh approximation (LlamaGen's caption projection).
    Tanh,
}

/// `fc2(gelu(fc1(x)))`, biases optional.
#[derive(Debug, Clone)]
pub struct Mlp {
    fc1: Tensor<2>,
    b1: Option<Tensor<1>>,
    fc2: Tensor<2>,
    b2: Option<Tensor<1>>,
    gelu: Gelu,
}

impl Mlp {
    /// Loads `fc1` (`in → hidden`) and `fc2` (`hidden → out`) from PyTorch `Linear` weights named
    /// `{fc1}.weight` / `{fc1}.bias` (biases when `bias` is set).
    #[allow(clippy::too_many_arguments)]
    pub fn load(
        loader: &mut WeightLoader,
        fc1: &str,
        fc2: &str,
        dims: [usize; 3],
        bias: bool,
        gelu: Gelu,
    ) -> Self {
        let [i, h, o] = dims;
        Self {
            fc1: loader.linear(&format!("{fc1}.weight"), h, i),
            b1: bias.then(|| loader.tensor(&format!("{fc1}.bias"), [h])),
            fc2: loader.linear(&format!("{fc2}.weight"), o, h),
            b2: bias.then(|| loader.tensor(&format!("{fc2}.bias"), [o])),
            gelu,
        }
    }

    /// Applies the MLP over the last dimension.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let mut h = x.matmul(self.fc1.clone().unsqueeze());
        if let Some(b) = &self.b1 {
            h = h + b.clone().unsqueeze::<3>();
        }
        h = match self.gelu {
            Gelu::Erf => gelu(h),
            Gelu::Tanh => gelu_approximate(h),
        };
        let mut y = h.matmul(self.fc2.clone().unsqueeze());
        if let Some(b) = &self.b2 {
            y = y + b.clone().unsqueeze::<3>();
        }
        y
    }
}

/// How image tokens enter and leave the transformer.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // built once per model
pub enum ImageIo {
    /// Image tokens are ids of the language model's own vocabulary (Chameleon, Emu3, LlamaGen).
    Shared,
    /// Janus: a separate code embedding followed by an aligner MLP in, and a generation head MLP
    /// out; the language model's embedding only serves the text prompt.
    Separate {
        /// `[codes, code_dim]`.
        embed: Tensor<2>,
        /// `code_dim → hidden`.
        aligner: Mlp,
        /// `hidden → codes`.
        head: Mlp,
    },
}

/// How the prompt enters the transformer.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // built once per model
pub enum Conditioning {
    /// Prompt tokens embedded by the language model, arranged by [`Prompting`].
    Tokens(Prompting),
    /// LlamaGen class-conditional: the prompt is `[class]`, the unconditional row the null class.
    Class {
        /// `[classes + 1, hidden]`; the last row is the null class.
        table: Tensor<2>,
    },
    /// LlamaGen text-conditional: `slots` caption embeddings (left padded) through a projection
    /// MLP; the unconditional row is a learned caption. Prompts go through
    /// [`LlamaT2I::prefill_captions`], or through [`JacobiDenoiser::prefill`] with a caption
    /// encoder attached ([`LlamaT2I::with_caption_encoder`]).
    Caption {
        /// `caption_dim → hidden`.
        proj: Mlp,
        /// `[slots, caption_dim]`.
        uncond: Tensor<2>,
        /// Caption slots (120 upstream).
        slots: usize,
    },
}

/// Turns prompt token ids into caption embeddings (for example a FLAN-T5 encoder).
pub trait CaptionEncoder: std::fmt::Debug + Send + Sync {
    /// Encodes one caption: returns `[len, caption_dim]` for its (unpadded) tokens.
    ///
    /// # Errors
    /// Invalid tokens.
    fn encode(&self, tokens: &[u32]) -> Result<Tensor<2>>;
}

/// One row of caption conditioning for [`LlamaT2I::prefill_captions`].
#[derive(Debug, Clone)]
pub struct CaptionRow {
    /// `[valid, caption_dim]` caption embeddings (at most `slots` rows; they are left padded).
    pub embeddings: Tensor<2>,
}

/// What the unconditional row holds when a prompt has no negative prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unconditional {
    /// Only the image prefix (Lumina-mGPT: the unconditional sequence starts at begin-of-image
    /// with its own positions).
    PrefixOnly,
    /// These tokens, then the image prefix (Emu3: a default negative prompt).
    Tokens(Vec<u32>),
    /// The conditional prompt with every token after the first `keep` replaced by `pad`, then the
    /// image prefix (Janus: BOS, pads, begin-of-image).
    PadPrompt {
        /// Leading tokens kept.
        keep: usize,
        /// Padding id.
        pad: u32,
    },
}

/// How a family turns prompts into rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompting {
    /// Tokens appended to every row (conditional and unconditional) before the image tokens:
    /// begin-of-image and size tokens.
    pub image_prefix: Vec<u32>,
    /// The unconditional row when a prompt has no negative prompt.
    pub unconditional: Unconditional,
    /// Token used to pad rows of a batch (never attended to).
    pub pad: u32,
}

/// A text-to-image Llama-family model: backbone, image input/output, conditioning, image layout
/// and guidance style.
#[derive(Debug, Clone)]
pub struct LlamaT2I {
    backbone: Backbone,
    layout: ImageLayout,
    guidance: GuidanceStyle,
    image_io: ImageIo,
    conditioning: Conditioning,
    caption_encoder: Option<std::sync::Arc<dyn CaptionEncoder>>,
    code_map: CodeMap,
    device: Device,
}

/// How generated image token ids map to VQ codes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CodeMap {
    /// `code = id − offset` (LlamaGen and Janus: 0; Emu3: the first visual token).
    Offset(u32),
    /// `code = table[id − start]` (Chameleon: codes found from the token names).
    Table {
        /// First image token id.
        start: u32,
        /// Code of each id from `start` on.
        codes: Vec<u32>,
    },
    /// Identity (the default).
    #[default]
    Identity,
}

impl LlamaT2I {
    /// A model whose prompt tokens enter through the language model (Chameleon, Emu3, Janus).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when layout or prompt tokens fall outside the vocabulary.
    pub fn new(
        backbone: Backbone,
        layout: ImageLayout,
        guidance: GuidanceStyle,
        prompting: Prompting,
        device: &Device,
    ) -> Result<Self> {
        Self::with_parts(
            backbone,
            layout,
            guidance,
            ImageIo::Shared,
            Conditioning::Tokens(prompting),
            device,
        )
    }

    /// A model from all its parts.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when layout or prompt tokens fall outside the vocabulary.
    pub fn with_parts(
        backbone: Backbone,
        layout: ImageLayout,
        guidance: GuidanceStyle,
        image_io: ImageIo,
        conditioning: Conditioning,
        device: &Device,
    ) -> Result<Self> {
        let inp = backbone.config().vocab as u32;
        let image_vocab = match &image_io {
            ImageIo::Shared => inp.min(backbone.config().output_vocab as u32),
            ImageIo::Separate { embed, .. } => embed.dims()[0] as u32,
        };
        if layout.image_token_range().end > image_vocab {
            return Err(Error::config(
                "image_tokens",
                format!(
                    "range {:?} exceeds the {image_vocab} image token ids",
                    layout.image_token_range()
                ),
            ));
        }
        if let Conditioning::Tokens(p) = &conditioning
            && let Some(&t) = p.image_prefix.iter().find(|&&t| t >= inp)
        {
            return Err(Error::config(
                "image_prefix",
                format!("token {t} is outside the vocabulary of {inp}"),
            ));
        }
        Ok(Self {
            backbone,
            layout,
            guidance,
            image_io,
            conditioning,
            caption_encoder: None,
            code_map: CodeMap::Identity,
            device: device.clone(),
        })
    }

    /// Sets how image token ids map to VQ codes.
    pub fn with_code_map(mut self, code_map: CodeMap) -> Self {
        self.code_map = code_map;
        self
    }

    /// The VQ codes of a generated sequence, in raster order: layout tokens (row ends, end
    /// tokens) are dropped and ids are mapped by the family's [`CodeMap`].
    ///
    /// # Errors
    /// [`Error::TokenOutOfRange`] for an id that is not an image token.
    pub fn image_codes(&self, generated: &[u32]) -> Result<Vec<u32>> {
        let range = self.layout.image_token_range();
        self.layout
            .image_tokens(generated)
            .into_iter()
            .map(|id| {
                let bad = || Error::TokenOutOfRange {
                    what: "generated image tokens".into(),
                    token: id,
                    allowed: format!("{range:?}"),
                };
                if !range.contains(&id) {
                    return Err(bad());
                }
                match &self.code_map {
                    CodeMap::Identity => Ok(id),
                    CodeMap::Offset(o) => id.checked_sub(*o).ok_or_else(bad),
                    CodeMap::Table { start, codes } => id
                        .checked_sub(*start)
                        .and_then(|i| codes.get(i as usize).copied())
                        .ok_or_else(bad),
                }
            })
            .collect()
    }

    /// Attaches the encoder that turns prompt tokens into caption embeddings (LlamaGen t2i).
    pub fn with_caption_encoder(mut self, encoder: impl CaptionEncoder + 'static) -> Self {
        self.caption_encoder = Some(std::sync::Arc::new(encoder));
        self
    }

    /// The backbone.
    pub fn backbone(&self) -> &Backbone {
        &self.backbone
    }

    /// The conditioning.
    pub fn conditioning(&self) -> &Conditioning {
        &self.conditioning
    }

    /// The token sequence a row prefills (token conditioning only).
    pub fn row_tokens<'a>(&self, row: &'a PromptRow<'_>) -> Cow<'a, [u32]> {
        let Conditioning::Tokens(prompting) = &self.conditioning else {
            return Cow::Borrowed(&row.prompt.tokens);
        };
        let padded;
        let body: &[u32] = match (row.role, &row.prompt.negative, &prompting.unconditional) {
            (Role::Conditional, _, _) => &row.prompt.tokens,
            (Role::Unconditional, Some(neg), _) => neg,
            (Role::Unconditional, None, Unconditional::Tokens(t)) => t,
            (Role::Unconditional, None, Unconditional::PrefixOnly) => &[],
            (Role::Unconditional, None, Unconditional::PadPrompt { keep, pad }) => {
                padded = row
                    .prompt
                    .tokens
                    .iter()
                    .enumerate()
                    .map(|(i, &t)| if i < *keep { t } else { *pad })
                    .collect::<Vec<_>>();
                &padded
            }
        };
        let mut v = body.to_vec();
        v.extend_from_slice(&prompting.image_prefix);
        Cow::Owned(v)
    }

    fn check(&self, tokens: &[u32], row: &PromptRow<'_>, vocab: u32) -> Result<()> {
        if tokens.is_empty() {
            return Err(Error::InvalidPrompt {
                index: 0,
                reason: format!("the {:?} row is empty", row.role),
            });
        }
        if let Some(&t) = tokens.iter().find(|&&t| t >= vocab) {
            return Err(Error::TokenOutOfRange {
                what: format!("{:?} prompt row", row.role),
                token: t,
                allowed: format!("0..{vocab}"),
            });
        }
        Ok(())
    }

    /// Output logits of final hidden states (the image head for [`ImageIo::Separate`]).
    pub fn head(&self, hidden: Tensor<3>) -> Tensor<3> {
        match &self.image_io {
            ImageIo::Shared => self.backbone.logits(hidden),
            ImageIo::Separate { head, .. } => head.forward(hidden),
        }
    }

    /// Runs prompt embeddings (language-model token ids for token conditioning) and returns the
    /// image logits for every position.
    ///
    /// # Errors
    /// Shape and cache errors.
    pub fn forward_tokens(&self, cache: &mut KvCache, ids: Tensor<2, Int>) -> Result<Tensor<3>> {
        let out = self
            .backbone
            .forward(cache, self.backbone.embed(ids), false)?;
        Ok(self.head(out.hidden))
    }

    /// Prefills LlamaGen t2i rows from caption embeddings: each row is left padded to the caption
    /// slots (padded keys hidden from every query but their own), projected, and run; returns the
    /// logits of the first image token, `[rows, codes]`. Row `i` of `rows` fills cache row `i`;
    /// `None` rows take the learned unconditional caption with the padding of `mask_like`.
    ///
    /// # Errors
    /// [`Error::Unsupported`] without caption conditioning, [`Error::Shape`] for captions longer
    /// than the slots or of the wrong width.
    pub fn prefill_captions(
        &self,
        cache: &mut KvCache,
        rows: &[Option<CaptionRow>],
        mask_like: &[usize],
    ) -> Result<Tensor<2>> {
        let Conditioning::Caption {
            proj,
            uncond,
            slots,
        } = &self.conditioning
        else {
            return Err(Error::Unsupported(
                "prefill_captions needs caption conditioning (LlamaGen t2i)".into(),
            ));
        };
        let [_, cap] = uncond.dims();
        let mut embs = Vec::with_capacity(rows.len());
        for (r, row) in rows.iter().enumerate() {
            let (emb, valid) = match row {
                Some(c) => {
                    let [n, w] = c.embeddings.dims();
                    if n > *slots || w != cap || n == 0 {
                        return Err(Error::Shape {
                            what: format!("caption embeddings of row {r}"),
                            expected: vec![*slots, cap],
                            got: vec![n, w],
                        });
                    }
                    let pad = Tensor::<2>::zeros([*slots - n, cap], &self.device);
                    (Tensor::cat(vec![pad, c.embeddings.clone()], 0), n)
                }
                None => (uncond.clone(), mask_like.get(r).copied().unwrap_or(*slots)),
            };
            cache.set_hidden_prefix(r, *slots - valid)?;
            embs.push(emb);
        }
        let x = proj.forward(Tensor::stack(embs, 0));
        let out = self.backbone.forward(cache, x, false)?;
        let logits = self.head(out.hidden);
        let [n, len, v] = logits.dims();
        Ok(logits.narrow(1, len - 1, 1).reshape([n, v]))
    }

    fn prefill_caption_prompts(
        &self,
        cache: &mut KvCache,
        rows: &[PromptRow<'_>],
    ) -> Result<Tensor<2>> {
        let encoder = self.caption_encoder.as_ref().ok_or_else(|| {
            Error::Unsupported("this LlamaGen t2i model has no caption encoder: attach one or call prefill_captions".into())
        })?;
        let mut caps = Vec::with_capacity(rows.len());
        let mut valid = Vec::with_capacity(rows.len());
        let mut last_cond = 0;
        for row in rows {
            match (row.role, &row.prompt.negative) {
                (Role::Conditional, _) => {
                    let e = encoder.encode(&row.prompt.tokens)?;
                    last_cond = e.dims()[0];
                    valid.push(last_cond);
                    caps.push(Some(CaptionRow { embeddings: e }));
                }
                (Role::Unconditional, Some(neg)) => {
                    let e = encoder.encode(neg)?;
                    valid.push(e.dims()[0]);
                    caps.push(Some(CaptionRow { embeddings: e }));
                }
                (Role::Unconditional, None) => {
                    valid.push(last_cond);
                    caps.push(None);
                }
            }
        }
        // Unconditional rows reuse the mask of their conditional row (upstream's `emb_mask`).
        let half = rows.len() / 2;
        let mask_like: Vec<usize> = (0..rows.len())
            .map(|r| {
                if r >= half && rows[r].role == Role::Unconditional {
                    valid[r - half]
                } else {
                    valid[r]
                }
            })
            .collect();
        self.prefill_captions(cache, &caps, &mask_like)
    }
}

impl JacobiDenoiser for LlamaT2I {
    type Cache = KvCache;

    fn device(&self) -> Device {
        self.device.clone()
    }

    fn vocab_size(&self) -> usize {
        match &self.image_io {
            ImageIo::Shared => self.backbone.config().output_vocab,
            ImageIo::Separate { embed, .. } => embed.dims()[0],
        }
    }

    fn hidden_size(&self) -> usize {
        self.backbone.config().hidden
    }

    fn max_sequence_len(&self) -> usize {
        self.backbone.config().max_positions
    }

    fn layout(&self) -> &ImageLayout {
        &self.layout
    }

    fn guidance_style(&self) -> GuidanceStyle {
        self.guidance
    }

    fn prompt_len(&self, row: &PromptRow<'_>) -> Result<usize> {
        match &self.conditioning {
            Conditioning::Tokens(_) => {
                let t = self.row_tokens(row);
                self.check(&t, row, self.backbone.config().vocab as u32)?;
                Ok(t.len())
            }
            Conditioning::Class { table } => {
                if row.role == Role::Conditional {
                    let classes = table.dims()[0] as u32;
                    self.check(&row.prompt.tokens, row, classes)?;
                    if row.prompt.tokens.len() != 1 {
                        return Err(Error::InvalidPrompt {
                            index: 0,
                            reason: format!(
                                "a class-conditional prompt is one class id (got {} tokens)",
                                row.prompt.tokens.len()
                            ),
                        });
                    }
                }
                Ok(1)
            }
            Conditioning::Caption { slots, .. } => Ok(*slots),
        }
    }

    fn new_cache(&self, rows: usize, capacity: usize) -> Result<KvCache> {
        self.backbone.new_cache(rows, capacity)
    }

    fn prefill(&self, cache: &mut KvCache, rows: &[PromptRow<'_>]) -> Result<Tensor<2>> {
        for row in rows {
            self.prompt_len(row)?;
        }
        match &self.conditioning {
            Conditioning::Tokens(prompting) => {
                let seqs: Vec<Cow<'_, [u32]>> = rows.iter().map(|r| self.row_tokens(r)).collect();
                prefill_ragged(cache, &seqs, prompting.pad, &self.device, |cache, ids| {
                    self.forward_tokens(cache, ids)
                })
            }
            Conditioning::Class { table } => {
                let null = table.dims()[0] as i64 - 1;
                let ids: Vec<i64> = rows
                    .iter()
                    .map(|r| match r.role {
                        Role::Conditional => i64::from(r.prompt.tokens[0]),
                        Role::Unconditional => r
                            .prompt
                            .negative
                            .as_ref()
                            .and_then(|n| n.first())
                            .map_or(null, |&c| i64::from(c)),
                    })
                    .collect();
                let n = ids.len();
                let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [n, 1]), &self.device);
                let x = burn::tensor::module::embedding(table.clone(), ids);
                let out = self.backbone.forward(cache, x, false)?;
                let v = self.vocab_size();
                Ok(self.head(out.hidden).reshape([n, v]))
            }
            Conditioning::Caption { .. } => self.prefill_caption_prompts(cache, rows),
        }
    }

    fn embed_tokens(&self, tokens: Tensor<2, Int>) -> Result<Tensor<3>> {
        Ok(match &self.image_io {
            ImageIo::Shared => self.backbone.embed(tokens),
            ImageIo::Separate { embed, aligner, .. } => {
                aligner.forward(burn::tensor::module::embedding(embed.clone(), tokens))
            }
        })
    }

    fn forward(&self, cache: &mut KvCache, embeddings: Tensor<3>) -> Result<Tensor<3>> {
        let out = self.backbone.forward(cache, embeddings, false)?;
        Ok(self.head(out.hidden))
    }

    fn image_embedding_table(&self) -> Result<Tensor<2>> {
        let r = self.layout.image_token_range();
        match &self.image_io {
            ImageIo::Shared => {
                Ok(self
                    .backbone
                    .embedding_table()
                    .narrow(0, r.start as usize, r.len()))
            }
            ImageIo::Separate { embed, aligner, .. } => {
                let codes = embed.clone().narrow(0, r.start as usize, r.len());
                Ok(aligner
                    .forward(codes.unsqueeze_dim::<3>(0))
                    .squeeze_dim::<2>(0))
            }
        }
    }
}
