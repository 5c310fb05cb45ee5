//! Shared helpers for the sampler's integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::cell::Cell;

use burn::Tensor;
use burn::tensor::{Device, Int};
use sjd2_core::testing::{ToyConfig, ToyModel};
use sjd2_core::{ImageLayout, JacobiDenoiser, KvCache, Prompt, PromptRow, Result};

pub fn device() -> Device {
    Device::flex()
}

/// A 4x4 grid with row ends and an end-of-image token over 16 image tokens.
pub fn medium_toy(seed: u64) -> ToyModel {
    ToyModel::new(
        ToyConfig {
            image_vocab: 16,
            text_vocab: 6,
            rows: 4,
            cols: 4,
            row_end: true,
            end_of_image: true,
            hidden: 32,
            heads: 4,
            layers: 2,
            logit_scale: 3.0,
            seed,
        },
        &device(),
    )
    .unwrap()
}

/// The 2x2 enumeration toy (4 image tokens, row ends): 256 possible images.
pub fn small_toy(seed: u64) -> ToyModel {
    ToyModel::new(
        ToyConfig {
            seed,
            ..ToyConfig::default()
        },
        &device(),
    )
    .unwrap()
}

pub fn prompt(model: &ToyModel, words: &[usize]) -> Prompt {
    Prompt::new(
        words
            .iter()
            .map(|&w| model.config().text_token(w))
            .collect::<Vec<_>>(),
    )
}

/// Wraps a model, counts its calls (prefill + forward) and, when `nan_from` is set, turns the
/// logits of every forward call after that many calls into NaN.
pub struct Counting<M> {
    pub inner: M,
    pub calls: Cell<usize>,
    pub nan_from: Option<usize>,
}

impl<M> Counting<M> {
    pub fn new(inner: M) -> Self {
        Self {
            inner,
            calls: Cell::new(0),
            nan_from: None,
        }
    }

    pub fn poisoned(inner: M, nan_from: usize) -> Self {
        Self {
            inner,
            calls: Cell::new(0),
            nan_from: Some(nan_from),
        }
    }
}

impl JacobiDenoiser for Counting<ToyModel> {
    type Cache = KvCache;
    fn device(&self) -> Device {
        self.inner.device()
    }
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }
    fn hidden_size(&self) -> usize {
        self.inner.hidden_size()
    }
    fn max_sequence_len(&self) -> usize {
        self.inner.max_sequence_len()
    }
    fn layout(&self) -> &ImageLayout {
        self.inner.layout()
    }
    fn prompt_len(&self, row: &PromptRow<'_>) -> Result<usize> {
        self.inner.prompt_len(row)
    }
    fn new_cache(&self, rows: usize, capacity: usize) -> Result<KvCache> {
        self.inner.new_cache(rows, capacity)
    }
    fn prefill(&self, cache: &mut KvCache, rows: &[PromptRow<'_>]) -> Result<Tensor<2>> {
        self.calls.set(self.calls.get() + 1);
        self.inner.prefill(cache, rows)
    }
    fn embed_tokens(&self, tokens: Tensor<2, Int>) -> Result<Tensor<3>> {
        self.inner.embed_tokens(tokens)
    }
    fn forward(&self, cache: &mut KvCache, embeddings: Tensor<3>) -> Result<Tensor<3>> {
        self.calls.set(self.calls.get() + 1);
        let logits = self.inner.forward(cache, embeddings)?;
        Ok(match self.nan_from {
            Some(n) if self.calls.get() > n => logits * f32::NAN,
            _ => logits,
        })
    }
    fn image_embedding_table(&self) -> Result<Tensor<2>> {
        self.inner.image_embedding_table()
    }
}
