//! Embedding normalization for SJD2: `ē = (e − μ) / s`.
//!
//! The SJD2 paper reports that without normalization of the embedding space the method fails
//! completely; μ and s are statistics of the image-token rows of the input embedding table.

use burn::Tensor;

use crate::error::{Error, Result};

/// Which statistics the normalizer uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum NormalizationKind {
    /// Per-dimension mean and standard deviation (the default).
    #[default]
    PerDimension,
    /// Per-dimension mean and one global standard deviation over all entries.
    GlobalScale,
}

/// Maps embeddings to and from the normalized space in which SJD2 adds noise.
#[derive(Debug, Clone)]
pub struct EmbeddingNormalizer {
    mean: Tensor<1>,
    std: Tensor<1>,
}

impl EmbeddingNormalizer {
    /// Statistics of the rows of `table` (the image-token rows of the input embedding table).
    ///
    /// # Shapes
    /// - `table`: `[image_tokens, dim]`
    ///
    /// # Errors
    /// [`Error::Shape`] if the table has fewer than two rows.
    pub fn from_table(table: Tensor<2>, kind: NormalizationKind) -> Result<Self> {
        let [rows, dim] = table.dims();
        if rows < 2 || dim == 0 {
            return Err(Error::Shape {
                what: "image embedding table".into(),
                expected: vec![2, 1],
                got: vec![rows, dim],
            });
        }
        let mean = table.clone().mean_dim(0); // [1, dim]
        let centered = table - mean.clone();
        let var = match kind {
            NormalizationKind::PerDimension => centered.powf_scalar(2.0).mean_dim(0),
            NormalizationKind::GlobalScale => centered
                .powf_scalar(2.0)
                .mean()
                .reshape([1, 1])
                .expand([1, dim]),
        };
        let std = (var + 1e-12).sqrt();
        Ok(Self {
            mean: mean.reshape([dim]),
            std: std.reshape([dim]),
        })
    }

    /// `μ`, shape `[dim]`.
    pub fn mean(&self) -> &Tensor<1> {
        &self.mean
    }

    /// `s`, shape `[dim]`.
    pub fn std(&self) -> &Tensor<1> {
        &self.std
    }

    /// `(e − μ) / s` over the last dimension.
    pub fn normalize<const D: usize>(&self, e: Tensor<D>) -> Tensor<D> {
        (e - self.mean.clone().unsqueeze::<D>()) / self.std.clone().unsqueeze::<D>()
    }

    /// `s · ē + μ` over the last dimension.
    pub fn denormalize<const D: usize>(&self, e: Tensor<D>) -> Tensor<D> {
        e * self.std.clone().unsqueeze::<D>() + self.mean.clone().unsqueeze::<D>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    #[test]
    fn normalized_table_has_zero_mean_unit_std() {
        let device = Device::flex();
        let t = Tensor::<2>::from_floats([[1.0, 10.0], [3.0, 30.0], [5.0, 20.0]], &device);
        let n =
            EmbeddingNormalizer::from_table(t.clone(), NormalizationKind::PerDimension).unwrap();
        let z = n.normalize(t.clone());
        let mean = z
            .clone()
            .mean_dim(0)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let var = z
            .clone()
            .powf_scalar(2.0)
            .mean_dim(0)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        for (m, v) in mean.iter().zip(&var) {
            assert!(m.abs() < 1e-5 && (v - 1.0).abs() < 1e-4, "{mean:?} {var:?}");
        }
        let back = n.denormalize(z).into_data().try_to_vec::<f32>().unwrap();
        let orig = t.into_data().try_to_vec::<f32>().unwrap();
        for (a, b) in back.iter().zip(orig) {
            assert!((a - b).abs() < 1e-4);
        }
    }

    #[test]
    fn global_scale_uses_one_std() {
        let device = Device::flex();
        let t = Tensor::<2>::from_floats([[1.0, 10.0], [3.0, 30.0]], &device);
        let n = EmbeddingNormalizer::from_table(t, NormalizationKind::GlobalScale).unwrap();
        let s = n.std().to_data().try_to_vec::<f32>().unwrap();
        // centered entries: ±1 and ±10 → mean square 50.5
        assert!(
            (s[0] - 50.5f32.sqrt()).abs() < 1e-4 && s[0] == s[1],
            "{s:?}"
        );
    }

    #[test]
    fn one_row_is_rejected() {
        let device = Device::flex();
        let t = Tensor::<2>::from_floats([[1.0, 10.0]], &device);
        assert!(EmbeddingNormalizer::from_table(t, NormalizationKind::PerDimension).is_err());
    }
}
