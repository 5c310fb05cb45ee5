//! # sjd2-sampler
//!
//! The decoding loop of sjd2: [`Sjd2Decoder`] runs plain autoregressive decoding, Speculative
//! Jacobi Decoding (SJD) or Speculative Jacobi-Denoising Decoding (SJD2) on any
//! [`sjd2_core::JacobiDenoiser`].
//!
//! One iteration, for every sample of a batch:
//!
//! 1. Feed `[pending tokens, slot_1 … slot_W]` in one forward pass (both guidance branches).
//! 2. Guide, constrain to image tokens, and process the logits into distributions `P`; draw one
//!    sample `y_i ~ P_i` per position.
//! 3. Verify the slots left to right ([`sjd2_core::Verifier`]); commit the accepted drafts and the
//!    correction token, and roll the cache back to what was fed clean and accepted.
//! 4. Refine the remaining slots with this pass's samples (a Jacobi update for clean slots, a
//!    DDIM step towards `normalize(E[y])` for noisy ones) and refill the window.
//!
//! [`Generation`] carries the tokens, the finish reason, exact statistics and the seed.

mod config;
mod decoder;
mod output;
mod policy;
mod rows;
mod window;

pub use config::{
    AUTO_EXPLORE_PASSES, AUTO_WINDOW_MAX, Acceptance, DecoderConfig, DraftInit, DraftUpdate,
    JacobiSpan, LevelConditioning, LevelPolicy, MAX_DENOISING_STEPS, MAX_WINDOW_LEN, Mode,
    Sjd2Options, Verification, Window,
};
pub use decoder::Sjd2Decoder;
pub use output::{Control, FinishReason, Generation, SlotKind, SlotView, Stats, StepEvent};
pub use policy::{AcceptanceHistory, CostCurve};
