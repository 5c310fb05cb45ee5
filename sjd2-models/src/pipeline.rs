//! One entry point for every published family: [`Pipeline::load`] pairs a checkpoint with its
//! image tokenizer, prompt template (with Emu3's negative prompt and size tokens, Janus' special
//! tokens, LlamaGen's T5 captions) and the family's upstream sampling defaults, from a local
//! directory or a Hugging Face repository id (see [`crate::hub`]).
//!
//! ```no_run
//! use sjd2_models::pipeline::{Family, Files, Pipeline};
//! let device = sjd2_core::Device::default();
//! let files = Files::new("Alpha-VLLM/Lumina-mGPT-7B-768").with_vq("vqgan.ckpt");
//! let p = Pipeline::load(Family::LuminaMgpt, &files, &device)?;
//! let prompt = p.prompts.text("a red apple on a wooden table")?;
//! # Ok::<(), sjd2_models::LoadError>(())
//! ```

use std::path::{Path, PathBuf};
use std::str::FromStr;

use sjd2_core::{Device, Prompt};

use crate::LlamaT2I;
use crate::chameleon::{Chameleon, ChameleonImage};
use crate::emu3::{Emu3, Emu3Image, Emu3Tokens};
use crate::error::{LoadError, Result};
use crate::janus::{Janus, JanusTokens};
use crate::llamagen::{LlamaGen, LlamaGenConfig, LlamaGenTask};
use crate::prompt::{PromptTokenizer, Template};
use crate::t5::T5Encoder;
use crate::vq::{
    ImageDecoder, ImageEncoder, MovqConfig, MovqDecoder, MovqEncoder, VqConfig, VqLayout, VqModel,
};
use crate::weights::Checkpoint;

/// A published model family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// Lumina-mGPT (Chameleon-7B based), `lumina-mgpt`.
    LuminaMgpt,
    /// Chameleon / Anole, `anole`.
    Anole,
    /// Emu3-Gen, `emu3`.
    Emu3,
    /// Janus / Janus-Pro, `janus-pro`.
    JanusPro,
    /// LlamaGen class-conditional, `llamagen-c2i`.
    LlamagenC2i,
    /// LlamaGen text-conditional, `llamagen-t2i`.
    LlamagenT2i,
}

impl Family {
    /// Every family.
    pub const ALL: [Family; 6] = [
        Family::LuminaMgpt,
        Family::Anole,
        Family::Emu3,
        Family::JanusPro,
        Family::LlamagenC2i,
        Family::LlamagenT2i,
    ];

    /// The name on the command line (`lumina-mgpt`, `anole`, `emu3`, `janus-pro`,
    /// `llamagen-c2i`, `llamagen-t2i`).
    pub fn name(self) -> &'static str {
        match self {
            Family::LuminaMgpt => "lumina-mgpt",
            Family::Anole => "anole",
            Family::Emu3 => "emu3",
            Family::JanusPro => "janus-pro",
            Family::LlamagenC2i => "llamagen-c2i",
            Family::LlamagenT2i => "llamagen-t2i",
        }
    }

    /// What the upstream code generates with (docs/models.md cites the source of each number).
    pub fn defaults(self) -> Defaults {
        let d = |size, guidance, temperature, top_k, top_p| Defaults {
            size,
            guidance,
            image_guidance: None,
            temperature,
            top_k,
            top_p,
        };
        match self {
            // Lumina-mGPT-7B-768: CFG 3.0 (the SJD paper's setting; the README uses 4.0), image
            // top-k 2000.
            Family::LuminaMgpt => d(768, 3.0, 1.0, 2000, 1.0),
            // Chameleon / Anole: temperature 0.7, top-p 0.9, three-way guidance text 3.0 /
            // image 1.2 (`Options.Image` in facebookresearch/chameleon's `chameleon.py`). A
            // text-only prompt's image-conditioned row is its unconditional one, so it is
            // guided two ways at the text scale, which is the same distribution.
            Family::Anole => Defaults {
                image_guidance: Some(1.2),
                ..d(512, 3.0, 0.7, 0, 0.9)
            },
            // Emu3-Gen: 720 px (90 × 90 codes), CFG 3.0, top-k 2048.
            Family::Emu3 => d(720, 3.0, 1.0, 2048, 1.0),
            // Janus-Pro: 384 px (24 × 24), CFG 5, no top-k.
            Family::JanusPro => d(384, 5.0, 1.0, 0, 1.0),
            // LlamaGen c2i-384: CFG 4.0, top-k 2000.
            Family::LlamagenC2i => d(384, 4.0, 1.0, 2000, 1.0),
            // LlamaGen t2i (stage-2 512 px checkpoint): CFG 7.5, top-k 1000.
            Family::LlamagenT2i => d(512, 7.5, 1.0, 1000, 1.0),
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Family {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Family::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Family::ALL.iter().map(|f| f.name()).collect();
                format!("unknown family `{s}` (one of: {})", names.join(", "))
            })
    }
}

