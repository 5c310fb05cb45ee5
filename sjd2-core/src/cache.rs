//! A preallocated key/value cache with per-row lengths and rollback.
//!
//! Rows of one cache may hold sequences of different lengths (a conditional prompt and a shorter
//! unconditional one, or samples that accepted different numbers of drafts). A forward pass writes
//! its window at each row's own length; [`DecodeCache::rollback_to`] only moves a row's length
//! back, so rejected drafts are overwritten by the next window.
//!
//! Writes are in-place `slice_assign`s, one per run of consecutive rows that share a length (on
//! backends that reuse uniquely owned buffers, such as Flex, nothing is reallocated per step).
//! With many distinct lengths (large ragged batches) a single `scatter_nd` is used instead, which
//! may copy the layer's cache.

use burn::Tensor;
use burn::tensor::{Bool, Device, IndexingUpdateOp, Int, TensorData};

use crate::error::{Error, Result};

/// What the decoding loop needs from a model's cache: per-row lengths and rollback.
pub trait DecodeCache {
    /// Number of rows (sequences).
    fn rows(&self) -> usize;
    /// Tokens held by each row.
    fn lens(&self) -> &[usize];
    /// Positions each row can hold.
    fn capacity(&self) -> usize;
    /// Forgets everything after the first `len` tokens of `row`.
    ///
    /// # Errors
    /// [`Error::Cache`] if `row` does not exist or `len` exceeds the row's length.
    fn rollback_to(&mut self, row: usize, len: usize) -> Result<()>;
}

/// The per-pass plan of a window written into a [`KvCache`]: positions, mask and scatter indices,
/// computed once per forward pass and shared by every layer.
#[derive(Debug, Clone)]
pub struct WindowPlan {
    /// Window length `L` (every row receives `L` new entries).
    pub len: usize,
    /// Absolute position of each new entry: `positions[row][i] = lens[row] + i`.
    pub positions: Vec<Vec<usize>>,
    /// Keys visible to the window: entries `0..key_len` of every row.
    pub key_len: usize,
    /// `true` where attention is **not** allowed. Shape `[rows, 1, L, key_len]`.
    pub mask: Tensor<4, Bool>,
    /// Runs of consecutive rows with equal length: `(first_row, end_row, length)`.
    runs: Vec<(usize, usize, usize)>,
    /// Built only when there are more runs than in-place writes are worth.
    scatter_index: Option<Tensor<2, Int>>,
}

/// Above this many runs of equal-length rows, one scatter replaces per-run slice writes.
const MAX_SLICE_WRITES: usize = 16;

