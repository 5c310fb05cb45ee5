//! The error type shared by every sjd2 crate.

use thiserror::Error;

/// Result alias used throughout sjd2.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in sjd2-core and the crates built on it.
///
/// Every variant names the field, tensor, prompt or row at fault so that the caller knows what to
/// change. Library code returns these errors instead of panicking on user input.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is outside its allowed range.
    #[error("invalid config: `{field}` {reason}")]
    InvalidConfig {
        /// The name of the offending field, as written in the config struct.
        field: &'static str,
        /// What is wrong and which values are allowed.
        reason: String,
    },

    /// A prompt cannot be used (empty, too long, or containing tokens outside the vocabulary).
    #[error("invalid prompt {index}: {reason}")]
    InvalidPrompt {
        /// Index of the prompt in the batch (0 for a single prompt).
        index: usize,
        /// What is wrong with it.
        reason: String,
    },

    /// A tensor has the wrong shape.
    #[error("shape mismatch for {what}: expected {expected:?}, got {got:?}")]
    Shape {
        /// The tensor at fault.
        what: String,
        /// The expected shape (0 stands for "any size" where documented).
        expected: Vec<usize>,
        /// The shape that was given.
        got: Vec<usize>,
    },

    /// A token id is outside the range it must lie in.
    #[error("token id {token} in {what} is outside {allowed}")]
    TokenOutOfRange {
        /// Where the token was found.
        what: String,
        /// The offending id.
        token: u32,
        /// The allowed range, in words.
        allowed: String,
    },

    /// The sequence would not fit in the model's context or the cache.
    #[error("{what} needs {needed} positions but at most {max} are available")]
    SequenceTooLong {
        /// What was being sized (a row of the KV cache, the model context, ...).
        what: String,
        /// Positions needed.
        needed: usize,
        /// Positions available.
        max: usize,
    },

    /// A KV-cache operation was asked for something impossible (a row that does not exist, a
    /// rollback beyond the current length).
    #[error("KV cache: {0}")]
    Cache(String),

    /// A model produced NaN or infinite values where finite ones are required.
    #[error("non-finite values in {what}: {detail}")]
    NonFinite {
        /// Where the values were found (for example "logits of sample 0 at window index 3").
        what: String,
        /// Which values (NaN, +inf, all -inf).
        detail: String,
    },

    /// Reading tensor data back from a device failed.
    #[error("tensor data for {what}: {detail}")]
    TensorData {
        /// The tensor being read.
        what: String,
        /// The backend's message.
        detail: String,
    },

    /// The model does not support what the configuration asks for.
    #[error("unsupported: {0}")]
    Unsupported(String),

    /// Any other failure reported by a model implementation.
    #[error("model: {0}")]
    Model(String),
}

impl Error {
    /// Shorthand for [`Error::InvalidConfig`].
    pub fn config(field: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidConfig {
            field,
            reason: reason.into(),
        }
    }

    /// The config field at fault, if this is an [`Error::InvalidConfig`].
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Error::InvalidConfig { field, .. } => Some(field),
            _ => None,
        }
    }
}

/// Reads a float tensor back to the host as `Vec<f32>`, mapping failures to [`Error::TensorData`].
pub fn tensor_to_vec<const D: usize>(tensor: burn::Tensor<D>, what: &str) -> Result<Vec<f32>> {
    tensor
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| Error::TensorData {
            what: what.to_string(),
            detail: format!("{e:?}"),
        })
}
