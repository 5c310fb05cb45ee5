//! SJD2 fine-tuning of a published model (or its tiny fixture): prepare data, train (LoRA or
//! full), export a checkpoint that `generate` decodes with SJD2 automatically.
//!
//! ```text
//! # 1. Captioned images (a Hugging Face imagefolder: images + metadata.jsonl with file_name/text)
//! #    to token shards, with the family's own VQ encoder and prompt template:
//! cargo run --release --example finetune -- prepare --family lumina-mgpt \
//!     --weights Lumina-mGPT-7B-768 --vq vqgan.ckpt --size 768 --data my-images --out prepared
//! # 2. Next-clean-token training (LoRA rank 16 by default; --full for full fine-tuning);
//! #    resumes from the run directory's last checkpoint:
//! cargo run --release --example finetune -- train --family lumina-mgpt \
//!     --weights Lumina-mGPT-7B-768 --size 768 --data prepared --run run --steps 2000 --device cuda
//! # 3. Merge and write the checkpoint in the family's layout, with sjd2.json:
//! cargo run --release --example finetune -- export --family lumina-mgpt \
//!     --weights Lumina-mGPT-7B-768 --size 768 --run run --out Lumina-mGPT-7B-768-sjd2
//! cargo run --release --example generate -- --family lumina-mgpt --weights Lumina-mGPT-7B-768-sjd2 \
//!     --vq vqgan.ckpt --size 768 --prompt "a red apple on a wooden table"
//! ```
//!
//! See docs/finetuning.md for memory, time and settings.

mod common;
#[allow(dead_code)]
#[path = "common/families.rs"]
mod families;
#[path = "common/plot.rs"]
mod plot;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use sjd2::core::JacobiDenoiser;
use sjd2::models::demo::{DemoModel, DemoWeights};
use sjd2::models::prompt::Template;
use sjd2::models::vq::ImageEncoder;
use sjd2::{Device, Mode};
use sjd2_train::finetune::{
    DataSpec, FinetuneOptions, Finetuner, LoraOptions, PrepareOptions, Sjd2Settings, export,
    load_prepared, load_trained, prepare,
};

#[derive(Parser, Debug)]
#[command(about = "SJD2 fine-tuning: prepare data, train, export")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Debug)]
struct Common {
    #[command(flatten)]
    device: common::DeviceArgs,
    #[command(flatten)]
    model: families::ModelArgs,
    /// Without `--family`: the demo model directory (its base model is fine-tuned).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/demo"))]
    demo: PathBuf,
}

/// A model to fine-tune: a published family, or the demo model without `--family`.
struct Target {
    loaded: families::Loaded,
    encoder: Option<Box<dyn ImageEncoder>>,
    family: String,
    demo: Option<DemoModel>,
}

