//! Writing `f32` tensors as a safetensors file.

use std::borrow::Cow;
use std::path::Path;

use safetensors::{Dtype, SafeTensorError};

use super::corrupt;
use crate::error::{LoadError, Result};

/// The dtype [`write_safetensors`] stores values in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StoredDtype {
    /// 32-bit float.
    #[default]
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    BF16,
}

/// One tensor's little-endian bytes for the `safetensors` writer.
struct Encoded<'a> {
    dtype: safetensors::Dtype,
    shape: &'a [usize],
    bytes: Vec<u8>,
}

impl safetensors::View for &Encoded<'_> {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// Writes `f32` tensors as a safetensors file in `dtype` (with the `safetensors` crate; used by
/// the trainer, `examples/inspect.rs` and the tests).
///
/// # Errors
/// [`LoadError::Io`] when the file cannot be written, [`LoadError::Corrupt`] when a tensor's
/// data does not match its shape.
pub fn write_safetensors(
    path: impl AsRef<Path>,
    tensors: &[(&str, &[usize], &[f32])],
    dtype: StoredDtype,
) -> Result<()> {
    let path = path.as_ref();
    let mut encoded = Vec::with_capacity(tensors.len());
    for &(name, shape, data) in tensors {
        if shape.iter().product::<usize>() != data.len() {
            let detail = format!("`{name}`: {} values for shape {shape:?}", data.len());
            return Err(corrupt(path, detail));
        }
        let (dtype, bytes) = match dtype {
            StoredDtype::F32 => (
                Dtype::F32,
                data.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
            StoredDtype::F16 => (
                Dtype::F16,
                data.iter()
                    .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
                    .collect(),
            ),
            StoredDtype::BF16 => (
                Dtype::BF16,
                data.iter()
                    .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
                    .collect(),
            ),
        };
        encoded.push((
            name,
            Encoded {
                dtype,
                shape,
                bytes,
            },
        ));
    }
    safetensors::serialize_to_file(encoded.iter().map(|(n, e)| (*n, e)), None, path).map_err(|e| {
        match e {
            SafeTensorError::IoError(source) => LoadError::Io {
                path: path.to_path_buf(),
                source,
            },
            other => corrupt(path, other.to_string()),
        }
    })
}
