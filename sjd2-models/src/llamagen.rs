//! LlamaGen, class-conditional (c2i) and text-conditional (t2i).
//!
//! - Paper: Sun et al., "Autoregressive Model Beats Diffusion: Llama for Scalable Image
//!   Generation" (arXiv 2406.06525).
//! - Upstream: `FoundationVision/LlamaGen` (`autoregressive/models/gpt.py`).
//! - Weights: the `.pt` checkpoints of the LlamaGen README (`c2i_XL_384.pt`,
//!   `t2i_XL_stage2_512.pt`, ...), state dict under `model`; convert once to safetensors with the
//!   same names (an extra `freqs_cis` is ignored).
//!
//! Differences from a plain Llama: a fused `wqkv` projection, interleaved-pair **2-D RoPE** over the
//! image grid, condition positions whose RoPE table is **zero** (their queries and keys vanish, as
//! upstream), a class embedding with a null class (c2i) or a caption MLP over 120 left-padded
//! FLAN-T5 embeddings whose padded keys are hidden (t2i).
//!
//! ```no_run
//! use sjd2_core::Device;
//! use sjd2_models::llamagen::{LlamaGen, LlamaGenConfig};
//! let model = LlamaGen::load("c2i_XL_384.safetensors", LlamaGenConfig::gpt_xl_c2i(24), &Device::flex())?;
//! # Ok::<(), sjd2_models::LoadError>(())
//! ```

use std::path::Path;

use sjd2_core::{Device, GuidanceStyle, ImageLayout};

use crate::adapter::{Conditioning, Gelu, ImageIo, LlamaT2I, Mlp};
use crate::error::Result;
use crate::llama::{Backbone, BackboneConfig, KeyNames, NormPlacement, RopeKind};
use crate::weights::{Checkpoint, WeightLoader};

/// What conditions the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlamaGenTask {
    /// Class-conditional with `num_classes` classes (plus a null class).
    ClassToImage {
        /// Classes (1000 for ImageNet).
        num_classes: usize,
    },
    /// Text-conditional from `slots` caption embeddings of width `caption_dim`.
    TextToImage {
        /// Caption embedding width (2048 for FLAN-T5-XL).
        caption_dim: usize,
        /// Caption slots (120 upstream).
        slots: usize,
    },
}

/// `gpt.py`'s `ModelArgs` subset that fixes the architecture.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaGenConfig {
    /// Model width.
    pub dim: usize,
    /// Blocks.
    pub n_layer: usize,
    /// Heads.
    pub n_head: usize,
    /// Key/value heads (`None`: MHA).
    pub n_kv_head: Option<usize>,
    /// FFN width rounding.
    pub multiple_of: usize,
    /// FFN width multiplier.
    pub ffn_dim_multiplier: Option<f64>,
    /// Codebook size.
    pub vocab_size: usize,
    /// Image grid side (`image_size / 16`).
    pub grid: usize,
    /// RoPE base.
    pub rope_base: f64,
    /// RMSNorm epsilon.
    pub norm_eps: f64,
    /// Conditioning.
    pub task: LlamaGenTask,
}

impl LlamaGenConfig {
    fn preset(dim: usize, n_layer: usize, n_head: usize, grid: usize, task: LlamaGenTask) -> Self {
        Self {
            dim,
            n_layer,
            n_head,
            n_kv_head: None,
            multiple_of: 256,
            ffn_dim_multiplier: None,
            vocab_size: 16_384,
            grid,
            rope_base: 10_000.0,
            norm_eps: 1e-5,
            task,
        }
    }

    /// GPT-B (12 layers, 12 heads, 768 wide) class-conditional.
    pub fn gpt_b_c2i(grid: usize) -> Self {
        Self::preset(
            768,
            12,
            12,
            grid,
            LlamaGenTask::ClassToImage { num_classes: 1000 },
        )
    }

    /// GPT-L (24 layers, 16 heads, 1024 wide) class-conditional.
    pub fn gpt_l_c2i(grid: usize) -> Self {
        Self::preset(
            1024,
            24,
            16,
            grid,
            LlamaGenTask::ClassToImage { num_classes: 1000 },
        )
    }

    /// GPT-XL (36 layers, 20 heads, 1280 wide) class-conditional.
    pub fn gpt_xl_c2i(grid: usize) -> Self {
        Self::preset(
            1280,
            36,
            20,
            grid,
            LlamaGenTask::ClassToImage { num_classes: 1000 },
        )
    }

