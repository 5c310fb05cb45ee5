//! Generate an image with AR, SJD or SJD2 decoding and write it as PNG.
//!
//! Without `--family`, the project's own demo model (`assets/demo`, trained by
//! `examples/train_demo.rs` on 64×64 shape pictures) is used: SJD2 decoding runs on its
//! next-clean-token fine-tune, AR and SJD on the base model.
//!
//! ```text
//! cargo run --release --example generate -- --prompt "a red circle in the top left corner"
//! cargo run --release --example generate -- --prompt "a big blue star in the center" --mode ar --seed 3
//! cargo run --release --example generate -- --family lumina-mgpt --weights Lumina-mGPT-7B-768 \
//!     --vq vqgan.ckpt --prompt "a red apple on a wooden table" --mode sjd2 --out apple.png
//! cargo run --release --example generate -- --family llamagen-c2i --weights c2i_XL_384.pt \
//!     --vq vq_ds16_c2i.pt --class 207 --size 384
//! # The tiny random-weight fixtures (noise images, but the whole pipeline):
//! cargo run --release --example generate -- --family emu3 --fixtures sjd2-models/tests/fixtures/reference-models --prompt-ids 1,20,21
//! ```
//!
//! Expected files per family (upstream names):
//! - `lumina-mgpt` / `anole`: `--weights DIR` with `config.json`, `model.safetensors(.index.json)`
//!   and its shards, `tokenizer.json`; `--vq` the Chameleon `vqgan.ckpt` (or a safetensors copy).
//!   Anole's `model.vqmodel.*` inside the checkpoint is used when `--vq` is absent.
//! - `emu3`: `--weights DIR` of `BAAI/Emu3-Gen` (or `-hf`) with `tokenizer.json`; `--vq` the
//!   `BAAI/Emu3-VisionTokenizer` directory (or `vqmodel.*` inside an `-hf` checkpoint).
//! - `janus-pro`: `--weights DIR` with `config.json`, the checkpoint (`gen_vision_model.*` or
//!   `model.vqmodel.*` inside it is the image decoder) and `tokenizer.json`.
//! - `llamagen-c2i`: `--weights c2i_*.pt`, `--vq vq_ds16_c2i.pt`, `--class N`, `--size 256|384`.
//! - `llamagen-t2i`: `--weights t2i_XL_stage*.pt`, `--vq vq_ds16_t2i.pt`, `--t5 flan-t5-xl/`.

mod common;
#[path = "common/families.rs"]
mod families;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use sjd2::models::LlamaT2I;
use sjd2::models::demo::{DemoConfig, DemoModel, DemoWeights};
use sjd2::models::prompt::Template;
use sjd2::models::vq::{ImageDecoder, save_png, to_rgb8};
use sjd2::{Control, Device, DraftUpdate, Mode, Prompt, Sampling, Sjd2Decoder};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum WeightsArg {
    Base,
    Sjd2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ModeArg {
    Ar,
    Sjd,
    Sjd2,
}

/// How surviving drafts are redrawn between passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DraftUpdateArg {
    /// Fresh independent samples every pass (the SJD and SJD2 papers).
    Independent,
    /// Maximal coupling with the previous draft (MC-SJD; lossless, fewer passes).
    Coupled,
}

