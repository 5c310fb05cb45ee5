//! Training errors.

/// What can go wrong while training or exporting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// Reading or writing weights failed.
    #[error(transparent)]
    Load(#[from] sjd2_models::LoadError),
    /// A core operation failed.
    #[error(transparent)]
    Core(#[from] sjd2_core::Error),
    /// A tensor could not be read back from the device.
    #[error("could not read tensor {0}")]
    Tensor(String),
    /// A training checkpoint does not fit the module.
    #[error("checkpoint {path} does not fit the model: {detail}")]
    Checkpoint {
        /// File.
        path: String,
        /// Missing, unexpected or mis-shaped tensors.
        detail: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Training data is missing, corrupt or prepared for another model.
    #[error("{path}: {detail}")]
    Data {
        /// File or folder.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// A training setting is invalid.
    #[error("invalid training setting `{field}`: {reason}")]
    Config {
        /// The setting.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

/// Result with [`TrainError`].
pub type Result<T, E = TrainError> = std::result::Result<T, E>;

pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.display().to_string(),
        source,
    }
}
