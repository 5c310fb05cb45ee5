//! Fixture access for the parity tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use burn::Tensor;
use burn::tensor::{Device, Int, TensorData};
use sjd2_models::weights::Checkpoint;

pub const TOL: f32 = 1e-4;

/// `../shared/fixtures/reference-models` beside the repository (or `$SJD2_FIXTURES`).
pub fn fixtures() -> PathBuf {
    let dir = std::env::var_os("SJD2_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/reference-models")
        });
    assert!(
        dir.is_dir(),
        "reference fixtures not found at {} (set SJD2_FIXTURES)",
        dir.display()
    );
    dir
}

pub struct Reference(pub Checkpoint);

impl Reference {
    pub fn open(case: &str) -> Self {
        Self(Checkpoint::open(fixtures().join(case).join("reference.safetensors")).unwrap())
    }

    pub fn f32(&self, name: &str) -> (Vec<usize>, Vec<f32>) {
        self.0.read_f32(name).unwrap()
    }

    pub fn ids(&self, name: &str) -> Vec<u32> {
        self.0
            .read_i64(name)
            .unwrap()
            .1
            .into_iter()
            .map(|x| x as u32)
            .collect()
    }

    pub fn scalar(&self, name: &str) -> f32 {
        self.f32(name).1[0]
    }
}

pub fn ids_tensor(ids: &[u32], device: &Device) -> Tensor<2, Int> {
    let v: Vec<i64> = ids.iter().map(|&x| i64::from(x)).collect();
    Tensor::from_data(TensorData::new(v, [1, ids.len()]), device)
}

pub fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

pub fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

pub fn assert_close(got: &[f32], want: &[f32], what: &str) {
    let e = max_abs(got, want);
    assert!(e <= TOL, "{what}: max abs error {e} > {TOL}");
    eprintln!("{what}: max abs error {e:.2e}");
}