#[derive(Parser, Debug)]
#[command(about = "Generate an image with AR, SJD or SJD2 decoding")]
struct Args {
    #[command(flatten)]
    device: common::DeviceArgs,
    #[command(flatten)]
    m: families::ModelArgs,
    /// Demo model directory.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/demo"))]
    model: PathBuf,
    /// Demo model weights: base (next-token) or sjd2 (fine-tuned); default: sjd2 for
    /// `--mode sjd2`, base otherwise.
    #[arg(long, value_enum)]
    demo_weights: Option<WeightsArg>,
    /// Prompt text.
    #[arg(long)]
    prompt: Option<String>,
    /// Prompt token ids instead of text (fixtures have no tokenizer).
    #[arg(long, value_delimiter = ',')]
    prompt_ids: Vec<u32>,
    /// ImageNet class (LlamaGen c2i).
    #[arg(long, default_value_t = 207)]
    class: u32,
    /// Decoding mode (default: sjd2 for the demo model and for checkpoints exported by
    /// `finetune` with an `sjd2.json`, sjd otherwise: SJD2 needs the fine-tune).
    #[arg(long, value_enum)]
    mode: Option<ModeArg>,
    /// Window: a length, `auto` (chosen before every pass from this device's measured pass
    /// times and the acceptance seen: as long as pays, plain passes where no draft does) or
    /// `auto:MAX` (default: auto:16 for SJD, auto:64 for SJD2).
    #[arg(long)]
    window: Option<sjd2::Window>,
    /// File for what `--window auto` measures and learns, the pass costs and the acceptance of
    /// the first generations (default: a file per model, device and settings in
    /// `$XDG_CACHE_HOME/sjd2` or `~/.cache/sjd2`); later runs reuse it, skip the measurement and
    /// the exploration, and choose the same windows for the same seed.
    #[arg(long)]
    window_costs: Option<PathBuf>,
    /// Decode the prompt this many more times in the same process, after the image is written,
    /// and print each time: the first image's time against warm ones.
    #[arg(long, default_value_t = 0)]
    repeat: usize,
    /// How drafts are redrawn between passes (default: coupled; both are lossless, coupled
    /// accepts more drafts).
    #[arg(long, value_enum)]
    draft_update: Option<DraftUpdateArg>,
    /// SJD2 denoising steps (default: the demo model's fine-tuning setting, else 20).
    #[arg(long)]
    steps: Option<usize>,
    /// Sampling temperature, 0 = greedy (default: the family's upstream setting, 1 for the demo
    /// model).
    #[arg(long)]
    temperature: Option<f32>,
    /// Top-k, 0 = off (default: the family's upstream setting, off for the demo model).
    #[arg(long)]
    top_k: Option<usize>,
    /// Top-p, 1 = off (default: the family's upstream setting, off for the demo model).
    #[arg(long)]
    top_p: Option<f32>,
    /// Classifier-free guidance scale (default: the demo model's setting or the family's
    /// upstream one).
    #[arg(long)]
    guidance: Option<f32>,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output PNG.
    #[arg(long, default_value = "image.png")]
    out: PathBuf,
}

