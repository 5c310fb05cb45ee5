//! Strict loading of named tensors from safetensors checkpoints (single file or sharded) and
//! PyTorch pickles (`.pt`, `.pth`, `.bin`).
//!
//! Tensors are read lazily, one at a time, straight from the file (no memory map, no copy of the
//! whole checkpoint) and converted from F32, F16, BF16 or F64 to `f32`. A [`WeightLoader`]
//! records every missing or mis-shaped tensor instead of stopping at the first, and
//! [`WeightLoader::finish`] reports them all together with the unused ones.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use burn::Tensor;
use burn::store::burn_pack::{Error as PackError, Tensor as PackTensor};
use burn::store::{ApplyError, ModuleSnapshot, bridge};
use burn::tensor::{Bytes, DType, Device, TensorData};
use serde::Deserialize;

use crate::error::{LoadError, Result};

/// One tensor's bytes as stored (little-endian), with where it came from.
struct RawTensor {
    shape: Vec<usize>,
    dtype: String,
    bytes: Vec<u8>,
    path: PathBuf,
}

#[derive(Debug, Clone)]
struct Entry {
    file: usize,
    dtype: String,
    shape: Vec<usize>,
    /// Absolute byte range in the file.
    start: u64,
    end: u64,
}

/// The tensors of one checkpoint: names, dtypes, shapes and where their bytes are.
#[derive(Debug)]
pub struct Checkpoint {
    files: Vec<PathBuf>,
    entries: BTreeMap<String, Entry>,
    /// Tensors of a PyTorch pickle checkpoint (`.pt`, `.pth`, `.bin`), read lazily.
    pickled: BTreeMap<String, (usize, pytorch_reader::Tensor)>,
}

/// Where the bytes of a deferred tensor come from.
enum Source {
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
}

/// A float element type, stored or loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Element {
    F16,
    BF16,
    F32,
    F64,
}

impl Element {
    fn of(dtype: &str) -> Option<Self> {
        match dtype {
            "F16" => Some(Self::F16),
            "BF16" => Some(Self::BF16),
            "F32" => Some(Self::F32),
            "F64" => Some(Self::F64),
            _ => None,
        }
    }

    fn of_dtype(dtype: DType) -> Option<Self> {
        match dtype {
            DType::F16 => Some(Self::F16),
            DType::BF16 => Some(Self::BF16),
            DType::F32 | DType::Flex32 => Some(Self::F32),
            DType::F64 => Some(Self::F64),
            _ => None,
        }
    }

    fn size(self) -> usize {
        match self {
            Self::F16 | Self::BF16 => 2,
            Self::F32 => 4,
            Self::F64 => 8,
        }
    }
}

/// The buffer a deferred tensor is read into, typed so that it is aligned for its elements and
/// becomes the tensor's storage without a copy.
enum Buffer {
    Half(Vec<u16>, Element),
    Single(Vec<u32>),
    Double(Vec<u64>),
}

impl Buffer {
    fn new(element: Element, len: usize) -> Self {
        match element {
            Element::F16 | Element::BF16 => Self::Half(vec![0; len], element),
            Element::F32 => Self::Single(vec![0; len]),
            Element::F64 => Self::Double(vec![0; len]),
        }
    }

    /// Writes the little-endian elements of `row` (stored as `from`) at `place(j)`, converting
    /// when the element types differ.
    fn put_row(&mut self, row: &[u8], from: Element, place: impl Fn(usize) -> usize) {
        let n = row.len() / from.size();
        let value = |j: usize| -> f64 {
            let b = &row[j * from.size()..(j + 1) * from.size()];
            match from {
                Element::F16 => f64::from(half::f16::from_le_bytes([b[0], b[1]]).to_f32()),
                Element::BF16 => f64::from(half::bf16::from_le_bytes([b[0], b[1]]).to_f32()),
                Element::F32 => f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                Element::F64 => {
                    f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
                }
            }
        };
        match self {
            Self::Half(v, to) if *to == from => {
                for j in 0..n {
                    v[place(j)] = u16::from_le_bytes([row[2 * j], row[2 * j + 1]]);
                }
            }
            Self::Half(v, to) => {
                let to = *to;
                for j in 0..n {
                    // Through f32 for f16/bf16/f32 sources (exact), as PyTorch casts.
                    let x = value(j);
                    v[place(j)] = match (to, from) {
                        (Element::F16, Element::F64) => half::f16::from_f64(x).to_bits(),
                        (Element::F16, _) => half::f16::from_f32(x as f32).to_bits(),
                        (_, Element::F64) => half::bf16::from_f64(x).to_bits(),
                        _ => half::bf16::from_f32(x as f32).to_bits(),
                    };
                }
            }
            Self::Single(v) => {
                for j in 0..n {
                    v[place(j)] = (value(j) as f32).to_bits();
                }
            }
            Self::Double(v) => {
                for j in 0..n {
                    v[place(j)] = value(j).to_bits();
                }
            }
        }
    }