    /// GPT-XL text-conditional (the only released t2i model; grid 16 at 256 px, 32 at 512 px).
    pub fn gpt_xl_t2i(grid: usize) -> Self {
        Self::preset(
            1280,
            36,
            20,
            grid,
            LlamaGenTask::TextToImage {
                caption_dim: 2048,
                slots: 120,
            },
        )
    }

    /// The tiny shape of the project's LlamaGen parity fixtures (64 wide, 2 layers, 4 heads, 64
    /// codes, 4×4 grid): for tests and smoke runs of the tools.
    pub fn tiny(task: LlamaGenTask) -> Self {
        Self {
            dim: 64,
            n_layer: 2,
            n_head: 4,
            n_kv_head: None,
            multiple_of: 32,
            ffn_dim_multiplier: None,
            vocab_size: 64,
            grid: 4,
            rope_base: 10_000.0,
            norm_eps: 1e-5,
            task,
        }
    }

    /// Condition positions (`cls_token_num`).
    pub fn cond_len(&self) -> usize {
        match self.task {
            LlamaGenTask::ClassToImage { .. } => 1,
            LlamaGenTask::TextToImage { slots, .. } => slots,
        }
    }

    /// `find_multiple(int(2·4·dim/3 · multiplier), multiple_of)`.
    pub fn ffn_hidden(&self) -> usize {
        let mut h = (2 * 4 * self.dim) / 3;
        if let Some(m) = self.ffn_dim_multiplier {
            h = (m * h as f64) as usize;
        }
        let k = self.multiple_of.max(1);
        h.div_ceil(k) * k
    }

    /// The backbone configuration.
    pub fn backbone(&self) -> BackboneConfig {
        BackboneConfig {
            hidden: self.dim,
            layers: self.n_layer,
            heads: self.n_head,
            kv_heads: self.n_kv_head.unwrap_or(self.n_head),
            head_dim: self.dim / self.n_head.max(1),
            intermediate: self.ffn_hidden(),
            vocab: self.vocab_size,
            output_vocab: self.vocab_size,
            rms_eps: self.norm_eps,
            rope: RopeKind::Grid2d {
                theta: self.rope_base,
                cond_len: self.cond_len(),
                grid_cols: self.grid,
            },
            max_positions: self.cond_len() + self.grid * self.grid,
            qk_norm_eps: None,
            norm: NormPlacement::Pre,
        }
    }
}

/// Loader for LlamaGen.
#[derive(Debug, Clone, Copy)]
pub struct LlamaGen;

impl LlamaGen {
    /// Loads a LlamaGen GPT from a safetensors file with `gpt.py`'s names (strict; `freqs_cis`
    /// is ignored).
    ///
    /// # Errors
    /// [`crate::LoadError`] naming the file or tensors at fault.
    pub fn load(
        weights: impl AsRef<Path>,
        config: LlamaGenConfig,
        device: &Device,
    ) -> Result<LlamaT2I> {
        let mut loader = WeightLoader::new(Checkpoint::open(weights)?, device);
        let backbone = Backbone::load(
            config.backbone(),
            &KeyNames::llamagen(),
            &mut loader,
            device,
        )?;
        let d = config.dim;
        let conditioning = match config.task {
            LlamaGenTask::ClassToImage { num_classes } => Conditioning::Class {
                table: loader.tensor("cls_embedding.embedding_table.weight", [num_classes + 1, d]),
            },
            LlamaGenTask::TextToImage { caption_dim, slots } => Conditioning::Caption {
                proj: Mlp::load(
                    &mut loader,
                    "cls_embedding.cap_proj.fc1",
                    "cls_embedding.cap_proj.fc2",
                    [caption_dim, d, d],
                    false,
                    Gelu::Tanh,
                ),
                uncond: loader.tensor("cls_embedding.uncond_embedding", [slots, caption_dim]),
                slots,
            },
        };
        loader.finish(|n| n == "freqs_cis")?;
        let layout = ImageLayout::new(
            0..config.vocab_size as u32,
            config.grid,
            config.grid,
            None,
            vec![],
        )?;
        Ok(LlamaT2I::with_parts(
            backbone,
            layout,
            GuidanceStyle::RawLogits,
            ImageIo::Shared,
            conditioning,
            device,
        )?)
    }
}
