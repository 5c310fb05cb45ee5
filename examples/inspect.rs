//! Inspect a checkpoint: run a prompt through a family's model, print the top-5 next tokens per
//! position and write every logit to a `.safetensors` file, to compare with the Python reference.
//!
//! ```text
//! # A published checkpoint, loaded as `generate` loads it (sjd2_models::pipeline): the prompt
//! # row the decoder would prefill (template, image prefix), or raw ids.
//! cargo run --release --example inspect -- --family lumina-mgpt --weights Alpha-VLLM/Lumina-mGPT-7B-768 --vq vqgan.ckpt --prompt "a red apple"
//! cargo run --release --example inspect -- --family emu3 --weights BAAI/Emu3-Gen --vq BAAI/Emu3-VisionTokenizer --ids 151849,64,393
//! cargo run --release --example inspect -- --family llamagen-c2i --weights c2i_XL_384.pt --vq vq_ds16_c2i.pt --class 207 --image-codes 1,2,3
//! # A fixture model, checked against its stored reference logits:
//! cargo run --release --example inspect -- --family anole --fixture sjd2-models/tests/fixtures/reference-models/chameleon
//! ```
//!
//! With `--fixture`, families map to the fixture cases: `lumina-mgpt` / `anole` (`chameleon`),
//! `emu3`, `janus-pro` (text ids, then image codes), `llamagen-c2i` (first id is the class, the
//! rest image codes), `llamagen-t2i` (caption embeddings come from the reference).

mod common;
#[path = "common/families.rs"]
#[allow(dead_code)]
mod families;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::Tensor;
use burn::tensor::{Int, TensorData};
use clap::Parser;
use families::Family;
use sjd2::Device;
use sjd2::core::JacobiDenoiser;
use sjd2::core::error::tensor_to_vec;
use sjd2::models::chameleon::{Chameleon, ChameleonImage};
use sjd2::models::emu3::{Emu3, Emu3Image, Emu3Tokens};
use sjd2::models::janus::{Janus, JanusTokens};
use sjd2::models::llamagen::{LlamaGen, LlamaGenConfig, LlamaGenTask};
use sjd2::models::weights::{Checkpoint, write_safetensors};
use sjd2::models::{CaptionRow, Conditioning, LlamaT2I, Unconditional};