    fn into_bytes(self) -> Bytes {
        match self {
            Self::Half(v, _) => Bytes::from_elems(v),
            Self::Single(v) => Bytes::from_elems(v),
            Self::Double(v) => Bytes::from_elems(v),
        }
    }
}

fn pickled_dtype(dtype: pytorch_reader::DType) -> &'static str {
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

#[derive(Deserialize)]
struct HeaderEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [u64; 2],
}

#[derive(Deserialize)]
struct ShardIndex {
    weight_map: BTreeMap<String, String>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LoadError + '_ {
    move |source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn corrupt(path: &Path, detail: impl Into<String>) -> LoadError {
    LoadError::Corrupt {
        path: path.to_path_buf(),
        detail: detail.into(),
    }
}

fn dtype_size(dtype: &str) -> Option<u64> {
    match dtype {
        "F32" => Some(4),
        "F16" | "BF16" => Some(2),
        "F64" => Some(8),
        _ => None,
    }
}

impl Checkpoint {
    /// Opens a checkpoint: a `.safetensors` file, a PyTorch `.pt` / `.pth` / `.bin` / `.ckpt`
    /// file, a shard index (`*.index.json`, safetensors or PyTorch shards), or a directory
    /// holding `model.safetensors`, `model.safetensors.index.json`, `pytorch_model.bin` or
    /// `pytorch_model.bin.index.json` (Hugging Face names, searched in that order).
    ///
    /// # Errors
    /// [`LoadError::Io`] for unreadable files, [`LoadError::Corrupt`] for bad headers, offsets
    /// past the end of the file (truncation) or an inconsistent shard index.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if path.is_dir() {
            let index = path.join("model.safetensors.index.json");
            if index.is_file() {
                return Self::open_sharded(&index);
            }
            let single = path.join("model.safetensors");
            if single.is_file() {
                return Self::open_files(&[single]);
            }
            let bin_index = path.join("pytorch_model.bin.index.json");
            if bin_index.is_file() {
                return Self::open_sharded(&bin_index);
            }
            let bin = path.join("pytorch_model.bin");
            if bin.is_file() {
                return Self::open_pytorch(&bin, None);
            }
            return Err(LoadError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no model.safetensors, model.safetensors.index.json, pytorch_model.bin or pytorch_model.bin.index.json in this directory",
                ),
            });
        }
        if path.extension().is_some_and(|e| e == "json") {
            return Self::open_sharded(path);
        }
        if path
            .extension()
            .is_some_and(|e| e == "pt" || e == "pth" || e == "bin" || e == "ckpt")
        {
            return Self::open_pytorch(path, None);
        }
        Self::open_files(&[path.to_path_buf()])
    }

    /// Opens a PyTorch checkpoint (`torch.save` zip or legacy format). With `top_level_key`
    /// `None`, a state dict nested under `model`, `module` or `state_dict` (LlamaGen, DDP and
    /// Lightning checkpoints) is found automatically; non-tensor entries are ignored.
    ///
    /// # Errors
    /// [`LoadError::Io`] for unreadable files, [`LoadError::Corrupt`] for anything the pickle
    /// reader rejects.
    pub fn open_pytorch(path: impl AsRef<Path>, top_level_key: Option<&str>) -> Result<Self> {
        let path = path.as_ref();
        if !path.is_file() {
            return Err(LoadError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            });
        }
        let read = |key: Option<&str>| match key {
            Some(k) => pytorch_reader::PytorchReader::with_top_level_key(path, k),
            None => pytorch_reader::PytorchReader::new(path),
        };
        let reader = match top_level_key {
            Some(k) => read(Some(k)),
            None => ["model", "module", "state_dict"]
                .into_iter()
                .find_map(|k| read(Some(k)).ok().filter(|r| !r.is_empty()))
                .map_or_else(|| read(None), Ok),
        }
        .map_err(|e| corrupt(path, format!("not a readable PyTorch checkpoint: {e}")))?;
        let pickled = reader
            .into_tensors()
            .into_iter()
            .map(|(k, t)| (k, (0, t)))
            .collect();
        Ok(Self {
            files: vec![path.to_path_buf()],
            entries: BTreeMap::new(),
            pickled,
        })
    }

    fn open_sharded(index: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(index).map_err(io(index))?;
        let parsed: ShardIndex = serde_json::from_str(&text)
            .map_err(|e| corrupt(index, format!("bad shard index: {e}")))?;
        let dir = index.parent().unwrap_or(Path::new("."));
        let shards: BTreeSet<&String> = parsed.weight_map.values().collect();
        let files: Vec<PathBuf> = shards.iter().map(|s| dir.join(s)).collect();
        let pickle = |p: &PathBuf| p.extension().is_some_and(|e| e != "safetensors");
        let ck = if files.iter().all(pickle) {
            // PyTorch shards (`pytorch_model-0000N-of-0000M.bin` with `pytorch_model.bin.index.json`).
            let mut merged = Self {
                files: files.clone(),
                entries: BTreeMap::new(),
                pickled: BTreeMap::new(),
            };
            for (i, f) in files.iter().enumerate() {
                for (name, (_, t)) in Self::open_pytorch(f, None)?.pickled {
                    if merged.pickled.insert(name.clone(), (i, t)).is_some() {
                        return Err(corrupt(
                            index,
                            format!("`{name}` appears in more than one shard"),
                        ));
                    }
                }
            }
            merged
        } else {
            Self::open_files(&files)?
        };
        for (name, shard) in &parsed.weight_map {
            let file = ck
                .entries
                .get(name)
                .map(|e| e.file)
                .or_else(|| ck.pickled.get(name).map(|(f, _)| *f));
            match file {
                Some(f) if ck.files[f] == dir.join(shard) => {}
                Some(_) => {
                    return Err(corrupt(
                        index,
                        format!("`{name}` is not in the shard {shard} the index names"),
                    ));
                }
                None => {
                    return Err(corrupt(
                        index,
                        format!("`{name}` is listed but missing from {shard}"),
                    ));
                }
            }
        }
        Ok(ck)
    }

    fn open_files(files: &[PathBuf]) -> Result<Self> {
        let mut entries = BTreeMap::new();
        for (i, path) in files.iter().enumerate() {
            let mut f = File::open(path).map_err(io(path))?;
            let size = f.metadata().map_err(io(path))?.len();
            let mut n = [0u8; 8];
            f.read_exact(&mut n)
                .map_err(|_| corrupt(path, "shorter than the 8-byte header length"))?;
            let n = u64::from_le_bytes(n);
            if n > size.saturating_sub(8) || n > 100_000_000 {
                return Err(corrupt(
                    path,
                    format!("header length {n} exceeds the file size {size}"),
                ));
            }
            let mut header = vec![0u8; n as usize];
            f.read_exact(&mut header).map_err(io(path))?;
            let header: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&header)
                .map_err(|e| corrupt(path, format!("bad JSON header: {e}")))?;
            let data_start = 8 + n;
            for (name, value) in header {
                if name == "__metadata__" {
                    continue;
                }
                let h: HeaderEntry = serde_json::from_value(value)
                    .map_err(|e| corrupt(path, format!("bad header entry for `{name}`: {e}")))?;
                let [b, e] = h.data_offsets;
                let elems = h
                    .shape
                    .iter()
                    .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
                let fits = match (dtype_size(&h.dtype), elems) {
                    (Some(sz), Some(n)) => n
                        .checked_mul(sz)
                        .is_some_and(|bytes| e.checked_sub(b) == Some(bytes)),
                    (None, Some(_)) => b <= e,
                    (_, None) => false,
                };
                if !fits {
                    return Err(corrupt(
                        path,
                        format!(
                            "`{name}`: byte range {b}..{e} does not fit shape {:?} of {}",
                            h.shape, h.dtype
                        ),
                    ));
                }
                let end = data_start.saturating_add(e);
                if end > size {
                    return Err(corrupt(
                        path,
                        format!(
                            "`{name}` ends at byte {end} but the file has {size} bytes (truncated?)"
                        ),
                    ));
                }
                if entries.contains_key(&name) {
                    return Err(corrupt(
                        path,
                        format!("`{name}` appears in more than one shard"),
                    ));
                }
                entries.insert(
                    name,
                    Entry {
                        file: i,
                        dtype: h.dtype,
                        shape: h.shape,
                        start: data_start + b,
                        end: data_start + e,
                    },
                );
            }
        }
        Ok(Self {
            files: files.to_vec(),
            entries,
            pickled: BTreeMap::new(),
        })
    }

    /// A short description of where the tensors come from.
    pub fn origin(&self) -> String {
        match self.files.as_slice() {
            [one] => one.display().to_string(),
            many => format!(
                "{} shards in {}",
                many.len(),
                many.first()
                    .and_then(|p| p.parent())
                    .unwrap_or(Path::new("."))
                    .display()
            ),
        }
    }

    /// Tensor names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries
            .keys()
            .chain(self.pickled.keys())
            .map(String::as_str)
    }

    /// Shape of tensor `name`.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.entries
            .get(name)
            .map(|e| e.shape.as_slice())
            .or_else(|| self.pickled.get(name).map(|(_, t)| t.shape()))
    }

    /// Reads a pickled tensor as native-endian bytes with its dtype name.
    fn read_pickled(&self, name: &str) -> Option<Result<RawTensor>> {
        let (file, t) = self.pickled.get(name)?;
        let path = &self.files[*file];
        let dtype = match t.dtype() {
            pytorch_reader::DType::F64 => "F64",
            pytorch_reader::DType::F32 => "F32",
            pytorch_reader::DType::F16 => "F16",
            pytorch_reader::DType::BF16 => "BF16",
            pytorch_reader::DType::I64 => "I64",
            pytorch_reader::DType::I32 => "I32",
            other => {
                return Some(Err(LoadError::UnsupportedDtype {
                    path: path.clone(),
                    name: name.to_string(),
                    dtype: format!("{other:?}"),
                }));
            }
        };
        Some(
            t.read()
                .map(|bytes| RawTensor {
                    shape: t.shape().to_vec(),
                    dtype: dtype.to_string(),
                    bytes,
                    path: path.clone(),
                })
                .map_err(|e| corrupt(path, format!("tensor `{name}`: {e}"))),
        )
    }

    /// Reads tensor `name` as `f32` values in row-major order, with its shape.
    ///
    /// # Errors
    /// [`LoadError::Mismatch`] if it does not exist, [`LoadError::UnsupportedDtype`], I/O errors.
    pub fn read_f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let RawTensor {
            shape,
            dtype,
            bytes,
            path,
        } = self.read_raw(name)?;
        let values = match dtype.as_str() {
            "F32" => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            "F16" => bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            "BF16" => bytes
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            "F64" => bytes
                .chunks_exact(8)
                .map(|c| {
                    f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
                })
                .collect(),
            other => {
                return Err(LoadError::UnsupportedDtype {
                    path,
                    name: name.to_string(),
                    dtype: other.to_string(),
                });
            }
        };
        Ok((shape, values))
    }

    /// Shape, dtype name, little-endian bytes and file of tensor `name`.
    fn read_raw(&self, name: &str) -> Result<RawTensor> {
        if let Some(r) = self.read_pickled(name) {
            return r;
        }
        let e = self.entries.get(name).ok_or_else(|| LoadError::Mismatch {
            origin: self.origin(),
            missing: vec![name.to_string()],
            unexpected: vec![],
            mis_shaped: vec![],
        })?;
        let path = &self.files[e.file];
        let mut f = File::open(path).map_err(io(path))?;
        f.seek(SeekFrom::Start(e.start)).map_err(io(path))?;
        let mut bytes = vec![0u8; (e.end - e.start) as usize];
        f.read_exact(&mut bytes).map_err(io(path))?;
        Ok(RawTensor {
            shape: e.shape.clone(),
            dtype: e.dtype.clone(),
            bytes,
            path: path.clone(),
        })
    }

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
        let shape = self.shape(name)?.to_vec();
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
        let Some(out) = Element::of_dtype(target) else {
            return Some(Err(corrupt(
                &file,
                format!("cannot load `{name}` as {target:?}"),
            )));
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
                        buffer.put_row(&row, stored, |j| place(i, j));
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
                        buffer.put_row(row, stored, |j| place(i, j));
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

    /// Reads an integer tensor (I64 or I32), for reference inputs.
    ///
    /// # Errors
    /// As [`Checkpoint::read_f32`].
    pub fn read_i64(&self, name: &str) -> Result<(Vec<usize>, Vec<i64>)> {
        let RawTensor {
            shape,
            dtype,
            bytes,
            path,
        } = self.read_raw(name)?;
        let values = match dtype.as_str() {
            "I64" => bytes
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
            "I32" => bytes
                .chunks_exact(4)
                .map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect(),
            other => {
                return Err(LoadError::UnsupportedDtype {
                    path,
                    name: name.to_string(),
                    dtype: other.to_string(),
                });
            }
        };
        Ok((shape, values))
    }
}

