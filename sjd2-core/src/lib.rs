//! # sjd2-core
//!
//! Primitives for Speculative Jacobi Decoding (SJD) and Speculative Jacobi-Denoising Decoding
//! (SJD2) of autoregressive text-to-image models, on [burn](https://burn.dev) tensors. No I/O and
//! no concrete model: the decoding loop lives in `sjd2-sampler`, model adapters in `sjd2-models`.
//!
//! The pieces, in the order one decoding iteration uses them:
//!
//! 1. [`JacobiDenoiser`]: the model interface. Prefill prompts (conditional and unconditional
//!    rows), embed tokens, forward a window of embeddings and get logits for every position.
//! 2. [`KvCache`] / [`DecodeCache`]: a preallocated cache with per-row lengths and
//!    [`DecodeCache::rollback_to`].
//! 3. [`guide`]: classifier-free guidance on raw logits or log-probabilities.
//! 4. [`Sampling`]: temperature, top-k, top-p or greedy; turns logits into the processed
//!    distribution `P` that verification compares.
//! 5. [`Verifier`]: [`ProbabilisticVerifier`] (lossless speculative sampling) and
//!    [`JacobiVerifier`] (exact for greedy decoding).
//! 6. For SJD2: [`EmbeddingNormalizer`], [`NoiseSchedule`] / [`ScheduleTable`] and
//!    [`ddim_step`], and [`sinusoidal_level_embedding`].
//!
//! Everything returns [`Error`] instead of panicking on bad input.
//!
//! With the `testing` feature, [`testing`] provides a tiny seeded transformer whose exact
//! sequence distribution can be enumerated.

pub mod cache;
pub mod denoiser;
pub mod device;
pub mod error;
pub mod guidance;
pub mod normalize;
pub mod sampling;
pub mod schedule;
#[cfg(feature = "testing")]
pub mod testing;
pub mod verify;

pub use cache::{DecodeCache, KvCache, WindowPlan, apply_rope, attend, causal_mask};
pub use denoiser::{
    ImageLayout, JacobiDenoiser, Prompt, PromptRow, Role, ids_tensor, prefill_ragged,
};
pub use device::{Precision, configure_precision, parse_device};
pub use error::{Error, Result};
pub use guidance::{
    GuidanceStyle, guide, guide_branches, guide_instruct, sinusoidal_level_embedding,
};
pub use normalize::{EmbeddingNormalizer, NormalizationKind};
pub use sampling::Sampling;
pub use schedule::{NoiseSchedule, ScheduleTable, ddim_step};
pub use verify::{
    Dist, Draft, JacobiVerifier, Outcome, ProbabilisticVerifier, Proposal, Target, Verifier,
    VerifyInput,
};

/// The per-sample random number generator: ChaCha8, portable and reproducible across platforms.
pub type SampleRng = rand_chacha::ChaCha8Rng;

/// Re-export of burn's runtime device type.
pub use burn::tensor::Device;
