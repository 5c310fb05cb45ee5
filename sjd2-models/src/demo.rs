//! sjd2's own demo text-to-image model: a small Lumina-mGPT-style transformer (one vocabulary for
//! words, layout tokens and image codes; image rows ended by a forced row-end token; the
//! unconditional CFG row is begin-of-image alone), trained by `sjd2-train` on captioned shape
//! images, with its VQ tokenizer and word-level `tokenizer.json`.
//!
//! A model directory holds `config.json` ([`DemoConfig`]), two transformer checkpoints
//! (`base.safetensors`, the next-token model, and `sjd2.safetensors`, its SJD2 fine-tune; Hugging
//! Face Llama names: `model.embed_tokens.weight`, `model.layers.{i}.self_attn.q_proj.weight`, …,
//! `lm_head.weight`), `vq.safetensors` (taming names, see [`crate::vq`]) and `tokenizer.json`.
//!
//! Token ids: the tokenizer's words first (`0..text_vocab`), then `<boi>`, `<eoi>`, `<eol>`, then
//! one id per VQ code. A prompt is `<s> words… <boi>`; the image follows as `grid` rows of `grid`
//! codes, each row ended by `<eol>`, then `<eoi>`.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use sjd2_core::{Error, GuidanceStyle, ImageLayout};

use crate::adapter::{CodeMap, LlamaT2I, Prompting, Unconditional};
use crate::config::read_json;
use crate::error::{LoadError, Result};
use crate::llama::{Backbone, BackboneConfig, KeyNames, NormPlacement, RopeKind};
use crate::prompt::PromptTokenizer;
use crate::vq::{VqConfig, VqLayout, VqModel};
use crate::weights::{Checkpoint, WeightLoader};

/// `config.json` of a demo model directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DemoConfig {
    /// Always `"sjd2-demo"`.
    pub family: String,
    /// Words and special tokens of `tokenizer.json` (ids `0..text_vocab`).
    pub text_vocab: usize,
    /// Padding id (never attended to).
    pub pad: u32,
    /// Image side in pixels.
    pub image_size: usize,
    /// Codes per image side.
    pub grid: usize,
    /// VQ codebook entries (= image token ids).
    pub codebook_size: usize,
    /// Transformer width.
    pub hidden: usize,
    /// Transformer blocks.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// SwiGLU width.
    pub intermediate: usize,
    /// RoPE base.
    pub rope_theta: f64,
    /// RMSNorm epsilon.
    pub rms_eps: f64,
    /// VQ base channels.
    pub vq_ch: usize,
    /// VQ channel multipliers.
    pub vq_ch_mult: Vec<usize>,
    /// VQ ResNet blocks per encoder level.
    pub vq_res_blocks: usize,
    /// VQ latent channels.
    pub vq_z_channels: usize,
    /// VQ codebook vector width.
    pub vq_embed_dim: usize,
    /// Classifier-free guidance scale the model was evaluated with.
    pub guidance_scale: f32,
    /// SJD2 fine-tune only: level conditioning it was trained with (`"none"` or
    /// `"sinusoidal"`).
    #[serde(default)]
    pub level_conditioning: Option<String>,
    /// SJD2 fine-tune only: noise levels `K` it was trained with.
    #[serde(default)]
    pub denoising_steps: Option<usize>,
}

impl DemoConfig {
    /// `<boi>`.
    pub fn boi(&self) -> u32 {
        self.text_vocab as u32
    }

    /// `<eoi>`.
    pub fn eoi(&self) -> u32 {
        self.text_vocab as u32 + 1
    }

    /// `<eol>` (row end).
    pub fn eol(&self) -> u32 {
        self.text_vocab as u32 + 2
    }

    /// First image token id (code 0).
    pub fn image_start(&self) -> u32 {
        self.text_vocab as u32 + 3
    }

    /// Whole vocabulary.
    pub fn vocab(&self) -> usize {
        self.text_vocab + 3 + self.codebook_size
    }

    /// Longest sequence: a prompt of up to [`DemoConfig::max_prompt_tokens`] then `<boi>`, the
    /// rows and `<eoi>`.
    pub fn max_positions(&self) -> usize {
        self.max_prompt_tokens() + 2 + self.grid * (self.grid + 1)
    }

    /// Longest prompt in tokens (with `<s>`).
    pub fn max_prompt_tokens(&self) -> usize {
        48
    }

    /// The transformer configuration.
    pub fn backbone(&self) -> BackboneConfig {
        BackboneConfig {
            hidden: self.hidden,
            layers: self.layers,
            heads: self.heads,
            kv_heads: self.heads,
            head_dim: self.hidden / self.heads.max(1),
            intermediate: self.intermediate,
            vocab: self.vocab(),
            output_vocab: self.vocab(),
            rms_eps: self.rms_eps,
            rope: RopeKind::Sequence {
                theta: self.rope_theta,
            },
            max_positions: self.max_positions(),
            qk_norm_eps: None,
            norm: NormPlacement::Pre,
        }
    }