/// The demo model: decoder inputs plus its level conditioning and denoising steps.
fn build_demo(
    args: &Args,
    device: &Device,
) -> Result<(LlamaT2I, Box<dyn ImageDecoder>, Prompt, DemoConfig)> {
    let weights = match args.demo_weights {
        Some(WeightsArg::Base) => DemoWeights::Base,
        Some(WeightsArg::Sjd2) => DemoWeights::Sjd2,
        None if matches!(args.mode, None | Some(ModeArg::Sjd2)) => DemoWeights::Sjd2,
        None => DemoWeights::Base,
    };
    let demo = DemoModel::load(&args.model, weights, device)
        .with_context(|| format!("loading the demo model from {}", args.model.display()))?;
    let text = args.prompt.as_deref().context(
        "--prompt is required, for example --prompt \"a red circle in the top left corner\"",
    )?;
    let prompt = demo
        .tokenizer
        .encode(text, &Template::Chameleon)
        .map_err(|e| {
            anyhow::anyhow!(
                "{e}\nThe demo model knows only the words of its captions: {}",
                sjd2_train::vocab::caption_words().join(" ")
            )
        })?;
    Ok((demo.model, Box::new(demo.vq), prompt, demo.config))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let device = args.device.device()?;
    let mut finetuned = None;
    let (model, vq, prompt, demo) = match args.m.family {
        Some(_) => {
            let loaded = args.m.load(&device)?;
            finetuned = sjd2::models::finetuned::Sjd2Settings::find(&loaded.source)?;
            let p = loaded
                .prompts
                .prompt(args.prompt.as_deref(), &args.prompt_ids, args.class)?;
            (loaded.model, loaded.decoder, p, None)
        }
        None => {
            let (m, v, p, c) = build_demo(&args, &device)?;
            (m, v, p, Some(c))
        }
    };
    // A published family samples as its upstream code does unless told otherwise.
    let upstream = args.m.family.map(families::Family::defaults);
    let temperature = args
        .temperature
        .or(upstream.map(|d| d.temperature))
        .unwrap_or(1.0);
    let top_k = args.top_k.or(upstream.map(|d| d.top_k)).unwrap_or(0);
    let top_p = args.top_p.or(upstream.map(|d| d.top_p)).unwrap_or(1.0);
    let sampling = if temperature == 0.0 {
        Sampling::Greedy
    } else {
        Sampling::Multinomial {
            temperature,
            top_k: (top_k > 0).then_some(top_k),
            top_p: (top_p < 1.0).then_some(top_p),
        }
    };
    let mode = match args.mode {
        Some(ModeArg::Ar) => Mode::Autoregressive,
        Some(ModeArg::Sjd) => Mode::Sjd,
        Some(ModeArg::Sjd2) => Mode::Sjd2,
        None if demo.is_some() || finetuned.is_some() => Mode::Sjd2,
        None => Mode::Sjd,
    };
    // The demo model brings its own settings (guidance, K, level conditioning); the published
    // families start from the library's SJD2 defaults.
    let mut config = match &demo {
        Some(c) => sjd2::demo::decoder_config(c, mode),
        None => families::default_decoder(mode),
    };
    // A checkpoint fine-tuned by `finetune` says how its SJD2 inputs were made.
    if let Some(f) = &finetuned {
        config = sjd2_train::finetune::decoder_config(f, config)?;
    }
    config.sampling = sampling;
    config.seed = args.seed;
    if let Some(w) = args.window {
        config.window_len = w;
    }
    if let Some(g) = args.guidance.or(upstream.map(|d| d.guidance)) {
        config.guidance_scale = g;
    }
    config.image_guidance_scale = upstream.and_then(|d| d.image_guidance);
    if let Some(k) = args.steps {
        config.sjd2.denoising_steps = k;
    }
    match args.draft_update {
        Some(DraftUpdateArg::Independent) => config.draft_update = DraftUpdate::Independent,
        Some(DraftUpdateArg::Coupled) => config.draft_update = DraftUpdate::Coupled,
        None => {}
    }
    // Everything that shapes passes and acceptance, but not the seed: one file serves every
    // prompt and seed.
    let costs_key = format!(
        "{}|{:?}|{:?}|{}|{}|{:?}",
        args.model.display(),
        args.m.weights,
        args.demo_weights,
        args.device.device,
        args.device.dtype,
        sjd2::DecoderConfig {
            seed: 0,
            ..config.clone()
        },
    );
    let costs_path = config
        .window_len
        .is_auto()
        .then(|| window_costs_path(args.window_costs.as_deref(), &costs_key))
        .flatten();
    let saved = costs_path
        .as_deref()
        .map(|p| load_window_costs(p, &costs_key))
        .unwrap_or_default();
    let decoder = Sjd2Decoder::new(model, config)?
        .with_cost_curves(saved.curves.clone())
        .with_acceptance_history(saved.acceptance.clone())?;
    let bar = ProgressBar::new(1);
    bar.set_style(ProgressStyle::with_template(
        "{bar:40} {pos}/{len} tokens  {msg}",
    )?);
    let start = Instant::now();
    let prompt = prompt.with_seed(args.seed);
    let g = decoder.generate_with(&prompt, |step| {
        bar.set_length(step.target_len as u64);
        bar.set_position(step.tokens.len() as u64);
        bar.set_message(format!("{} passes", step.pass));
        Control::Continue
    })?;
    bar.finish();
    let first_wall = g.stats.wall_time.as_secs_f64();
    if let Some(p) = &costs_path {
        let now = WindowMemory::of(&decoder);
        if now != saved {
            save_window_costs(p, &costs_key, &now);
        }
    }
    let layout = sjd2::JacobiDenoiser::layout(decoder.model()).clone();
    let codes = decoder.model().image_codes(&g.tokens)?;
    let image = to_rgb8(vq.decode(&codes, layout.rows(), layout.cols())?)?;
    save_png(&args.out, &image)?;
    let s = &g.stats;
    let c = decoder.config();
    let update = format!("{:?}", c.draft_update).to_lowercase();
    let window = match c.window_len {
        sjd2::Window::Auto { .. } => {
            // The first entry is the prefill's.
            let mut chosen: Vec<usize> = s.windows.iter().skip(1).copied().collect();
            chosen.sort_unstable();
            let plain = chosen.iter().filter(|&&w| w == 0).count();
            match (chosen.first(), chosen.last()) {
                (Some(lo), Some(hi)) => {
                    let plain = match plain {
                        0 => String::new(),
                        n => format!(
                            "; {n} of {} passes plain, where no draft paid on this device",
                            chosen.len()
                        ),
                    };
                    format!(
                        "window {} (chose {lo}-{hi}, median {}{plain})",
                        c.window_len,
                        chosen[chosen.len() / 2],
                    )
                }
                _ => format!("window {}", c.window_len),
            }
        }
        w => format!("window {w}"),
    };
    let method = match c.mode {
        Mode::Autoregressive => "AR".to_string(),
        Mode::Sjd => format!("SJD, {window}, {update} draft updates"),
        _ => format!(
            "SJD2, {window}, K = {}, {update} draft updates",
            c.sjd2.denoising_steps
        ),
    };
    println!(
        "wrote {} ({}x{}) with {method}",
        args.out.display(),
        image.width,
        image.height
    );
    println!(
        "{} tokens in {} forward passes: {:.2} tokens per pass, {} drafts accepted, {:.2} s ({:.2} s with the image decoder), seed {}",
        s.tokens(),
        s.forward_passes,
        s.step_compression(),
        s.accepted_drafts,
        s.wall_time.as_secs_f64(),
        start.elapsed().as_secs_f64(),
        g.seed
    );
    if args.repeat > 0 {
        let mut warm = Vec::with_capacity(args.repeat);
        for _ in 0..args.repeat {
            let again = decoder.generate(&prompt)?;
            warm.push(again.stats.wall_time.as_secs_f64());
        }
        let mut sorted = warm.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        println!(
            "first decode {first_wall:.3} s; {} warm decodes {} s (median {median:.3} s): first / warm = {:.2}",
            warm.len(),
            warm.iter()
                .map(|t| format!("{t:.3}"))
                .collect::<Vec<_>>()
                .join(", "),
            first_wall / median
        );
    }
    Ok(())
}

