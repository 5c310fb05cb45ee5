//! `finetune export`: a fine-tuned model written back in its family's own checkpoint layout.
//!
//! LoRA adapters are merged into the weights (burn's [`Module::materialize`]); the backbone is
//! written under the names it was loaded with ([`sjd2_models::llama::Backbone::source_names`]), every other tensor
//! of the source checkpoint (VQ model, Janus' aligner and heads, LlamaGen's class table, ...) is
//! copied unchanged, and each tensor keeps the dtype the source stored it in (bf16 stays bf16).
//! The auxiliary files beside the source (`config.json`, tokenizer files, ...) are copied, and
//! `sjd2.json` records the decoder settings the fine-tune trained for.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::Module;
use sjd2_models::LlamaT2I;
use sjd2_models::weights::{Checkpoint, RawTensor, StoredDtype, write_safetensors_raw};

pub use sjd2_models::finetuned::Sjd2Settings;

use crate::error::{Result, TrainError, io};

/// What [`export`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportReport {
    /// The weights file.
    pub weights: PathBuf,
    /// Backbone tensors replaced by trained values.
    pub trained: usize,
    /// Tensors copied unchanged from the source.
    pub copied: usize,
    /// Auxiliary files copied.
    pub files: Vec<String>,
}

fn is_weight_file(name: &str) -> bool {
    [
        ".safetensors",
        ".bin",
        ".pt",
        ".pth",
        ".ckpt",
        ".index.json",
    ]
    .iter()
    .any(|e| name.ends_with(e))
}

/// Exports `model` (trained from the checkpoint at `source`, a file or directory) into the new
/// directory `out`: `model.safetensors`, the source's auxiliary files, and `sjd2.json`.
///
/// The directory is written as `out.partial` and renamed when complete.
///
/// # Errors
/// An existing `out`; a backbone that was not loaded from a checkpoint or whose names are not
/// in `source`; I/O errors.
pub fn export(
    model: &LlamaT2I,
    source: &Path,
    out: &Path,
    settings: &Sjd2Settings,
) -> Result<ExportReport> {
    if out.exists() {
        return Err(TrainError::Config {
            field: "out",
            reason: format!("{} exists: export writes a new directory", out.display()),
        });
    }
    let backbone = model.backbone().clone().valid().materialize();
    let names = backbone
        .source_names()
        .cloned()
        .ok_or_else(|| TrainError::Config {
            field: "model",
            reason: "the backbone was not loaded from a checkpoint, so its layout is unknown"
                .into(),
        })?;
    let trained: BTreeMap<String, (Vec<usize>, Vec<f32>)> = backbone
        .export(&names)?
        .into_iter()
        .map(|(n, s, v)| (n, (s, v)))
        .collect();
    let src = Checkpoint::open(source)?;
    let missing: Vec<&String> = trained.keys().filter(|n| src.shape(n).is_none()).collect();
    if !missing.is_empty() {
        return Err(TrainError::Checkpoint {
            path: source.display().to_string(),
            detail: format!(
                "the trained backbone's tensors {missing:?} are not in the source checkpoint"
            ),
        });
    }
    let partial = PathBuf::from(format!("{}.partial", out.display()));
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(io(&partial))?;
    }
    std::fs::create_dir_all(&partial).map_err(io(&partial))?;
    // Trained tensors are encoded in the dtype the source stored them in; the others are copied
    // bit for bit (any dtype, integer buffers included).
    let mut tensors: Vec<(String, RawTensor)> = Vec::new();
    let mut copied = 0;
    for name in src.names() {
        let raw = match trained.get(name) {
            Some((shape, values)) => {
                let dtype = src.stored_dtype(name).unwrap_or(StoredDtype::F32);
                RawTensor::from_f32(shape.clone(), values, dtype)
            }
            None => {
                copied += 1;
                src.read_raw(name)?
            }
        };
        tensors.push((name.to_string(), raw));
    }
    let weights = partial.join("model.safetensors");
    let refs: Vec<(&str, &RawTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    write_safetensors_raw(&weights, &refs)?;
    drop(tensors);
    let dir = if source.is_dir() {
        source.to_path_buf()
    } else {
        source.parent().map(Path::to_path_buf).unwrap_or_default()
    };
    let mut files = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if e.path().is_file()
                && !is_weight_file(&name)
                && name != sjd2_models::finetuned::SJD2_JSON
            {
                let to = partial.join(&name);
                std::fs::copy(e.path(), &to).map_err(io(&to))?;
                files.push(name);
            }
        }
    }
    files.sort();
    settings.write(&partial)?;
    std::fs::rename(&partial, out).map_err(io(out))?;
    Ok(ExportReport {
        weights: out.join("model.safetensors"),
        trained: trained.len(),
        copied,
        files,
    })
}
