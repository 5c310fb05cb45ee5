//! Deferred reads: a stored tensor (or a block of its rows, reordered, transposed) streamed into
//! the typed buffer that becomes the tensor, converting elements only where the dtypes differ.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use burn::store::bridge;
use burn::store::burn_pack::{Error as PackError, Tensor as PackTensor};
use burn::tensor::{Bytes, DType, TensorData};

use super::{Checkpoint, corrupt};
use crate::error::{LoadError, Result};

/// Where the bytes of a deferred tensor come from.
pub(super) enum Source {
    /// A safetensors file, from this byte on.
    File { start: u64 },
    /// A tensor of a PyTorch pickle.
    Pickle(pytorch_reader::Tensor),
}

/// Which part of a stored tensor to load, and how.
#[derive(Debug, Clone, Default)]
pub(crate) struct RowView {
    /// A block of rows of the first dimension (all when `None`).
    pub rows: Option<std::ops::Range<usize>>,
    /// The order of the rows of that block.
    pub order: Option<Vec<usize>>,
    /// Transpose a 2-D tensor (`[out, in]` stored, `[in, out]` loaded).
    pub transpose: bool,
    /// A 1×1 convolution weight `[out, in, 1, 1]` held as a matrix `[out, in]` (then
    /// transposed if `transpose`): the trailing unit dimensions are dropped.
    pub conv1x1: bool,
    /// A vector `[n]` loaded as one row `[1, n]` (its elements are the rows `order` reorders):
    /// Meta's q/k LayerNorm affine, shared by every head.
    pub flat: bool,
}

/// An element type, stored or loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Element {
    F16,
    BF16,
    F32,
    F64,
    I32,
    I64,
}

impl Element {
    pub(super) fn of(dtype: &str) -> Option<Self> {
        match dtype {
            "F16" => Some(Self::F16),
            "BF16" => Some(Self::BF16),
            "F32" => Some(Self::F32),
            "F64" => Some(Self::F64),
            "I32" => Some(Self::I32),
            "I64" => Some(Self::I64),
            _ => None,
        }
    }

    fn of_dtype(dtype: DType) -> Option<Self> {
        match dtype {
            DType::F16 => Some(Self::F16),
            DType::BF16 => Some(Self::BF16),
            DType::F32 | DType::Flex32 => Some(Self::F32),
            DType::F64 => Some(Self::F64),
            DType::I32 => Some(Self::I32),
            DType::I64 => Some(Self::I64),
            _ => None,
        }
    }

    pub(super) fn size(self) -> usize {
        match self {
            Self::F16 | Self::BF16 => 2,
            Self::F32 | Self::I32 => 4,
            Self::F64 | Self::I64 => 8,
        }
    }

    fn is_int(self) -> bool {
        matches!(self, Self::I32 | Self::I64)
    }

    /// Element `j` of little-endian `row` as a number.
    fn value(self, row: &[u8], j: usize) -> f64 {
        let b = &row[j * self.size()..(j + 1) * self.size()];
        let b8 = |b: &[u8]| [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]];
        match self {
            Self::F16 => f64::from(half::f16::from_le_bytes([b[0], b[1]]).to_f32()),
            Self::BF16 => f64::from(half::bf16::from_le_bytes([b[0], b[1]]).to_f32()),
            Self::F32 => f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            Self::I32 => f64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            Self::F64 => f64::from_le_bytes(b8(b)),
            Self::I64 => i64::from_le_bytes(b8(b)) as f64,
        }
    }

    /// The bits of `x` stored as `self` (f16/bf16 rounded from f32 unless the source was f64,
    /// as PyTorch casts).
    fn bits(self, x: f64, from: Element) -> u64 {
        match (self, from) {
            (Self::F16, Self::F64) => u64::from(half::f16::from_f64(x).to_bits()),
            (Self::F16, _) => u64::from(half::f16::from_f32(x as f32).to_bits()),
            (Self::BF16, Self::F64) => u64::from(half::bf16::from_f64(x).to_bits()),
            (Self::BF16, _) => u64::from(half::bf16::from_f32(x as f32).to_bits()),
            (Self::F32, _) => u64::from((x as f32).to_bits()),
            (Self::F64, _) => x.to_bits(),
            (Self::I32, _) => u64::from(x as i32 as u32),
            (Self::I64, _) => x as i64 as u64,
        }
    }
}

