//! Time one forward pass for window lengths 1..128 on a randomly initialized backbone with a
//! published model's shape, after a prefilled context: `t(W) / t(1)` is what an SJD/SJD2 pass of
//! window `W` costs relative to an autoregressive step, so latency speed-ups at real scale can be
//! projected from the step compression measured on smaller models.
//!
//! ```text
//! cargo run --release --features wgpu --example gpu_bench -- --device wgpu --dtype f16 --preset lumina-7b
//! cargo run --release --example gpu_bench -- --preset tiny            # CPU smoke run
//! ```

mod common;

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Parser;
use sjd2::core::DecodeCache;
use sjd2::core::error::tensor_to_vec;
use sjd2::models::llama::{Backbone, BackboneConfig};
use sjd2::models::presets;

#[derive(Parser, Debug)]
#[command(about = "Forward-pass time against window length at a published model's shape")]
struct Args {
    #[command(flatten)]
    device: common::DeviceArgs,
    /// Shape: lumina-7b, emu3-8b, janus-pro-7b, or tiny.
    #[arg(long, default_value = "tiny")]
    preset: String,
    /// Prefilled context length.
    #[arg(long, default_value_t = 1024)]
    context: usize,
    /// Window lengths (the pass feeds W + 1 positions).
    #[arg(long, value_delimiter = ',', default_value = "0,1,3,7,15,31,63,127")]
    windows: Vec<usize>,
    /// Timed repetitions per window (median reported).
    #[arg(long, default_value_t = 5)]
    reps: usize,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let device = args.device.device()?;
    let config: BackboneConfig = match args.preset.as_str() {
        "lumina-7b" | "chameleon-7b" => presets::chameleon_7b(),
        "emu3-8b" => presets::emu3_gen(),
        "janus-pro-7b" => presets::janus_pro_7b(),
        "tiny" => BackboneConfig {
            hidden: 256,
            layers: 4,
            heads: 4,
            kv_heads: 4,
            head_dim: 64,
            intermediate: 688,
            vocab: 1024,
            output_vocab: 1024,
            ..presets::chameleon_7b()
        },
        other => bail!("unknown preset {other}"),
    };
    let max_w = args.windows.iter().copied().max().unwrap_or(0) + 1;
    let config = BackboneConfig {
        max_positions: config.max_positions.max(args.context + max_w + 1),
        ..config
    };
    println!(
        "preset {} on {} ({}): {:.2} B parameters, context {}",
        args.preset,
        args.device.device,
        args.device.dtype,
        sjd2::models::presets::parameter_count(&config) as f64 / 1e9,
        args.context
    );
    let t = Instant::now();
    let model = Backbone::random(config.clone(), &device)?;
    println!(
        "random weights created in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let mut cache = model.new_cache(1, args.context + max_w + 1)?;
    let ids = |n: usize| {
        let v: Vec<i64> = (0..n).map(|i| (i % config.vocab) as i64).collect();
        burn::Tensor::<2, burn::tensor::Int>::from_data(
            burn::tensor::TensorData::new(v, [1, n]),
            &device,
        )
    };
    let t = Instant::now();
    let out = model.forward(&mut cache, model.embed(ids(args.context)), false)?;
    let _ = tensor_to_vec(
        model.logits(out.hidden).narrow(1, args.context - 1, 1),
        "prefill logits",
    )?;
    println!(
        "prefill of {} tokens: {:.1} ms",
        args.context,
        t.elapsed().as_secs_f64() * 1e3
    );
    println!("| window W | positions fed | median ms | t(W)/t(0) |");
    println!("|---|---|---|---|");
    let mut base = None;
    for &w in &args.windows {
        let mut times: Vec<Duration> = Vec::with_capacity(args.reps + 1);
        for rep in 0..=args.reps {
            let t = Instant::now();
            let out = model.forward(&mut cache, model.embed(ids(w + 1)), false)?;
            // Reading the logits back synchronizes the device, as a decoding step does.
            let _ = tensor_to_vec(model.logits(out.hidden), "window logits")?;
            if rep > 0 {
                times.push(t.elapsed());
            }
            cache.rollback_to(0, args.context)?;
        }
        times.sort();
        let ms = times[times.len() / 2].as_secs_f64() * 1e3;
        let b = *base.get_or_insert(ms);
        println!("| {w} | {} | {ms:.2} | {:.2} |", w + 1, ms / b);
    }
    Ok(())
}