#[derive(Parser, Debug)]
#[command(about = "Run a prompt or token ids through a checkpoint and dump the logits")]
struct Args {
    #[command(flatten)]
    device: common::DeviceArgs,
    #[command(flatten)]
    m: families::ModelArgs,
    /// A fixture case directory of sjd2-models/tests/fixtures/reference-models: weights, inputs
    /// and the reference logits to compare with.
    #[arg(long)]
    fixture: Option<PathBuf>,
    /// Prompt text (through the family's tokenizer and template).
    #[arg(long)]
    prompt: Option<String>,
    /// Comma-separated token ids (instead of `--prompt`; with `--fixture`, the inputs).
    #[arg(long, value_delimiter = ',')]
    ids: Vec<u32>,
    /// Class id (LlamaGen c2i).
    #[arg(long, default_value_t = 0)]
    class: u32,
    /// Image codes fed after the prompt (Janus, LlamaGen).
    #[arg(long, value_delimiter = ',')]
    image_codes: Vec<u32>,
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

fn main() -> Result<()> {
    let args = Args::parse();
    let device = args.device.device()?;
    let (logits, reference) = match &args.fixture {
        Some(fixture) => fixture_logits(&args, fixture, &device)?,
        None => (checkpoint_logits(&args, &device)?, None),
    };
    report(&args, logits, reference)
}

/// Logits `[positions, vocab]` of the prompt row a published checkpoint's decoder would
/// prefill, loaded as `generate` loads it (`sjd2_models::pipeline`), then of `--image-codes`.
fn checkpoint_logits(args: &Args, device: &Device) -> Result<Tensor<2>> {
    let loaded = args.m.load(device)?;
    let m = &loaded.model;
    let prompt = loaded
        .prompts
        .prompt(args.prompt.as_deref(), &args.ids, args.class)?;
    let row = sjd2::core::PromptRow {
        prompt: &prompt,
        role: sjd2::core::Role::Conditional,
    };
    let codes: Vec<u32> = args
        .image_codes
        .iter()
        .map(|&c| m.layout().image_token_range().start + c)
        .collect();
    let mut cache = m.new_cache(1, m.prompt_len(&row)? + codes.len() + 1)?;
    let first = match m.conditioning() {
        // Every position of the row (template and image prefix included).
        Conditioning::Tokens(_) => {
            let ids = m.row_tokens(&row);
            println!("prompt row: {ids:?}");
            m.forward_tokens(&mut cache, ids_tensor(&ids, device))?
                .squeeze_dim(0)
        }
        // Class or caption conditioning: the distribution of the first image token.
        _ => m.prefill(&mut cache, &[row])?,
    };
    if codes.is_empty() {
        return Ok(first);
    }
    let rest = m
        .forward(&mut cache, m.embed_tokens(ids_tensor(&codes, device))?)?
        .squeeze_dim(0);
    Ok(Tensor::cat(vec![first, rest], 0))
}

/// A fixture case's model on its reference inputs (or `--ids`), and the name of the reference
/// logits to compare with.
fn fixture_logits(
    args: &Args,
    fixture: &Path,
    device: &Device,
) -> Result<(Tensor<2>, Option<&'static str>)> {
    let family = args.m.family()?;
    let weights =
        |sub: &str| -> PathBuf { args.m.weights.clone().unwrap_or_else(|| fixture.join(sub)) };
    let ids_or = |name: &str| -> Result<Vec<u32>> {
        if args.ids.is_empty() {
            reference_ids(fixture, name)
        } else {
            Ok(args.ids.clone())
        }
    };
    Ok(match family {
        Family::LuminaMgpt | Family::Anole => {
            let m = chameleon(&weights("hf"), device)?;
            let ids = ids_or("input_ids")?;
            let mut cache = m.new_cache(1, ids.len().max(1))?;
            (
                m.forward_tokens(&mut cache, ids_tensor(&ids, device))?
                    .squeeze_dim(0),
                Some("logits_raw"),
            )
        }
        Family::Emu3 => {
            let dir = weights("hf");
            let tokens = Emu3Tokens::from_config(dir.join("config.json"))?
                .context("the fixture's config has no vocabulary_map")?;
            let image = Emu3Image {
                rows: 1,
                cols: 1,
                size_tokens: vec![],
                negative: vec![tokens.bos],
            };
            let m = Emu3::load(&dir, tokens, image, device)?;
            let ids = ids_or("input_ids")?;
            let mut cache = m.new_cache(1, ids.len().max(1))?;
            (
                m.forward_tokens(&mut cache, ids_tensor(&ids, device))?
                    .squeeze_dim(0),
                Some("logits"),
            )
        }
        Family::JanusPro => {
            let w = weights("hf");
            // The fixture's special ids (its meta.json `token_ids`).
            let tokens = JanusTokens {
                pad: 3,
                begin_of_image: 10,
            };
            let m = Janus::load(w.join("config.json"), &w, tokens, 3, device)?;
            let text = ids_or("prompt_ids")?;
            let codes = if args.image_codes.is_empty() {
                reference_ids(fixture, "image_codes")?[..8].to_vec()
            } else {
                args.image_codes.clone()
            };
            let mut x = m.backbone().embed(ids_tensor(&text, device));
            if !codes.is_empty() {
                x = Tensor::cat(vec![x, m.embed_tokens(ids_tensor(&codes, device))?], 1);
            }
            let mut cache = m.new_cache(1, text.len() + codes.len())?;
            let out = m.backbone().forward(&mut cache, x, false)?;
            (m.head(out.hidden).squeeze_dim(0), Some("gen_logits_cond"))
        }
        Family::LlamagenC2i | Family::LlamagenT2i => {
            let c2i = family == Family::LlamagenC2i;
            let task = if c2i {
                LlamaGenTask::ClassToImage { num_classes: 10 }
            } else {
                LlamaGenTask::TextToImage {
                    caption_dim: 32,
                    slots: 120,
                }
            };
            let m = LlamaGen::load(
                weights("weights.safetensors"),
                LlamaGenConfig::tiny(task),
                device,
            )?;
            let (class, image) = if args.ids.is_empty() {
                let class = if c2i {
                    reference_ids(fixture, "class_label")?[0]
                } else {
                    0
                };
                (
                    class,
                    reference_ids(fixture, "image_tokens")?[..15].to_vec(),
                )
            } else {
                (args.ids[0], args.ids[1..].to_vec())
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
                let r = Checkpoint::open(fixture.join("reference.safetensors"))?;
                let (_, caps) = r.read_f32("caption_embs_left_padded")?;
                let (_, mask) = r.read_f32("emb_mask")?;
                let valid = mask.iter().filter(|&&x| x > 0.5).count();
                let e = Tensor::<2>::from_data(
                    TensorData::new(caps[(120 - valid) * 32..].to_vec(), [valid, 32]),
                    device,
                );
                m.prefill_captions(&mut cache, &[Some(CaptionRow { embeddings: e })], &[valid])?
            };
            let rest = m
                .forward(&mut cache, m.embed_tokens(ids_tensor(&image, device))?)?
                .squeeze_dim(0);
            (Tensor::cat(vec![first, rest], 0), Some("logits_cond"))
        }
    })
}

/// Prints the top tokens per position, writes the logits, and compares them with the fixture's
/// reference `reference` when there is one.
fn report(args: &Args, logits: Tensor<2>, reference: Option<&str>) -> Result<()> {
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
    if let (Some(f), Some(name)) = (&args.fixture, reference) {
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
