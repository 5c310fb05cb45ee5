//! Rotary position tables (1-D and LlamaGen's 2-D) and the interleaved → rotate-half feature
//! order that lets one RoPE implementation serve both checkpoint layouts.

use burn::Tensor;
use burn::tensor::{Device, TensorData};

use super::RopeKind;

/// Rotation angles of frequency pair `k` (shared by dims `k` and `k + head_dim/2`) at `pos`;
/// `None` for a zero rotation table (LlamaGen's condition positions).
fn angles(pos: usize, head_dim: usize, rope: RopeKind) -> Option<Vec<f32>> {
    let half = head_dim / 2;
    match rope {
        RopeKind::Sequence { theta } => Some(
            (0..half)
                .map(|k| {
                    // Hugging Face computes the inverse frequencies in f32.
                    let inv = 1.0f32 / (theta as f32).powf((2 * k) as f32 / head_dim as f32);
                    pos as f32 * inv
                })
                .collect(),
        ),
        RopeKind::Grid2d {
            theta,
            cond_len,
            grid_cols,
        } => {
            let cell = pos.checked_sub(cond_len)?;
            let (row, col) = (cell / grid_cols.max(1), cell % grid_cols.max(1));
            let quarter = half / 2;
            Some(
                (0..half)
                    .map(|k| {
                        let (t, j) = if k < quarter {
                            (row, k)
                        } else {
                            (col, k - quarter)
                        };
                        let f = 1.0f32 / (theta as f32).powf((2 * j) as f32 / half as f32);
                        t as f32 * f
                    })
                    .collect(),
            )
        }
    }
}

/// Rotate-half cos/sin tables `[max_positions, head_dim]`.
pub(crate) fn tables(
    max_positions: usize,
    head_dim: usize,
    rope: RopeKind,
    device: &Device,
) -> (Tensor<2>, Tensor<2>) {
    let mut cos = Vec::with_capacity(max_positions * head_dim);
    let mut sin = Vec::with_capacity(max_positions * head_dim);
    for p in 0..max_positions {
        match angles(p, head_dim, rope) {
            Some(a) => {
                for _ in 0..2 {
                    cos.extend(a.iter().map(|x| x.cos()));
                    sin.extend(a.iter().map(|x| x.sin()));
                }
            }
            None => {
                cos.extend(std::iter::repeat_n(0.0, head_dim));
                sin.extend(std::iter::repeat_n(0.0, head_dim));
            }
        }
    }
    let shape = [max_positions, head_dim];
    (
        Tensor::from_data(TensorData::new(cos, shape), device),
        Tensor::from_data(TensorData::new(sin, shape), device),
    )
}

/// The source feature of each output feature when `heads` heads of `head_dim` features are
/// reordered from interleaved pairs `(2k, 2k+1)` to the rotate-half layout `(k, k + head_dim/2)`.
/// Applied to the rows of both the q and k projections it leaves attention scores unchanged while
/// one RoPE implementation serves both checkpoint layouts.
pub(crate) fn to_rotate_half(heads: usize, head_dim: usize) -> Vec<usize> {
    let half = head_dim / 2;
    (0..heads)
        .flat_map(|h| {
            // Output j = k (first half) reads 2k; j = half + k reads 2k + 1.
            (0..head_dim)
                .map(move |j| h * head_dim + if j < half { 2 * j } else { 2 * (j - half) + 1 })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotate_half_order_is_a_permutation_per_head() {
        let (heads, hd) = (3, 8);
        let order = to_rotate_half(heads, hd);
        // Rotate-half feature 1 of head 0 is interleaved feature 2; feature 4 (= half) is 1.
        assert_eq!(&order[..hd], &[0, 2, 4, 6, 1, 3, 5, 7]);
        assert_eq!(order[hd], hd);
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..heads * hd).collect::<Vec<_>>());
    }

    #[test]
    fn grid_rope_zeroes_condition_positions() {
        let rope = RopeKind::Grid2d {
            theta: 10000.0,
            cond_len: 2,
            grid_cols: 4,
        };
        let (cos, _) = tables(4, 8, rope, &Device::flex());
        let v = cos.into_data().try_to_vec::<f32>().unwrap_or_default();
        assert!(v[..16].iter().all(|&x| x == 0.0));
        // Position 2 is cell (0, 0): no rotation.
        assert!(v[16..24].iter().all(|&x| (x - 1.0).abs() < 1e-6));
    }
}
