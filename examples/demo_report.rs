//! Evaluates the demo model on held-out prompts: caption faithfulness, forward passes per image,
//! tokens per pass, time, and the image-token NLL under the base model, for AR (base), AR
//! (fine-tuned), SJD (base) and SJD2 (fine-tuned), SJD and SJD2 each with independent and with
//! coupled draft updates ([`sjd2::DraftUpdate`]), all in one run. Writes `report.md`,
//! `report.json` and a contact sheet into `--out`.
//!
//! ```text
//! cargo run --release --example demo_report -- --prompts 200
//! ```

mod common;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use sjd2::models::demo::{DemoConfig, DemoModel, DemoWeights};
use sjd2::models::vq::{ImageDecoder, Rgb8, save_png, tile, to_rgb8};
use sjd2::{DecoderConfig, DraftUpdate, Mode, Prompt, Sampling, Sjd2Decoder};
use sjd2_train::eval::{Faithfulness, ImageScore, held_out, image_token_nll, score_image};
use sjd2_train::run::{HELDOUT_SEED, images_tensor};
use sjd2_train::shapes::Sample;

#[derive(Parser, Debug)]
#[command(about = "Evaluate the demo model: AR vs SJD vs SJD2 on held-out prompts")]
struct Args {
    /// Demo model directory.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/demo"))]
    model: PathBuf,
    /// Held-out prompts.
    #[arg(long, default_value_t = 200)]
    prompts: usize,
    /// Prompts per batch.
    #[arg(long, default_value_t = 10)]
    batch: usize,
    /// Sampling temperature.
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// Top-k (0 = off).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// Guidance scale (default: the model's).
    #[arg(long)]
    guidance: Option<f32>,
    /// SJD window: a length, `auto` or `auto:MAX`.
    #[arg(long, default_value_t = sjd2::Window::Fixed(sjd2::demo::SJD_WINDOW))]
    sjd_window: sjd2::Window,
    /// SJD2 window: a length, `auto` or `auto:MAX`.
    #[arg(long, default_value_t = sjd2::Window::Fixed(sjd2::demo::SJD2_WINDOW))]
    sjd2_window: sjd2::Window,
    /// Sampling seeds: prompt `i` is decoded with seed `i + 1 000 000 · sample_seed` (0: the
    /// seeds of the shipped report). Several values give independent samples of the same prompts.
    #[arg(long, default_value_t = 0)]
    sample_seed: u64,
    /// Only these configurations (comma-separated names from the table); all by default.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    #[command(flatten)]
    device: common::DeviceArgs,
    /// Output directory.
    #[arg(long, default_value = "target/demo-report")]
    out: PathBuf,
}

struct Row {
    name: String,
    faith: Faithfulness,
    passes: f64,
    tokens_per_pass: f64,
    seconds_per_image: f64,
    nll_base: f64,
    images: Vec<Rgb8>,
}

fn config_for(args: &Args, c: &DemoConfig, mode: Mode, update: DraftUpdate) -> DecoderConfig {
    let mut d = sjd2::demo::decoder_config(c, mode);
    d.draft_update = update;
    match mode {
        Mode::Sjd => d.window_len = args.sjd_window,
        Mode::Sjd2 => d.window_len = args.sjd2_window,
        _ => {}
    }
    d.sampling = Sampling::Multinomial {
        temperature: args.temperature,
        top_k: (args.top_k > 0).then_some(args.top_k),
        top_p: None,
    };
    if let Some(g) = args.guidance {
        d.guidance_scale = g;
    }
    d
}

