//! # sjd2-models
//!
//! Model adapters for sjd2. One configurable Llama-family [`llama::Backbone`] serves every
//! family; [`adapter::LlamaT2I`] wraps it with a family's prompt, image layout and guidance
//! conventions as a [`sjd2_core::JacobiDenoiser`].
//!
//! 1. [`weights`]: strict loading through burn-store (safetensors single or sharded, PyTorch
//!    pickles; F32/F16/BF16/F64 on disk, read straight into the device's dtype), reporting every
//!    missing, unexpected and mis-shaped tensor by name.
//! 2. [`llama`]: the transformer as a burn module, trained and served by the same code: RMSNorm,
//!    SwiGLU, MHA/GQA, rotate-half RoPE (1-D and LlamaGen's 2-D), Chameleon's per-head q/k
//!    LayerNorm, swin-norm blocks, a preallocated KV cache with rollback.
//! 3. Families: [`chameleon`] (Chameleon, Lumina-mGPT, Anole), [`emu3`], [`janus`] (Janus,
//!    Janus-Pro) and [`llamagen`] (class- and text-conditional, with the [`t5`] caption encoder).
//!
//! 4. [`vq`]: VQ-16 (LlamaGen, Janus) and Chameleon VQGAN image tokenizers as burn modules, decode
//!    and encode, the Emu3 MoVQ decoder, and PNG output.
//! 5. [`prompt`]: prompt text to token ids with each family's template (`tokenizer.json`).
//!
//! Every adapter is checked against the reference outputs in
//! `sjd2-models/tests/fixtures/reference-models/` (`tests/parity.rs`).

pub mod adapter;
pub mod caption;
pub mod chameleon;
pub mod config;
pub mod demo;
pub mod emu3;
mod error;
pub mod finetuned;
pub mod hub;
pub mod janus;
pub mod llama;
pub mod llamagen;
pub mod pipeline;
pub mod presets;
pub mod prompt;
pub mod t5;
pub mod vq;
pub mod weights;

pub use adapter::{
    CaptionEncoder, CaptionRow, CodeMap, Conditioning, Gelu, ImageIo, LlamaT2I, Mlp, Prompting,
    TrainingBatch, TrainingExample, Unconditional,
};
pub use error::{LoadError, Result};
