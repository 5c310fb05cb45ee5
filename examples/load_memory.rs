//! Peak host memory of loading a transformer checkpoint at a real 7 B width (hidden 4096, 32 heads,
//! SwiGLU 11 008, vocabulary 65 536) with one block, stored in bf16 (about 1.4 GB).
//!
//! ```sh
//! cargo run --release --example load_memory -- --dtype bf16
//! cargo run --release --example load_memory -- --dtype f32
//! ```
//!
//! The checkpoint is written once (streamed, under `target/`) by this example; the load runs in a
//! fresh child process that only loads, so its peak resident set (`VmHWM`) is the cost of
//! loading plus the runtime. The table compares it with the file size: a bf16 load should stay
//! within 1.2× the file plus 200 MB (the weights are never expanded), an f32 load within 2.2×.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::Parser;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sjd2_core::{Precision, configure_precision};
use sjd2_models::llama::{Backbone, BackboneConfig, KeyNames, NormPlacement, RopeKind};
use sjd2_models::weights::{Checkpoint, StoredDtype, WeightLoader, write_safetensors};

#[derive(Parser)]
struct Args {
    /// Float dtype the weights are loaded in (`f32`, `f16`, `bf16`).
    #[arg(long, default_value = "bf16")]
    dtype: String,
    /// Where the bf16 checkpoint is written (reused when it exists).
    #[arg(long, default_value = "target/load-memory/model.safetensors")]
    file: PathBuf,
    /// Internal: load in this process and print the peak RSS.
    #[arg(long, hide = true)]
    child: bool,
}

fn config() -> BackboneConfig {
    BackboneConfig {
        hidden: 4096,
        layers: 1,
        heads: 32,
        kv_heads: 32,
        head_dim: 128,
        intermediate: 11008,
        vocab: 65536,
        output_vocab: 65536,
        rms_eps: 1e-5,
        rope: RopeKind::Sequence { theta: 10000.0 },
        max_positions: 4096,
        qk_norm_eps: None,
        norm: NormPlacement::Pre,
    }
}

fn names() -> KeyNames {
    KeyNames::hugging_face("model.", "lm_head.weight")
}

/// Every tensor of the checkpoint: name and shape.
fn tensors(c: &BackboneConfig) -> Vec<(String, Vec<usize>)> {
    let (d, f) = (c.hidden, c.intermediate);
    let l = |s: &str| format!("model.layers.0.{s}");
    vec![
        ("model.embed_tokens.weight".into(), vec![c.vocab, d]),
        (l("self_attn.q_proj.weight"), vec![d, d]),
        (l("self_attn.k_proj.weight"), vec![d, d]),
        (l("self_attn.v_proj.weight"), vec![d, d]),
        (l("self_attn.o_proj.weight"), vec![d, d]),
        (l("mlp.gate_proj.weight"), vec![f, d]),
        (l("mlp.up_proj.weight"), vec![f, d]),
        (l("mlp.down_proj.weight"), vec![d, f]),
        (l("input_layernorm.weight"), vec![d]),
        (l("post_attention_layernorm.weight"), vec![d]),
        ("model.norm.weight".into(), vec![d]),
        ("lm_head.weight".into(), vec![c.output_vocab, d]),
    ]
}

/// Writes the bf16 checkpoint: uniform weights in ±0.02, norms 1.
fn write_checkpoint(path: &Path, c: &BackboneConfig) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(0);
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = tensors(c)
        .into_iter()
        .map(|(name, shape)| {
            let n = shape.iter().product();
            let values = if name.ends_with("norm.weight") {
                vec![1.0; n]
            } else {
                (0..n).map(|_| rng.random_range(-0.02..0.02)).collect()
            };
            (name, shape, values)
        })
        .collect();
    let refs: Vec<(&str, &[usize], &[f32])> = tensors
        .iter()
        .map(|(n, s, v)| (n.as_str(), s.as_slice(), v.as_slice()))
        .collect();
    std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
    let tmp = path.with_extension("partial");
    write_safetensors(&tmp, &refs, StoredDtype::BF16)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn status_kib(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn child(args: &Args) -> Result<()> {
    let precision: Precision = args.dtype.parse()?;
    let mut device = sjd2_core::Device::flex();
    configure_precision(&mut device, precision)?;
    let before = status_kib("VmRSS:").unwrap_or(0);
    let mut loader = WeightLoader::new(Checkpoint::open(&args.file)?, &device);
    let backbone = Backbone::load(config(), &names(), &mut loader, &device)?;
    loader.finish(|_| false)?;
    // Touch the result so nothing stays lazy.
    let dtype = backbone.embedding_table().dtype();
    let peak = status_kib("VmHWM:").unwrap_or(0);
    println!("{before} {peak} {dtype:?}");
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.child {
        return child(&args);
    }
    let c = config();
    if !args.file.is_file() {
        eprintln!("writing {} (once)", args.file.display());
        write_checkpoint(&args.file, &c)?;
    }
    let file_mb = std::fs::metadata(&args.file)?.len() as f64 / 1e6;
    let exe = std::env::current_exe()?;
    let out = Command::new(exe)
        .args(["--child", "--dtype", &args.dtype, "--file"])
        .arg(&args.file)
        .output()
        .context("running the loading process")?;
    if !out.status.success() {
        bail!("loading failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [before, peak, dtype] = parts.as_slice() else {
        bail!("unexpected child output: {text}");
    };
    let (before, peak): (f64, f64) = (before.parse::<f64>()? / 1e3, peak.parse::<f64>()? / 1e3);
    let factor = if args.dtype.eq_ignore_ascii_case("f32") {
        2.2
    } else {
        1.2
    };
    let limit = factor * file_mb + 200.0;
    println!(
        "| checkpoint | load dtype | weights on device | RSS before | peak RSS | peak / file | limit ({factor}× file + 200 MB) |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {file_mb:.0} MB bf16 | {} | {dtype} | {before:.0} MB | {peak:.0} MB | {:.2}× | {limit:.0} MB {} |",
        args.dtype,
        peak / file_mb,
        if peak <= limit { "(met)" } else { "(NOT met)" }
    );
    Ok(())
}