/// A family's upstream image size and sampling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Defaults {
    /// Image side in pixels.
    pub size: usize,
    /// Classifier-free guidance scale (the text scale of three-way guidance).
    pub guidance: f32,
    /// The image scale of three-way guidance, for prompts with images in them (Chameleon /
    /// Anole); see `image_guidance_scale` of the decoder's configuration.
    pub image_guidance: Option<f32>,
    /// Temperature.
    pub temperature: f32,
    /// Top-k (0: off).
    pub top_k: usize,
    /// Top-p (1: off).
    pub top_p: f32,
}

/// Where a family's files are. Only `weights` is required; the rest default per family (see
/// [`Pipeline::load`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Files {
    /// Checkpoint directory or file, or a Hugging Face repository id (`owner/name`).
    pub weights: PathBuf,
    /// Revision of a repository id (default `main`).
    pub revision: Option<String>,
    /// Image tokenizer checkpoint (Chameleon's `vqgan.ckpt`, LlamaGen's `vq_ds16_*.pt`,
    /// `BAAI/Emu3-VisionTokenizer`); default: the VQ tensors inside `weights` where the family
    /// ships them there (Anole, Janus, Emu3-Gen-hf).
    pub vq: Option<PathBuf>,
    /// FLAN-T5-XL directory (LlamaGen t2i).
    pub t5: Option<PathBuf>,
    /// `tokenizer.json`, Emu3's `emu3.tiktoken` (with `emu3_vision_tokens.txt` beside it), or
    /// a directory holding either, when the checkpoint directory has none.
    pub tokenizer: Option<PathBuf>,
    /// Image side in pixels (default: the family's upstream size).
    pub size: Option<usize>,
}

impl Files {
    /// Files with only the checkpoint given.
    pub fn new(weights: impl Into<PathBuf>) -> Self {
        Self {
            weights: weights.into(),
            ..Self::default()
        }
    }

    /// With an image tokenizer checkpoint.
    pub fn with_vq(mut self, vq: impl Into<PathBuf>) -> Self {
        self.vq = Some(vq.into());
        self
    }

    /// With a FLAN-T5 directory.
    pub fn with_t5(mut self, t5: impl Into<PathBuf>) -> Self {
        self.t5 = Some(t5.into());
        self
    }

    /// With a tokenizer file or directory.
    pub fn with_tokenizer(mut self, tokenizer: impl Into<PathBuf>) -> Self {
        self.tokenizer = Some(tokenizer.into());
        self
    }

    /// With an image size.
    pub fn with_size(mut self, size: usize) -> Self {
        self.size = Some(size);
        self
    }

    /// The checkpoint as a local path (a repository id resolved through [`crate::hub`]) and its
    /// directory.
    ///
    /// # Errors
    /// [`LoadError::Hub`] for a repository that cannot be resolved.
    pub fn local_weights(&self) -> Result<(PathBuf, PathBuf)> {
        let mut weights = self.weights.clone();
        if !weights.exists()
            && let Some(id) = weights.to_str().filter(|s| crate::hub::is_repo_id(s))
        {
            weights = crate::hub::resolve(id, self.revision.as_deref())?;
        }
        let dir = if weights.is_dir() {
            weights.clone()
        } else {
            weights.parent().map(Path::to_path_buf).unwrap_or_default()
        };
        Ok((weights, dir))
    }

