//! # sjd2-train
//!
//! Training for sjd2's own demo text-to-image model, on burn's autodiff:
//!
//! - [`shapes`]: the deterministic generator of captioned images (1–3 coloured shapes on a 3×3
//!   grid over textured or gradient backgrounds, with varied natural-language captions);
//! - [`vocab`]: the word-level `tokenizer.json` covering their language;
//! - [`vq`]: the image tokenizer, a small taming-style VQ autoencoder;
//! - [`checkpoint`]: training checkpoints saved and loaded by module path;
//! - [`finetune`]: SJD2 fine-tuning of any supported model (prepare, train, export).

pub mod checkpoint;
pub mod error;
pub mod eval;
pub mod finetune;
pub mod lm_train;
pub mod run;
pub mod shapes;
pub mod vocab;
pub mod vq;
pub mod vq_train;

pub use error::{Result, TrainError};