/// Takes named tensors out of a [`Checkpoint`] onto a device, collecting every problem.
#[derive(Debug)]
pub struct WeightLoader {
    checkpoint: Checkpoint,
    device: Device,
    used: BTreeSet<String>,
    missing: Vec<String>,
    mis_shaped: Vec<(String, Vec<usize>, Vec<usize>)>,
    fatal: Option<LoadError>,
}

impl WeightLoader {
    /// A loader over `checkpoint` placing tensors on `device`.
    pub fn new(checkpoint: Checkpoint, device: &Device) -> Self {
        Self {
            checkpoint,
            device: device.clone(),
            used: BTreeSet::new(),
            missing: Vec::new(),
            mis_shaped: Vec::new(),
            fatal: None,
        }
    }

    /// The checkpoint.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// Whether tensor `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.checkpoint.shape(name).is_some()
    }

    /// The host values of `name` if it has exactly `shape` (recording a problem otherwise).
    pub fn values(&mut self, name: &str, shape: &[usize]) -> Option<Vec<f32>> {
        let Some(found) = self.checkpoint.shape(name).map(<[usize]>::to_vec) else {
            self.missing.push(name.to_string());
            return None;
        };
        self.used.insert(name.to_string());
        if found != shape {
            self.mis_shaped
                .push((name.to_string(), shape.to_vec(), found));
            return None;
        }
        match self.checkpoint.read_f32(name) {
            Ok((_, v)) => Some(v),
            Err(e) => {
                self.fatal.get_or_insert(e);
                None
            }
        }
    }

    /// Tensor `name` with exactly `shape` (zeros, with the problem recorded, if it is missing or
    /// mis-shaped).
    pub fn tensor<const D: usize>(&mut self, name: &str, shape: [usize; D]) -> Tensor<D> {
        match self.values(name, &shape) {
            Some(v) => Tensor::from_data(TensorData::new(v, shape), &self.device),
            None => Tensor::zeros(shape, &self.device),
        }
    }

    /// A PyTorch `Linear` weight stored `[out, in]`, returned transposed as `[in, out]` so that
    /// `x.matmul(w)` applies it.
    pub fn linear(&mut self, name: &str, out_features: usize, in_features: usize) -> Tensor<2> {
        self.tensor(name, [out_features, in_features]).transpose()
    }

    /// The device tensors are placed on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The float dtype loaded tensors are stored in on the device: the device's configured
    /// float dtype (`f32` unless [`sjd2_core::configure_precision`] changed it). Tensors stored
    /// in another dtype are converted one at a time on the way in; tensors already in it are
    /// never expanded.
    pub fn dtype(&self) -> DType {
        self.device.settings().float_dtype.into()
    }

    /// Records a tensor whose stored shape differs from the model's.
    pub(crate) fn record_mis_shaped(
        &mut self,
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    ) {
        self.used.insert(name.clone());
        self.mis_shaped.push((name, expected, found));
    }

    /// Marks a tensor as used without loading it (a known extra such as a buffer).
    pub fn skip(&mut self, name: &str) {
        if self.contains(name) {
            self.used.insert(name.to_string());
        }
    }

    /// Ends loading.
    ///
    /// # Errors
    /// [`LoadError::Mismatch`] listing every missing and mis-shaped tensor and every tensor that
    /// was not used, unless `allow_unused(name)` says it is a known extra; I/O errors met while
    /// reading.
    pub fn finish(self, allow_unused: impl Fn(&str) -> bool) -> Result<()> {
        if let Some(e) = self.fatal {
            return Err(e);
        }
        let unexpected: Vec<String> = self
            .checkpoint
            .names()
            .filter(|n| !self.used.contains(*n) && !allow_unused(n))
            .map(str::to_string)
            .collect();
        if self.missing.is_empty() && self.mis_shaped.is_empty() && unexpected.is_empty() {
            return Ok(());
        }
        Err(LoadError::Mismatch {
            origin: self.checkpoint.origin(),
            missing: self.missing,
            unexpected,
            mis_shaped: self.mis_shaped,
        })
    }
}

