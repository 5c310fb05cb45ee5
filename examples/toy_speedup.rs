//! AR vs SJD vs SJD2 (independent and coupled draft updates) on the built-in toy model: forward
//! passes, step compression and time.
//!
//! ```text
//! cargo run --release --example toy_speedup
//! cargo run --release --example toy_speedup -- --samples 64 --window 16 --greedy
//! ```
//!
//! Every configuration decodes the same prompts with the same seeds, interleaved in one run, so
//! the ratios are comparable. The toy model is untrained (random weights), so these numbers show
//! the mechanics and the bookkeeping, not the speed-ups of a real or fine-tuned model. On this
//! tiny model a pass costs so little that burn's CPU threading overhead dominates, and a window of
//! 17 positions costs several single-token passes; expect step compression well above 1 but a
//! latency speed-up below 1 here.

mod common;

use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Parser;
use sjd2::core::testing::{ToyConfig, ToyModel};
use sjd2::{DecoderConfig, DraftInit, DraftUpdate, Prompt, Sampling, Sjd2Decoder};

#[derive(Parser, Debug)]
#[command(about = "Compare AR, SJD and SJD2 on the toy model")]
struct Args {
    #[command(flatten)]
    device: common::DeviceArgs,
    /// Images per configuration.
    #[arg(long, default_value_t = 32)]
    samples: usize,
    /// Window length for SJD and SJD2.
    #[arg(long, default_value_t = 16)]
    window: usize,
    /// Greedy decoding instead of sampling at temperature 1.
    #[arg(long)]
    greedy: bool,
    /// Classifier-free guidance scale (1 = off).
    #[arg(long, default_value_t = 3.0)]
    guidance: f32,
    /// First seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let device = args.device.device()?;
    let model = ToyModel::new(
        ToyConfig {
            image_vocab: 64,
            text_vocab: 8,
            rows: 8,
            cols: 8,
            row_end: true,
            end_of_image: true,
            hidden: 64,
            heads: 4,
            layers: 2,
            logit_scale: 4.0,
            seed: 1,
        },
        &device,
    )?;
    let sampling = if args.greedy {
        Sampling::Greedy
    } else {
        Sampling::default()
    };
    let base = DecoderConfig {
        sampling,
        guidance_scale: args.guidance,
        window_len: args.window.into(),
        ..DecoderConfig::autoregressive()
    };
    let mut configs: Vec<(String, DecoderConfig)> = vec![("AR".into(), base.clone())];
    for (name, init) in [
        ("random", DraftInit::Random),
        ("horizontal", DraftInit::HorizontalRepeat),
        ("vertical", DraftInit::VerticalRepeat),
    ] {
        configs.push((
            format!("SJD W={} {name}", args.window),
            DecoderConfig {
                draft_init: init,
                ..DecoderConfig {
                    mode: sjd2::Mode::Sjd,
                    ..base.clone()
                }
            },
        ));
    }
    let mut sjd2 = DecoderConfig {
        mode: sjd2::Mode::Sjd2,
        ..base.clone()
    };
    sjd2.sjd2.denoising_steps = 8;
    configs.push((format!("SJD2 W={} K=8", args.window), sjd2.clone()));
    // The same decoders with coupled draft updates (MC-SJD).
    configs.push((
        format!("SJD W={} random, coupled", args.window),
        DecoderConfig {
            mode: sjd2::Mode::Sjd,
            draft_update: DraftUpdate::Coupled,
            ..base.clone()
        },
    ));
    configs.push((
        format!("SJD2 W={} K=8, coupled", args.window),
        DecoderConfig {
            draft_update: DraftUpdate::Coupled,
            ..sjd2
        },
    ));

    let decoders = configs
        .iter()
        .map(|(_, c)| Sjd2Decoder::new(model.clone(), c.clone()))
        .collect::<sjd2::core::Result<Vec<_>>>()?;
    let mut passes = vec![0usize; configs.len()];
    let mut tokens = vec![0usize; configs.len()];
    let mut times = vec![Duration::ZERO; configs.len()];
    for i in 0..args.samples {
        let prompt =
            Prompt::new(vec![model.config().text_token(i % 8)]).with_seed(args.seed + i as u64);
        // Interleave configurations so that machine noise hits them alike.
        for (c, d) in decoders.iter().enumerate() {
            let t = Instant::now();
            let g = d.generate(&prompt)?;
            times[c] += t.elapsed();
            passes[c] += g.stats.forward_passes;
            tokens[c] += g.tokens.len();
        }
    }
    println!(
        "toy model: {}x{} image + row ends ({} tokens), {} images, sampling {:?}, guidance {}",
        8,
        8,
        tokens[0] / args.samples,
        args.samples,
        sampling,
        args.guidance
    );
    println!(
        "| configuration | forward passes / image | step compression | ms / image | latency speed-up |"
    );
    println!("|---|---|---|---|---|");
    let ar_time = times[0].as_secs_f64();
    for (c, (name, _)) in configs.iter().enumerate() {
        println!(
            "| {name} | {:.1} | {:.2}x | {:.1} | {:.2}x |",
            passes[c] as f64 / args.samples as f64,
            tokens[c] as f64 / passes[c] as f64,
            times[c].as_secs_f64() * 1000.0 / args.samples as f64,
            ar_time / times[c].as_secs_f64(),
        );
    }
    Ok(())
}
