//! Loading a published family (or its tiny fixture) for the examples: the model, its image
//! decoder and encoder, and how its prompts are made. Shared by `generate` and `finetune`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use sjd2::models::chameleon::{Chameleon, ChameleonImage};
use sjd2::models::emu3::{Emu3, Emu3Image, Emu3Tokens};
use sjd2::models::janus::{Janus, JanusTokens};
use sjd2::models::llamagen::{LlamaGen, LlamaGenConfig, LlamaGenTask};
use sjd2::models::prompt::{PromptTokenizer, Template};
use sjd2::models::t5::T5Encoder;
use sjd2::models::vq::{
    ImageDecoder, ImageEncoder, MovqConfig, MovqDecoder, MovqEncoder, VqConfig, VqLayout, VqModel,
};
use sjd2::models::weights::Checkpoint;
use sjd2::models::{LlamaT2I, Unconditional};
use sjd2::{Device, Prompt};

pub use sjd2::models::pipeline::Family;
use sjd2::models::pipeline::{Files, Pipeline, Prompts};

/// Which model to load.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model family (lumina-mgpt, anole, emu3, janus-pro, llamagen-c2i, llamagen-t2i); without
    /// it, the project's demo model (where the example supports it).
    #[arg(long)]
    pub family: Option<Family>,
    /// Checkpoint directory or file, or a Hugging Face repository id (`owner/name`: read from
    /// the local Hugging Face cache, downloaded into it when missing unless `HF_HUB_OFFLINE=1`).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Revision (branch, tag or commit) of a `--weights` repository id (default: main).
    #[arg(long)]
    pub revision: Option<String>,
    /// `tokenizer.json` (or a directory holding one) when the checkpoint has none (the
    /// Lumina-mGPT-7B-512 and -1024 repositories: take Lumina-mGPT-7B-768's or Chameleon's).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Image tokenizer checkpoint (see the file header for defaults).
    #[arg(long)]
    pub vq: Option<PathBuf>,
    /// FLAN-T5 directory (LlamaGen t2i).
    #[arg(long)]
    pub t5: Option<PathBuf>,
    /// Use the tiny random-weight fixtures in this directory instead of real weights (with
    /// `--weights`, the transformer comes from there: a fine-tuned export of a fixture).
    #[arg(long)]
    pub fixtures: Option<PathBuf>,
    /// Image side in pixels (default: the family's upstream size, `Family::defaults`).
    #[arg(long)]
    pub size: Option<usize>,
}

/// How a loaded family makes prompts.
#[derive(Debug)]
pub enum PromptSource {
    /// Token ids only (fixtures have no tokenizer).
    Ids,
    /// Text through a tokenizer and template.
    Text(Box<PromptTokenizer>, Template),
    /// A class id, wrapped modulo `classes` when given (the fixture has 10).
    Class(Option<u32>),
}

impl PromptSource {
    /// The prompt from `--prompt` text, `--prompt-ids` or `--class`.
    pub fn prompt(&self, text: Option<&str>, ids: &[u32], class: u32) -> Result<Prompt> {
        if !ids.is_empty() && !matches!(self, PromptSource::Class(_)) {
            return Ok(Prompt::new(ids.to_vec()));
        }
        match self {
            // Fixtures have no tokenizer: a text prompt (or caption) must be token ids.
            PromptSource::Ids => {
                let ids: Option<Vec<u32>> = text
                    .and_then(|t| {
                        t.split(|c: char| c == ',' || c.is_whitespace())
                            .filter(|w| !w.is_empty())
                            .map(|w| w.parse().ok())
                            .collect::<Option<Vec<u32>>>()
                    })
                    .filter(|v| !v.is_empty());
                match ids {
                    Some(ids) => Ok(Prompt::new(ids)),
                    None => bail!(
                        "fixtures have no tokenizer: pass --prompt-ids (or captions of token ids such as \"1,40,41\")"
                    ),
                }
            }
            PromptSource::Text(tok, template) => {
                let text = text.context("--prompt is required")?;
                Ok(tok.encode(text, template)?)
            }
            PromptSource::Class(m) => Ok(Prompt::new(vec![m.map_or(class, |m| class % m)])),
        }
    }
}

