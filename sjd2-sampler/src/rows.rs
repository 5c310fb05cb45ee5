//! Buffers for the per-position distributions of a generation, recycled instead of freed.
//!
//! Every pass turns each window position's guided logits into a distribution over the image
//! vocabulary (8 192-32 768 entries for the published models) and keeps it as long as the draft
//! drawn from it lives. Allocating and freeing these rows pass after pass cost more than the
//! arithmetic on them: rows of 128 KiB and more are mapped and unmapped by the system allocator
//! each time, and with the rows spread over threads every unmapping interrupts the other cores.
//! A [`RowPool`] keeps the buffers of dropped rows for the next pass; it never holds more than
//! the most rows alive at once, and it is freed with the generation.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};

/// The free buffers of one generation.
#[derive(Default)]
pub(crate) struct RowPool {
    free: Mutex<Vec<Vec<f32>>>,
}

impl RowPool {
    /// A new, empty pool.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A row holding a copy of `values`, in a recycled buffer where one is free.
    pub(crate) fn row(self: &Arc<Self>, values: &[f32]) -> Row {
        let recycled = self.free.lock().ok().and_then(|mut free| free.pop());
        let mut data = recycled.unwrap_or_default();
        data.clear();
        data.extend_from_slice(values);
        Row {
            data,
            pool: Arc::clone(self),
        }
    }

    #[cfg(test)]
    fn free_buffers(&self) -> usize {
        self.free.lock().map(|f| f.len()).unwrap_or(0)
    }
}

/// One distribution over the image vocabulary; its buffer returns to its pool when dropped.
pub(crate) struct Row {
    data: Vec<f32>,
    pool: Arc<RowPool>,
}

impl Deref for Row {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.data
    }
}

impl DerefMut for Row {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }
}

impl Clone for Row {
    fn clone(&self) -> Self {
        self.pool.row(&self.data)
    }
}

impl fmt::Debug for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Row")
            .field("len", &self.data.len())
            .finish()
    }
}

impl Drop for Row {
    fn drop(&mut self) {
        if let Ok(mut free) = self.pool.free.lock() {
            free.push(std::mem::take(&mut self.data));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_rows_are_reused_with_their_new_values() {
        let pool = RowPool::new();
        let a = pool.row(&[1.0, 2.0, 3.0]);
        let address = a.as_ptr();
        drop(a);
        assert_eq!(pool.free_buffers(), 1);
        let b = pool.row(&[4.0, 5.0]);
        assert_eq!(&*b, &[4.0, 5.0]);
        assert_eq!(b.as_ptr(), address, "the freed buffer is reused");
        assert_eq!(pool.free_buffers(), 0);
        let c = b.clone();
        assert_eq!(&*c, &*b);
        drop((b, c));
        assert_eq!(pool.free_buffers(), 2);
    }
}
