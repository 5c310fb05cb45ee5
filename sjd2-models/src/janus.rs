//! Janus and Janus-Pro: a Llama language model with a separate image-generation path.
//!
//! - Papers: Wu et al., "Janus" (arXiv 2410.13848); Chen et al., "Janus-Pro" (arXiv 2501.17811).
//! - Upstream: `deepseek-ai/Janus`; transformers' `JanusForConditionalGeneration`.
//! - Weights: Hugging Face `deepseek-ai/Janus-Pro-7B` (original names in
//!   `pytorch_model-0000{1,2}-of-00002.bin`: `language_model.model.*`, `gen_embed`,
//!   `gen_aligner.layers.{0,2}`, `gen_head.{output_mlp_projector,vision_head}`; convert the `.bin`
//!   shards to safetensors once) or `deepseek-community/Janus-Pro-7B` (transformers names:
//!   `model.language_model.*`, `model.generation_embeddings`, `model.generation_aligner.{fc1,
//!   hidden_layers.0}`, `model.generation_head.{proj_out,vision_head}`).
//!
//! Text prompt tokens use the language model's embedding; image codes go through
//! `gen_embed` (codes × 8) and the aligner MLP (GELU with erf); logits come from the generation head,
//! not `lm_head`. The prompt is the DeepSeek template `"<|User|>: {prompt}\n\n<|Assistant|>:"`
//! followed by `<begin_of_image>`; the unconditional row keeps BOS and `<begin_of_image>` and pads
//! everything between. Defaults upstream: guidance 5, temperature 1, no top-k, 24×24 codes.
//!
//! ```no_run
//! use sjd2_core::Device;
//! use sjd2_models::janus::{Janus, JanusTokens};
//! let tokens = JanusTokens { pad: 100_002, begin_of_image: 100_016 };
//! let model = Janus::load("Janus-Pro-7B/config.json", "Janus-Pro-7B", tokens, 24, &Device::flex())?;
//! # Ok::<(), sjd2_models::LoadError>(())
//! ```

use std::path::Path;

use serde::Deserialize;
use sjd2_core::{Device, GuidanceStyle, ImageLayout};

use crate::adapter::{Conditioning, Gelu, ImageIo, LlamaT2I, Mlp, Prompting, Unconditional};
use crate::config::{TextConfig, llama_text_config, read_json};
use crate::error::Result;
use crate::llama::{Backbone, KeyNames};
use crate::weights::{Checkpoint, WeightLoader};

/// Token ids Janus needs besides the prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JanusTokens {
    /// The padding id (`<｜▁pad▁｜>`).
    pub pad: u32,
    /// `<begin_of_image>`.
    pub begin_of_image: u32,
}

#[derive(Deserialize)]
struct JanusConfigJson {
    text_config: Option<serde_json::Value>,
    language_config: Option<serde_json::Value>,
}

/// Loader for Janus / Janus-Pro.
#[derive(Debug, Clone, Copy)]
pub struct Janus;

impl Janus {
    /// Loads the generation path from `weights` (a safetensors file or checkpoint directory) in
    /// either key layout, with the language model sizes from `config` (`text_config` or
    /// `language_config`). The understanding tower and the VQ model are ignored here. `grid` is
    /// the side of the code grid (24 for 384 px).
    ///
    /// # Errors
    /// [`crate::LoadError`] naming the file, field or tensors at fault.
    pub fn load(
        config: impl AsRef<Path>,
        weights: impl AsRef<Path>,
        tokens: JanusTokens,
        grid: usize,
        device: &Device,
    ) -> Result<LlamaT2I> {
        let config_path = config.as_ref();
        let raw: JanusConfigJson = read_json(config_path)?;
        // Both layouts' text configs are transformers `LlamaConfig`s: omitted fields take its
        // defaults (the original Janus-Pro configs omit the width, heads and SwiGLU size).
        let text: TextConfig = llama_text_config(
            raw.text_config
                .or(raw.language_config)
                .ok_or_else(|| crate::LoadError::Config {
                    path: config_path.to_path_buf(),
                    field: "text_config".into(),
                    reason: "is missing (neither text_config nor language_config)".into(),
                })?,
            config_path,
        )?;
        let checkpoint = Checkpoint::open(weights)?;
        let hf = checkpoint
            .shape("model.language_model.embed_tokens.weight")
            .is_some();
        let (names, g) = if hf {
            (
                KeyNames::hugging_face("model.language_model.", "lm_head.weight"),
                [
                    "model.generation_embeddings.weight",
                    "model.generation_aligner.fc1",
                    "model.generation_aligner.hidden_layers.0",
                    "model.generation_head.proj_out",
                    "model.generation_head.vision_head",
                ],
            )
        } else {
            (
                KeyNames::hugging_face("language_model.model.", "language_model.lm_head.weight"),
                [
                    "gen_embed.weight",
                    "gen_aligner.layers.0",
                    "gen_aligner.layers.2",
                    "gen_head.output_mlp_projector",
                    "gen_head.vision_head",
                ],
            )
        };
        let shape = |name: &str| checkpoint.shape(name).map(<[usize]>::to_vec);
        let (codes, code_dim) = match shape(g[0]).as_deref() {
            Some([c, d]) => (*c, *d),
            _ => (16_384, 8),
        };
        let mut loader = WeightLoader::new(checkpoint, device);
        let backbone = Backbone::load(text.backbone(false), &names, &mut loader, device)?;
        let d = text.hidden_size;
        let embed = loader.tensor(g[0], [codes, code_dim]);
        let aligner = Mlp::load(&mut loader, g[1], g[2], [code_dim, d, d], true, Gelu::Erf);
        let head = Mlp::load(&mut loader, g[3], g[4], [d, d, codes], true, Gelu::Erf);
        loader.finish(|n| {
            [
                "model.vision_model.",
                "model.aligner.",
                "model.vqmodel.",
                "vision_model.",
                "aligner.",
                "gen_vision_model.",
            ]
            .iter()
            .any(|p| n.starts_with(p))
        })?;
        let layout = ImageLayout::new(0..codes as u32, grid, grid, None, vec![])?;
        let prompting = Prompting {
            image_prefix: vec![tokens.begin_of_image],
            unconditional: Unconditional::PadPrompt {
                keep: 1,
                pad: tokens.pad,
            },
            pad: tokens.pad,
        };
        Ok(LlamaT2I::with_parts(
            backbone,
            layout,
            GuidanceStyle::RawLogits,
            ImageIo::Separate {
                embed,
                aligner,
                head,
            },
            Conditioning::Tokens(prompting),
            device,
        )?)
    }
}
