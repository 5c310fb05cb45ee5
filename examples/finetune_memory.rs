//! Memory per device of SJD2 fine-tuning: measured here against the estimate of
//! `sjd2_train::finetune::memory`, and the estimate for the published 1 B, 7 B and 8 B models.
//!
//! ```text
//! # One measurement per process (the peak resident memory is per process): a random backbone of
//! # the given sizes, f32 on the CPU, three LoRA or full training steps.
//! cargo run --release --example finetune_memory -- measure --hidden 512 --layers 4 --seq 512
//! cargo run --release --example finetune_memory -- measure --hidden 512 --layers 4 --seq 512 --full
//! # The table of docs/finetuning.md (bf16, micro-batch 1).
//! cargo run --release --example finetune_memory -- table
//! # The inference table of docs/models.md (weights + KV cache of both guidance rows).
//! cargo run --release --example finetune_memory -- inference
//! ```
//!
//! Linux only for `measure` (it reads `VmRSS` / `VmHWM` from `/proc/self/status`).

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use sjd2::Device;
use sjd2::core::{GuidanceStyle, ImageLayout, JacobiDenoiser};
use sjd2::models::llama::{Backbone, BackboneConfig};
use sjd2::models::{LlamaT2I, Prompting, Unconditional, presets};
use sjd2_train::finetune::memory::{Trained, TrainingMemory, estimate};
use sjd2_train::finetune::{Example, FinetuneOptions, Finetuner, LoraOptions};

#[derive(Parser, Debug)]
#[command(about = "Memory of SJD2 fine-tuning: measured on the CPU, estimated for real sizes")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train a random backbone for three steps and compare the process's peak resident memory (less
    /// its memory before the model existed) with the estimate.
    Measure {
        /// Model width.
        #[arg(long, default_value_t = 512)]
        hidden: usize,
        /// Layers.
        #[arg(long, default_value_t = 4)]
        layers: usize,
        /// Heads.
        #[arg(long, default_value_t = 8)]
        heads: usize,
        /// SwiGLU width.
        #[arg(long, default_value_t = 1376)]
        intermediate: usize,
        /// Vocabulary.
        #[arg(long, default_value_t = 4096)]
        vocab: usize,
        /// Tokens per training sequence (prompt of 8 plus the image grid).
        #[arg(long, default_value_t = 520)]
        seq: usize,
        /// Sequences per micro-batch.
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Full fine-tuning instead of LoRA.
        #[arg(long)]
        full: bool,
        /// LoRA rank.
        #[arg(long, default_value_t = 16)]
        rank: usize,
    },
    /// The estimate for Janus-Pro-1B, Janus-Pro-7B, Lumina-mGPT-7B and Emu3-Gen (bf16).
    Table,
    /// Memory to generate one image per family: weights + the KV cache of both guidance rows.
    Inference,
}

const PROMPT: usize = 8;

fn status_kib(field: &str) -> Result<u64> {
    let s = std::fs::read_to_string("/proc/self/status").context("/proc/self/status")?;
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("{field} in /proc/self/status"))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