#[allow(clippy::too_many_arguments)]
fn run(
    name: &str,
    args: &Args,
    demo: &DemoModel,
    base: &DemoModel,
    mode: Mode,
    update: DraftUpdate,
    prompts: &[Prompt],
    samples: &[Sample],
) -> Result<Row> {
    let c = &demo.config;
    let decoder = Sjd2Decoder::new(demo.model.clone(), config_for(args, c, mode, update))?;
    let mut scores: Vec<ImageScore> = Vec::new();
    let mut passes = 0usize;
    let mut tokens = 0usize;
    let mut seconds = 0.0;
    let mut images = Vec::new();
    let mut nll_items = Vec::new();
    for (chunk_p, chunk_s) in prompts.chunks(args.batch).zip(samples.chunks(args.batch)) {
        let t0 = Instant::now();
        let gens = decoder.generate_batch(chunk_p)?;
        seconds += t0.elapsed().as_secs_f64();
        for ((g, s), p) in gens.iter().zip(chunk_s).zip(chunk_p) {
            passes += g.stats.forward_passes;
            tokens += g.stats.tokens();
            let codes = demo.model.image_codes(&g.tokens)?;
            let img = to_rgb8(demo.vq.decode(&codes, c.grid, c.grid)?)?;
            scores.push(score_image(&img.pixels, img.width, &s.objects));
            let mut prefix = p.tokens.clone();
            prefix.push(c.boi());
            nll_items.push((prefix, g.tokens.clone()));
            if images.len() < 8 {
                images.push(img);
            }
        }
    }
    let n = prompts.len() as f64;
    let nll_base = image_token_nll(&base.model, &nll_items, c.pad, args.batch)?;
    let row = Row {
        name: name.to_string(),
        faith: Faithfulness::from_scores(&scores),
        passes: passes as f64 / n,
        tokens_per_pass: tokens as f64 / passes.max(1) as f64,
        seconds_per_image: seconds / n,
        nll_base,
        images,
    };
    eprintln!(
        "{name}: faithfulness {:.1}, {:.1} passes per image, {:.3} s per image",
        row.faith.score, row.passes, row.seconds_per_image
    );
    Ok(row)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let device = args.device.device()?;
    let base = DemoModel::load(&args.model, DemoWeights::Base, &device)
        .with_context(|| format!("loading {}", args.model.display()))?;
    let tuned = DemoModel::load(&args.model, DemoWeights::Sjd2, &device)?;
    let c = base.config.clone();
    let (samples, prompts) = held_out(&base.tokenizer, args.prompts, c.image_size)?;
    let prompts: Vec<Prompt> = prompts
        .into_iter()
        .enumerate()
        .map(|(i, p)| p.with_seed(i as u64 + 1_000_000 * args.sample_seed))
        .collect();
    std::fs::create_dir_all(&args.out)?;

    // References: the dataset's own images and their VQ reconstructions.
    let gt: Vec<ImageScore> = samples
        .iter()
        .map(|s| score_image(&s.pixels, s.size, &s.objects))
        .collect();
    let mut recon_scores = Vec::new();
    let mut recon_images = Vec::new();
    let mut real_items = Vec::new();
    for (s, p) in samples.iter().zip(&prompts) {
        let t = images_tensor(&[s.pixels.as_slice()], s.size, &device);
        let (codes, h, w) = base.vq.encode(t)?;
        let img = to_rgb8(base.vq.decode(&codes, h, w)?)?;
        recon_scores.push(score_image(&img.pixels, img.width, &s.objects));
        if recon_images.len() < 8 {
            recon_images.push(img);
        }
        let mut prefix = p.tokens.clone();
        prefix.push(c.boi());
        let mut seq = Vec::new();
        for row in codes.chunks(c.grid) {
            seq.extend(row.iter().map(|&k| c.image_start() + k));
            seq.push(c.eol());
        }
        real_items.push((prefix, seq));
    }
    let nll_real_base = image_token_nll(&base.model, &real_items, c.pad, args.batch)?;
    let nll_real_tuned = image_token_nll(&tuned.model, &real_items, c.pad, args.batch)?;

    let wanted = |n: &str| args.only.is_empty() || args.only.iter().any(|o| o == n);
    let mut rows = Vec::new();
    let (ind, cpl) = (DraftUpdate::Independent, DraftUpdate::Coupled);
    for (name, model, mode, update) in [
        ("ar-base", &base, Mode::Autoregressive, ind),
        ("ar-sjd2", &tuned, Mode::Autoregressive, ind),
        ("sjd-base", &base, Mode::Sjd, ind),
        ("sjd-base-coupled", &base, Mode::Sjd, cpl),
        ("sjd2-sjd2", &tuned, Mode::Sjd2, ind),
        ("sjd2-sjd2-coupled", &tuned, Mode::Sjd2, cpl),
    ] {
        if wanted(name) {
            rows.push(run(
                name, &args, model, &base, mode, update, &prompts, &samples,
            )?);
        }
    }

    let gt_f = Faithfulness::from_scores(&gt);
    let rc_f = Faithfulness::from_scores(&recon_scores);
    let ar_passes = rows.iter().find(|r| r.name == "ar-base").map(|r| r.passes);
    let mut md = String::new();
    md.push_str(&format!(
        "{} held-out prompts (seed {HELDOUT_SEED}, sampling seeds from {}), temperature {}, top-k {}, guidance {}, SJD window {}, SJD2 window {} with K = {} ({}).\n\n",
        args.prompts,
        1_000_000 * args.sample_seed,
        args.temperature,
        args.top_k,
        args.guidance.unwrap_or(c.guidance_scale),
        args.sjd_window,
        args.sjd2_window,
        tuned.config.denoising_steps.unwrap_or(20),
        tuned.config.level_conditioning.as_deref().unwrap_or("none"),
    ));
    md.push_str("| configuration | faithfulness | colour+cell | +shape | +size | extra/img | passes/img | vs AR | tokens/pass | s/img | NLL under base |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
    md.push_str(&format!(
        "| dataset images | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | | | | | |\n",
        gt_f.score, gt_f.colour_and_cell, gt_f.shape, gt_f.size, gt_f.extra_per_image
    ));
    md.push_str(&format!(
        "| VQ reconstructions | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | | | | | {:.3} (fine-tuned: {:.3}) |\n",
        rc_f.score, rc_f.colour_and_cell, rc_f.shape, rc_f.size, rc_f.extra_per_image, nll_real_base, nll_real_tuned
    ));
    for r in &rows {
        let f = &r.faith;
        md.push_str(&format!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {:.1} | {} | {:.2} | {:.3} | {:.3} |\n",
            r.name,
            f.score,
            f.colour_and_cell,
            f.shape,
            f.size,
            f.extra_per_image,
            r.passes,
            ar_passes.map_or("".into(), |a| format!("{:.2}×", a / r.passes)),
            r.tokens_per_pass,
            r.seconds_per_image,
            r.nll_base
        ));
    }
    println!("{md}");
    std::fs::write(args.out.join("report.md"), &md)?;
    let json = serde_json::json!({
        "prompts": args.prompts,
        "nll_real_base": nll_real_base,
        "nll_real_finetuned": nll_real_tuned,
        "dataset_faithfulness": gt_f.score,
        "recon_faithfulness": rc_f.score,
        "rows": rows.iter().map(|r| serde_json::json!({
            "name": r.name, "faithfulness": r.faith.score, "colour_and_cell": r.faith.colour_and_cell,
            "shape": r.faith.shape, "size": r.faith.size, "extra_per_image": r.faith.extra_per_image,
            "passes_per_image": r.passes, "tokens_per_pass": r.tokens_per_pass,
            "seconds_per_image": r.seconds_per_image, "nll_under_base": r.nll_base,
        })).collect::<Vec<_>>(),
    });
    std::fs::write(args.out.join("report.json"), json.to_string())?;
    let mut grid = vec![
        samples
            .iter()
            .take(8)
            .map(|s| Rgb8 {
                width: s.size,
                height: s.size,
                pixels: s.pixels.clone(),
            })
            .collect::<Vec<_>>(),
        recon_images,
    ];
    grid.extend(rows.iter().map(|r| r.images.clone()));
    save_png(args.out.join("contact.png"), &tile(&grid, 2, 255))?;
    let captions: Vec<String> = samples.iter().take(8).map(|s| s.caption.clone()).collect();
    std::fs::write(args.out.join("captions.txt"), captions.join("\n"))?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}