    fn required(&self, what: Option<&PathBuf>, field: &str, reason: &str) -> Result<PathBuf> {
        what.cloned().ok_or_else(|| LoadError::Config {
            path: self.weights.clone(),
            field: field.into(),
            reason: reason.into(),
        })
    }
}

/// How a loaded family turns a request into a [`Prompt`].
#[derive(Debug)]
pub enum Prompts {
    /// Text through the family's tokenizer and template.
    Text {
        /// The tokenizer.
        tokenizer: Box<PromptTokenizer>,
        /// The template.
        template: Template,
    },
    /// An ImageNet class id (LlamaGen c2i).
    Class,
}

impl Prompts {
    /// The prompt of `text`.
    ///
    /// # Errors
    /// [`sjd2_core::Error::InvalidPrompt`] for empty, over-long or untokenizable text, or a
    /// class-conditional model.
    pub fn text(&self, text: &str) -> std::result::Result<Prompt, sjd2_core::Error> {
        match self {
            Prompts::Text {
                tokenizer,
                template,
            } => tokenizer.encode(text, template),
            Prompts::Class => Err(sjd2_core::Error::InvalidPrompt {
                index: 0,
                reason: "this model is class-conditional: give a class id, not text".into(),
            }),
        }
    }

    /// The prompt of class `class` (LlamaGen c2i).
    ///
    /// # Errors
    /// [`sjd2_core::Error::InvalidPrompt`] for a text-conditional model.
    pub fn class(&self, class: u32) -> std::result::Result<Prompt, sjd2_core::Error> {
        match self {
            Prompts::Class => Ok(Prompt::new(vec![class])),
            Prompts::Text { .. } => Err(sjd2_core::Error::InvalidPrompt {
                index: 0,
                reason: "this model is text-conditional: give text, not a class id".into(),
            }),
        }
    }
}