/// A loaded family.
pub struct Loaded {
    /// The model.
    pub model: LlamaT2I,
    /// Its image decoder.
    pub decoder: Box<dyn ImageDecoder>,
    /// How prompts are made.
    pub prompts: PromptSource,
    /// The checkpoint the model's transformer came from (what `finetune export` rewrites).
    pub source: PathBuf,
}

/// The decoder settings a published family starts from in `mode` (before `sjd2.json` and the
/// command line): the library's SJD2 defaults with adaptive windows of at most the demo's
/// lengths, coupled draft updates and guidance 3.
pub fn default_decoder(mode: sjd2::Mode) -> sjd2::DecoderConfig {
    sjd2::DecoderConfig {
        mode,
        draft_update: sjd2::DraftUpdate::Coupled,
        window_len: match mode {
            sjd2::Mode::Sjd => sjd2::Window::Auto {
                max: sjd2::demo::SJD_WINDOW,
                explore: sjd2::sampler::AUTO_EXPLORE_PASSES,
            },
            sjd2::Mode::Sjd2 => sjd2::Window::auto(),
            _ => sjd2::Window::Fixed(1),
        },
        guidance_scale: 3.0,
        ..sjd2::DecoderConfig::sjd2()
    }
}

impl ModelArgs {
    /// The family (required).
    pub fn family(&self) -> Result<Family> {
        self.family.context("no --family given")
    }

    /// The files of a published checkpoint (`--weights` may be a Hugging Face repository id).
    fn files(&self) -> Result<Files> {
        let weights = self
            .weights
            .clone()
            .context("--weights is required (or --fixtures)")?;
        Ok(Files {
            weights,
            revision: self.revision.clone(),
            vq: self.vq.clone(),
            t5: self.t5.clone(),
            tokenizer: self.tokenizer.clone(),
            size: self.size,
        })
    }

    /// The fixture VQ model of a VQGAN / VQ-16 family (`None` for Emu3's MoVQ), with its
    /// encoder when `with_encoder` (data preparation) or without it (decoding).
    fn fixture_vq(&self, f: &Path, device: &Device, with_encoder: bool) -> Result<Option<VqModel>> {
        let taming = |prefix: &str| VqLayout::Taming {
            prefix: prefix.into(),
        };
        let (file, base) = match self.family()? {
            Family::LuminaMgpt | Family::Anole => (
                f.join("chameleon_vqgan/weights_vqgan_ckpt_layout.safetensors"),
                VqConfig {
                    layout: taming(""),
                    ..VqConfig::chameleon()
                },
            ),
            Family::Emu3 => return Ok(None),
            Family::JanusPro => (
                f.join("janus/hf"),
                VqConfig {
                    layout: VqLayout::Vq16Hf {
                        prefix: "model.vqmodel.".into(),
                    },
                    ..VqConfig::vq16()
                },
            ),
            Family::LlamagenC2i | Family::LlamagenT2i => {
                (f.join("llamagen_vq/weights.safetensors"), VqConfig::vq16())
            }
        };
        // The fixtures' VQs are narrower than the released ones: their tensors say how.
        let cfg = base.sized_by_shapes(&Checkpoint::open(&file)?)?;
        let cfg = VqConfig {
            with_encoder,
            ..cfg
        };
        Ok(Some(VqModel::load(file, cfg, device)?))
    }

    /// The fixture's Emu3 vision tokenizer file and its settings (from its `vq_config`).
    fn fixture_movq(f: &Path) -> Result<(PathBuf, MovqConfig)> {
        let dir = f.join("emu3/hf");
        let cfg = MovqConfig::in_checkpoint(&dir)?;
        Ok((dir, cfg))
    }

    /// The family's image encoder (RGB → codes), for data preparation.
    #[allow(dead_code)] // `finetune` uses it, `generate` (which includes this file too) does not
    pub fn image_encoder(&self, device: &Device) -> Result<Box<dyn ImageEncoder>> {
        let family = self.family()?;
        let Some(f) = &self.fixtures else {
            return Ok(Pipeline::image_encoder(family, &self.files()?, device)?);
        };
        if family == Family::Emu3 {
            let (path, cfg) = Self::fixture_movq(f)?;
            return Ok(Box::new(MovqEncoder::load(path, cfg, device)?));
        }
        let vq = self.fixture_vq(f, device, true)?.context("no VQ model")?;
        Ok(Box::new(vq))
    }

