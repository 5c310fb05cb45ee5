//! Writing named tensors. Training checkpoints are written in the inference layouts
//! (`Backbone::export`, `VqModel::export`, f32) and read back by the inference loaders, so a
//! checkpoint, a shipped model file and an initialization are the same kind of file.

use std::path::Path;

use sjd2_models::weights::{StoredDtype, write_safetensors};

use crate::error::Result;

pub use sjd2_models::weights::NamedTensor;

/// Writes named tensors as a safetensors file in `dtype`.
///
/// # Errors
/// I/O errors and tensors whose values do not fill their shape.
pub fn write_named(path: &Path, tensors: &[NamedTensor], dtype: StoredDtype) -> Result<()> {
    let refs: Vec<(&str, &[usize], &[f32])> = tensors
        .iter()
        .map(|(n, s, v)| (n.as_str(), s.as_slice(), v.as_slice()))
        .collect();
    write_safetensors(path, &refs, dtype)?;
    Ok(())
}
