//! Trains the demo text-to-image model, one stage per subcommand. Every stage writes to its own
//! run directory, checkpoints as it goes and resumes where it stopped when run again.
//!
//! ```text
//! cargo run --release --features x86-v4 --example train_demo -- vq       --dir runs/vq
//! cargo run --release --features x86-v4 --example train_demo -- ar       --dir runs/ar --vq runs/vq
//! cargo run --release --features x86-v4 --example train_demo -- finetune --dir runs/sjd2 --vq runs/vq --base runs/ar
//! cargo run --release --features x86-v4 --example train_demo -- package  --vq runs/vq --base runs/ar --sjd2 runs/sjd2 --out assets/demo
//! ```
//!
//! `--device wgpu` (with `--features wgpu`) trains on a GPU: `train_demo --device wgpu ar …`.
//! See `docs/demo-model.md` for the stages, their settings and measured wall times.

use std::path::{Path, PathBuf};

mod common;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use sjd2::Device;
use sjd2_models::vq::VqModel;
use sjd2_train::lm_train::{
    LevelInput, LmTrainOptions, NoiseOptions, SegmentPattern, demo_config, train_lm,
};
use sjd2_train::run::RunDir;
use sjd2_train::vq::demo_vq;
use sjd2_train::vq_train::{VqTrainOptions, train_vq};

