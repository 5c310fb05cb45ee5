//! The model interface of the decoding loop: [`JacobiDenoiser`], prompts and the image layout.

use std::ops::Range;

use burn::Tensor;
use burn::tensor::{Device, Int, TensorData};

use crate::cache::DecodeCache;
use crate::error::{Error, Result};
use crate::guidance::GuidanceStyle;

/// A prompt: token ids as the model family expects them (text tokens, a class label, T5 ids ...),
/// with an optional negative prompt for classifier-free guidance and an optional per-prompt seed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Prompt {
    /// The conditional prompt; must not be empty.
    pub tokens: Vec<u32>,
    /// The unconditional ("negative") prompt. `None` lets the model use its family's default
    /// (a null class, pads, the begin-of-image token alone, a learned embedding, ...).
    pub negative: Option<Vec<u32>>,
    /// The image-conditioned prompt of three-way guidance (Chameleon / Anole with images in the
    /// prompt: the prompt with its text removed, upstream's `image_conditioned` row). `None`
    /// means the same as the unconditional row, which reduces three-way guidance to two-way
    /// guidance at the text scale, so the decoder runs the third branch only for batches where
    /// some prompt has one (see `DecoderConfig::image_guidance_scale` in `sjd2-sampler`).
    pub image_condition: Option<Vec<u32>>,
    /// Overrides the decoder's seed for this prompt. Results depend only on the prompt and its
    /// seed, never on other prompts of the same batch.
    pub seed: Option<u64>,
}

impl Prompt {
    /// A prompt from token ids.
    pub fn new(tokens: impl Into<Vec<u32>>) -> Self {
        Self {
            tokens: tokens.into(),
            ..Self::default()
        }
    }

    /// Sets the negative prompt.
    pub fn with_negative(mut self, negative: impl Into<Vec<u32>>) -> Self {
        self.negative = Some(negative.into());
        self
    }

    /// Sets the image-conditioned prompt of three-way guidance.
    pub fn with_image_condition(mut self, tokens: impl Into<Vec<u32>>) -> Self {
        self.image_condition = Some(tokens.into());
        self
    }

    /// Sets the seed of this prompt.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }
}

/// Which branch of classifier-free guidance a cache row computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The prompted sequence.
    Conditional,
    /// The unconditional (or negative-prompt) sequence.
    Unconditional,
    /// The middle branch of three-way guidance: the prompt's
    /// [`image_condition`](Prompt::image_condition), or the unconditional sequence when it has
    /// none.
    ImageConditioned,
}

/// One row to prefill: a prompt and the branch it stands for.
#[derive(Debug, Clone, Copy)]
pub struct PromptRow<'a> {
    /// The prompt.
    pub prompt: &'a Prompt,
    /// The branch.
    pub role: Role,
}

impl<'a> PromptRow<'a> {
    /// The rows of `prompts` for `branches` guidance branches (1: conditional only; 2: and
    /// unconditional; 3: and image-conditioned), grouped by branch: every conditional row, then
    /// every unconditional one, then every image-conditioned one.
    pub fn grouped(prompts: &'a [Prompt], branches: usize) -> Vec<Self> {
        [
            Role::Conditional,
            Role::Unconditional,
            Role::ImageConditioned,
        ]
        .into_iter()
        .take(branches)
        .flat_map(|role| prompts.iter().map(move |prompt| PromptRow { prompt, role }))
        .collect()
    }

    /// The branch this row computes: [`Role::ImageConditioned`] without an
    /// [`image_condition`](Prompt::image_condition) computes the unconditional row.
    ///
    /// ```
    /// use sjd2_core::{Prompt, PromptRow, Role};
    /// let p = Prompt::new([1, 2]);
    /// let row = PromptRow { prompt: &p, role: Role::ImageConditioned };
    /// assert_eq!(row.branch(), Role::Unconditional);
    /// let p = p.with_image_condition([1]);
    /// let row = PromptRow { prompt: &p, role: Role::ImageConditioned };
    /// assert_eq!(row.branch(), Role::ImageConditioned);
    /// ```
    pub fn branch(&self) -> Role {
        match (self.role, &self.prompt.image_condition) {
            (Role::ImageConditioned, None) => Role::Unconditional,
            (role, _) => role,
        }
    }
}

