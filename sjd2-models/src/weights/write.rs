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

/// A tensor as stored: its safetensors dtype name (`F32`, `BF16`, `I64`, ...), shape and
/// little-endian bytes ([`super::Checkpoint::read_raw`], [`write_safetensors_raw`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawTensor {
    /// Safetensors dtype name.
    pub dtype: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Little-endian bytes.
    pub bytes: Vec<u8>,
}

impl RawTensor {
    /// `f32` values encoded in `dtype`.
    pub fn from_f32(shape: Vec<usize>, values: &[f32], dtype: StoredDtype) -> Self {
        let (name, bytes): (&str, Vec<u8>) = match dtype {
            StoredDtype::F32 => ("F32", values.iter().flat_map(|x| x.to_le_bytes()).collect()),
            StoredDtype::F16 => (
                "F16",
                values
                    .iter()
                    .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
                    .collect(),
            ),
            StoredDtype::BF16 => (
                "BF16",
                values
                    .iter()
                    .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
                    .collect(),
            ),
        };
        Self {
            dtype: name.into(),
            shape,
            bytes,
        }
    }
}

/// Bytes per element of a safetensors dtype name.
pub(crate) fn dtype_size(dtype: &str) -> Option<(Dtype, usize)> {
    Some(match dtype {
        "F64" => (Dtype::F64, 8),
        "F32" => (Dtype::F32, 4),
        "F16" => (Dtype::F16, 2),
        "BF16" => (Dtype::BF16, 2),
        "I64" => (Dtype::I64, 8),
        "I32" => (Dtype::I32, 4),
        "I16" => (Dtype::I16, 2),
        "I8" => (Dtype::I8, 1),
        "U8" => (Dtype::U8, 1),
        "BOOL" => (Dtype::BOOL, 1),
        _ => return None,
    })
}

/// Writes tensors as stored ([`RawTensor`]) into a safetensors file: how an export copies the
/// tensors it does not change, bit for bit and in any dtype.
///
/// # Errors
/// [`LoadError::Io`] when the file cannot be written, [`LoadError::Corrupt`] for an unknown dtype
/// or bytes that do not match the shape.
pub fn write_safetensors_raw(path: impl AsRef<Path>, tensors: &[(&str, &RawTensor)]) -> Result<()> {
    let path = path.as_ref();
    let mut encoded = Vec::with_capacity(tensors.len());
    for &(name, t) in tensors {
        let Some((dtype, size)) = dtype_size(&t.dtype) else {
            return Err(corrupt(
                path,
                format!("`{name}`: unsupported dtype {}", t.dtype),
            ));
        };
        if t.shape.iter().product::<usize>() * size != t.bytes.len() {
            let detail = format!(
                "`{name}`: {} bytes for {} {:?}",
                t.bytes.len(),
                t.dtype,
                t.shape
            );
            return Err(corrupt(path, detail));
        }
        encoded.push((
            name,
            Encoded {
                dtype,
                shape: &t.shape,
                bytes: t.bytes.clone(),
            },
        ));
    }
    serialize(path, &encoded)
}

fn serialize(path: &Path, encoded: &[(&str, Encoded<'_>)]) -> Result<()> {
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
    let typed: Vec<_> = tensors.iter().map(|&(n, s, v)| (n, s, v, dtype)).collect();
    write_safetensors_typed(path, &typed)
}

/// Writes `f32` tensors as a safetensors file, each in its own dtype (an exported checkpoint
/// keeps every tensor in the dtype its source stored it in).
///
/// # Errors
/// As [`write_safetensors`].
pub fn write_safetensors_typed(
    path: impl AsRef<Path>,
    tensors: &[(&str, &[usize], &[f32], StoredDtype)],
) -> Result<()> {
    let path = path.as_ref();
    let mut encoded = Vec::with_capacity(tensors.len());
    for &(name, shape, data, dtype) in tensors {
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
    serialize(path, &encoded)
}