/// A family loaded from its files: the model, its image decoder, how prompts are made, its
/// upstream defaults.
pub struct Pipeline {
    /// The family.
    pub family: Family,
    /// The model (a [`sjd2_core::JacobiDenoiser`]).
    pub model: LlamaT2I,
    /// Its image decoder.
    pub decoder: Box<dyn ImageDecoder>,
    /// How prompts are made.
    pub prompts: Prompts,
    /// The upstream defaults, with `size` the size loaded.
    pub defaults: Defaults,
    /// The checkpoint the transformer came from (local path).
    pub source: PathBuf,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("family", &self.family)
            .field("prompts", &self.prompts)
            .field("defaults", &self.defaults)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// The tokenizer at `path`: a `tokenizer.json`, Emu3's `emu3.tiktoken` (with
/// `emu3_vision_tokens.txt` beside it), or a directory holding either.
fn tokenizer_file(path: &Path) -> Result<PromptTokenizer> {
    let tiktoken = |file: &Path| {
        let vision = file.with_file_name("emu3_vision_tokens.txt");
        PromptTokenizer::from_emu3_tiktoken(file, vision)
    };
    if path.is_dir() {
        let json = path.join("tokenizer.json");
        let emu3 = path.join("emu3.tiktoken");
        if !json.is_file() && emu3.is_file() {
            return tiktoken(&emu3);
        }
        return PromptTokenizer::from_file(&json);
    }
    if path.extension().is_some_and(|e| e == "tiktoken") {
        return tiktoken(path);
    }
    PromptTokenizer::from_file(path)
}

/// Positions kept for the prompt when the image alone nearly fills a checkpoint's positions.
const PROMPT_ROOM: usize = 512;

/// Emu3's negative prompt (BAAI's generation example).
const EMU3_NEGATIVE: &str = "lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, cropped, worst quality, low quality, normal quality, jpeg artifacts, signature, watermark, username, blurry.";

impl Pipeline {
    /// Loads `family` from `files`: the transformer from `files.weights` (any key layout the
    /// family's loader reads), the image tokenizer from `files.vq` or the checkpoint itself
    /// (`model.vqmodel.*` for Anole and Janus, `vqmodel.*` / `model.vqmodel.*` for Emu3), the
    /// tokenizer from `files.tokenizer` or the checkpoint directory, FLAN-T5 from `files.t5`
    /// (LlamaGen t2i), at `files.size` or the family's upstream size.
    ///
    /// # Errors
    /// [`LoadError`] naming the file, field or tensors at fault: a missing `vq` (LlamaGen) or
    /// `t5` (LlamaGen t2i), a LlamaGen checkpoint of the other task, a tokenizer without a token
    /// the template needs.
    pub fn load(family: Family, files: &Files, device: &Device) -> Result<Self> {
        let (weights, dir) = files.local_weights()?;
        let size = files.size.unwrap_or(family.defaults().size);
        let defaults = Defaults {
            size,
            ..family.defaults()
        };
        // Meta's Chameleon / Anole release names its tokenizer `text_tokenizer.json` and keeps
        // it in `tokenizer/`, beside `models/`.
        let release_tokenizer = (!dir.join("tokenizer.json").is_file())
            .then(|| crate::chameleon::release_file(&dir, "text_tokenizer.json"))
            .flatten();
        let tokenizer = || {
            tokenizer_file(
                files
                    .tokenizer
                    .as_deref()
                    .or(release_tokenizer.as_deref())
                    .unwrap_or(&dir),
            )
        };
        let (model, decoder, prompts): (LlamaT2I, Box<dyn ImageDecoder>, Prompts) = match family {
            Family::LuminaMgpt | Family::Anole => {
                let lumina = family == Family::LuminaMgpt;
                let (m, _) = Chameleon::load(
                    &weights,
                    |v| {
                        if lumina {
                            ChameleonImage::lumina(v, size, size)
                        } else {
                            ChameleonImage::anole(v)
                        }
                    },
                    device,
                )?;
                let template = if lumina {
                    Template::Lumina {
                        width: size,
                        height: size,
                    }
                } else {
                    Template::Anole
                };
                let vq = Self::vq_model(family, files, (&weights, &dir), device, false)?;
                let prompts = Prompts::Text {
                    tokenizer: Box::new(tokenizer()?),
                    template,
                };
                (m, Box::new(vq), prompts)
            }
            Family::Emu3 => {
                let tok = tokenizer()?;
                let side = size / 8;
                let size_tokens = tok.encode_text(&format!("{side}*{side}"))?;
                // The checkpoint's own ids: its config's vocabulary map, else its tokenizer.
                let t = match Emu3Tokens::from_config(dir.join("config.json")) {
                    Ok(Some(t)) => t,
                    Ok(None) | Err(LoadError::Io { .. }) => Emu3Tokens::from_vocabulary(|name| {
                        tok.token_id(name)
                    })
                    .map_err(|name| LoadError::Config {
                        path: files.tokenizer.clone().unwrap_or_else(|| dir.clone()),
                        field: name,
                        reason: "is not in the tokenizer (an Emu3 token)".into(),
                    })?,
                    Err(e) => return Err(e),
                };
                let mut negative = vec![t.bos];
                negative.extend(tok.encode_text(EMU3_NEGATIVE)?);
                let image = Emu3Image {
                    rows: side,
                    cols: side,
                    size_tokens,
                    negative,
                };
                let m = Emu3::load(&weights, t, image, device)?;
                let (path, cfg) = Self::movq(files, &weights)?;
                let prompts = Prompts::Text {
                    tokenizer: Box::new(tok),
                    template: Template::Emu3,
                };
                (m, Box::new(MovqDecoder::load(path, cfg, device)?), prompts)
            }
            Family::JanusPro => {
                let tok = tokenizer()?;
                let id = |t: &str| {
                    tok.token_id(t).ok_or_else(|| LoadError::Config {
                        path: dir.join("tokenizer.json"),
                        field: t.into(),
                        reason: "is not in the tokenizer".into(),
                    })
                };
                let tokens = JanusTokens {
                    pad: id("<｜▁pad▁｜>")?,
                    begin_of_image: id("<begin_of_image>")?,
                };
                let m = Janus::load(dir.join("config.json"), &weights, tokens, size / 16, device)?;
                let vq = Self::vq_model(family, files, (&weights, &dir), device, false)?;
                let prompts = Prompts::Text {
                    tokenizer: Box::new(tok),
                    template: Template::Janus,
                };
                (m, Box::new(vq), prompts)
            }
            Family::LlamagenC2i | Family::LlamagenT2i => {
                // Any gpt.py size (B … 7B), read from the checkpoint's shapes.
                let cfg = LlamaGenConfig::detect(&Checkpoint::open(&weights)?, size / 16)?;
                let t2i = matches!(cfg.task, LlamaGenTask::TextToImage { .. });
                if t2i != (family == Family::LlamagenT2i) {
                    return Err(LoadError::Config {
                        path: weights.clone(),
                        field: "cls_embedding".into(),
                        reason: format!(
                            "is a {}-conditional LlamaGen checkpoint: load it as {}",
                            if t2i { "text" } else { "class" },
                            if t2i { "llamagen-t2i" } else { "llamagen-c2i" }
                        ),
                    });
                }
                let vq = Self::vq_model(family, files, (&weights, &dir), device, false)?;
                if t2i {
                    let t5 = files.required(files.t5.as_ref(), "t5", "FLAN-T5-XL is required")?;
                    let m = LlamaGen::load(&weights, cfg, device)?
                        .with_caption_encoder(T5Encoder::load(&t5, 120, device)?);
                    let prompts = Prompts::Text {
                        tokenizer: Box::new(tokenizer_file(&t5)?),
                        template: Template::T5,
                    };
                    (m, Box::new(vq), prompts)
                } else {
                    let m = LlamaGen::load(&weights, cfg, device)?;
                    (m, Box::new(vq), Prompts::Class)
                }
            }
        };
        // An image longer than the checkpoint's `max_position_embeddings` (Lumina-mGPT at
        // 1024 px takes 4 162 positions): transformers computes RoPE for any position, so
        // the tables are extended as upstream runs it, with room for a long prompt.
        use sjd2_core::JacobiDenoiser;
        let needed = model.layout().len() + 1;
        let max = model.max_sequence_len();
        let model = if needed > max {
            let positions = needed + PROMPT_ROOM;
            tracing::warn!(
                max_position_embeddings = max,
                positions,
                "a {size}x{size} image takes {needed} positions: RoPE extended past the checkpoint's max_position_embeddings"
            );
            model
                .try_map_backbone(|b| b.with_max_positions(positions))
                .map_err(|e| LoadError::Config {
                    path: dir.join("config.json"),
                    field: "max_position_embeddings".into(),
                    reason: format!(
                        "is {max}, but a {size}x{size} image alone takes {needed} positions: {e}"
                    ),
                })?
        } else {
            model
        };
        Ok(Self {
            family,
            model,
            decoder,
            prompts,
            defaults,
            source: weights,
        })
    }

