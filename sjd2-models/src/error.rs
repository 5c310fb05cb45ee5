//! Errors of weight and config loading.

use std::path::PathBuf;

use thiserror::Error;

/// Result alias of this crate.
pub type Result<T, E = LoadError> = std::result::Result<T, E>;

/// Why a checkpoint or config could not be loaded. Every variant names the file or tensors at
/// fault.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LoadError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },

    /// A file is not a valid checkpoint or config (truncated, bad header, bad JSON ...).
    #[error("{path} is corrupt: {detail}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },

    /// A tensor uses a dtype this crate cannot convert.
    #[error(
        "tensor `{name}` in {path} has unsupported dtype {dtype} (supported: F32, F16, BF16, F64)"
    )]
    UnsupportedDtype {
        /// The file.
        path: PathBuf,
        /// The tensor.
        name: String,
        /// Its dtype as written in the file.
        dtype: String,
    },

    /// The checkpoint does not match the model: tensors missing, unexpected or mis-shaped.
    #[error("checkpoint {origin} does not match the model:{}", mismatch_lines(.missing, .unexpected, .mis_shaped))]
    Mismatch {
        /// Where the weights came from.
        origin: String,
        /// Tensors the model needs that the checkpoint lacks.
        missing: Vec<String>,
        /// Tensors in the checkpoint the model does not use.
        unexpected: Vec<String>,
        /// `(name, expected shape, shape in the file)`.
        mis_shaped: Vec<(String, Vec<usize>, Vec<usize>)>,
    },

    /// A config field is missing or invalid.
    #[error("config {path}: `{field}` {reason}")]
    Config {
        /// The config file (or a description of its origin).
        path: PathBuf,
        /// The offending field.
        field: String,
        /// What is wrong.
        reason: String,
    },

    /// A Hugging Face Hub repository could not be resolved to local files.
    #[error("Hugging Face repository {repo} (revision {revision}): {detail}")]
    Hub {
        /// The repository id.
        repo: String,
        /// The revision asked for.
        revision: String,
        /// What failed: a file missing from the cache in offline mode, a download error.
        detail: String,
    },

    /// A model-level error while building the model.
    #[error(transparent)]
    Core(#[from] sjd2_core::Error),
}

fn mismatch_lines(
    missing: &[String],
    unexpected: &[String],
    mis_shaped: &[(String, Vec<usize>, Vec<usize>)],
) -> String {
    let mut s = String::new();
    let list = |names: &[String]| {
        let mut v: Vec<&str> = names.iter().map(String::as_str).take(12).collect();
        if names.len() > 12 {
            v.push("…");
        }
        v.join(", ")
    };
    if !missing.is_empty() {
        s += &format!(" missing {} tensor(s): {};", missing.len(), list(missing));
    }
    if !unexpected.is_empty() {
        s += &format!(
            " unexpected {} tensor(s): {};",
            unexpected.len(),
            list(unexpected)
        );
    }
    for (name, want, got) in mis_shaped.iter().take(12) {
        s += &format!(" `{name}` has shape {got:?}, expected {want:?};");
    }
    s
}

impl From<LoadError> for sjd2_core::Error {
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::Core(e) => e,
            other => sjd2_core::Error::Model(other.to_string()),
        }
    }
}