/// The structure of the generated token span: an image grid, optional row-end tokens, end tokens.
///
/// Generated position `p` counts from the first token after the prompt. With a row-end token,
/// row `r` occupies positions `r·(cols+1) .. r·(cols+1)+cols` and its row end follows; the end
/// tokens come after the last row. Forced tokens are never drafted, verified or sampled.
///
/// # Example
/// ```
/// use sjd2_core::ImageLayout;
/// // 2x2 grid of image tokens 0..4, row end 4, end-of-image 5.
/// let l = ImageLayout::new(0..4, 2, 2, Some(4), vec![5]).unwrap();
/// assert_eq!(l.len(), 7);
/// assert_eq!(l.forced_token(2), Some(4));
/// assert_eq!(l.grid_cell(3), Some((1, 0)));
/// assert_eq!(l.image_tokens(&[0, 1, 4, 2, 3, 4, 5]), vec![0, 1, 2, 3]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageLayout {
    image_tokens: Range<u32>,
    rows: usize,
    cols: usize,
    row_end: Option<u32>,
    end_tokens: Vec<u32>,
}

impl ImageLayout {
    /// A layout.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for an empty token range or grid.
    pub fn new(
        image_tokens: Range<u32>,
        rows: usize,
        cols: usize,
        row_end: Option<u32>,
        end_tokens: Vec<u32>,
    ) -> Result<Self> {
        if image_tokens.is_empty() {
            return Err(Error::config(
                "image_tokens",
                "the image token range is empty",
            ));
        }
        if rows == 0 || cols == 0 {
            return Err(Error::config(
                "grid",
                format!("rows and cols must be >= 1 (got {rows}x{cols})"),
            ));
        }
        Ok(Self {
            image_tokens,
            rows,
            cols,
            row_end,
            end_tokens,
        })
    }

    /// Ids that image positions may take.
    pub fn image_token_range(&self) -> Range<u32> {
        self.image_tokens.clone()
    }

    /// Number of image token ids.
    pub fn image_vocab(&self) -> usize {
        self.image_tokens.len()
    }

    /// Grid rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Grid columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    fn row_stride(&self) -> usize {
        self.cols + usize::from(self.row_end.is_some())
    }

    /// Total generated positions: the grid, its row ends and the end tokens.
    pub fn len(&self) -> usize {
        self.rows * self.row_stride() + self.end_tokens.len()
    }

    /// Always false (a layout holds at least one image token).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The forced token at generated position `pos`, if any.
    pub fn forced_token(&self, pos: usize) -> Option<u32> {
        let grid = self.rows * self.row_stride();
        if pos >= grid {
            return self.end_tokens.get(pos - grid).copied();
        }
        match self.row_end {
            Some(t) if pos % self.row_stride() == self.cols => Some(t),
            _ => None,
        }
    }

    /// `(row, col)` of generated position `pos` if it is an image token.
    pub fn grid_cell(&self, pos: usize) -> Option<(usize, usize)> {
        if pos >= self.rows * self.row_stride() || self.forced_token(pos).is_some() {
            return None;
        }
        Some((pos / self.row_stride(), pos % self.row_stride()))
    }

    /// Generated position of grid cell `(row, col)`.
    pub fn position(&self, row: usize, col: usize) -> usize {
        row * self.row_stride() + col
    }

    /// The image tokens of a generated sequence in raster order, layout tokens removed.
    pub fn image_tokens(&self, generated: &[u32]) -> Vec<u32> {
        generated
            .iter()
            .enumerate()
            .filter(|(p, _)| self.grid_cell(*p).is_some())
            .map(|(_, &t)| t)
            .collect()
    }
}