#[derive(Parser, Debug)]
#[command(about = "Train the sjd2 demo model, stage by stage")]
struct Cli {
    #[command(flatten)]
    device: common::DeviceArgs,
    #[command(subcommand)]
    stage: Stage,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Pattern {
    Constant,
    Increasing,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Conditioning {
    None,
    Sinusoidal,
}

#[derive(Subcommand, Debug)]
enum Stage {
    /// Stage 1: the VQ image tokenizer (64×64 RGB → 16×16 codes).
    Vq {
        /// Run directory (resumed if it holds a checkpoint).
        #[arg(long, default_value = "runs/vq")]
        dir: PathBuf,
        /// Optimizer steps.
        #[arg(long, default_value_t = 2000)]
        steps: usize,
        /// Images per step.
        #[arg(long, default_value_t = 16)]
        batch: usize,
    },
    /// Stage 2: the next-token transformer, with prompt dropout for CFG.
    Ar {
        /// Run directory (resumed if it holds a checkpoint).
        #[arg(long, default_value = "runs/ar")]
        dir: PathBuf,
        /// The VQ stage's run directory (or a model directory such as `assets/demo`).
        #[arg(long, default_value = "runs/vq")]
        vq: PathBuf,
        /// Optimizer steps.
        #[arg(long, default_value_t = 2800)]
        steps: usize,
        /// Sequences per step.
        #[arg(long, default_value_t = 16)]
        batch: usize,
        /// Peak learning rate.
        #[arg(long, default_value_t = 1e-3)]
        lr: f64,
        /// Start from shipped inference weights (for example `assets/demo/base.safetensors`)
        /// instead of a random initialization, when the run directory has no checkpoint yet.
        #[arg(long)]
        init: Option<PathBuf>,
        /// The step `--init` was trained to: training continues from it (learning-rate schedule
        /// and data position), e.g. `--init assets/demo/base.safetensors --init-step 6000
        /// --steps 10000` continues the shipped base.
        #[arg(long, default_value_t = 0)]
        init_step: usize,
    },
    /// Stage 3: the SJD2 next-clean-token fine-tune of the stage-2 model.
    Finetune {
        /// Run directory (resumed if it holds a checkpoint).
        #[arg(long, default_value = "runs/sjd2")]
        dir: PathBuf,
        /// The VQ stage's run directory.
        #[arg(long, default_value = "runs/vq")]
        vq: PathBuf,
        /// The AR stage's run directory (its final checkpoint is the starting point).
        #[arg(long, default_value = "runs/ar")]
        base: PathBuf,
        /// Optimizer steps.
        #[arg(long, default_value_t = 1000)]
        steps: usize,
        /// Sequences per step.
        #[arg(long, default_value_t = 16)]
        batch: usize,
        /// Peak learning rate.
        #[arg(long, default_value_t = 3e-4)]
        lr: f64,
        /// Segment noise pattern.
        #[arg(long, value_enum, default_value = "increasing")]
        pattern: Pattern,
        /// Level conditioning.
        #[arg(long, value_enum, default_value = "sinusoidal")]
        conditioning: Conditioning,
        /// Noise levels K.
        #[arg(long, default_value_t = 20)]
        levels: usize,
    },
    /// Assembles a model directory: config.json, base.safetensors, sjd2.safetensors,
    /// vq.safetensors, tokenizer.json.
    Package {
        /// The VQ stage's run directory.
        #[arg(long, default_value = "runs/vq")]
        vq: PathBuf,
        /// The AR stage's run directory.
        #[arg(long, default_value = "runs/ar")]
        base: PathBuf,
        /// The fine-tune's run directory.
        #[arg(long, default_value = "runs/sjd2")]
        sjd2: PathBuf,
        /// Output directory.
        #[arg(long, default_value = "assets/demo")]
        out: PathBuf,
        /// Noise levels K the decoder uses with the fine-tune (Karras levels at t = k/K are the
        /// same for any K, so a fine-tune at K = 20 serves K = 10); default: the fine-tune's K.
        #[arg(long)]
        denoising_steps: Option<usize>,
    },
}

/// The VQ stage's checkpoint in `dir`, or else the shipped `dir/vq.safetensors` (so `--vq
/// assets/demo` works without the VQ run directory).
fn load_vq(dir: &Path, device: &Device) -> anyhow::Result<VqModel> {
    let mut p = dir.join("checkpoint.safetensors");
    if !p.exists() && dir.join("vq.safetensors").exists() {
        p = dir.join("vq.safetensors");
    }
    VqModel::load(&p, demo_vq(), device).with_context(|| format!("loading {}", p.display()))
}

fn progress(t0: std::time::Instant) -> impl FnMut(&sjd2_train::lm_train::LmStep) {
    move |s| {
        if s.step % 10 == 0 || s.step + 1 == s.total {
            println!(
                "step {:>5}/{} loss {:.4} clean-input loss {:.4} ({:.1} s)",
                s.step + 1,
                s.total,
                s.loss,
                s.clean_loss,
                t0.elapsed().as_secs_f64()
            );
        }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let inner = cli.device.device()?;
    let device = inner.clone().autodiff();
    let t0 = std::time::Instant::now();
    match cli.stage {
        Stage::Vq { dir, steps, batch } => {
            let run = RunDir::open(&dir)?;
            let opts = VqTrainOptions {
                steps,
                batch,
                ..VqTrainOptions::default()
            };
            let eval = train_vq(&opts, &run, &device, |s| {
                if s.step % 10 == 0 || s.step + 1 == s.total {
                    println!(
                        "step {:>5}/{} recon {:.4} vq {:.4} codes used {} ({:.1} s)",
                        s.step + 1,
                        s.total,
                        s.recon,
                        s.vq,
                        s.used,
                        t0.elapsed().as_secs_f64()
                    );
                }
            })
            .context("VQ training")?;
            println!(
                "held-out: MSE {:.5} PSNR {:.2} dB, {} codes used, perplexity {:.1}; wrote {}",
                eval.mse,
                eval.psnr,
                eval.codes_used,
                eval.perplexity,
                run.file("vq.safetensors").display()
            );
        }
        Stage::Ar {
            dir,
            vq,
            steps,
            batch,
            lr,
            init,
            init_step,
        } => {
            let run = RunDir::open(&dir)?;
            let vq = load_vq(&vq, &inner)?;
            let opts = LmTrainOptions {
                config: demo_config(),
                steps,
                batch,
                lr,
                warmup: 100,
                prompt_dropout: 0.1,
                noise: None,
                checkpoint_every: 100,
                seed: 0,
                data_offset: 0,
                init_step,
            };
            train_lm(&opts, &run, &vq, init.as_deref(), &device, progress(t0))
                .context("AR training")?;
            println!("wrote {}", run.file("model.safetensors").display());
        }
        Stage::Finetune {
            dir,
            vq,
            base,
            steps,
            batch,
            lr,
            pattern,
            conditioning,
            levels,
        } => {
            let run = RunDir::open(&dir)?;
            let vq = load_vq(&vq, &inner)?;
            let base_state = RunDir::open(&base)?
                .state()?
                .context("the AR stage has no checkpoint")?;
            let seen = base_state["steps"].as_u64().unwrap_or(0) * 16;
            let mut config = demo_config();
            config.level_conditioning = Some(
                match conditioning {
                    Conditioning::None => "none",
                    Conditioning::Sinusoidal => "sinusoidal",
                }
                .into(),
            );
            config.denoising_steps = Some(levels);
            let noise = NoiseOptions {
                levels,
                pattern: match pattern {
                    Pattern::Constant => SegmentPattern::Constant,
                    Pattern::Increasing => SegmentPattern::Increasing,
                },
                conditioning: match conditioning {
                    Conditioning::None => LevelInput::None,
                    Conditioning::Sinusoidal => LevelInput::Sinusoidal,
                },
                ..NoiseOptions::default()
            };
            let opts = LmTrainOptions {
                config,
                steps,
                batch,
                lr,
                warmup: 50,
                prompt_dropout: 0.1,
                noise: Some(noise),
                checkpoint_every: 50,
                seed: 1,
                data_offset: seen,
                init_step: 0,
            };
            let init = base.join("checkpoint.safetensors");
            train_lm(&opts, &run, &vq, Some(&init), &device, progress(t0))
                .context("SJD2 fine-tuning")?;
            std::fs::write(
                run.file("finetune.json"),
                serde_json::json!({
                    "pattern": format!("{pattern:?}").to_lowercase(),
                    "level_conditioning": opts.config.level_conditioning,
                    "denoising_steps": levels,
                })
                .to_string(),
            )?;
            println!("wrote {}", run.file("model.safetensors").display());
        }
        Stage::Package {
            vq,
            base,
            sjd2,
            out,
            denoising_steps,
        } => {
            std::fs::create_dir_all(&out)?;
            let copy = |from: PathBuf, to: &str| -> anyhow::Result<()> {
                std::fs::copy(&from, out.join(to))
                    .with_context(|| format!("copying {}", from.display()))?;
                Ok(())
            };
            copy(vq.join("vq.safetensors"), "vq.safetensors")?;
            copy(base.join("model.safetensors"), "base.safetensors")?;
            copy(sjd2.join("model.safetensors"), "sjd2.safetensors")?;
            let mut config = demo_config();
            let ft: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(sjd2.join("finetune.json"))
                    .context("the fine-tune has not finished (no finetune.json)")?,
            )?;
            config.level_conditioning = ft["level_conditioning"].as_str().map(str::to_string);
            config.denoising_steps =
                denoising_steps.or_else(|| ft["denoising_steps"].as_u64().map(|v| v as usize));
            std::fs::write(
                out.join("config.json"),
                serde_json::to_string_pretty(&config)?,
            )?;
            std::fs::write(
                out.join("tokenizer.json"),
                sjd2_train::vocab::tokenizer_json(),
            )?;
            println!("wrote {}", out.display());
        }
    }
    Ok(())
}