/// Preallocated keys and values for every layer, laid out `[rows, capacity, kv_heads, head_dim]`.
#[derive(Debug, Clone)]
pub struct KvCache {
    keys: Vec<Tensor<4>>,
    values: Vec<Tensor<4>>,
    lens: Vec<usize>,
    hidden_prefix: Vec<usize>,
    capacity: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl KvCache {
    /// Allocates a zeroed cache.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if any size is zero.
    pub fn new(
        layers: usize,
        rows: usize,
        capacity: usize,
        kv_heads: usize,
        head_dim: usize,
        device: &Device,
    ) -> Result<Self> {
        for (field, v) in [
            ("layers", layers),
            ("rows", rows),
            ("capacity", capacity),
            ("kv_heads", kv_heads),
            ("head_dim", head_dim),
        ] {
            if v == 0 {
                return Err(Error::config(field, "KV cache sizes must be >= 1"));
            }
        }
        let zeros = || Tensor::<4>::zeros([rows, capacity, kv_heads, head_dim], device);
        Ok(Self {
            keys: (0..layers).map(|_| zeros()).collect(),
            values: (0..layers).map(|_| zeros()).collect(),
            lens: vec![0; rows],
            hidden_prefix: vec![0; rows],
            capacity,
            kv_heads,
            head_dim,
        })
    }

    /// Hides the first `n` entries of `row` from every query except the entry itself (LlamaGen's
    /// left-padded caption slots: padded keys are invisible, the diagonal stays).
    ///
    /// # Errors
    /// [`Error::Cache`] if the row does not exist.
    pub fn set_hidden_prefix(&mut self, row: usize, n: usize) -> Result<()> {
        let rows = self.hidden_prefix.len();
        let slot = self
            .hidden_prefix
            .get_mut(row)
            .ok_or_else(|| Error::Cache(format!("row {row} does not exist ({rows} rows)")))?;
        *slot = n;
        Ok(())
    }

    /// Number of layers.
    pub fn layers(&self) -> usize {
        self.keys.len()
    }

    /// Plans a window of `len` new entries for every row (causal within the window, every cached
    /// entry of the row visible).
    ///
    /// # Errors
    /// [`Error::SequenceTooLong`] if a row would exceed the capacity.
    pub fn plan(&self, len: usize, device: &Device) -> Result<WindowPlan> {
        let rows = self.lens.len();
        let max_len = self.lens.iter().copied().max().unwrap_or(0);
        let key_len = max_len + len;
        if key_len > self.capacity {
            return Err(Error::SequenceTooLong {
                what: "KV cache row".into(),
                needed: key_len,
                max: self.capacity,
            });
        }
        let mut runs: Vec<(usize, usize, usize)> = Vec::new();
        for (r, &l) in self.lens.iter().enumerate() {
            match runs.last_mut() {
                Some(run) if run.2 == l => run.1 = r + 1,
                _ => runs.push((r, r + 1, l)),
            }
        }
        let scatter = runs.len() > MAX_SLICE_WRITES;
        let mut mask = Vec::with_capacity(rows * len * key_len);
        let mut idx = Vec::with_capacity(if scatter { rows * len * 2 } else { 0 });
        let mut positions = Vec::with_capacity(rows);
        for (r, &l) in self.lens.iter().enumerate() {
            positions.push((l..l + len).collect::<Vec<_>>());
            let hidden = self.hidden_prefix[r];
            for i in 0..len {
                let q = l + i;
                mask.extend((0..key_len).map(|j| j > q || (j < hidden && j != q)));
                if scatter {
                    idx.extend([r as i64, q as i64]);
                }
            }
        }
        Ok(WindowPlan {
            len,
            runs,
            positions,
            key_len,
            mask: Tensor::from_data(TensorData::new(mask, [rows, 1, len, key_len]), device),
            scatter_index: scatter
                .then(|| Tensor::from_data(TensorData::new(idx, [rows * len, 2]), device)),
        })
    }

    /// Writes the window's keys and values for `layer` and returns every visible key and value.
    ///
    /// # Shapes
    /// - `k`, `v`: `[rows, L, kv_heads, head_dim]`
    /// - returns `[rows, kv_heads, key_len, head_dim]` twice
    ///
    /// # Errors
    /// [`Error::Shape`] for a wrong input shape, [`Error::Cache`] for a layer that does not exist.
    pub fn update(
        &mut self,
        layer: usize,
        plan: &WindowPlan,
        k: Tensor<4>,
        v: Tensor<4>,
    ) -> Result<(Tensor<4>, Tensor<4>)> {
        let rows = self.lens.len();
        let expected = [rows, plan.len, self.kv_heads, self.head_dim];
        for (what, t) in [("new keys", &k), ("new values", &v)] {
            if t.dims() != expected {
                return Err(Error::Shape {
                    what: format!("{what} of layer {layer}"),
                    expected: expected.to_vec(),
                    got: t.dims().to_vec(),
                });
            }
        }
        if layer >= self.keys.len() {
            return Err(Error::Cache(format!(
                "layer {layer} does not exist ({} layers)",
                self.keys.len()
            )));
        }
        let write = |store: &mut Tensor<4>, new: Tensor<4>| {
            let old = store.extract();
            *store = match &plan.scatter_index {
                Some(index) => {
                    let new = new.reshape([rows * plan.len, self.kv_heads, self.head_dim]);
                    old.scatter_nd::<2, 3>(index.clone(), new, IndexingUpdateOp::Assign)
                }
                // In-place writes, one per run of rows sharing a length.
                None => plan.runs.iter().fold(old, |acc, &(start, end, offset)| {
                    acc.slice_assign(
                        [start..end, offset..offset + plan.len],
                        new.clone().narrow(0, start, end - start),
                    )
                }),
            };
            store
                .clone()
                .slice([0..rows, 0..plan.key_len])
                .swap_dims(1, 2)
        };
        let keys = write(&mut self.keys[layer], k);
        let values = write(&mut self.values[layer], v);
        Ok((keys, values))
    }

    /// Advances every row by the planned window length (call once after all layers).
    pub fn commit(&mut self, plan: &WindowPlan) {
        self.lens.iter_mut().for_each(|l| *l += plan.len);
    }
}

/// Rotate-half rotary embedding: `x · cos + rotate_half(x) · sin`, with `cos` and `sin`
/// broadcast over heads.
///
/// # Shapes
/// - `x`: `[rows, len, heads, head_dim]`; `cos`, `sin`: `[rows, len, 1, head_dim]`
pub fn apply_rope(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
    let half = x.dims()[3] / 2;
    let x1 = x.clone().narrow(3, 0, half);
    let x2 = x.clone().narrow(3, half, half);
    x * cos.clone() + Tensor::cat(vec![x2.neg(), x1], 3) * sin.clone()
}

/// Scaled dot-product attention of a window over the keys and values returned by
/// [`KvCache::update`] (or a whole sequence's own keys and values), with a mask; key/value heads
/// are shared by groups of query heads (grouped-query attention) when there are fewer of them.
///
/// # Shapes
/// - `q`: `[rows, heads, L, head_dim]`
/// - `keys`, `values`: `[rows, kv_heads, key_len, head_dim]`
/// - `mask`: `[rows or 1, 1, L, key_len]`, `true` where attention is **not** allowed
///   ([`WindowPlan::mask`], or [`causal_mask`] for a whole sequence)
/// - returns `[rows, L, heads · head_dim]`
pub fn attend(
    q: Tensor<4>,
    keys: Tensor<4>,
    values: Tensor<4>,
    mask: &Tensor<4, Bool>,
    scale: f64,
) -> Tensor<3> {
    let [rows, heads, len, hd] = q.dims();
    let [_, kv, key_len, _] = keys.dims();
    let (keys, values) = if kv != heads && kv > 0 {
        let rep = heads / kv;
        let expand = |t: Tensor<4>| {
            t.unsqueeze_dim::<5>(2)
                .expand([rows, kv, rep, key_len, hd])
                .reshape([rows, heads, key_len, hd])
        };
        (expand(keys), expand(values))
    } else {
        (keys, values)
    };
    let scores = q.matmul(keys.swap_dims(2, 3)) * scale;
    let scores = scores.mask_fill(
        mask.clone().expand([rows, heads, len, key_len]),
        f32::NEG_INFINITY,
    );
    burn::tensor::activation::softmax(scores, 3)
        .matmul(values)
        .swap_dims(1, 2)
        .reshape([rows, len, heads * hd])
}

/// The causal mask of a whole sequence of `len` positions, `[1, 1, len, len]`, `true` above the
/// diagonal (where [`attend`] must not look).
pub fn causal_mask(len: usize, device: &Device) -> Tensor<4, Bool> {
    Tensor::<2, Bool>::tril_mask([len, len], 0, device).reshape([1, 1, len, len])
}

impl DecodeCache for KvCache {
    fn rows(&self) -> usize {
        self.lens.len()
    }