/// The buffer a deferred tensor is read into, typed so that it is aligned for its elements and
/// becomes the tensor's storage without a copy.
enum Buffer {
    B16(Vec<u16>),
    B32(Vec<u32>),
    B64(Vec<u64>),
}

impl Buffer {
    fn new(element: Element, len: usize) -> Self {
        match element.size() {
            2 => Self::B16(vec![0; len]),
            4 => Self::B32(vec![0; len]),
            _ => Self::B64(vec![0; len]),
        }
    }

    /// Writes the little-endian elements of `row` (stored as `from`) as `to` at `place(j)`.
    fn put_row(&mut self, row: &[u8], from: Element, to: Element, place: impl Fn(usize) -> usize) {
        let n = row.len() / from.size();
        // Same type: the stored bits as they are; otherwise through the value.
        let bits = |j: usize| -> u64 {
            if from == to {
                let b = &row[j * from.size()..(j + 1) * from.size()];
                let mut w = [0u8; 8];
                w[..b.len()].copy_from_slice(b);
                u64::from_le_bytes(w)
            } else {
                to.bits(from.value(row, j), from)
            }
        };
        match self {
            Self::B16(v) => (0..n).for_each(|j| v[place(j)] = bits(j) as u16),
            Self::B32(v) => (0..n).for_each(|j| v[place(j)] = bits(j) as u32),
            Self::B64(v) => (0..n).for_each(|j| v[place(j)] = bits(j)),
        }
    }

    fn into_bytes(self) -> Bytes {
        match self {
            Self::B16(v) => Bytes::from_elems(v),
            Self::B32(v) => Bytes::from_elems(v),
            Self::B64(v) => Bytes::from_elems(v),
        }
    }
}

pub(super) fn pickled_dtype(dtype: pytorch_reader::DType) -> &'static str {
    match dtype {
        pytorch_reader::DType::F64 => "F64",
        pytorch_reader::DType::F32 => "F32",
        pytorch_reader::DType::F16 => "F16",
        pytorch_reader::DType::BF16 => "BF16",
        pytorch_reader::DType::I64 => "I64",
        pytorch_reader::DType::I32 => "I32",
        _ => "unsupported",
    }
}

