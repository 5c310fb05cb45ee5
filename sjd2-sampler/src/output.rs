//! What a generation returns and what the step callback sees.

use std::time::Duration;

/// Why a sample stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FinishReason {
    /// The whole image layout was generated.
    Complete,
    /// `max_new_tokens` was reached first.
    MaxNewTokens,
    /// The step callback returned [`Control::Stop`]; the tokens are the partial result.
    Cancelled,
}

/// Exact counters of one sample's decoding.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Stats {
    /// Model calls this sample took part in, prefill included (one per call, whatever the window).
    pub forward_passes: usize,
    /// Tokens committed by each of those passes (each in `1..=` its window `+ 1`).
    pub tokens_per_pass: Vec<usize>,
    /// Drafted tokens accepted by verification (forced tokens in the window included).
    pub accepted_drafts: usize,
    /// Slots each of those passes drafted (0 for the prefill and plain passes): the window the
    /// policy chose, shortened near the end of the image.
    pub windows: Vec<usize>,
    /// Wall time of the whole call that produced this sample (shared by a batch).
    pub wall_time: Duration,
    /// The part of `wall_time` spent on the host turning guided logits into tokens: every
    /// window row's processing and draw, verification, commits and draft updates (shared by a
    /// batch). The rest is the model's passes, guidance, the copies to the host and the window
    /// embeddings.
    pub sampling_time: Duration,
}

impl Stats {
    /// Generated tokens.
    pub fn tokens(&self) -> usize {
        self.tokens_per_pass.iter().sum()
    }

    /// Tokens per forward pass: the step compression relative to autoregressive decoding
    /// (which commits exactly one token per pass).
    pub fn step_compression(&self) -> f64 {
        if self.forward_passes == 0 {
            return 0.0;
        }
        self.tokens() as f64 / self.forward_passes as f64
    }
}

/// One sample's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// Generated tokens, layout tokens (row ends, end tokens) included. Use
    /// [`sjd2_core::ImageLayout::image_tokens`] to keep only the image grid.
    pub tokens: Vec<u32>,
    /// Why decoding stopped.
    pub finish_reason: FinishReason,
    /// Counters.
    pub stats: Stats,
    /// The seed this sample used (echoed so any result can be reproduced).
    pub seed: u64,
}

/// A window slot as seen by the step callback (the state the next pass will feed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotKind {
    /// A structurally forced token.
    Forced(u32),
    /// A clean drafted token.
    Clean(u32),
    /// A noisy SJD2 slot at `level` (1..=K), with the token it currently denoises towards.
    Noisy {
        /// Noise level.
        level: usize,
        /// The token predicted for this position by the latest pass, if any.
        prediction: Option<u32>,
    },
}

/// One slot of the window with its generated position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotView {
    /// Generated position of the slot.
    pub position: usize,
    /// Its state.
    pub kind: SlotKind,
}

/// Reported after every forward pass for every sample still running.
#[derive(Debug, Clone, Copy)]
pub struct StepEvent<'a> {
    /// Index of the sample in the batch.
    pub sample: usize,
    /// Forward passes so far for this sample (1 after the prefill).
    pub pass: usize,
    /// Every token committed so far.
    pub tokens: &'a [u32],
    /// How many of them this pass committed.
    pub committed: usize,
    /// Drafts accepted by this pass (`committed - 1` except after the prefill).
    pub accepted: usize,
    /// The window the next pass will verify.
    pub window: &'a [SlotView],
    /// Total positions this sample will generate.
    pub target_len: usize,
}

/// What the step callback asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Control {
    /// Keep decoding.
    #[default]
    Continue,
    /// Stop every sample and return the partial results.
    Stop,
}