    /// The family's image encoder (images → codes), for preparing fine-tuning data.
    ///
    /// # Errors
    /// As [`Pipeline::load`].
    pub fn image_encoder(
        family: Family,
        files: &Files,
        device: &Device,
    ) -> Result<Box<dyn ImageEncoder>> {
        let (weights, dir) = files.local_weights()?;
        Ok(match family {
            Family::Emu3 => {
                let (path, cfg) = Self::movq(files, &weights)?;
                Box::new(MovqEncoder::load(path, cfg, device)?)
            }
            f => Box::new(Self::vq_model(f, files, (&weights, &dir), device, true)?),
        })
    }

    /// The VQGAN / VQ-16 model of a family that has one (not Emu3).
    fn vq_model(
        family: Family,
        files: &Files,
        (weights, dir): (&Path, &Path),
        device: &Device,
        encoder: bool,
    ) -> Result<VqModel> {
        let weights = weights.to_path_buf();
        let (path, cfg) = match family {
            Family::LuminaMgpt | Family::Anole => {
                // The release's `vqgan.ckpt` (transformers' checkpoints hold only its encoder).
                let file = files
                    .vq
                    .clone()
                    .or_else(|| crate::chameleon::release_file(dir, "vqgan.ckpt"));
                let (path, prefix) = match file {
                    Some(p) => (p, String::new()),
                    None => {
                        // transformers' `ChameleonVQVAE` keeps the encoder only: decoding needs
                        // the released VQGAN.
                        let has_decoder = Checkpoint::open(&weights)?
                            .shape("model.vqmodel.decoder.conv_out.weight")
                            .is_some();
                        if !has_decoder && !encoder {
                            return Err(LoadError::Config {
                                path: weights,
                                field: "vq".into(),
                                reason: "holds no VQGAN decoder (transformers' Chameleon \
                                         checkpoints keep only its encoder): give Chameleon's \
                                         `tokenizer/vqgan.ckpt` (--vq)"
                                    .into(),
                            });
                        }
                        (weights, "model.vqmodel.".to_string())
                    }
                };
                let layout = VqLayout::Taming { prefix };
                (
                    path,
                    VqConfig {
                        layout,
                        ..VqConfig::chameleon()
                    },
                )
            }
            Family::JanusPro => {
                let hf = Checkpoint::open(&weights)?
                    .shape("model.vqmodel.quantize.embedding.weight")
                    .is_some();
                let layout = if hf {
                    VqLayout::Vq16Hf {
                        prefix: "model.vqmodel.".into(),
                    }
                } else {
                    VqLayout::Vq16 {
                        prefix: "gen_vision_model.".into(),
                    }
                };
                let path = files.vq.clone().unwrap_or(weights);
                (
                    path,
                    VqConfig {
                        layout,
                        ..VqConfig::vq16()
                    },
                )
            }
            Family::LlamagenC2i | Family::LlamagenT2i => (
                files.required(
                    files.vq.as_ref(),
                    "vq",
                    "LlamaGen's VQ-16 checkpoint is required",
                )?,
                VqConfig::vq16(),
            ),
            Family::Emu3 => {
                return Err(LoadError::Config {
                    path: files.weights.clone(),
                    field: "vq".into(),
                    reason: "Emu3's tokenizer is a MoVQ, not a VQGAN".into(),
                });
            }
        };
        // The VQ inside the checkpoint (Anole, Janus on transformers' layout) may be sized
        // otherwise than the released one: its `vq_config` says how.
        let cfg = match (
            &files.vq,
            crate::config::config_beside(&path, Some("vq_config"))?,
        ) {
            (None, Some((vq_config, origin))) => cfg.sized_by(&vq_config, &origin)?,
            _ => cfg,
        };
        // The tensors themselves say how wide a released tokenizer is (`vqgan.ckpt` comes with
        // a YAML file, `vq_ds16_*.pt` with none).
        let cfg = cfg.sized_by_shapes(&Checkpoint::open(&path)?)?;
        VqModel::load(
            path,
            VqConfig {
                with_encoder: encoder,
                ..cfg
            },
            device,
        )
    }

    /// Emu3's vision tokenizer file and its settings: `files.vq` (BAAI's original names, sized
    /// by its own `config.json`), or the MoVQ inside the checkpoint
    /// ([`MovqConfig::in_checkpoint`]).
    fn movq(files: &Files, weights: &Path) -> Result<(PathBuf, MovqConfig)> {
        Ok(match &files.vq {
            Some(p) => (p.clone(), MovqConfig::original(p)?),
            None => (weights.to_path_buf(), MovqConfig::in_checkpoint(weights)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_names_round_trip_and_unknown_ones_list_the_choices() {
        for f in Family::ALL {
            assert_eq!(f.name().parse::<Family>().unwrap(), f);
            assert!(f.defaults().size.is_multiple_of(16) || f == Family::Emu3);
        }
        let e = "lumina".parse::<Family>().unwrap_err();
        assert!(
            e.contains("lumina-mgpt") && e.contains("llamagen-t2i"),
            "{e}"
        );
    }
}