#[allow(clippy::too_many_arguments)]
fn measure(
    hidden: usize,
    layers: usize,
    heads: usize,
    intermediate: usize,
    vocab: usize,
    seq: usize,
    batch: usize,
    trained: Trained,
) -> Result<()> {
    if seq <= PROMPT + 1 || vocab <= PROMPT + 2 {
        bail!(
            "--seq must exceed {} and --vocab {}",
            PROMPT + 1,
            PROMPT + 2
        );
    }
    let config = BackboneConfig {
        hidden,
        layers,
        heads,
        kv_heads: heads,
        head_dim: hidden / heads,
        intermediate,
        vocab,
        output_vocab: vocab,
        max_positions: seq + 8,
        ..presets::janus_pro_1b()
    };
    // What the process holds before the model exists (binary, runtime); the peak is compared
    // with the estimate after subtracting it. The weights are created lazily and the allocator
    // keeps some freed memory, so only the peak of the whole run is meaningful.
    let before = status_kib("VmRSS:")? * 1024;
    let device = Device::flex().autodiff();
    let backbone = Backbone::random(config.clone(), &device)?;
    // The image: one row of `seq − prompt − 1` cells (after the begin-of-image token).
    let cells = seq - PROMPT - 1;
    let image_ids = (vocab - PROMPT - 2) as u32;
    let boi = image_ids;
    let layout = ImageLayout::new(0..image_ids, 1, cells, None, vec![])?;
    let prompting = Prompting {
        image_prefix: vec![boi],
        unconditional: Unconditional::PrefixOnly,
        pad: boi + 1,
    };
    let model = LlamaT2I::new(
        backbone,
        layout,
        GuidanceStyle::RawLogits,
        prompting,
        &device,
    )?;
    let examples: Vec<Example> = (0..4 * batch + 1)
        .map(|i| Example {
            prompt: (0..PROMPT)
                .map(|j| image_ids + 2 + ((i + j) % PROMPT) as u32)
                .collect(),
            codes: (0..cells)
                .map(|j| ((i * 31 + j * 7) % image_ids as usize) as u32)
                .collect(),
        })
        .collect();
    let lora = match trained {
        Trained::Full => None,
        Trained::Lora { rank, .. } => Some(LoraOptions::new(rank)),
    };
    let opts = FinetuneOptions {
        lora,
        steps: 3,
        batch,
        held_out: 1,
        checkpoint_every: 1000,
        ..FinetuneOptions::default()
    };
    let run = tempfile_dir()?;
    let mut tuner = Finetuner::new(model, examples, opts, &run)?;
    let seq_len = JacobiDenoiser::layout(tuner.model()?).len() + PROMPT + 1;

    for _ in 0..3 {
        tuner.train_step()?;
    }
    let peak = status_kib("VmHWM:")? * 1024;
    let _ = std::fs::remove_dir_all(&run);
    let e = estimate(&config, seq_len, batch, trained, 4);
    let measured = peak.saturating_sub(before);
    println!(
        "| {hidden} | {layers} | {heads} | {intermediate} | {vocab} | {seq_len} | {batch} | {} | {:.0} | {:.0} | {:.0} | {:.2} |",
        match trained {
            Trained::Full => "full".to_string(),
            Trained::Lora { rank, .. } => format!("LoRA r{rank}"),
        },
        mib(before),
        mib(measured),
        mib(e.total()),
        measured as f64 / e.total().max(1) as f64
    );
    Ok(())
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("sjd2-finetune-memory-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    Ok(d)
}

fn table() {
    // Sequence = prompt (about 40 tokens) + the image span at the model's usual size.
    let rows: [(&str, BackboneConfig, usize, &str); 4] = [
        (
            "Janus-Pro-1B",
            BackboneConfig {
                // Training logits come from the 16384-code generation head.
                output_vocab: 16_384,
                ..presets::janus_pro_1b()
            },
            40 + 24 * 24,
            "384², 24×24",
        ),
        (
            "Janus-Pro-7B",
            BackboneConfig {
                output_vocab: 16_384,
                ..presets::janus_pro_7b()
            },
            40 + 24 * 24,
            "384², 24×24",
        ),
        (
            "Lumina-mGPT-7B-768",
            presets::chameleon_7b(),
            40 + 48 * 49 + 2,
            "768², 48×48 + row ends",
        ),
        (
            "Emu3-Gen (8B)",
            presets::emu3_gen(),
            40 + 90 * 91 + 3,
            "720², 90×90 + row ends",
        ),
    ];
    println!(
        "| model | image (tokens) | trained | weights | adapters + grads + AdamW | composed LoRA weights | activations | logits | total per device |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (name, config, seq, image) in rows {
        for trained in [
            Trained::Lora {
                rank: 16,
                attention_only: false,
            },
            Trained::Full,
        ] {
            let m: TrainingMemory = estimate(&config, seq, 1, trained, 2);
            println!(
                "| {name} | {image} ({seq}) | {} | {:.1} GiB | {:.1} GiB | {:.1} GiB | {:.1} GiB | {:.1} GiB | **{:.0} GiB** |",
                match trained {
                    Trained::Full => "full".to_string(),
                    Trained::Lora { rank, .. } => format!("LoRA r{rank}"),
                },
                gib(m.weights),
                gib(m.adapters + m.gradients + m.optimizer),
                gib(m.composed),
                gib(m.activations),
                gib(m.logits),
                gib(m.total())
            );
        }
    }
}

fn inference() {
    use sjd2::models::llamagen::LlamaGenConfig;
    let rows: [(&str, BackboneConfig, usize); 7] = [
        (
            "Lumina-mGPT-7B-768",
            presets::chameleon_7b(),
            40 + 48 * 49 + 2,
        ),
        ("Anole-7B (512²)", presets::chameleon_7b(), 40 + 32 * 32),
        ("Emu3-Gen (720²)", presets::emu3_gen(), 40 + 90 * 91 + 3),
        ("Janus-Pro-7B (384²)", presets::janus_pro_7b(), 40 + 24 * 24),
        ("Janus-Pro-1B (384²)", presets::janus_pro_1b(), 40 + 24 * 24),
        (
            "LlamaGen XL c2i (384²)",
            LlamaGenConfig::gpt_xl_c2i(24).backbone(),
            1 + 24 * 24,
        ),
        (
            "LlamaGen XL t2i (512²)",
            LlamaGenConfig::gpt_xl_t2i(32).backbone(),
            120 + 32 * 32,
        ),
    ];
    println!(
        "| model | parameters | tokens (CFG rows) | weights bf16 / f16 | weights f32 | KV cache bf16 / f16 | KV cache f32 | total bf16 / f16 | total f32 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (name, c, tokens) in rows {
        let params = presets::parameter_count(&c) as u64;
        // Keys and values of every layer for both guidance rows.
        let kv = 2 * (c.layers * c.kv_heads * c.head_dim * tokens * 2) as u64;
        println!(
            "| {name} | {:.2} B | {tokens} (2) | {:.1} GiB | {:.1} GiB | {:.2} GiB | {:.2} GiB | {:.1} GiB | {:.1} GiB |",
            params as f64 / 1e9,
            gib(2 * params),
            gib(4 * params),
            gib(2 * kv),
            gib(4 * kv),
            gib(2 * (params + kv)),
            gib(4 * (params + kv))
        );
    }
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Measure {
            hidden,
            layers,
            heads,
            intermediate,
            vocab,
            seq,
            batch,
            full,
            rank,
        } => {
            let trained = if full {
                Trained::Full
            } else {
                Trained::Lora {
                    rank,
                    attention_only: false,
                }
            };
            measure(
                hidden,
                layers,
                heads,
                intermediate,
                vocab,
                seq,
                batch,
                trained,
            )
        }
        Command::Table => {
            table();
            Ok(())
        }
        Command::Inference => {
            inference();
            Ok(())
        }
    }
}
