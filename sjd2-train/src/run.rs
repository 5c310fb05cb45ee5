//! Shared pieces of the training stages: run directories with resumable state, learning-rate
//! schedules and image batches.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Int, Tensor, TensorData};
use serde_json::Value;
use sjd2_models::weights::StoredDtype;

use crate::error::{Result, TrainError, io};
use crate::shapes::Sample;

/// Seed of the training images.
pub const TRAIN_SEED: u64 = 1;
/// Seed of the held-out images and prompts (never trained on).
pub const HELDOUT_SEED: u64 = 2;

/// A stage's working directory: `checkpoint.safetensors` (the model's parameters, in its
/// inference layout),
/// `state.json` (the step reached and the stage's settings) and `log.jsonl` (one line per
/// logged step).
#[derive(Debug, Clone)]
pub struct RunDir {
    dir: PathBuf,
}

impl RunDir {
    /// Opens (creating) a run directory.
    ///
    /// # Errors
    /// I/O errors.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(Self { dir })
    }

    /// A file in the directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The trainer checkpoint path.
    pub fn checkpoint(&self) -> PathBuf {
        self.file("checkpoint.safetensors")
    }

    /// Writes the checkpoint atomically: `tensors` in an inference layout (the model's `export`),
    /// f32, so that the inference loaders read it back.
    ///
    /// # Errors
    /// I/O errors.
    pub fn save_checkpoint(&self, tensors: &[crate::checkpoint::NamedTensor]) -> Result<()> {
        self.atomically("checkpoint.safetensors", |p| {
            crate::checkpoint::write_named(p, tensors, StoredDtype::F32)
        })
    }

    /// The saved state, if any.
    ///
    /// # Errors
    /// A corrupt `state.json`.
    pub fn state(&self) -> Result<Option<Value>> {
        let p = self.file("state.json");
        if !p.exists() || !self.checkpoint().exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&p).map_err(io(&p))?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| TrainError::Checkpoint {
                path: p.display().to_string(),
                detail: e.to_string(),
            })
    }

    /// Writes `state.json` atomically (write then rename).
    ///
    /// # Errors
    /// I/O errors.
    pub fn save_state(&self, state: &Value) -> Result<()> {
        let p = self.file("state.json");
        let tmp = self.file("state.json.tmp");
        std::fs::write(&tmp, state.to_string()).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &p).map_err(io(&p))
    }

    /// Appends one line to `log.jsonl`.
    ///
    /// # Errors
    /// I/O errors.
    pub fn log(&self, line: &Value) -> Result<()> {
        use std::io::Write;
        let p = self.file("log.jsonl");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .map_err(io(&p))?;
        writeln!(f, "{line}").map_err(io(&p))
    }

    /// Writes a file through a temporary name, so that an interrupted write never leaves a
    /// half-written checkpoint behind.
    ///
    /// # Errors
    /// I/O errors and whatever `write` returns.
    pub fn atomically(&self, name: &str, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
        let tmp = self.file(&format!("{name}.tmp"));
        write(&tmp)?;
        let p = self.file(name);
        std::fs::rename(&tmp, &p).map_err(io(&p))
    }
}

/// Linear warm-up then cosine decay to `floor × peak`.
pub fn learning_rate(step: usize, total: usize, warmup: usize, peak: f64, floor: f64) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let t = (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
    let c = 0.5 * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos());
    peak * (floor + (1.0 - floor) * c)
}

/// Images `[n, 3, size, size]` in `[-1, 1]` from row-major RGB bytes.
pub fn images_tensor(images: &[&[u8]], size: usize, device: &Device) -> Tensor<4> {
    images_tensor_hw(images, size, size, device)
}

/// Images `[n, 3, height, width]` in `[-1, 1]` from row-major RGB bytes.
pub fn images_tensor_hw(
    images: &[&[u8]],
    height: usize,
    width: usize,
    device: &Device,
) -> Tensor<4> {
    let n = images.len();
    let hw = height * width;
    let mut v = Vec::with_capacity(n * 3 * hw);
    for img in images {
        for c in 0..3 {
            v.extend((0..hw).map(|p| f32::from(img[p * 3 + c]) / 127.5 - 1.0));
        }
    }
    Tensor::from_data(TensorData::new(v, [n, 3, height, width]), device)
}

/// Samples `start..start + n` of the dataset with `seed`.
pub fn samples(seed: u64, start: u64, n: usize, size: usize) -> Vec<Sample> {
    (0..n as u64)
        .map(|i| Sample::generate(seed, start + i, size))
        .collect()
}

/// A state value as `usize`.
pub(crate) fn get_usize(state: &Value, key: &str) -> usize {
    state.get(key).and_then(Value::as_u64).unwrap_or(0) as usize
}

/// The single value of a one-element tensor (a loss), read back to the host.
pub(crate) fn scalar(t: Tensor<1>, what: &str) -> Result<f32> {
    sjd2_core::error::tensor_to_vec(t, what)?
        .first()
        .copied()
        .ok_or_else(|| TrainError::Tensor(format!("{what}: empty")))
}

/// Integer values (codes) read back to the host.
pub(crate) fn ints(t: Tensor<1, Int>) -> Result<Vec<i64>> {
    t.into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .map_err(|e| TrainError::Tensor(format!("codes: {e:?}")))
}