/// Everything the decoding loop needs from a model, and nothing more.
///
/// A model keeps its key/value state in a [`Self::Cache`] with one row per sequence (conditional
/// rows first, then unconditional rows when guidance is on). [`prefill`](Self::prefill) consumes
/// prompts; [`forward`](Self::forward) appends a window of input embeddings at each row's current
/// length and returns logits for **every** window position; the decoder then rolls each row back
/// with [`DecodeCache::rollback_to`].
///
/// Window slots are embeddings so that SJD2 can feed noisy embedding vectors next to the clean
/// embeddings of drafted tokens ([`embed_tokens`](Self::embed_tokens)).
pub trait JacobiDenoiser {
    /// The model's KV cache.
    type Cache: DecodeCache;

    /// The device the model lives on.
    fn device(&self) -> Device;

    /// Size of the output vocabulary (logits per position).
    fn vocab_size(&self) -> usize;

    /// Width of the input embeddings.
    fn hidden_size(&self) -> usize;

    /// Longest sequence (prompt plus generated tokens) the model supports.
    fn max_sequence_len(&self) -> usize;

    /// Structure of the generated span.
    fn layout(&self) -> &ImageLayout;

    /// How conditional and unconditional logits are combined.
    fn guidance_style(&self) -> GuidanceStyle {
        GuidanceStyle::RawLogits
    }