impl Checkpoint {
    /// Tensor `name` (or the block `rows` of its first dimension, with the rows of that block
    /// reordered by `order` when given, transposed when `transpose` and it is 2-D) as a deferred
    /// burn-pack tensor named `path` in dtype `target`: nothing is read until burn-store applies
    /// it to a module, and then the rows are streamed from the file straight into the one buffer
    /// that becomes the tensor (a pickled tensor is read whole first), converted element by
    /// element only if the stored dtype differs. `None` if the checkpoint has no tensor `name`.
    ///
    /// # Errors
    /// [`LoadError::UnsupportedDtype`] for a non-float tensor, [`LoadError::Corrupt`] for a
    /// row block or order that does not fit its shape.
    pub(crate) fn deferred(
        &self,
        name: &str,
        path: String,
        view: RowView,
        target: DType,
    ) -> Option<Result<PackTensor>> {
        let mut shape = self.shape(name)?.to_vec();
        if view.conv1x1 && shape.len() == 4 && shape[2..] == [1, 1] {
            shape.truncate(2);
        }
        let origin = self.origin();
        let (dtype, file, source) = match (self.entries.get(name), self.pickled.get(name)) {
            (Some(e), _) => (
                e.dtype.clone(),
                self.files[e.file].clone(),
                Source::File { start: e.start },
            ),
            (None, Some((f, t))) => (
                pickled_dtype(t.dtype()).to_string(),
                self.files[*f].clone(),
                Source::Pickle(t.clone()),
            ),
            (None, None) => return None,
        };
        let Some(stored) = Element::of(&dtype) else {
            return Some(Err(LoadError::UnsupportedDtype {
                path: file,
                name: name.to_string(),
                dtype,
            }));
        };
        let out = match Element::of_dtype(target) {
            Some(out) if out.is_int() == stored.is_int() => out,
            _ => {
                return Some(Err(LoadError::UnsupportedDtype {
                    path: file,
                    name: name.to_string(),
                    dtype: format!("{dtype} (read as {target:?})"),
                }));
            }
        };
        let first = shape.first().copied().unwrap_or(1);
        let row_elems: usize = shape.iter().skip(1).product();
        let rows = view.rows.clone().unwrap_or(0..first);
        let fits = rows.end <= first
            && view
                .order
                .as_ref()
                .is_none_or(|o| o.len() == rows.len() && o.iter().all(|&r| r < rows.len()));
        if !fits {
            return Some(Err(corrupt(
                &file,
                format!("`{name}` {shape:?} has no row block {rows:?} (in {origin})"),
            )));
        }
        let transpose = view.transpose && shape.len() == 2;
        let out_shape = match (transpose, shape.as_slice()) {
            (true, [_, cols]) => vec![*cols, rows.len()],
            (false, [_]) if view.flat => vec![1, rows.len()],
            _ => {
                let mut s = shape.clone();
                if let Some(d) = s.first_mut() {
                    *d = rows.len();
                }
                s
            }
        };
        let tensor_name = name.to_string();
        let data_shape = out_shape.clone();
        let order = view.order;
        let read = move || -> std::result::Result<TensorData, PackError> {
            let fail = |detail: String| {
                PackError::IoError(format!(
                    "{}: tensor `{tensor_name}`: {detail}",
                    file.display()
                ))
            };
            let n_rows = rows.len();
            let mut buffer = Buffer::new(out, n_rows * row_elems);
            let row_bytes = row_elems * stored.size();
            // Output position of element `j` of block row `i`.
            let place = |i: usize, j: usize| {
                if transpose {
                    j * n_rows + i
                } else {
                    i * row_elems + j
                }
            };
            let source_row = |i: usize| rows.start + order.as_ref().map_or(i, |o| o[i]);
            match &source {
                Source::File { start } => {
                    let f = File::open(&file).map_err(|e| fail(e.to_string()))?;
                    let mut reader = std::io::BufReader::with_capacity(1 << 22, f);
                    let mut row = vec![0u8; row_bytes];
                    let mut at = None;
                    for i in 0..n_rows {
                        let r = source_row(i);
                        if at != Some(r) {
                            reader
                                .seek(SeekFrom::Start(start + (r * row_bytes) as u64))
                                .map_err(|e| fail(e.to_string()))?;
                        }
                        reader
                            .read_exact(&mut row)
                            .map_err(|e| fail(e.to_string()))?;
                        at = Some(r + 1);
                        buffer.put_row(&row, stored, out, |j| place(i, j));
                    }
                }
                Source::Pickle(t) => {
                    let all = t.read().map_err(|e| fail(e.to_string()))?;
                    for i in 0..n_rows {
                        let r = source_row(i);
                        let row = all.get(r * row_bytes..(r + 1) * row_bytes).ok_or_else(|| {
                            fail(format!(
                                "holds {} bytes, not {}",
                                all.len(),
                                (r + 1) * row_bytes
                            ))
                        })?;
                        buffer.put_row(row, stored, out, |j| place(i, j));
                    }
                }
            }
            TensorData::try_from_bytes(buffer.into_bytes(), data_shape.clone(), target)
                .map_err(|e| fail(e.to_string()))
        };
        Some(Ok(bridge::deferred(
            path,
            target,
            out_shape.into(),
            None,
            read,
        )))
    }
}