    /// The checkpoint names of the transformer: Hugging Face Llama names (`model.` prefix,
    /// `lm_head.weight`).
    pub fn key_names() -> KeyNames {
        KeyNames::hugging_face("model.", "lm_head.weight")
    }

    /// Loads a transformer checkpoint of this configuration (a model directory's
    /// `base.safetensors` / `sjd2.safetensors`, or a training checkpoint, any stored dtype) onto
    /// `device`; on an autodiff device the result is trainable.
    ///
    /// # Errors
    /// [`LoadError`] for an unreadable file and for missing, unexpected or mis-shaped tensors
    /// (all named).
    pub fn load_backbone(&self, path: impl AsRef<Path>, device: &Device) -> Result<Backbone> {
        let mut loader = WeightLoader::new(Checkpoint::open(path)?, device);
        let backbone = Backbone::load(self.backbone(), &Self::key_names(), &mut loader, device)?;
        loader.finish(|_| false)?;
        Ok(backbone)
    }

    /// The image layout.
    ///
    /// # Errors
    /// An empty grid or codebook.
    pub fn layout(&self) -> std::result::Result<ImageLayout, Error> {
        let s = self.image_start();
        ImageLayout::new(
            s..s + self.codebook_size as u32,
            self.grid,
            self.grid,
            Some(self.eol()),
            vec![self.eoi()],
        )
    }

    /// The VQ configuration.
    pub fn vq(&self) -> VqConfig {
        VqConfig {
            ch: self.vq_ch,
            ch_mult: self.vq_ch_mult.clone(),
            num_res_blocks: self.vq_res_blocks,
            z_channels: self.vq_z_channels,
            embed_dim: self.vq_embed_dim,
            codebook_size: self.codebook_size,
            attn_levels: vec![],
            l2_normalized: true,
            with_encoder: true,
            layout: VqLayout::Taming {
                prefix: String::new(),
            },
        }
    }

    fn check(&self, path: &Path) -> Result<()> {
        let bad = |detail: String| LoadError::Corrupt {
            path: path.to_path_buf(),
            detail,
        };
        if self.family != "sjd2-demo" {
            return Err(bad(format!(
                "family is `{}`, expected `sjd2-demo`",
                self.family
            )));
        }
        if self.heads == 0 || !self.hidden.is_multiple_of(self.heads) {
            return Err(bad(format!(
                "hidden ({}) must be a multiple of heads ({})",
                self.hidden, self.heads
            )));
        }
        let f = 1usize << self.vq_ch_mult.len().saturating_sub(1);
        if self.grid == 0 || self.grid * f != self.image_size {
            return Err(bad(format!(
                "grid {} × downsampling {f} must equal image_size {}",
                self.grid, self.image_size
            )));
        }
        Ok(())
    }
}

/// A loaded demo model: transformer, image tokenizer, text tokenizer and configuration.
#[derive(Debug, Clone)]
pub struct DemoModel {
    /// The transformer as a [`sjd2_core::JacobiDenoiser`].
    pub model: LlamaT2I,
    /// The VQ autoencoder.
    pub vq: VqModel,
    /// The prompt tokenizer (template: `<s>{prompt}`).
    pub tokenizer: PromptTokenizer,
    /// The configuration.
    pub config: DemoConfig,
    /// The directory it was loaded from.
    pub dir: PathBuf,
}

/// Which transformer weights of a demo model directory to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DemoWeights {
    /// `base.safetensors`: the next-token model (for AR and SJD).
    Base,
    /// `sjd2.safetensors`: its next-clean-token fine-tune (for SJD2).
    #[default]
    Sjd2,
}

impl DemoWeights {
    /// The file name in the model directory.
    pub fn file_name(self) -> &'static str {
        match self {
            DemoWeights::Base => "base.safetensors",
            DemoWeights::Sjd2 => "sjd2.safetensors",
        }
    }
}

impl DemoModel {
    /// Loads a demo model directory (see the module documentation for its files) with the
    /// chosen transformer weights.
    ///
    /// # Errors
    /// [`LoadError`] naming the file, field or tensors at fault.
    pub fn load(dir: impl AsRef<Path>, weights: DemoWeights, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        let config_path = dir.join("config.json");
        let config: DemoConfig = read_json(&config_path)?;
        config.check(&config_path)?;
        let backbone = config.load_backbone(dir.join(weights.file_name()), device)?;
        let prompting = Prompting {
            image_prefix: vec![config.boi()],
            unconditional: Unconditional::PrefixOnly,
            pad: config.pad,
        };
        let model = LlamaT2I::new(
            backbone,
            config.layout()?,
            GuidanceStyle::RawLogits,
            prompting,
            device,
        )?
        .with_code_map(CodeMap::Offset(config.image_start()));
        let vq = VqModel::load(dir.join("vq.safetensors"), config.vq(), device)?;
        let tokenizer = PromptTokenizer::from_file(dir.join("tokenizer.json"))?
            .with_max_tokens(config.max_prompt_tokens());
        Ok(Self {
            model,
            vq,
            tokenizer,
            config,
            dir: dir.to_path_buf(),
        })
    }
}