    /// The model, its image decoder and how its prompts are made.
    pub fn load(&self, device: &Device) -> Result<Loaded> {
        let family = self.family()?;
        if let Some(f) = &self.fixtures {
            let vq = self.fixture_vq(f, device, false)?;
            let boxed = |vq: Option<VqModel>| -> Result<Box<dyn ImageDecoder>> {
                Ok(Box::new(vq.context("no VQ model")?))
            };
            let fx = |p: &str| f.join(p);
            // The transformer comes from --weights when given (a fine-tuned export of a
            // fixture), else from the fixture itself.
            let given = match &self.weights {
                Some(_) => Some(self.files()?.local_weights()?.0),
                None => None,
            };
            let model_src = |p: &str| given.clone().unwrap_or_else(|| f.join(p));
            let (model, decoder, prompts, source): (
                LlamaT2I,
                Box<dyn ImageDecoder>,
                PromptSource,
                PathBuf,
            ) = match family {
                Family::LuminaMgpt | Family::Anole => {
                    let image = ChameleonImage {
                        rows: 2,
                        cols: 3,
                        prefix: vec![37, 52, 53],
                        row_end: Some(51),
                        end_tokens: vec![36],
                        unconditional: Unconditional::PrefixOnly,
                    };
                    let src = model_src("chameleon/hf");
                    let (m, _) = Chameleon::load(&src, |_| Ok(image), device)?;
                    (m, boxed(vq)?, PromptSource::Ids, src)
                }
                Family::Emu3 => {
                    let t = Emu3Tokens::from_config(f.join("emu3/hf/config.json"))?
                        .context("the Emu3 fixture's config has no vocabulary_map")?;
                    let image = Emu3Image {
                        rows: 3,
                        cols: 4,
                        size_tokens: vec![30, 31, 32],
                        negative: vec![1, 25, 26],
                    };
                    let src = model_src("emu3/hf");
                    let m = Emu3::load(&src, t, image, device)?;
                    let (path, cfg) = Self::fixture_movq(f)?;
                    let d = Box::new(MovqDecoder::load(path, cfg, device)?);
                    (m, d, PromptSource::Ids, src)
                }
                Family::JanusPro => {
                    let tokens = JanusTokens {
                        pad: 3,
                        begin_of_image: 10,
                    };
                    let m = Janus::load(
                        model_src("janus/hf").join("config.json"),
                        model_src("janus/hf"),
                        tokens,
                        3,
                        device,
                    )?;
                    (m, boxed(vq)?, PromptSource::Ids, model_src("janus/hf"))
                }
                Family::LlamagenC2i => {
                    let task = LlamaGenTask::ClassToImage { num_classes: 10 };
                    let src = model_src("llamagen_c2i/weights.safetensors");
                    let m = LlamaGen::load(&src, LlamaGenConfig::tiny(task), device)?;
                    (m, boxed(vq)?, PromptSource::Class(Some(10)), src)
                }
                Family::LlamagenT2i => {
                    let task = LlamaGenTask::TextToImage {
                        caption_dim: 32,
                        slots: 120,
                    };
                    let src = model_src("llamagen_t2i/weights.safetensors");
                    let m = LlamaGen::load(&src, LlamaGenConfig::tiny(task), device)?
                        .with_caption_encoder(T5Encoder::load(fx("t5_encoder/hf"), 120, device)?);
                    (m, boxed(vq)?, PromptSource::Ids, src)
                }
            };
            return Ok(Loaded {
                model,
                decoder,
                prompts,
                source,
            });
        }
        // A published checkpoint: the library's pipeline pairs everything.
        let p = Pipeline::load(family, &self.files()?, device)?;
        let prompts = match p.prompts {
            Prompts::Text {
                tokenizer,
                template,
            } => PromptSource::Text(tokenizer, template),
            Prompts::Class => PromptSource::Class(None),
        };
        Ok(Loaded {
            model: p.model,
            decoder: p.decoder,
            prompts,
            source: p.source,
        })
    }
}
