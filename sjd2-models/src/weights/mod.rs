//! Strict loading of named tensors from safetensors checkpoints (single file or sharded) and
//! PyTorch pickles (`.pt`, `.pth`, `.bin`), through burn-store.
//!
//! 1. [`Checkpoint`] opens the files and validates their headers (names, dtypes, shapes, byte
//!    ranges; typed errors for truncated or hostile files).
//! 2. Each stored tensor becomes a deferred burn-pack tensor (`deferred.rs`): read only when it is
//!    applied, one at a time, with no memory map, streamed straight into the buffer that becomes
//!    the parameter in the device's float dtype (row blocks, row orders and `Linear` transposes
//!    applied while reading).
//! 3. A module's name table (`apply.rs`) maps its parameter paths to checkpoint names; burn-store's
//!    applier matches, shape-checks and assigns them, and [`WeightLoader`] records every missing,
//!    mis-shaped and unused tensor, reported together by [`WeightLoader::finish`]. The same table
//!    writes a module back in the checkpoint's layout.

mod apply;
mod deferred;
mod write;

pub use apply::param_paths;
pub(crate) use apply::{Wanted, export_table};
use deferred::Element;
pub(crate) use deferred::RowView;
pub use write::{
    RawTensor, StoredDtype, write_safetensors, write_safetensors_raw, write_safetensors_typed,
};

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use burn::Tensor;
use burn::store::bridge;
use burn::tensor::{DType, Device, TensorData};
use serde::Deserialize;

use crate::error::{LoadError, Result};

#[derive(Debug, Clone)]
struct Entry {
    file: usize,
    dtype: String,
    shape: Vec<usize>,
    /// Absolute offset of the first byte in the file.
    start: u64,
}

/// The tensors of one checkpoint: names, dtypes, shapes and where their bytes are.
#[derive(Debug)]
pub struct Checkpoint {
    files: Vec<PathBuf>,
    entries: BTreeMap<String, Entry>,
    /// Tensors of a PyTorch pickle checkpoint (`.pt`, `.pth`, `.bin`), read lazily.
    pickled: BTreeMap<String, (usize, pytorch_reader::Tensor)>,
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
            // Meta's release layout (Chameleon-7B, Anole-7b-v0.1).
            let consolidated = path.join("consolidated.pth");
            if consolidated.is_file() {
                return Self::open_pytorch(&consolidated, None);
            }
            if path.join("consolidated.00.pth").is_file() {
                return Err(corrupt(
                    path,
                    "Meta's model-parallel shards (consolidated.00.pth …) split every matrix \
                     across files; convert them with transformers' \
                     convert_chameleon_weights_to_hf.py, or load a single consolidated.pth",
                ));
            }
            return Err(LoadError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no model.safetensors, model.safetensors.index.json, pytorch_model.bin, pytorch_model.bin.index.json or consolidated.pth in this directory",
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
                let fits = match (Element::of(&h.dtype).map(|e| e.size() as u64), elems) {
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

    /// The dtype tensor `name` is stored in, when it is one a checkpoint is written in (F32, F16,
    /// BF16 in a safetensors file); `None` for other dtypes, pickled tensors and unknown names.
    pub fn stored_dtype(&self, name: &str) -> Option<write::StoredDtype> {
        match self.entries.get(name)?.dtype.as_str() {
            "F32" => Some(write::StoredDtype::F32),
            "F16" => Some(write::StoredDtype::F16),
            "BF16" => Some(write::StoredDtype::BF16),
            _ => None,
        }
    }

    /// Reads tensor `name` exactly as stored (dtype, shape, bytes). Pickled tensors, which have
    /// no safetensors bytes, are read as `F32` (floats) or `I64` (integers).
    ///
    /// # Errors
    /// [`LoadError::Mismatch`] if it does not exist, I/O errors, a truncated file.
    pub fn read_raw(&self, name: &str) -> Result<write::RawTensor> {
        let Some(e) = self.entries.get(name) else {
            return match self.read_f32(name) {
                Ok((shape, v)) => Ok(write::RawTensor::from_f32(
                    shape,
                    &v,
                    write::StoredDtype::F32,
                )),
                Err(_) => {
                    let (shape, v) = self.read_i64(name)?;
                    Ok(write::RawTensor {
                        dtype: "I64".into(),
                        shape,
                        bytes: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                    })
                }
            };
        };
        let path = &self.files[e.file];
        let size = write::dtype_size(&e.dtype).map_or(1, |(_, s)| s);
        let len = e.shape.iter().product::<usize>() * size;
        let mut f = File::open(path).map_err(io(path))?;
        use std::io::Seek;
        f.seek(std::io::SeekFrom::Start(e.start))
            .map_err(io(path))?;
        let mut bytes = vec![0u8; len];
        f.read_exact(&mut bytes).map_err(io(path))?;
        Ok(write::RawTensor {
            dtype: e.dtype.clone(),
            shape: e.shape.clone(),
            bytes,
        })
    }

    /// Reads tensor `name` as `f32` values in row-major order, with its shape.
    ///
    /// # Errors
    /// [`LoadError::Mismatch`] if it does not exist, [`LoadError::UnsupportedDtype`], I/O errors.
    pub fn read_f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        self.read_as(name, DType::F32)
    }

    /// Reads an integer tensor (I64 or I32) as `i64`, for reference inputs.
    ///
    /// # Errors
    /// As [`Checkpoint::read_f32`].
    pub fn read_i64(&self, name: &str) -> Result<(Vec<usize>, Vec<i64>)> {
        self.read_as(name, DType::I64)
    }

    /// Reads tensor `name` whole, converted to `dtype`, with its shape.
    fn read_as<E: burn::tensor::Element>(
        &self,
        name: &str,
        dtype: DType,
    ) -> Result<(Vec<usize>, Vec<E>)> {
        let data = self.read_data(name, dtype)?;
        let shape = data.shape().to_vec();
        let values = data
            .try_into_vec::<E>()
            .map_err(|e| corrupt(Path::new(&self.origin()), format!("{e:?}")))?;
        Ok((shape, values))
    }

    /// Tensor `name` whole, read into `dtype` (the deferred read, run now).
    fn read_data(&self, name: &str, dtype: DType) -> Result<TensorData> {
        let missing = || LoadError::Mismatch {
            origin: self.origin(),
            missing: vec![name.to_string()],
            unexpected: vec![],
            mis_shaped: vec![],
        };
        let tensor = self
            .deferred(name, name.to_string(), RowView::default(), dtype)
            .ok_or_else(missing)??;
        bridge::into_data(tensor).map_err(|e| corrupt(Path::new(&self.origin()), e.to_string()))
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

    /// Tensor `name` with exactly `shape`, read straight into [`WeightLoader::dtype`] (zeros,
    /// with the problem recorded, if it is missing, mis-shaped or unreadable).
    pub fn tensor<const D: usize>(&mut self, name: &str, shape: [usize; D]) -> Tensor<D> {
        let zeros = || Tensor::zeros(shape, &self.device);
        let Some(found) = self.checkpoint.shape(name).map(<[usize]>::to_vec) else {
            self.missing.push(name.to_string());
            return zeros();
        };
        self.used.insert(name.to_string());
        if found != shape {
            self.mis_shaped
                .push((name.to_string(), shape.to_vec(), found));
            return zeros();
        }
        match self.checkpoint.read_data(name, self.dtype()) {
            Ok(data) => Tensor::from_data(data, &self.device),
            Err(e) => {
                self.fatal.get_or_insert(e);
                zeros()
            }
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

/// A tensor by name in a checkpoint layout: `(name, shape, row-major values)`.
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);