/// A module parameter to load through burn-store: its module path, the stored tensor it comes
/// from, which rows of that tensor and in which order, and whether it is a `Linear` weight
/// (stored `[out, in]`, held `[in, out]`).
pub(crate) struct Wanted {
    /// Module path (`layers.0.self_attn.q_proj.weight`).
    pub path: String,
    /// Checkpoint name.
    pub name: String,
    /// A block of the stored tensor's rows (all when `None`).
    pub rows: Option<std::ops::Range<usize>>,
    /// The order of the rows of that block.
    pub order: Option<Vec<usize>>,
    /// Whether it is a `Linear` weight.
    pub linear: bool,
}

impl Wanted {
    /// The whole tensor `name` into parameter `path`.
    pub(crate) fn new(path: String, name: String, linear: bool) -> Self {
        Self {
            path,
            name,
            rows: None,
            order: None,
            linear,
        }
    }
}

impl WeightLoader {
    /// Loads `wanted` into `module` through burn-store's applier (which matches tensors to
    /// parameters by path, checks shapes and kinds, and reports what is missing or unused):
    /// every tensor is read when it is applied, one at a time, straight into its final buffer in
    /// [`WeightLoader::dtype`] (converted element by element only where the stored dtype
    /// differs), with `Linear` weights transposed on the way. Problems are recorded under the checkpoint's names (shapes in
    /// the checkpoint's layout) for [`WeightLoader::finish`]; parameters left unloaded keep their
    /// lazy initialization.
    pub(crate) fn apply<M: ModuleSnapshot>(&mut self, module: &mut M, wanted: Vec<Wanted>) {
        // Module path → what it was read from, to report problems under the checkpoint's names.
        let mut origin: BTreeMap<String, (String, bool)> = BTreeMap::new();
        let mut tensors = Vec::with_capacity(wanted.len());
        for w in wanted {
            origin.insert(w.path.clone(), (w.name.clone(), w.linear));
            let view = RowView {
                rows: w.rows,
                order: w.order,
                transpose: w.linear,
            };
            match self
                .checkpoint
                .deferred(&w.name, w.path, view, self.dtype())
            {
                Some(Ok(t)) => {
                    self.used.insert(w.name);
                    tensors.push(t);
                }
                Some(Err(e)) => {
                    self.fatal.get_or_insert(e);
                }
                None => {}
            }
        }
        let result = module.apply(tensors, None, None, false);
        for (path, _) in &result.missing {
            let name = origin.get(path).map_or(path, |(n, _)| n).clone();
            if !self.missing.contains(&name) && self.checkpoint.shape(&name).is_none() {
                self.missing.push(name);
            }
        }
        for error in result.errors {
            match error {
                ApplyError::ShapeMismatch {
                    path,
                    expected,
                    found,
                } => {
                    let (name, linear) = origin.get(&path).cloned().unwrap_or((path, false));
                    let (mut expected, mut found) = (expected.to_vec(), found.to_vec());
                    if linear {
                        // Report in the checkpoint's `[out, in]` layout.
                        expected.reverse();
                        found.reverse();
                    }
                    self.mis_shaped.push((name, expected, found));
                }
                other => {
                    self.fatal.get_or_insert(LoadError::Corrupt {
                        path: self.checkpoint.origin().into(),
                        detail: other.to_string(),
                    });
                }
            }
        }
    }
}

