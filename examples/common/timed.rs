//! A model wrapper that times the model's own calls, for the benchmarks that split a decode's
//! wall time into the model's share and the decoding loop's.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use burn::tensor::{Int, Tensor};
use sjd2::core::PromptRow;
use sjd2::{Device, GuidanceStyle, ImageLayout, JacobiDenoiser};

/// A model wrapper that adds up the wall time of the model's own calls.
#[derive(Clone)]
pub struct Timed<M> {
    /// The wrapped model.
    pub inner: M,
    /// Wall time spent in the model's calls so far (shared by clones).
    pub spent: Rc<Cell<Duration>>,
}

impl<M> Timed<M> {
    /// Wraps `inner` with a zeroed clock.
    #[allow(dead_code)]
    pub fn new(inner: M) -> Self {
        Self {
            inner,
            spent: Rc::new(Cell::new(Duration::ZERO)),
        }
    }

    /// Time spent in the model's calls since the last [`Timed::reset`].
    #[allow(dead_code)]
    pub fn spent(&self) -> Duration {
        self.spent.get()
    }

    /// Zeroes the clock (shared by every clone).
    #[allow(dead_code)]
    pub fn reset(&self) {
        self.spent.set(Duration::ZERO);
    }

    fn time<T>(&self, f: impl FnOnce() -> T) -> T {
        let t0 = Instant::now();
        let out = f();
        self.spent.set(self.spent.get() + t0.elapsed());
        out
    }
}

impl<M: JacobiDenoiser> JacobiDenoiser for Timed<M> {
    type Cache = M::Cache;
    fn device(&self) -> Device {
        self.inner.device()
    }
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }
    fn hidden_size(&self) -> usize {
        self.inner.hidden_size()
    }
    fn max_sequence_len(&self) -> usize {
        self.inner.max_sequence_len()
    }
    fn layout(&self) -> &ImageLayout {
        self.inner.layout()
    }
    fn guidance_style(&self) -> GuidanceStyle {
        self.inner.guidance_style()
    }
    fn prompt_len(&self, row: &PromptRow<'_>) -> sjd2::core::Result<usize> {
        self.inner.prompt_len(row)
    }
    fn new_cache(&self, rows: usize, capacity: usize) -> sjd2::core::Result<Self::Cache> {
        self.time(|| self.inner.new_cache(rows, capacity))
    }
    fn prefill(
        &self,
        cache: &mut Self::Cache,
        rows: &[PromptRow<'_>],
    ) -> sjd2::core::Result<Tensor<2>> {
        self.time(|| self.inner.prefill(cache, rows))
    }
    fn embed_tokens(&self, tokens: Tensor<2, Int>) -> sjd2::core::Result<Tensor<3>> {
        self.time(|| self.inner.embed_tokens(tokens))
    }
    fn forward(
        &self,
        cache: &mut Self::Cache,
        embeddings: Tensor<3>,
    ) -> sjd2::core::Result<Tensor<3>> {
        self.time(|| self.inner.forward(cache, embeddings))
    }
    fn forward_image_logits(
        &self,
        cache: &mut Self::Cache,
        embeddings: Tensor<3>,
    ) -> sjd2::core::Result<Tensor<3>> {
        self.time(|| self.inner.forward_image_logits(cache, embeddings))
    }
    fn image_embedding_table(&self) -> sjd2::core::Result<Tensor<2>> {
        self.inner.image_embedding_table()
    }
    fn level_embedding(&self, t: Tensor<2>) -> Option<sjd2::core::Result<Tensor<3>>> {
        self.time(|| self.inner.level_embedding(t))
    }
}
