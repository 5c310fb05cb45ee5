//! Loading a published family (or its tiny fixture) for the examples: the model, its image
//! decoder and encoder, and how its prompts are made. Shared by `generate` and `finetune`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use sjd2::models::chameleon::{Chameleon, ChameleonImage};
use sjd2::models::emu3::{Emu3, Emu3Image, Emu3Tokens};
use sjd2::models::janus::{Janus, JanusTokens};
use sjd2::models::llamagen::{LlamaGen, LlamaGenConfig, LlamaGenTask};
use sjd2::models::prompt::{PromptTokenizer, Template};
use sjd2::models::t5::T5Encoder;
use sjd2::models::vq::{
    ImageDecoder, ImageEncoder, MovqConfig, MovqDecoder, MovqEncoder, MovqLayout, VqConfig,
    VqLayout, VqModel,
};
use sjd2::models::weights::Checkpoint;
use sjd2::models::{LlamaT2I, Unconditional};
use sjd2::{Device, Prompt};

/// A published model family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Family {
    LuminaMgpt,
    Anole,
    Emu3,
    JanusPro,
    LlamagenC2i,
    LlamagenT2i,
}

/// A family's upstream image size and sampling (docs/models.md lists the source of each).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Defaults {
    /// Image side in pixels.
    pub size: usize,
    /// Classifier-free guidance scale.
    pub guidance: f32,
    /// Temperature.
    pub temperature: f32,
    /// Top-k (0: off).
    pub top_k: usize,
    /// Top-p (1: off).
    pub top_p: f32,
}