/// Every parameter of `module` that `table` names, under its checkpoint name and in the
/// checkpoint's layout (row blocks of one stored tensor joined, row orders undone, `Linear`
/// weights transposed back), as `f32` host values: what [`WeightLoader::apply`] reads back.
///
/// # Errors
/// [`sjd2_core::Error::TensorData`] when a parameter cannot be read back.
pub(crate) fn export_table<M: ModuleSnapshot>(
    module: &M,
    table: Vec<Wanted>,
) -> std::result::Result<Vec<NamedTensor>, sjd2_core::Error> {
    let mut by_path: BTreeMap<String, PackTensor> = module
        .collect(None, None, false)
        .into_iter()
        .map(|t| (t.name.clone(), t))
        .collect();
    // Checkpoint name → (shape after the first dimension, row blocks by first row).
    let mut order: Vec<String> = Vec::new();
    let mut blocks: BTreeMap<String, (Vec<usize>, BTreeMap<usize, Vec<f32>>)> = BTreeMap::new();
    for w in table {
        let Some(t) = by_path.remove(&w.path) else {
            continue;
        };
        let bad = |detail: String| sjd2_core::Error::TensorData {
            what: w.path.clone(),
            detail,
        };
        let data = bridge::into_data(t).map_err(|e| bad(e.to_string()))?;
        let mut shape = data.shape().to_vec();
        let mut values = data
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| bad(format!("{e:?}")))?;
        if let (true, [r, c]) = (w.linear, shape.as_slice()) {
            let (r, c) = (*r, *c);
            values = (0..c * r).map(|k| values[(k % r) * c + k / r]).collect();
            shape = vec![c, r];
        }
        let row: usize = shape.iter().skip(1).product();
        if let Some(o) = &w.order {
            let mut undone = vec![0.0; values.len()];
            for (i, &src) in o.iter().enumerate() {
                undone[src * row..(src + 1) * row].copy_from_slice(&values[i * row..(i + 1) * row]);
            }
            values = undone;
        }
        let first = w.rows.map_or(0, |r| r.start);
        if !blocks.contains_key(&w.name) {
            order.push(w.name.clone());
        }
        let entry = blocks
            .entry(w.name)
            .or_insert_with(|| (shape[1..].to_vec(), BTreeMap::new()));
        entry.1.insert(first, values);
    }
    Ok(order
        .into_iter()
        .filter_map(|name| {
            let (rest, parts) = blocks.remove(&name)?;
            let values: Vec<f32> = parts.into_values().flatten().collect();
            let row: usize = rest.iter().product::<usize>().max(1);
            let mut shape = vec![values.len() / row];
            shape.extend(rest);
            Some((name, shape, values))
        })
        .collect())
}