impl Common {
    fn target(&self, device: &Device, with_encoder: bool) -> Result<Target> {
        if self.model.family.is_some() {
            let loaded = self.model.load(device)?;
            let encoder = if with_encoder {
                Some(self.model.image_encoder(device)?)
            } else {
                None
            };
            let family = format!("{:?}", self.model.family()?);
            return Ok(Target {
                loaded,
                encoder,
                family,
                demo: None,
            });
        }
        let demo = DemoModel::load(&self.demo, DemoWeights::Base, device)
            .with_context(|| format!("loading the demo model from {}", self.demo.display()))?;
        let loaded = families::Loaded {
            model: demo.model.clone(),
            decoder: Box::new(demo.vq.clone()),
            prompts: families::PromptSource::Text(
                Box::new(demo.tokenizer.clone()),
                Template::Chameleon,
            ),
            source: self.demo.join(DemoWeights::Base.file_name()),
        };
        Ok(Target {
            loaded,
            encoder: Some(Box::new(demo.vq.clone())),
            family: demo.config.family.clone(),
            demo: Some(demo),
        })
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Captioned images to token shards.
    Prepare {
        #[command(flatten)]
        c: Common,
        /// An imagefolder (images + metadata.jsonl), or a .jsonl / .csv of image,caption pairs.
        #[arg(long)]
        data: PathBuf,
        /// Output folder (resumed when it exists).
        #[arg(long)]
        out: PathBuf,
        /// Examples per shard.
        #[arg(long, default_value_t = 1024)]
        shard_size: usize,
        /// Images per encoder call.
        #[arg(long, default_value_t = 8)]
        encode_batch: usize,
    },
    /// Next-clean-token training; resumes from the run directory.
    Train {
        #[command(flatten)]
        c: Common,
        /// Prepared data folder.
        #[arg(long)]
        data: PathBuf,
        /// Run directory (checkpoints, state, log, loss curve).
        #[arg(long)]
        run: PathBuf,
        /// Full fine-tuning of the transformer instead of LoRA.
        #[arg(long)]
        full: bool,
        /// LoRA rank.
        #[arg(long, default_value_t = 16)]
        lora_rank: usize,
        /// LoRA alpha (default: 2 × rank).
        #[arg(long)]
        lora_alpha: Option<f64>,
        /// Adapt only the attention projections (default: attention and MLP).
        #[arg(long)]
        lora_attention_only: bool,
        /// Optimizer steps.
        #[arg(long, default_value_t = 1000)]
        steps: usize,
        /// Sequences per micro-batch.
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// Micro-batches per step.
        #[arg(long, default_value_t = 1)]
        grad_accum: usize,
        /// Peak learning rate.
        #[arg(long, default_value_t = 1e-4)]
        lr: f64,
        /// Warm-up steps.
        #[arg(long, default_value_t = 50)]
        warmup: usize,
        /// Noise levels K.
        #[arg(long, default_value_t = 20)]
        levels: usize,
        /// Steps between checkpoints.
        #[arg(long, default_value_t = 100)]
        checkpoint_every: usize,
        /// Held-out examples (evaluated at every checkpoint).
        #[arg(long, default_value_t = 16)]
        held_out: usize,
        /// Clip each parameter's gradient to this norm (0: no clipping).
        #[arg(long, default_value_t = 1.0)]
        clip: f32,
        /// Train data-parallel on these devices (for example cuda:0,cuda:1; default: --device).
        #[arg(long, value_delimiter = ',')]
        devices: Vec<String>,
        /// At every checkpoint, decode this many held-out prompts with SJD2 and print the
        /// forward passes per image (0: no evaluation).
        #[arg(long, default_value_t = 0)]
        eval_images: usize,
        /// Seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Merge the run's last checkpoint and write it in the family's layout with sjd2.json.
    Export {
        #[command(flatten)]
        c: Common,
        /// Run directory.
        #[arg(long)]
        run: PathBuf,
        /// New output directory.
        #[arg(long)]
        out: PathBuf,
        /// Noise levels K the decoder uses (default: the K trained with; Karras levels at
        /// t = k/K lie on one curve, so a fine-tune at K = 20 serves a smaller K).
        #[arg(long)]
        decoder_steps: Option<usize>,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Prepare {
            c,
            data,
            out,
            shard_size,
            encode_batch,
        } => {
            let device = c.device.device()?;
            let t = c.target(&device, true)?;
            let Some(vq) = t.encoder else {
                bail!("no image encoder loaded");
            };
            let loaded = t.loaded;
            let layout = loaded.model.layout().clone();
            let f = vq.downsample();
            let spec = DataSpec {
                family: t.family.clone(),
                image_height: layout.rows() * f,
                image_width: layout.cols() * f,
                grid_rows: layout.rows(),
                grid_cols: layout.cols(),
                codebook_size: vq.codebook_size(),
            };
            let opts = PrepareOptions {
                spec,
                shard_size,
                encode_batch,
            };
            let bar = ProgressBar::new(0).with_style(ProgressStyle::with_template(
                "{bar:40} {pos}/{len} entries, {msg} [{elapsed} < {eta}]",
            )?);
            let prompts = &loaded.prompts;
            let m = prepare(
                &data,
                &out,
                &opts,
                |text| {
                    prompts
                        .prompt(Some(text), &[], 0)
                        .map(|p| p.tokens)
                        .map_err(|e| e.to_string())
                },
                |images| Ok(vq.encode_batch(images)?),
                &device,
                |p| {
                    bar.set_length(p.entries as u64);
                    bar.set_position(p.processed as u64);
                    bar.set_message(format!("{} stored, {} skipped", p.stored, p.skipped));
                },
            )?;
            bar.finish();
            println!(
                "{} examples in {} shards; {} skipped (listed in {}/manifest.json)",
                m.examples(),
                m.shards.len(),
                m.skipped.len(),
                out.display()
            );
        }
        Command::Train {
            c,
            data,
            run,
            full,
            lora_rank,
            lora_alpha,
            lora_attention_only,
            steps,
            batch,
            grad_accum,
            lr,
            warmup,
            levels,
            checkpoint_every,
            held_out,
            seed,
            clip,
            devices,
            eval_images,
        } => {
            let inference = c.device.device()?;
            let device = inference.clone().autodiff();
            let t = c.target(&device, false)?;
            let loaded = t.loaded;
            let (manifest, examples) = load_prepared(&data)?;
            let layout = loaded.model.layout();
            let family = t.family;
            if manifest.spec.family != family {
                bail!(
                    "{} was prepared for {}, not {family}",
                    data.display(),
                    manifest.spec.family
                );
            }
            if manifest.spec.grid_rows != layout.rows() || manifest.spec.grid_cols != layout.cols()
            {
                bail!(
                    "{} was prepared for a {}x{} grid ({}), this model decodes {}x{}: prepare it for this model (--size)",
                    data.display(),
                    manifest.spec.grid_rows,
                    manifest.spec.grid_cols,
                    manifest.spec.family,
                    layout.rows(),
                    layout.cols()
                );
            }
            let lora = (!full).then(|| {
                let mut l = LoraOptions::new(lora_rank);
                if let Some(a) = lora_alpha {
                    l.alpha = a;
                }
                if lora_attention_only {
                    l.targets = vec![sjd2_train::finetune::train::targets::ATTENTION.into()];
                }
                l
            });
            let mut opts = FinetuneOptions {
                lora,
                steps,
                batch,
                grad_accum,
                lr,
                warmup,
                checkpoint_every,
                held_out,
                seed,
                clip_norm: (clip > 0.0).then_some(clip),
                ..FinetuneOptions::default()
            };
            opts.noise.levels = levels;
            let devices = devices
                .iter()
                .map(|d| {
                    let args = common::DeviceArgs {
                        device: d.clone(),
                        dtype: c.device.dtype.clone(),
                    };
                    Ok(args.device()?.autodiff())
                })
                .collect::<Result<Vec<_>>>()?;
            // The quick evaluation decodes as `generate` would (the demo's settings, or a
            // family's defaults), with the noisy inputs the fine-tune trains for.
            let eval_base = match &t.demo {
                Some(d) => sjd2::demo::decoder_config(&d.config, Mode::Sjd2),
                None => families::default_decoder(Mode::Sjd2),
            };
            let mut tuner =
                Finetuner::new(loaded.model, examples, opts, &run)?.with_devices(devices);
            let bar = ProgressBar::new(steps as u64).with_style(ProgressStyle::with_template(
                "{bar:40} {pos}/{len} steps, {msg} [{elapsed} < {eta}]",
            )?);
            bar.set_position(tuner.step() as u64);
            tuner.run(
                |s| {
                    bar.set_position(s.step as u64 + 1);
                    bar.set_message(format!(
                        "loss {:.3} (clean inputs {:.3}), {:.0} tokens/s, lr {:.2e}",
                        s.loss, s.clean_loss, s.tokens_per_s, s.lr
                    ));
                },
                |t| {
                    let l = t.held_out_loss()?;
                    // Printed even when the bar is hidden (no terminal), unlike bar.println.
                    bar.suspend(|| {
                        println!("step {}: held-out next-clean-token loss {l:.4}", t.step())
                    });
                    if eval_images > 0 {
                        let e = t.quick_eval(eval_images, &inference, eval_base.clone())?;
                        bar.suspend(|| {
                            println!(
                                "step {}: SJD2 {:.1} passes per image over {} held-out prompts ({:.0} tokens, {:.2}x fewer passes than AR)",
                                e.step,
                                e.passes_per_image,
                                e.images,
                                e.tokens_per_image,
                                e.step_compression()
                            )
                        });
                    }
                    Ok(())
                },
            )?;
            bar.finish();
            if plot::plot_log(&run.join("log.jsonl"), &run.join("loss.png"))? {
                println!("checkpoints, log.jsonl and loss.png in {}", run.display());
            } else {
                println!(
                    "checkpoints and log.jsonl in {} (no font installed: loss.png not drawn)",
                    run.display()
                );
            }
        }
        Command::Export {
            c,
            run,
            out,
            decoder_steps,
        } => {
            let device = c.device.device()?;
            let t = c.target(&device, false)?;
            let loaded = t.loaded;
            let (model, opts, step) = load_trained(loaded.model, &run)?;
            let mut settings = opts.settings();
            if let Some(k) = decoder_steps {
                settings.denoising_steps = k;
            }
            settings.training = serde_json::json!({"steps": step, "options": opts_json(&opts)?});
            let report = export(&model, &loaded.source, &out, &settings)
                .with_context(|| format!("exporting to {}", out.display()))?;
            if let Some(demo) = &t.demo {
                demo_layout(demo, &out, &settings)?;
            }
            println!(
                "{}: {} trained tensors, {} copied, files {:?}, sjd2.json (K = {})",
                report.weights.display(),
                report.trained,
                report.copied,
                report.files,
                settings.denoising_steps
            );
        }
    }
    Ok(())
}

/// Turns an export of the demo model into a demo model directory that `generate --model` and
/// `demo_report --model` read: the fine-tune as `sjd2.safetensors` beside the base model and the
/// VQ, and the decoder settings in `config.json`.
fn demo_layout(demo: &DemoModel, out: &std::path::Path, s: &Sjd2Settings) -> Result<()> {
    std::fs::rename(
        out.join("model.safetensors"),
        out.join(DemoWeights::Sjd2.file_name()),
    )?;
    for f in [DemoWeights::Base.file_name(), "vq.safetensors"] {
        std::fs::copy(demo.dir.join(f), out.join(f))?;
    }
    let mut config = demo.config.clone();
    config.denoising_steps = Some(s.denoising_steps);
    config.level_conditioning = Some(s.level_conditioning.clone());
    std::fs::write(
        out.join("config.json"),
        serde_json::to_string_pretty(&config)?,
    )?;
    Ok(())
}

fn opts_json(o: &FinetuneOptions) -> Result<serde_json::Value> {
    Ok(serde_json::to_value(o)?)
}
