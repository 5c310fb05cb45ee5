//! # sjd2
//!
//! Speculative Jacobi Decoding (SJD) and Speculative Jacobi-Denoising Decoding (SJD2) for
//! autoregressive text-to-image models, on [burn](https://burn.dev).
//!
//! This facade re-exports the workspace crates:
//!
//! - [`core`] (`sjd2-core`): the [`JacobiDenoiser`] model trait, KV cache with rollback,
//!   sampling, guidance, verification criteria, noise schedules and embedding normalization.
//! - [`sampler`] (`sjd2-sampler`): [`Sjd2Decoder`], the decoding loop (autoregressive, SJD, SJD2).
//! - [`models`] (`sjd2-models`): the shared Llama-family backbone and the adapters for
//!   Lumina-mGPT / Chameleon / Anole, Emu3, Janus-Pro and LlamaGen, with strict weight loading.
//! - [`demo`]: the decoder settings the shipped demo model (`assets/demo`) is evaluated with.
//!
//! # Example
//! ```
//! use sjd2::core::testing::{ToyConfig, ToyModel};
//! use sjd2::{DecoderConfig, Device, Prompt, Sjd2Decoder};
//!
//! let device = Device::flex();
//! let model = ToyModel::new(ToyConfig::default(), &device)?;
//! let prompt = Prompt::new(vec![model.config().text_token(0)]).with_seed(42);
//! let decoder = Sjd2Decoder::new(model, DecoderConfig { window_len: 4.into(), ..DecoderConfig::sjd() })?;
//! let image = decoder.generate(&prompt)?;
//! println!("{} tokens in {} passes", image.tokens.len(), image.stats.forward_passes);
//! # Ok::<(), sjd2::Error>(())
//! ```

pub mod demo;

#[doc(inline)]
pub use sjd2_core as core;
#[doc(inline)]
pub use sjd2_models as models;
#[doc(inline)]
pub use sjd2_sampler as sampler;

pub use sjd2_core::{
    Device, GuidanceStyle, ImageLayout, JacobiDenoiser, NoiseSchedule, Prompt, Sampling,
};
pub use sjd2_models::LoadError;
pub use sjd2_sampler::{
    Acceptance, Control, DecoderConfig, DraftInit, DraftUpdate, FinishReason, Generation,
    JacobiSpan, LevelConditioning, LevelPolicy, Mode, Sjd2Decoder, Sjd2Options, Stats, StepEvent,
    Verification, Window,
};

/// Every error of the library, keeping the structure of the crate that raised it: a
/// [`LoadError::Mismatch`] still lists its missing, unexpected and mis-shaped tensors, a decoding
/// error still names its field.
///
/// ```
/// use sjd2::{Error, LoadError};
///
/// fn load() -> sjd2::Result<()> {
///     sjd2::models::weights::Checkpoint::open("no/such/model.safetensors")?;
///     Ok(())
/// }
/// match load() {
///     Err(Error::Load(LoadError::Io { path, .. })) => assert!(path.ends_with("model.safetensors")),
///     other => panic!("{other:?}"),
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Configuration, prompts, shapes, the KV cache, decoding (`sjd2-core`, `sjd2-sampler`).
    #[error(transparent)]
    Decode(#[from] sjd2_core::Error),
    /// Weights, configs and tokenizers (`sjd2-models`), with every tensor at fault named.
    #[error(transparent)]
    Load(#[from] sjd2_models::LoadError),
}

/// Result alias of the facade.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Compiles and runs the README's example as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
