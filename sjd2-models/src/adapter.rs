//! [`LlamaT2I`]: a [`Backbone`] with a family's prompt conventions, as a [`JacobiDenoiser`].

use std::borrow::Cow;

use burn::Tensor;
use burn::tensor::{Device, Int};
use sjd2_core::{
    Error, GuidanceStyle, ImageLayout, JacobiDenoiser, KvCache, PromptRow, Result, Role,
    prefill_ragged,
};

use crate::llama::Backbone;

/// What the unconditional row holds when a prompt has no negative prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unconditional {
    /// Only the image prefix (Lumina-mGPT: the unconditional sequence starts at begin-of-image
    /// with its own positions).
    PrefixOnly,
    /// These tokens, then the image prefix (Emu3: a default negative prompt).
    Tokens(Vec<u32>),
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

/// A text-to-image Llama-family model: backbone, image layout, guidance style and prompting.
#[derive(Debug, Clone)]
pub struct LlamaT2I {
    backbone: Backbone,
    layout: ImageLayout,
    guidance: GuidanceStyle,
    prompting: Prompting,
    device: Device,
}

impl LlamaT2I {
    /// Assembles an adapter.
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
        let out = backbone.config().output_vocab as u32;
        let inp = backbone.config().vocab as u32;
        if layout.image_token_range().end > out.min(inp) {
            return Err(Error::config(
                "image_tokens",
                format!(
                    "range {:?} exceeds the vocabulary ({inp} inputs, {out} outputs)",
                    layout.image_token_range()
                ),
            ));
        }
        if let Some(&t) = prompting.image_prefix.iter().find(|&&t| t >= inp) {
            return Err(Error::config(
                "image_prefix",
                format!("token {t} is outside the vocabulary of {inp}"),
            ));
        }
        Ok(Self {
            backbone,
            layout,
            guidance,
            prompting,
            device: device.clone(),
        })
    }

    /// The backbone.
    pub fn backbone(&self) -> &Backbone {
        &self.backbone
    }

    /// The prompting rules.
    pub fn prompting(&self) -> &Prompting {
        &self.prompting
    }

    /// The token sequence a row prefills.
    pub fn row_tokens<'a>(&self, row: &'a PromptRow<'_>) -> Cow<'a, [u32]> {
        let body: &[u32] = match (
            row.role,
            &row.prompt.negative,
            &self.prompting.unconditional,
        ) {
            (Role::Conditional, _, _) => &row.prompt.tokens,
            (Role::Unconditional, Some(neg), _) => neg,
            (Role::Unconditional, None, Unconditional::Tokens(t)) => t,
            (Role::Unconditional, None, Unconditional::PrefixOnly) => &[],
        };
        if self.prompting.image_prefix.is_empty() {
            return Cow::Owned(body.to_vec());
        }
        let mut v = body.to_vec();
        v.extend_from_slice(&self.prompting.image_prefix);
        Cow::Owned(v)
    }

    fn check(&self, tokens: &[u32], row: &PromptRow<'_>) -> Result<()> {
        if tokens.is_empty() {
            return Err(Error::InvalidPrompt {
                index: 0,
                reason: format!("the {:?} row is empty", row.role),
            });
        }
        let v = self.backbone.config().vocab as u32;
        if let Some(&t) = tokens.iter().find(|&&t| t >= v) {
            return Err(Error::TokenOutOfRange {
                what: format!("{:?} prompt row", row.role),
                token: t,
                allowed: format!("0..{v}"),
            });
        }
        Ok(())
    }

    /// Logits for every position of the token rows (padded on the right), with hidden states.
    ///
    /// # Errors
    /// Shape and cache errors.
    pub fn forward_tokens(&self, cache: &mut KvCache, ids: Tensor<2, Int>) -> Result<Tensor<3>> {
        let out = self
            .backbone
            .forward(cache, self.backbone.embed(ids), false)?;
        Ok(self.backbone.logits(out.hidden))
    }
}

impl JacobiDenoiser for LlamaT2I {
    type Cache = KvCache;

    fn device(&self) -> Device {
        self.device.clone()
    }

    fn vocab_size(&self) -> usize {
        self.backbone.config().output_vocab
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
        let t = self.row_tokens(row);
        self.check(&t, row)?;
        Ok(t.len())
    }

    fn new_cache(&self, rows: usize, capacity: usize) -> Result<KvCache> {
        self.backbone.new_cache(rows, capacity)
    }

    fn prefill(&self, cache: &mut KvCache, rows: &[PromptRow<'_>]) -> Result<Tensor<2>> {
        let seqs: Vec<Cow<'_, [u32]>> = rows.iter().map(|r| self.row_tokens(r)).collect();
        for (s, r) in seqs.iter().zip(rows) {
            self.check(s, r)?;
        }
        prefill_ragged(
            cache,
            &seqs,
            self.prompting.pad,
            &self.device,
            |cache, ids| self.forward_tokens(cache, ids),
        )
    }

    fn embed_tokens(&self, tokens: Tensor<2, Int>) -> Result<Tensor<3>> {
        Ok(self.backbone.embed(tokens))
    }

    fn forward(&self, cache: &mut KvCache, embeddings: Tensor<3>) -> Result<Tensor<3>> {
        let out = self.backbone.forward(cache, embeddings, false)?;
        Ok(self.backbone.logits(out.hidden))
    }

    fn image_embedding_table(&self) -> Result<Tensor<2>> {
        let r = self.layout.image_token_range();
        Ok(self
            .backbone
            .embedding_table()
            .clone()
            .narrow(0, r.start as usize, r.len()))
    }
}