    /// Number of cache positions `row`'s prompt occupies after prefill.
    ///
    /// # Errors
    /// [`Error::InvalidPrompt`] / [`Error::TokenOutOfRange`] for prompts the model cannot use.
    fn prompt_len(&self, row: &PromptRow<'_>) -> Result<usize>;

    /// A cache with `rows` rows of `capacity` positions.
    ///
    /// # Errors
    /// Allocation or size errors.
    fn new_cache(&self, rows: usize, capacity: usize) -> Result<Self::Cache>;

    /// Runs every prompt into its cache row (row `i` ↔ `rows[i]`; the cache must be empty) and
    /// returns the logits for the first generated position.
    ///
    /// # Shapes
    /// - returns `[rows, vocab]`
    ///
    /// # Errors
    /// Invalid prompts, or a cache that is too small.
    fn prefill(&self, cache: &mut Self::Cache, rows: &[PromptRow<'_>]) -> Result<Tensor<2>>;

    /// Input embeddings of token ids (what a clean window slot feeds).
    ///
    /// # Shapes
    /// - `tokens`: `[rows, len]`; returns `[rows, len, hidden]`
    ///
    /// # Errors
    /// Implementation-specific failures.
    fn embed_tokens(&self, tokens: Tensor<2, Int>) -> Result<Tensor<3>>;

    /// Appends a window of input embeddings to every cache row and returns logits for every
    /// window position (`logits[:, i]` is the distribution of the token after input `i`).
    ///
    /// # Shapes
    /// - `embeddings`: `[rows, len, hidden]`; returns `[rows, len, vocab]`
    ///
    /// # Errors
    /// [`Error::Shape`] for a wrong input, [`Error::SequenceTooLong`] when the cache is full.
    fn forward(&self, cache: &mut Self::Cache, embeddings: Tensor<3>) -> Result<Tensor<3>>;

    /// [`JacobiDenoiser::forward`] with the logits of the image tokens only,
    /// [`ImageLayout::image_token_range`] (all the decoder reads when guidance combines raw
    /// logits). The default narrows `forward`'s output; a model overrides it to compute only
    /// those rows of its output head (an eighth of Chameleon's 65 536-entry vocabulary).
    ///
    /// # Shapes
    /// - `embeddings`: `[rows, len, hidden]`; returns `[rows, len, image_vocab]`
    ///
    /// # Errors
    /// As [`JacobiDenoiser::forward`].
    fn forward_image_logits(
        &self,
        cache: &mut Self::Cache,
        embeddings: Tensor<3>,
    ) -> Result<Tensor<3>> {
        let range = self.layout().image_token_range();
        Ok(self
            .forward(cache, embeddings)?
            .narrow(2, range.start as usize, range.len()))
    }

    /// The input embeddings of the image tokens, one row per id of
    /// [`ImageLayout::image_token_range`] (SJD2 normalizes its noise with their statistics).
    ///
    /// # Errors
    /// Implementation-specific failures.
    fn image_embedding_table(&self) -> Result<Tensor<2>>;

    /// A learned embedding of noise levels `t = k/K` to add to noisy slots, for models fine-tuned
    /// with one. `None` (the default) means the model has none.
    ///
    /// # Shapes
    /// - `t`: `[rows, len]`; returns `[rows, len, hidden]`
    fn level_embedding(&self, t: Tensor<2>) -> Option<Result<Tensor<3>>> {
        let _ = t;
        None
    }
}

/// Prefills rows of different lengths in one forward pass, for [`JacobiDenoiser::prefill`]
/// implementations: right-pads every sequence with `pad` (padding comes after the real tokens, so
/// causal attention never sees it), calls `run` on the `[rows, max_len]` ids to get logits
/// `[rows, max_len, vocab]`, rolls every cache row back to its true length and returns the logits
/// after each row's last token, `[rows, vocab]`.
///
/// # Errors
/// [`Error::InvalidPrompt`] for an empty sequence, [`Error::Shape`] when the number of sequences
/// differs from the cache rows, and whatever `run` returns.
pub fn prefill_ragged<C: DecodeCache>(
    cache: &mut C,
    seqs: &[std::borrow::Cow<'_, [u32]>],
    pad: u32,
    device: &Device,
    run: impl FnOnce(&mut C, Tensor<2, Int>) -> Result<Tensor<3>>,
) -> Result<Tensor<2>> {
    if seqs.len() != cache.rows() {
        return Err(Error::Shape {
            what: "prefill rows".into(),
            expected: vec![cache.rows()],
            got: vec![seqs.len()],
        });
    }
    if let Some(i) = seqs.iter().position(|s| s.is_empty()) {
        return Err(Error::InvalidPrompt {
            index: i,
            reason: "the row to prefill is empty".into(),
        });
    }
    let rows = seqs.len();
    let len = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(rows * len);
    for s in seqs {
        ids.extend(s.iter().map(|&t| i64::from(t)));
        ids.extend(std::iter::repeat_n(i64::from(pad), len - s.len()));
    }
    let base: Vec<usize> = cache.lens().to_vec();
    let logits = run(
        cache,
        Tensor::from_data(TensorData::new(ids, [rows, len]), device),
    )?;
    for (r, s) in seqs.iter().enumerate() {
        cache.rollback_to(r, base[r] + s.len())?;
    }
    let vocab = logits.dims()[2];
    let last: Vec<i64> = seqs.iter().map(|s| (s.len() - 1) as i64).collect();
    let idx = Tensor::<1, Int>::from_data(TensorData::new(last, [rows]), device)
        .reshape([rows, 1, 1])
        .expand([rows, 1, vocab]);
    Ok(logits.gather(1, idx).reshape([rows, vocab]))
}

/// An `[rows, len]` tensor of token ids (row-major `ids`) on `device`.
///
/// # Panics
/// If `ids.len() != shape[0] · shape[1]` (a programming error: every caller in sjd2 builds `ids`
/// from `shape`).
pub fn ids_tensor(ids: &[u32], shape: [usize; 2], device: &Device) -> Tensor<2, Int> {
    let v: Vec<i64> = ids.iter().map(|&t| i64::from(t)).collect();
    Tensor::from_data(TensorData::new(v, shape), device)
}
