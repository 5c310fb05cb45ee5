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
    Error, GuidanceStyle, ImageLayout, JacobiDenoiser, KvCache, Prompt, PromptRow, Result, Role,
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

    /// The MLP on `device`.
    pub fn to_device(self, device: &Device) -> Self {
        Self {
            fc1: self.fc1.to_device(device),
            b1: self.b1.map(|b| b.to_device(device)),
            fc2: self.fc2.to_device(device),
            b2: self.b2.map(|b| b.to_device(device)),
            gelu: self.gelu,
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

/// One sequence of a training batch ([`LlamaT2I::training_batch`]).
#[derive(Debug, Clone, Copy)]
pub struct TrainingExample<'a> {
    /// The prompt, as given to the decoder (template applied, without the image prefix).
    pub prompt: &'a Prompt,
    /// Conditional, or the unconditional row of classifier-free guidance (prompt dropout).
    pub role: Role,
    /// The image's VQ codes in raster order.
    pub codes: &'a [u32],
}

/// Whole training sequences laid out as decoding sees them ([`LlamaT2I::training_batch`]).
#[derive(Debug, Clone)]
pub struct TrainingBatch {
    /// Clean input embeddings `[rows, len, hidden]`, right padded with zeros (causal attention
    /// never lets a real position see the padding).
    pub embeddings: Tensor<3>,
    /// Target ids in the head's vocabulary, row-major `rows × len` (0 where not scored).
    pub targets: Vec<u32>,
    /// Whether a target is scored: the next token is a grid cell.
    pub scored: Vec<bool>,
    /// Per row, the input positions that hold grid cells, in generation order: where SJD2
    /// feeds noisy embeddings.
    pub grid_inputs: Vec<Vec<usize>>,
    /// Per row, the leading keys hidden from later queries (LlamaGen caption padding).
    pub hidden_prefix: Vec<usize>,
    /// Length of the longest row (the sequence dimension).
    pub len: usize,
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

    /// Replaces the backbone by `f(backbone)`: how a trainer swaps in a LoRA-adapted or
    /// optimizer-updated backbone while the family's other parts stay as they are.
    ///
    /// # Errors
    /// Whatever `f` returns.
    pub fn try_map_backbone<E>(
        self,
        f: impl FnOnce(Backbone) -> std::result::Result<Backbone, E>,
    ) -> std::result::Result<Self, E> {
        Ok(Self {
            backbone: f(self.backbone)?,
            ..self
        })
    }

    /// A copy of the model on `device` (a data-parallel replica): the backbone is forked
    /// (burn's [`burn::module::Module::fork`]: same parameter ids, a new autodiff root), every
    /// other tensor moved. A caption encoder stays where it is; its outputs are moved.
    pub fn to_device(&self, device: &Device) -> Self {
        use burn::module::Module;
        let image_io = match &self.image_io {
            ImageIo::Shared => ImageIo::Shared,
            ImageIo::Separate {
                embed,
                aligner,
                head,
            } => ImageIo::Separate {
                embed: embed.clone().to_device(device),
                aligner: aligner.clone().to_device(device),
                head: head.clone().to_device(device),
            },
        };
        let conditioning = match &self.conditioning {
            Conditioning::Tokens(p) => Conditioning::Tokens(p.clone()),
            Conditioning::Class { table } => Conditioning::Class {
                table: table.clone().to_device(device),
            },
            Conditioning::Caption {
                proj,
                uncond,
                slots,
            } => Conditioning::Caption {
                proj: proj.clone().to_device(device),
                uncond: uncond.clone().to_device(device),
                slots: *slots,
            },
        };
        Self {
            backbone: self.backbone.clone().fork(device),
            layout: self.layout.clone(),
            guidance: self.guidance,
            image_io,
            conditioning,
            caption_encoder: self.caption_encoder.clone(),
            code_map: self.code_map.clone(),
            device: device.clone(),
        }
    }

    /// Replaces the backbone by `f(backbone)` (see [`LlamaT2I::try_map_backbone`]).
    pub fn map_backbone(self, f: impl FnOnce(Backbone) -> Backbone) -> Self {
        Self {
            backbone: f(self.backbone),
            ..self
        }
    }

    /// How image tokens enter and leave the transformer.
    pub fn image_io(&self) -> &ImageIo {
        &self.image_io
    }

    /// How generated image token ids map to VQ codes.
    pub fn code_map(&self) -> &CodeMap {
        &self.code_map
    }

    /// The generated span of an image, as decoding produces it: the image token id of each
    /// code (the inverse of [`LlamaT2I::image_codes`]) with the layout's row ends and end tokens.
    ///
    /// # Errors
    /// [`Error::Shape`] when `codes` does not fill the grid, [`Error::TokenOutOfRange`] for a code
    /// the model has no image token for.
    pub fn image_ids(&self, codes: &[u32]) -> Result<Vec<u32>> {
        let layout = &self.layout;
        let (rows, cols) = (layout.rows(), layout.cols());
        if codes.len() != rows * cols {
            return Err(Error::Shape {
                what: "image codes".into(),
                expected: vec![rows * cols],
                got: vec![codes.len()],
            });
        }
        let range = layout.image_token_range();
        let id_of = |code: u32| -> Result<u32> {
            let id = match &self.code_map {
                CodeMap::Identity => Some(code),
                CodeMap::Offset(o) => code.checked_add(*o),
                CodeMap::Table { start, codes } => codes
                    .iter()
                    .position(|&c| c == code)
                    .map(|i| start + i as u32),
            };
            id.filter(|id| range.contains(id))
                .ok_or_else(|| Error::TokenOutOfRange {
                    what: "image codes".into(),
                    token: code,
                    allowed: format!("codes with an image token in {range:?}"),
                })
        };
        (0..layout.len())
            .map(
                |pos| match (layout.forced_token(pos), layout.grid_cell(pos)) {
                    (Some(t), _) => Ok(t),
                    (None, Some((r, c))) => id_of(codes[r * cols + c]),
                    (None, None) => Err(Error::config(
                        "layout",
                        format!("position {pos} is neither forced nor a grid cell"),
                    )),
                },
            )
            .collect()
    }

    /// Lays out whole training sequences exactly as decoding sees them: each row's prompt part
    /// as [`JacobiDenoiser::prefill`] would feed it (template, image prefix, unconditional row,
    /// class or caption), then the image span of [`LlamaT2I::image_ids`] through
    /// [`JacobiDenoiser::embed_tokens`]. Targets are the next tokens of the image span in the
    /// head's vocabulary; only grid cells are scored (forced tokens are never sampled).
    ///
    /// # Errors
    /// Invalid prompts (empty, out of the vocabulary, a caption model without an encoder),
    /// codes that do not fill the grid, sequences longer than the model's positions.
    pub fn training_batch(&self, examples: &[TrainingExample<'_>]) -> Result<TrainingBatch> {
        if examples.is_empty() {
            return Err(Error::config(
                "examples",
                "a training batch needs at least one sequence",
            ));
        }
        let mut prefixes = Vec::with_capacity(examples.len());
        let mut hidden_prefix = Vec::with_capacity(examples.len());
        let mut spans = Vec::with_capacity(examples.len());
        for ex in examples {
            let row = PromptRow {
                prompt: ex.prompt,
                role: ex.role,
            };
            self.prompt_len(&row)?;
            let (prefix, hidden) = self.training_prefix(&row)?;
            prefixes.push(prefix);
            hidden_prefix.push(hidden);
            spans.push(self.image_ids(ex.codes)?);
        }
        let span = self.layout.len();
        let b = examples.len();
        // Inputs: prefix + span[..span-1]; the last span token is only a target.
        let inputs: Vec<i64> = spans
            .iter()
            .flat_map(|s| s[..span - 1].iter().map(|&t| i64::from(t)))
            .collect();
        let image_ids =
            Tensor::<2, Int>::from_data(TensorData::new(inputs, [b, span - 1]), &self.device);
        let image_emb = self.embed_tokens(image_ids)?;
        let lens: Vec<usize> = prefixes.iter().map(|p| p.dims()[0] + span - 1).collect();
        let len = lens.iter().copied().max().unwrap_or(1);
        if len > self.backbone.config().max_positions {
            return Err(Error::SequenceTooLong {
                what: "training sequence".into(),
                needed: len,
                max: self.backbone.config().max_positions,
            });
        }
        let d = self.backbone.config().hidden;
        let mut rows = Vec::with_capacity(b);
        let mut targets = vec![0u32; b * len];
        let mut scored = vec![false; b * len];
        let mut grid_inputs = Vec::with_capacity(b);
        for (r, prefix) in prefixes.into_iter().enumerate() {
            let p = prefix.dims()[0];
            let mut parts = vec![
                prefix,
                image_emb.clone().narrow(0, r, 1).reshape([span - 1, d]),
            ];
            if lens[r] < len {
                parts.push(Tensor::zeros([len - lens[r], d], &self.device));
            }
            rows.push(Tensor::cat(parts, 0));
            for (j, &t) in spans[r].iter().enumerate() {
                if self.layout.grid_cell(j).is_some() {
                    targets[r * len + p - 1 + j] = t;
                    scored[r * len + p - 1 + j] = true;
                }
            }
            grid_inputs.push(
                (0..span - 1)
                    .filter(|&j| self.layout.grid_cell(j).is_some())
                    .map(|j| p + j)
                    .collect(),
            );
        }
        Ok(TrainingBatch {
            embeddings: Tensor::stack(rows, 0),
            targets,
            scored,
            grid_inputs,
            hidden_prefix,
            len,
        })
    }

    /// The embeddings `[len, hidden]` a row's prompt part feeds, and how many of its leading
    /// keys are hidden (caption padding).
    fn training_prefix(&self, row: &PromptRow<'_>) -> Result<(Tensor<2>, usize)> {
        let d = self.backbone.config().hidden;
        match &self.conditioning {
            Conditioning::Tokens(_) => {
                let ids: Vec<i64> = self.row_tokens(row).iter().map(|&t| i64::from(t)).collect();
                let n = ids.len();
                let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, n]), &self.device);
                Ok((self.backbone.embed(ids).reshape([n, d]), 0))
            }
            Conditioning::Class { table } => {
                let null = table.dims()[0] as u32 - 1;
                // Class and caption models take no images: their image-conditioned row is the
                // unconditional one.
                let class = match row.role {
                    Role::Conditional => row.prompt.tokens[0],
                    Role::Unconditional | Role::ImageConditioned => row
                        .prompt
                        .negative
                        .as_ref()
                        .and_then(|n| n.first().copied())
                        .unwrap_or(null),
                };
                Ok((table.clone().narrow(0, class as usize, 1), 0))
            }
            Conditioning::Caption {
                proj,
                uncond,
                slots,
            } => {
                let [_, cap] = uncond.dims();
                let tokens = match (row.role, &row.prompt.negative) {
                    (Role::Conditional, _) => Some(&row.prompt.tokens),
                    (Role::Unconditional | Role::ImageConditioned, Some(neg)) => Some(neg),
                    (Role::Unconditional | Role::ImageConditioned, None) => None,
                };
                let (caption, valid) = match tokens {
                    Some(t) => {
                        let encoder = self.caption_encoder.as_ref().ok_or_else(|| {
                            Error::Unsupported(
                                "training a LlamaGen t2i model needs its caption encoder: attach one with with_caption_encoder".into(),
                            )
                        })?;
                        let e = encoder.encode(t)?.to_device(&self.device);
                        let [n, w] = e.dims();
                        if n > *slots || w != cap || n == 0 {
                            return Err(Error::Shape {
                                what: "caption embeddings".into(),
                                expected: vec![*slots, cap],
                                got: vec![n, w],
                            });
                        }
                        let pad = Tensor::<2>::zeros([*slots - n, cap], &self.device);
                        (Tensor::cat(vec![pad, e], 0), n)
                    }
                    // The learned unconditional caption keeps the conditional row's padding,
                    // as at decoding time (upstream's `emb_mask`).
                    None => (uncond.clone(), row.prompt.tokens.len().clamp(1, *slots)),
                };
                let x = proj
                    .forward(caption.unsqueeze_dim::<3>(0))
                    .reshape([*slots, d]);
                Ok((x, *slots - valid))
            }
        }
    }

    /// The training forward: logits `[rows, len, vocab]` of the head for input embeddings laid
    /// out by [`LlamaT2I::training_batch`] (possibly with noisy slots), through
    /// [`Backbone::forward_sequence_hiding`]. Autodiff flows through the backbone's parameters.
    ///
    /// # Errors
    /// Shape errors, sequences longer than the model's positions.
    pub fn training_logits(
        &self,
        embeddings: Tensor<3>,
        hidden_prefix: &[usize],
    ) -> Result<Tensor<3>> {
        let hidden = self
            .backbone
            .forward_sequence_hiding(embeddings, hidden_prefix)?;
        Ok(self.head(hidden))
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
        let body: &[u32] = match (row.branch(), &row.prompt.negative, &prompting.unconditional) {
            (Role::Conditional, _, _) => &row.prompt.tokens,
            (Role::ImageConditioned, _, _) => row.prompt.image_condition.as_deref().unwrap_or(&[]),
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
                (Role::Unconditional | Role::ImageConditioned, Some(neg)) => {
                    let e = encoder.encode(neg)?;
                    valid.push(e.dims()[0]);
                    caps.push(Some(CaptionRow { embeddings: e }));
                }
                (Role::Unconditional | Role::ImageConditioned, None) => {
                    valid.push(last_cond);
                    caps.push(None);
                }
            }
        }
        // Unconditional rows reuse the mask of their conditional row (upstream's `emb_mask`):
        // rows come grouped by branch, conditional rows first.
        let conditional = rows
            .iter()
            .filter(|r| r.role == Role::Conditional)
            .count()
            .max(1);
        let mask_like: Vec<usize> = (0..rows.len())
            .map(|r| {
                if r >= conditional && rows[r].role != Role::Conditional {
                    valid[r % conditional]
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
                        Role::Unconditional | Role::ImageConditioned => r
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

    fn forward_image_logits(
        &self,
        cache: &mut KvCache,
        embeddings: Tensor<3>,
    ) -> Result<Tensor<3>> {
        let out = self.backbone.forward(cache, embeddings, false)?;
        let r = self.layout.image_token_range();
        Ok(match &self.image_io {
            ImageIo::Shared => self
                .backbone
                .logits_in(out.hidden, r.start as usize..r.end as usize),
            ImageIo::Separate { head, .. } => {
                head.forward(out.hidden)
                    .narrow(2, r.start as usize, r.len())
            }
        })
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