/// What `--window auto` learns about a model on a device: the pass costs it measured and the
/// acceptance of its first generations (its calibration).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WindowMemory {
    /// Cost curves by cache rows.
    pub curves: std::collections::BTreeMap<usize, sjd2::sampler::CostCurve>,
    /// The decoder's calibration.
    #[serde(default)]
    pub acceptance: sjd2::sampler::AcceptanceHistory,
}

impl WindowMemory {
    /// What `decoder` has measured and learned.
    pub fn of<M: sjd2::JacobiDenoiser>(decoder: &Sjd2Decoder<M>) -> Self {
        Self {
            curves: decoder.cost_curves(),
            acceptance: decoder.acceptance_history(),
        }
    }
}

/// Where `--window auto` keeps what it measured and learned, so that later runs with the same
/// model, device and settings skip the measurement and the exploration and choose the same
/// windows: `explicit`, or `$XDG_CACHE_HOME/sjd2` (`~/.cache/sjd2`) under a name hashed from
/// `key`; `None` without a home directory.
pub fn window_costs_path(
    explicit: Option<&std::path::Path>,
    key: &str,
) -> Option<std::path::PathBuf> {
    use std::hash::{Hash, Hasher};
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    let dir = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cache")))?
        .join("sjd2");
    // SipHash with fixed keys: the same name in every process.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    Some(dir.join(format!("window-costs-{:016x}.json", h.finish())))
}

/// What [`save_window_costs`] saved for the same `key` (anything else, an unreadable file or
/// invalid counts are ignored: the decoder measures and explores again).
pub fn load_window_costs(path: &std::path::Path, key: &str) -> WindowMemory {
    let Ok(text) = std::fs::read_to_string(path) else {
        return WindowMemory::default();
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
        return WindowMemory::default();
    };
    if v["key"] != key {
        return WindowMemory::default();
    }
    match serde_json::from_value::<WindowMemory>(v) {
        Ok(m) if m.acceptance.validate().is_ok() => m,
        _ => WindowMemory::default(),
    }
}

/// Saves a decoder's [`WindowMemory`] under `key` (best effort: a cache that cannot be written
/// only costs the next run a measurement).
pub fn save_window_costs(path: &std::path::Path, key: &str, memory: &WindowMemory) {
    if memory.curves.is_empty() {
        return;
    }
    let json = serde_json::json!({
        "key": key,
        "curves": memory.curves,
        "acceptance": memory.acceptance,
    });
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    if std::fs::write(&tmp, json.to_string()).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}
