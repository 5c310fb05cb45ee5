//! The decoding loop's own time per pass at the image vocabularies of the published models: how
//! much a pass costs outside the model's calls (the guided logits brought to the host, every
//! window row's softmax / filtering / draw, verification, the coupled redraws, SJD2's noise and
//! refill) as the vocabulary grows from the demo model's 512 codes to Emu3's 32 768.
//!
//! ```text
//! cargo run --release --example loop_overhead
//! cargo run --release --example loop_overhead -- --vocab 8192,32768 --top-k 2000
//! ```
//!
//! The model is the built-in toy transformer with a real-sized image vocabulary and a tiny width,
//! timed call by call. Of the rest of a pass, "sampling" ([`sjd2::Stats::sampling_time`]) is the
//! host's work on the rows: softmax and filtering, the draws, verification, the coupled redraws;
//! "rest of the loop" is guidance, the copy of the guided logits to the host, the window
//! embeddings and SJD2's noise, which on a GPU run on the device (and here on the CPU backend,
//! whose allocations dominate them). On a GPU running a 7 B model the model's share shrinks to
//! milliseconds, and the sampling column is what the host adds to every pass.
//! Every configuration decodes the same prompts with the same seeds, interleaved.

mod common;
#[path = "common/timed.rs"]
mod timed;

use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use sjd2::core::testing::{ToyConfig, ToyModel};
use sjd2::{DecoderConfig, DraftUpdate, Mode, Prompt, Sampling, Sjd2Decoder};
use timed::Timed;

#[derive(Parser, Debug)]
#[command(about = "Time the decoding loop outside the model at real image vocabularies")]
struct Args {
    #[command(flatten)]
    device: common::DeviceArgs,
    /// Image vocabularies (Chameleon / Lumina-mGPT / Anole 8192, LlamaGen / Janus 16384, Emu3
    /// 32768; the demo model 512).
    #[arg(long, value_delimiter = ',', default_value = "512,8192,16384,32768")]
    vocab: Vec<usize>,
    /// Image grid side (tokens per row and rows; each row ends with a row-end token).
    #[arg(long, default_value_t = 24)]
    grid: usize,
    /// Images per configuration and vocabulary (after one warm-up image).
    #[arg(long, default_value_t = 3)]
    images: usize,
    /// Top-k filtering of every row (Lumina-mGPT uses 2000, Emu3 2048; default: off).
    #[arg(long)]
    top_k: Option<usize>,
    /// Only the decoders whose names start with this (AR, SJD, SJD2).
    #[arg(long)]
    only: Option<String>,
    /// Classifier-free guidance scale (two rows per sample unless 1).
    #[arg(long, default_value_t = 3.0)]
    guidance: f32,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let device = args.device.device()?;
    let sampling = Sampling::Multinomial {
        temperature: 1.0,
        top_k: args.top_k,
        top_p: None,
    };
    let base = DecoderConfig {
        sampling,
        guidance_scale: args.guidance,
        draft_update: DraftUpdate::Coupled,
        ..DecoderConfig::autoregressive()
    };
    let configs: Vec<(&str, DecoderConfig)> = vec![
        ("AR", base.clone()),
        (
            "SJD W=16",
            DecoderConfig {
                mode: Mode::Sjd,
                window_len: 16.into(),
                ..base.clone()
            },
        ),
        (
            "SJD2 W=64 K=5",
            DecoderConfig {
                mode: Mode::Sjd2,
                window_len: 64.into(),
                ..base.clone()
            },
        ),
    ];
    let mut configs = configs;
    configs[2].1.sjd2.denoising_steps = 5;
    if let Some(only) = &args.only {
        configs.retain(|(name, _)| name.split(' ').next() == Some(only.as_str()));
    }
    println!(
        "toy transformer (width 32, 1 block), {0}x{0} image + row ends, guidance {1}, top-k {2}, \
         {3} images per cell, device {4}",
        args.grid,
        args.guidance,
        args.top_k.map_or("off".into(), |k| k.to_string()),
        args.images,
        args.device.device,
    );
    println!();
    println!(
        "| image vocab | decoder | passes / image | rows / pass | model ms / pass | rest of the loop ms / pass | sampling ms / pass | sampling µs / row |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for &vocab in &args.vocab {
        let model = ToyModel::new(
            ToyConfig {
                image_vocab: vocab,
                text_vocab: 8,
                rows: args.grid,
                cols: args.grid,
                row_end: true,
                end_of_image: true,
                hidden: 32,
                heads: 2,
                layers: 1,
                logit_scale: 4.0,
                seed: 1,
            },
            &device,
        )?;
        let timed = Timed::new(model.clone());
        let decoders = configs
            .iter()
            .map(|(_, c)| Sjd2Decoder::new(timed.clone(), c.clone()))
            .collect::<sjd2::core::Result<Vec<_>>>()?;
        let prompt = |i: usize| {
            Prompt::new(vec![model.config().text_token(i % 8)]).with_seed(100 + i as u64)
        };
        for d in &decoders {
            d.generate(&prompt(0))?;
        }
        let mut wall = vec![0f64; configs.len()];
        let mut inside = vec![0f64; configs.len()];
        let mut sampling = vec![0f64; configs.len()];
        let mut passes = vec![0usize; configs.len()];
        let mut rows = vec![0usize; configs.len()];
        for i in 0..args.images {
            for (c, d) in decoders.iter().enumerate() {
                timed.reset();
                let t = Instant::now();
                let g = d.generate(&prompt(i + 1))?;
                wall[c] += t.elapsed().as_secs_f64();
                inside[c] += timed.spent().as_secs_f64();
                sampling[c] += g.stats.sampling_time.as_secs_f64();
                passes[c] += g.stats.forward_passes;
                // Every pass samples its pending token's row and one row per drafted slot (the
                // prefill's row included).
                rows[c] += g.stats.windows.iter().map(|w| w + 1).sum::<usize>();
            }
        }
        for (c, (name, _)) in configs.iter().enumerate() {
            let n = passes[c] as f64;
            let rest = (wall[c] - inside[c] - sampling[c]).max(0.0);
            println!(
                "| {vocab} | {name} | {:.1} | {:.1} | {:.3} | {:.3} | {:.3} | {:.1} |",
                n / args.images as f64,
                rows[c] as f64 / n,
                inside[c] / n * 1e3,
                rest / n * 1e3,
                sampling[c] / n * 1e3,
                sampling[c] / rows[c] as f64 * 1e6,
            );
        }
    }
    Ok(())
}
