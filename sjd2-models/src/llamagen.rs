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

use sjd2_core::{Device, Error, GuidanceStyle, ImageLayout};

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

    /// The configuration of a LlamaGen checkpoint read from its tensor shapes, so that any of
    /// `gpt.py`'s sizes loads (B, L, XL, XXL, XXXL, 1B, 3B, 7B, c2i or t2i): width and codebook
    /// from `tok_embeddings`, blocks counted, heads from the width (`gpt.py`'s table: 768 → 12,
    /// 1024 → 16, 1280 → 20, 1536 → 24, 2560 → 40, 2048 / 3200 / 4096 → 32), key/value heads and
    /// the SwiGLU width from the block's tensors, the task from `cls_embedding`. `shape` gives a
    /// tensor's shape by name; `grid` is the image grid side (`image_size / 16`).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the tensor or size that does not fit a LlamaGen GPT.
    pub fn from_shapes<'a>(
        names: impl Iterator<Item = &'a str>,
        shape: impl Fn(&str) -> Option<Vec<usize>>,
        grid: usize,
    ) -> std::result::Result<Self, Error> {
        let need = |name: &'static str, rank: usize| {
            shape(name)
                .filter(|s| s.len() == rank)
                .ok_or_else(|| Error::config(name, format!("a {rank}-D tensor is required")))
        };
        let emb = need("tok_embeddings.weight", 2)?;
        let (vocab_size, dim) = (emb[0], emb[1]);
        let n_layer = names
            .filter_map(|n| {
                n.strip_prefix("layers.")?
                    .split('.')
                    .next()?
                    .parse::<usize>()
                    .ok()
            })
            .max()
            .map_or(0, |i| i + 1);
        if n_layer == 0 {
            return Err(Error::config("layers", "no `layers.{i}` tensors"));
        }
        let n_head = match dim {
            768 => 12,
            1024 => 16,
            1280 => 20,
            1536 => 24,
            2560 => 40,
            2048 | 3200 | 4096 => 32,
            // The head count is not in the shapes (wqkv is 3·dim rows for any MHA split).
            d => {
                return Err(Error::config(
                    "tok_embeddings.weight",
                    format!(
                        "width {d} is not one of gpt.py's sizes (768, 1024, 1280, 1536, 2048, 2560, 3200, 4096): build the LlamaGenConfig by hand"
                    ),
                ));
            }
        };
        let head_dim = dim / n_head;
        let qkv = need("layers.0.attention.wqkv.weight", 2)?[0];
        if qkv % head_dim != 0 || qkv / head_dim < n_head + 2 {
            return Err(Error::config(
                "layers.0.attention.wqkv.weight",
                format!("{qkv} rows do not fit {n_head} heads of {head_dim}"),
            ));
        }
        let kv = (qkv / head_dim - n_head) / 2;
        let ffn = need("layers.0.feed_forward.w1.weight", 2)?[0];
        let task = match (
            shape("cls_embedding.embedding_table.weight"),
            shape("cls_embedding.uncond_embedding"),
        ) {
            (Some(t), _) if t.len() == 2 && t[0] > 1 => LlamaGenTask::ClassToImage {
                num_classes: t[0] - 1,
            },
            (_, Some(u)) if u.len() == 2 => LlamaGenTask::TextToImage {
                caption_dim: u[1],
                slots: u[0],
            },
            _ => {
                return Err(Error::config(
                    "cls_embedding",
                    "neither a class table nor a caption projection",
                ));
            }
        };
        let mut config = Self {
            n_kv_head: (kv != n_head).then_some(kv),
            ..Self::preset(dim, n_layer, n_head, grid, task)
        };
        config.vocab_size = vocab_size;
        // gpt.py rounds the SwiGLU width up to `multiple_of` (256 in every released model).
        config.multiple_of = [256, 128, 64, 32, 16, 8, 1]
            .into_iter()
            .find(|&m| {
                Self {
                    multiple_of: m,
                    ..config.clone()
                }
                .ffn_hidden()
                    == ffn
            })
            .ok_or_else(|| {
                Error::config(
                    "layers.0.feed_forward.w1.weight",
                    format!("SwiGLU width {ffn} is not gpt.py's rounding of 8·{dim}/3"),
                )
            })?;
        Ok(config)
    }

    /// [`LlamaGenConfig::from_shapes`] of a checkpoint.
    ///
    /// # Errors
    /// As [`LlamaGenConfig::from_shapes`].
    pub fn detect(checkpoint: &Checkpoint, grid: usize) -> std::result::Result<Self, Error> {
        Self::from_shapes(
            checkpoint.names(),
            |n| checkpoint.shape(n).map(<[usize]>::to_vec),
            grid,
        )
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

#[cfg(test)]
mod detection_tests {
    use super::*;
    use std::collections::BTreeMap;

    /// The tensor shapes of a `gpt.py` checkpoint (the ones detection reads).
    fn shapes(
        dim: usize,
        layers: usize,
        heads: usize,
        task: LlamaGenTask,
    ) -> BTreeMap<String, Vec<usize>> {
        let c = LlamaGenConfig::preset(dim, layers, heads, 16, task);
        let mut m = BTreeMap::new();
        m.insert("tok_embeddings.weight".to_string(), vec![16_384, dim]);
        for i in 0..layers {
            m.insert(
                format!("layers.{i}.attention.wqkv.weight"),
                vec![3 * dim, dim],
            );
            m.insert(
                format!("layers.{i}.feed_forward.w1.weight"),
                vec![c.ffn_hidden(), dim],
            );
        }
        match task {
            LlamaGenTask::ClassToImage { num_classes } => {
                m.insert(
                    "cls_embedding.embedding_table.weight".into(),
                    vec![num_classes + 1, dim],
                );
            }
            LlamaGenTask::TextToImage { caption_dim, slots } => {
                m.insert(
                    "cls_embedding.uncond_embedding".into(),
                    vec![slots, caption_dim],
                );
            }
        }
        m
    }

    fn detect(m: &BTreeMap<String, Vec<usize>>) -> std::result::Result<LlamaGenConfig, Error> {
        LlamaGenConfig::from_shapes(m.keys().map(String::as_str), |n| m.get(n).cloned(), 16)
    }

    #[test]
    fn every_gpt_size_is_detected_from_its_shapes() {
        let c2i = LlamaGenTask::ClassToImage { num_classes: 1000 };
        let t2i = LlamaGenTask::TextToImage {
            caption_dim: 2048,
            slots: 120,
        };
        // gpt.py: B, L, XL, XXL, XXXL, 1B, 3B (head width 100), 7B; the t2i XL.
        for (dim, layers, heads, task) in [
            (768, 12, 12, c2i),
            (1024, 24, 16, c2i),
            (1280, 36, 20, c2i),
            (1536, 48, 24, c2i),
            (2560, 48, 40, c2i),
            (2048, 22, 32, c2i),
            (3200, 24, 32, c2i),
            (4096, 32, 32, c2i),
            (1280, 36, 20, t2i),
        ] {
            let got = detect(&shapes(dim, layers, heads, task)).unwrap();
            assert_eq!(
                got,
                LlamaGenConfig::preset(dim, layers, heads, 16, task),
                "{dim}"
            );
        }
        assert_eq!(
            LlamaGenConfig::gpt_xl_t2i(16),
            detect(&shapes(1280, 36, 20, t2i)).unwrap()
        );
    }

    #[test]
    fn shapes_that_fit_no_gpt_are_named() {
        let c2i = LlamaGenTask::ClassToImage { num_classes: 1000 };
        let mut m = shapes(1280, 36, 20, c2i);
        m.insert("layers.0.feed_forward.w1.weight".into(), vec![1000, 1280]);
        let e = detect(&m).unwrap_err();
        assert_eq!(e.field(), Some("layers.0.feed_forward.w1.weight"), "{e}");
        let mut m = shapes(1280, 36, 20, c2i);
        m.remove("tok_embeddings.weight");
        assert_eq!(
            detect(&m).unwrap_err().field(),
            Some("tok_embeddings.weight")
        );
        let mut m = shapes(1280, 36, 20, c2i);
        m.remove("cls_embedding.embedding_table.weight");
        assert_eq!(detect(&m).unwrap_err().field(), Some("cls_embedding"));
    }
}