impl Family {
    /// What the upstream code generates with (MODELS.md's table of defaults).
    pub fn defaults(self) -> Defaults {
        let d = |size, guidance, temperature, top_k, top_p| Defaults {
            size,
            guidance,
            temperature,
            top_k,
            top_p,
        };
        match self {
            // Lumina-mGPT-7B-768: CFG 3.0 (the SJD paper's setting; the README uses 4.0), image
            // top-k 2000.
            Family::LuminaMgpt => d(768, 3.0, 1.0, 2000, 1.0),
            // Chameleon / Anole: temperature 0.7, top-p 0.9; upstream guides three ways (text 3.0,
            // image 1.2), here two ways at the text scale.
            Family::Anole => d(512, 3.0, 0.7, 0, 0.9),
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

/// Which model to load.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model family; without it, the project's demo model (where the example supports it).
    #[arg(long, value_enum)]
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
/// command line): the library's SJD2 defaults with the demo's windows, coupled draft updates
/// and guidance 3.
pub fn default_decoder(mode: sjd2::Mode) -> sjd2::DecoderConfig {
    sjd2::DecoderConfig {
        mode,
        draft_update: sjd2::DraftUpdate::Coupled,
        window_len: sjd2::Window::Fixed(match mode {
            sjd2::Mode::Sjd => sjd2::demo::SJD_WINDOW,
            sjd2::Mode::Sjd2 => sjd2::demo::SJD2_WINDOW,
            _ => 1,
        }),
        guidance_scale: 3.0,
        ..sjd2::DecoderConfig::sjd2()
    }
}

fn tokenizer_file(path: &Path) -> Result<PromptTokenizer> {
    let file = if path.is_dir() {
        path.join("tokenizer.json")
    } else {
        path.to_path_buf()
    };
    PromptTokenizer::from_file(&file).with_context(|| {
        format!(
            "{} (a repository without tokenizer files, such as Lumina-mGPT-7B-512 / -1024, takes \
             one from a sibling with --tokenizer)",
            file.display()
        )
    })
}

fn tiny_vq(mut c: VqConfig, codebook: usize, embed: usize, layout: VqLayout) -> VqConfig {
    c.ch = 32;
    c.z_channels = 32;
    c.codebook_size = codebook;
    c.embed_dim = embed;
    c.layout = layout;
    c
}

impl ModelArgs {
    /// The family (required).
    pub fn family(&self) -> Result<Family> {
        self.family.context("no --family given")
    }

    /// The prompt tokenizer: `--tokenizer` (a `tokenizer.json` or a directory holding one), else
    /// the checkpoint directory's.
    fn tokenizer(&self, dir: &Path) -> Result<PromptTokenizer> {
        tokenizer_file(self.tokenizer.as_deref().unwrap_or(dir))
    }

    /// The image side: `--size`, else the family's upstream size.
    pub fn size(&self) -> Result<usize> {
        Ok(self.size.unwrap_or(self.family()?.defaults().size))
    }

    /// The checkpoint and its directory: `--weights` as a local path, or, when no such path
    /// exists and it reads `owner/name`, the Hugging Face repository's snapshot from the local
    /// cache (downloaded into it when missing, unless `HF_HUB_OFFLINE=1`).
    fn weights(&self) -> Result<(PathBuf, PathBuf)> {
        let mut weights = self
            .weights
            .clone()
            .context("--weights is required (or --fixtures)")?;
        if !weights.exists()
            && let Some(id) = weights
                .to_str()
                .filter(|s| sjd2::models::hub::is_repo_id(s))
        {
            weights = sjd2::models::hub::resolve(id, self.revision.as_deref())?;
        }
        let dir = if weights.is_dir() {
            weights.clone()
        } else {
            weights.parent().map(Path::to_path_buf).unwrap_or_default()
        };
        Ok((weights, dir))
    }

    /// The VQ model of a VQGAN / VQ-16 family (`None` for Emu3's MoVQ), with its encoder when
    /// `with_encoder` (data preparation) or without it (decoding).
    pub fn vq_model(&self, device: &Device, with_encoder: bool) -> Result<Option<VqModel>> {
        let family = self.family()?;
        if let Some(f) = &self.fixtures {
            let (file, cfg) = match family {
                Family::LuminaMgpt | Family::Anole => (
                    f.join("chameleon_vqgan/weights_vqgan_ckpt_layout.safetensors"),
                    tiny_vq(
                        VqConfig::chameleon(),
                        32,
                        16,
                        VqLayout::Taming {
                            prefix: String::new(),
                        },
                    ),
                ),
                Family::Emu3 => return Ok(None),
                Family::JanusPro => (
                    f.join("janus/hf"),
                    tiny_vq(
                        VqConfig::vq16(),
                        64,
                        8,
                        VqLayout::Vq16Hf {
                            prefix: "model.vqmodel.".into(),
                        },
                    ),
                ),
                Family::LlamagenC2i | Family::LlamagenT2i => (
                    f.join("llamagen_vq/weights.safetensors"),
                    tiny_vq(
                        VqConfig::vq16(),
                        64,
                        8,
                        VqLayout::Vq16 {
                            prefix: String::new(),
                        },
                    ),
                ),
            };
            let cfg = VqConfig {
                with_encoder,
                ..cfg
            };
            return Ok(Some(VqModel::load(file, cfg, device)?));
        }
        let (weights, _) = self.weights()?;
        let (path, cfg) = match family {
            Family::LuminaMgpt | Family::Anole => {
                let (path, prefix) = match &self.vq {
                    Some(p) => (p.clone(), String::new()),
                    None => (weights.clone(), "model.vqmodel.".to_string()),
                };
                (
                    path,
                    VqConfig {
                        layout: VqLayout::Taming { prefix },
                        ..VqConfig::chameleon()
                    },
                )
            }
            Family::Emu3 => return Ok(None),
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
                (
                    self.vq.clone().unwrap_or(weights.clone()),
                    VqConfig {
                        layout,
                        ..VqConfig::vq16()
                    },
                )
            }
            Family::LlamagenC2i | Family::LlamagenT2i => (
                self.vq.clone().context("--vq is required for LlamaGen")?,
                VqConfig::vq16(),
            ),
        };
        let cfg = VqConfig {
            with_encoder,
            ..cfg
        };
        Ok(Some(VqModel::load(path, cfg, device)?))
    }

    /// Emu3's vision tokenizer file and its sizes and layout: the fixture's, `--vq` (BAAI's
    /// original names), or `vqmodel.*` inside the transformers checkpoint.
    fn movq(&self) -> Result<(PathBuf, MovqConfig)> {
        let hf = |prefix: &str| MovqLayout::HuggingFace {
            prefix: prefix.into(),
        };
        if let Some(f) = &self.fixtures {
            let cfg = MovqConfig {
                ch: 32,
                codebook_size: 64,
                layout: hf("vqmodel."),
                ..MovqConfig::emu3()
            };
            return Ok((f.join("emu3/hf"), cfg));
        }
        Ok(match &self.vq {
            Some(p) => (p.clone(), MovqConfig::emu3()),
            None => {
                // `vqmodel.*` (Emu3-Gen-hf) or `model.vqmodel.*` (saved by transformers 5).
                let weights = self.weights()?.0;
                let nested = Checkpoint::open(&weights)?
                    .shape("model.vqmodel.quantize.embedding.weight")
                    .is_some();
                let prefix = if nested { "model.vqmodel." } else { "vqmodel." };
                (
                    weights,
                    MovqConfig {
                        layout: hf(prefix),
                        ..MovqConfig::emu3()
                    },
                )
            }
        })
    }

    /// The family's image encoder (RGB → codes), for data preparation.
    #[allow(dead_code)] // `finetune` uses it, `generate` (which includes this file too) does not
    pub fn image_encoder(&self, device: &Device) -> Result<Box<dyn ImageEncoder>> {
        if self.family()? == Family::Emu3 {
            let (path, cfg) = self.movq()?;
            return Ok(Box::new(MovqEncoder::load(path, cfg, device)?));
        }
        let vq = self.vq_model(device, true)?.context("no VQ model")?;
        Ok(Box::new(vq))
    }

    /// The model, its image decoder and how its prompts are made.
    pub fn load(&self, device: &Device) -> Result<Loaded> {
        let family = self.family()?;
        let vq = self.vq_model(device, false)?;
        let boxed = |vq: Option<VqModel>| -> Result<Box<dyn ImageDecoder>> {
            Ok(Box::new(vq.context("no VQ model")?))
        };
        if let Some(f) = &self.fixtures {
            let fx = |p: &str| f.join(p);
            // The transformer comes from --weights when given (a fine-tuned export of a
            // fixture), else from the fixture itself.
            let given = match &self.weights {
                Some(_) => Some(self.weights()?.0),
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
                    let t = Emu3Tokens {
                        pad: 0,
                        bos: 1,
                        eos: 2,
                        eol: 3,
                        eof: 4,
                        boi: 5,
                        eoi: 6,
                        img: 7,
                        visual_start: 96,
                        visual_count: 64,
                    };
                    let image = Emu3Image {
                        rows: 3,
                        cols: 4,
                        size_tokens: vec![30, 31, 32],
                        negative: vec![1, 25, 26],
                    };
                    let src = model_src("emu3/hf");
                    let m = Emu3::load(&src, t, image, device)?;
                    let (path, cfg) = self.movq()?;
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
        let (weights, dir) = self.weights()?;
        let size = self.size()?;
        Ok(match family {
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
                    Template::Chameleon
                };
                Loaded {
                    model: m,
                    decoder: boxed(vq)?,
                    prompts: PromptSource::Text(Box::new(self.tokenizer(&dir)?), template),
                    source: weights,
                }
            }
            Family::Emu3 => {
                let tok = self.tokenizer(&dir)?;
                let side = size / 8;
                let size_tokens = tok.encode_text(&format!("{side}*{side}"))?;
                let t = Emu3Tokens::EMU3_GEN;
                let mut negative = vec![t.bos];
                negative.extend(tok.encode_text("lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, cropped, worst quality, low quality, normal quality, jpeg artifacts, signature, watermark, username, blurry.")?);
                let m = Emu3::load(
                    &weights,
                    t,
                    Emu3Image {
                        rows: side,
                        cols: side,
                        size_tokens,
                        negative,
                    },
                    device,
                )?;
                let (path, cfg) = self.movq()?;
                let decoder: Box<dyn ImageDecoder> =
                    Box::new(MovqDecoder::load(path, cfg, device)?);
                Loaded {
                    model: m,
                    decoder,
                    prompts: PromptSource::Text(Box::new(tok), Template::Emu3),
                    source: weights,
                }
            }
            Family::JanusPro => {
                let tok = self.tokenizer(&dir)?;
                let id = |t: &str| {
                    tok.token_id(t)
                        .with_context(|| format!("tokenizer has no {t}"))
                };
                let tokens = JanusTokens {
                    pad: id("<｜▁pad▁｜>")?,
                    begin_of_image: id("<begin_of_image>")?,
                };
                let m = Janus::load(dir.join("config.json"), &weights, tokens, size / 16, device)?;
                Loaded {
                    model: m,
                    decoder: boxed(vq)?,
                    prompts: PromptSource::Text(Box::new(tok), Template::Janus),
                    source: weights,
                }
            }
            Family::LlamagenC2i => {
                // Any gpt.py size (B … 3B), read from the checkpoint's shapes.
                let cfg = LlamaGenConfig::detect(&Checkpoint::open(&weights)?, size / 16)?;
                if !matches!(cfg.task, LlamaGenTask::ClassToImage { .. }) {
                    bail!(
                        "{} is a text-conditional LlamaGen checkpoint: use --family llamagen-t2i",
                        weights.display()
                    );
                }
                let m = LlamaGen::load(&weights, cfg, device)?;
                Loaded {
                    model: m,
                    decoder: boxed(vq)?,
                    prompts: PromptSource::Class(None),
                    source: weights,
                }
            }
            Family::LlamagenT2i => {
                let t5 = self
                    .t5
                    .clone()
                    .context("--t5 is required for LlamaGen t2i")?;
                let cfg = LlamaGenConfig::detect(&Checkpoint::open(&weights)?, size / 16)?;
                if !matches!(cfg.task, LlamaGenTask::TextToImage { .. }) {
                    bail!(
                        "{} is a class-conditional LlamaGen checkpoint: use --family llamagen-c2i",
                        weights.display()
                    );
                }
                let m = LlamaGen::load(&weights, cfg, device)?
                    .with_caption_encoder(T5Encoder::load(&t5, 120, device)?);
                Loaded {
                    model: m,
                    decoder: boxed(vq)?,
                    prompts: PromptSource::Text(Box::new(tokenizer_file(&t5)?), Template::T5),
                    source: weights,
                }
            }
        })
    }
}