/// A tensor by name in a checkpoint layout: `(name, shape, row-major values)`.
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

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

/// Writes `f32` tensors as a safetensors file in `dtype` (used by `examples/inspect.rs` and the
/// tests).
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
    let (name, size) = match dtype {
        StoredDtype::F32 => ("F32", 4u64),
        StoredDtype::F16 => ("F16", 2),
        StoredDtype::BF16 => ("BF16", 2),
    };
    let mut header = serde_json::Map::new();
    let mut offset = 0u64;
    for (tname, shape, data) in tensors {
        if shape.iter().product::<usize>() != data.len() {
            return Err(corrupt(
                path,
                format!("`{tname}`: {} values for shape {shape:?}", data.len()),
            ));
        }
        let end = offset + size * data.len() as u64;
        header.insert(
            (*tname).to_string(),
            serde_json::json!({ "dtype": name, "shape": shape, "data_offsets": [offset, end] }),
        );
        offset = end;
    }
    let mut h = serde_json::to_vec(&header).map_err(|e| corrupt(path, e.to_string()))?;
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let mut f = File::create(path).map_err(io(path))?;
    f.write_all(&(h.len() as u64).to_le_bytes())
        .map_err(io(path))?;
    f.write_all(&h).map_err(io(path))?;
    for (_, _, data) in tensors {
        let bytes: Vec<u8> = match dtype {
            StoredDtype::F32 => data.iter().flat_map(|x| x.to_le_bytes()).collect(),
            StoredDtype::F16 => data
                .iter()
                .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
                .collect(),
            StoredDtype::BF16 => data
                .iter()
                .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
                .collect(),
        };
        f.write_all(&bytes).map_err(io(path))?;
    }
    Ok(())
}