    fn lens(&self) -> &[usize] {
        &self.lens
    }

    fn capacity(&self) -> usize {
        self.capacity
    }

    fn rollback_to(&mut self, row: usize, len: usize) -> Result<()> {
        let rows = self.lens.len();
        let cur = self
            .lens
            .get_mut(row)
            .ok_or_else(|| Error::Cache(format!("row {row} does not exist ({rows} rows)")))?;
        if len > *cur {
            return Err(Error::Cache(format!(
                "cannot roll row {row} back to {len}: it holds only {cur} tokens"
            )));
        }
        *cur = len;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_masks_are_causal_per_row() {
        let device = Device::flex();
        let mut c = KvCache::new(1, 2, 8, 1, 1, &device).unwrap();
        c.lens = vec![2, 0];
        let p = c.plan(2, &device).unwrap();
        assert_eq!(p.key_len, 4);
        assert_eq!(p.positions, vec![vec![2, 3], vec![0, 1]]);
        let m = p.mask.into_data().try_to_vec::<bool>().unwrap();
        #[rustfmt::skip]
        let expect = vec![
            false, false, false, true,   false, false, false, false,
            false, true, true, true,     false, false, true, true,
        ];
        assert_eq!(m, expect);
    }

    #[test]
    fn update_writes_at_row_offsets_and_rollback() {
        let device = Device::flex();
        let mut c = KvCache::new(1, 2, 6, 1, 1, &device).unwrap();
        c.lens = vec![1, 3];
        let p = c.plan(2, &device).unwrap();
        let k = Tensor::<4>::from_floats([[[[1.0]], [[2.0]]], [[[3.0]], [[4.0]]]], &device);
        let (keys, _) = c.update(0, &p, k.clone(), k).unwrap();
        c.commit(&p);
        assert_eq!(keys.dims(), [2, 1, 5, 1]);
        let v = keys.into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(v, vec![0.0, 1.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 3.0, 4.0]);
        assert_eq!(c.lens(), &[3, 5]);
        c.rollback_to(1, 4).unwrap();
        assert_eq!(c.lens(), &[3, 4]);
        assert!(c.rollback_to(1, 5).is_err());
        assert!(c.rollback_to(2, 0).is_err());
        let too_long = c.plan(3, &device).unwrap_err();
        assert!(
            matches!(too_long, Error::SequenceTooLong { .. }),
            "{too_long}"
        );
        let wrong = Tensor::<4>::zeros([2, 1, 1, 1], &device);
        let p = c.plan(2, &device).unwrap();
        assert!(matches!(
            c.update(0, &p, wrong.clone(), wrong),
            Err(Error::Shape { .. })
        ));
    }

    #[test]
    fn many_ragged_rows_use_the_scatter_path() {
        let device = Device::flex();
        let rows = MAX_SLICE_WRITES + 4;
        let mut c = KvCache::new(1, rows, 40, 1, 1, &device).unwrap();
        c.lens = (0..rows).collect();
        let p = c.plan(2, &device).unwrap();
        assert_eq!(p.runs.len(), rows);
        let vals: Vec<f32> = (0..rows)
            .flat_map(|r| [r as f32 * 10.0 + 1.0, r as f32 * 10.0 + 2.0])
            .collect();
        let k = Tensor::<4>::from_data(TensorData::new(vals, [rows, 2, 1, 1]), &device);
        let (keys, _) = c.update(0, &p, k.clone(), k).unwrap();
        let v = keys.into_data().try_to_vec::<f32>().unwrap();
        let key_len = p.key_len;
        for r in 0..rows {
            assert_eq!(v[r * key_len + r], r as f32 * 10.0 + 1.0);
            assert_eq!(v[r * key_len + r + 1], r as f32 * 10.0 + 2.0);
            assert!(v[r * key_len..r * key_len + r].iter().all(|&x| x == 0.0));
        }
    }
}
