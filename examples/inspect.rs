//! Inspect a converted checkpoint: run token ids through a family's model, print the top-5
//! next tokens per position and write every logit to a `.safetensors` file, to compare with the
//! Python reference.
//!
//! ```text
//! # A fixture model, checked against its stored reference logits:
//! cargo run --release --example inspect -- --family chameleon --fixture sjd2-models/tests/fixtures/reference-models/chameleon
//! # Your own weights and ids:
//! cargo run --release --example inspect -- --family lumina-mgpt --weights Lumina-mGPT-7B-768 --ids 1,3,4,5 --out logits.safetensors
//! cargo run --release --example inspect -- --family llamagen-c2i --weights c2i_XL_384.safetensors --llamagen xl --grid 24 --ids 207,1,2,3
//! ```
//!
//! Families: `chameleon`, `lumina-mgpt`, `anole` (one backbone), `emu3`, `janus-pro` (text ids,
//! then `--image-codes`), `llamagen-c2i` (first id is the class, the rest image codes),
//! `llamagen-t2i` (fixture mode only: caption embeddings come from the reference).

mod common;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::Tensor;
use burn::tensor::{Int, TensorData};
use clap::{Parser, ValueEnum};
use sjd2::Device;
use sjd2::core::JacobiDenoiser;
use sjd2::core::error::tensor_to_vec;
use sjd2::models::chameleon::{Chameleon, ChameleonImage};
use sjd2::models::emu3::{Emu3, Emu3Image, Emu3Tokens};
use sjd2::models::janus::{Janus, JanusTokens};
use sjd2::models::llamagen::{LlamaGen, LlamaGenConfig, LlamaGenTask};
use sjd2::models::weights::{Checkpoint, write_safetensors};
use sjd2::models::{CaptionRow, LlamaT2I, Unconditional};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Family {
    Chameleon,
    LuminaMgpt,
    Anole,
    Emu3,
    JanusPro,
    LlamagenC2i,
    LlamagenT2i,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Size {
    B,
    L,
    Xl,
}

#[derive(Parser, Debug)]
#[command(about = "Run token ids through a checkpoint and dump the logits")]
struct Args {
    #[command(flatten)]
    device: common::DeviceArgs,
    /// Model family.
    #[arg(long, value_enum)]
    family: Family,
    /// Checkpoint directory or file.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// config.json (Janus; defaults to WEIGHTS/config.json).
    #[arg(long)]
    config: Option<PathBuf>,
    /// A fixture case directory of sjd2-models/tests/fixtures/reference-models: weights, inputs and the
    /// reference logits to compare with.
    #[arg(long)]
    fixture: Option<PathBuf>,
    /// Comma-separated token ids.
    #[arg(long, value_delimiter = ',')]
    ids: Vec<u32>,
    /// Janus: image codes fed after the text ids.
    #[arg(long, value_delimiter = ',')]
    image_codes: Vec<u32>,
    /// LlamaGen preset.
    #[arg(long, value_enum, default_value = "xl")]
    llamagen: Size,
    /// LlamaGen grid side (image size / 16).
    #[arg(long, default_value_t = 16)]
    grid: usize,
    /// Where to write the logits.
    #[arg(long, default_value = "logits.safetensors")]
    out: PathBuf,
    /// Tokens listed per position.
    #[arg(long, default_value_t = 5)]
    top: usize,
}

fn ids_tensor(ids: &[u32], device: &Device) -> Tensor<2, Int> {
    let v: Vec<i64> = ids.iter().map(|&x| i64::from(x)).collect();
    Tensor::from_data(TensorData::new(v, [1, ids.len()]), device)
}

fn reference_ids(case: &Path, name: &str) -> Result<Vec<u32>> {
    let r = Checkpoint::open(case.join("reference.safetensors"))?;
    Ok(r.read_i64(name)?.1.into_iter().map(|x| x as u32).collect())
}

/// A layout-agnostic Chameleon-family load (inspection needs only the transformer).
fn chameleon(dir: &Path, device: &Device) -> Result<LlamaT2I> {
    let (m, _) = Chameleon::load(
        dir,
        |v| {
            ChameleonImage::lumina(v, 512, 512).or_else(|_| {
                let boi = v.id("<racm3:break>").unwrap_or(0);
                Ok(ChameleonImage {
                    rows: 1,
                    cols: 1,
                    prefix: vec![boi],
                    row_end: None,
                    end_tokens: vec![],
                    unconditional: Unconditional::PrefixOnly,
                })
            })
        },
        device,
    )?;
    Ok(m)
}

fn llamagen_config(args: &Args, task: LlamaGenTask, fixture: bool) -> LlamaGenConfig {
    if fixture {
        return LlamaGenConfig::tiny(task);
    }
    let mut c = match args.llamagen {
        Size::B => LlamaGenConfig::gpt_b_c2i(args.grid),
        Size::L => LlamaGenConfig::gpt_l_c2i(args.grid),
        Size::Xl => LlamaGenConfig::gpt_xl_c2i(args.grid),
    };
    c.task = task;
    c
}

fn main() -> Result<()> {
    let args = Args::parse();
    let device = args.device.device()?;
    let fixture = args.fixture.clone();
    let weights = |sub: &str| -> Result<PathBuf> {
        match (&args.weights, &fixture) {
            (Some(w), _) => Ok(w.clone()),
            (None, Some(f)) => Ok(f.join(sub)),
            (None, None) => bail!("give --weights or --fixture"),
        }
    };
    // (logits [positions, vocab], reference logits name in the fixture)
    let (logits, reference): (Tensor<2>, Option<&str>) = match args.family {
        Family::Chameleon | Family::LuminaMgpt | Family::Anole => {
            let m = chameleon(&weights("hf")?, &device)?;
            let ids = match &fixture {
                Some(f) if args.ids.is_empty() => reference_ids(f, "input_ids")?,
                _ => args.ids.clone(),
            };
            let mut cache = m.new_cache(1, ids.len().max(1))?;
            (
                m.forward_tokens(&mut cache, ids_tensor(&ids, &device))?
                    .squeeze_dim(0),
                Some("logits_raw"),
            )
        }
        Family::Emu3 => {
            let dir = weights("hf")?;
            // The checkpoint's own ids (its config's vocabulary map), else the released ones.
            let tokens =
                Emu3Tokens::from_config(dir.join("config.json"))?.unwrap_or(Emu3Tokens::EMU3_GEN);
            let m = Emu3::load(
                &dir,
                tokens,
                Emu3Image {
                    rows: 1,
                    cols: 1,
                    size_tokens: vec![],
                    negative: vec![tokens.bos],
                },
                &device,
            )?;
            let ids = match &fixture {
                Some(f) if args.ids.is_empty() => reference_ids(f, "input_ids")?,
                _ => args.ids.clone(),
            };
            let mut cache = m.new_cache(1, ids.len().max(1))?;
            (
                m.forward_tokens(&mut cache, ids_tensor(&ids, &device))?
                    .squeeze_dim(0),
                Some("logits"),
            )
        }
        Family::JanusPro => {
            let w = weights("hf")?;
            let config = args
                .config
                .clone()
                .or_else(|| fixture.as_ref().map(|f| f.join("hf/config.json")))
                .unwrap_or_else(|| w.join("config.json"));
            let (tokens, grid) = if fixture.is_some() {
                (
                    JanusTokens {
                        pad: 3,
                        begin_of_image: 10,
                    },
                    3,
                )
            } else {
                (
                    JanusTokens {
                        pad: 100_002,
                        begin_of_image: 100_016,
                    },
                    24,
                )
            };
            let m = Janus::load(config, &w, tokens, grid, &device)?;
            let (text, codes) = match &fixture {
                Some(f) if args.ids.is_empty() => (
                    reference_ids(f, "prompt_ids")?,
                    reference_ids(f, "image_codes")?[..8].to_vec(),
                ),
                _ => (args.ids.clone(), args.image_codes.clone()),
            };
            let mut x = m.backbone().embed(ids_tensor(&text, &device));
            if !codes.is_empty() {
                x = Tensor::cat(vec![x, m.embed_tokens(ids_tensor(&codes, &device))?], 1);
            }
            let mut cache = m.new_cache(1, text.len() + codes.len())?;
            let out = m.backbone().forward(&mut cache, x, false)?;
            (m.head(out.hidden).squeeze_dim(0), Some("gen_logits_cond"))
        }
        Family::LlamagenC2i | Family::LlamagenT2i => {
            let c2i = args.family == Family::LlamagenC2i;
            let task = if c2i {
                LlamaGenTask::ClassToImage {
                    num_classes: if fixture.is_some() { 10 } else { 1000 },
                }
            } else {
                LlamaGenTask::TextToImage {
                    caption_dim: if fixture.is_some() { 32 } else { 2048 },
                    slots: 120,
                }
            };
            let m = LlamaGen::load(
                weights("weights.safetensors")?,
                llamagen_config(&args, task, fixture.is_some()),
                &device,
            )?;
            let (class, image) = match &fixture {
                Some(f) if args.ids.is_empty() => {
                    let class = if c2i {
                        reference_ids(f, "class_label")?[0]
                    } else {
                        0
                    };
                    (class, reference_ids(f, "image_tokens")?[..15].to_vec())
                }
                _ => (
                    *args.ids.first().context("--ids needs the class id first")?,
                    args.ids[1..].to_vec(),
                ),
            };
            let mut cache = m.new_cache(1, 1 + image.len() + 120)?;
            let first = if c2i {
                let p = sjd2::Prompt::new(vec![class]);
                m.prefill(
                    &mut cache,
                    &[sjd2::core::PromptRow {
                        prompt: &p,
                        role: sjd2::core::Role::Conditional,
                    }],
                )?
            } else {
                let f = fixture
                    .as_ref()
                    .context("llamagen-t2i inspection needs --fixture (caption embeddings)")?;
                let r = Checkpoint::open(f.join("reference.safetensors"))?;
                let (_, caps) = r.read_f32("caption_embs_left_padded")?;
                let (_, mask) = r.read_f32("emb_mask")?;
                let valid = mask.iter().filter(|&&x| x > 0.5).count();
                let e = Tensor::<2>::from_data(
                    TensorData::new(caps[(120 - valid) * 32..].to_vec(), [valid, 32]),
                    &device,
                );
                m.prefill_captions(&mut cache, &[Some(CaptionRow { embeddings: e })], &[valid])?
            };
            let rest = m
                .forward(&mut cache, m.embed_tokens(ids_tensor(&image, &device))?)?
                .squeeze_dim(0);
            (Tensor::cat(vec![first, rest], 0), Some("logits_cond"))
        }
    };
    let [n, v] = logits.dims();
    let host = tensor_to_vec(logits, "logits")?;
    for p in 0..n {
        let row = &host[p * v..(p + 1) * v];
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let z: f32 = row.iter().map(|x| (x - max).exp()).sum();
        let mut order: Vec<usize> = (0..v).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
        let top: Vec<String> = order
            .iter()
            .take(args.top)
            .map(|&i| format!("{i} ({:.3})", (row[i] - max).exp() / z))
            .collect();
        println!("position {p:>4}: {}", top.join("  "));
    }
    write_safetensors(&args.out, &[("logits", &[n, v], &host)], Default::default())?;
    println!(
        "wrote {} logits ({n} x {v}) to {}",
        n * v,
        args.out.display()
    );
    if let (Some(f), Some(name)) = (&fixture, reference) {
        let (_, want) = Checkpoint::open(f.join("reference.safetensors"))?.read_f32(name)?;
        let want = &want[..want.len().min(host.len())];
        let err = host
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        println!("max abs error against the reference `{name}`: {err:.2e}");
    }
    Ok(())
}
