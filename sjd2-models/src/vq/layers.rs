//! The convolutional building blocks shared by the VQ image tokenizers (taming-transformers
//! style) as burn modules: group norm, swish, ResNet blocks, single-head spatial attention, 2×
//! up/down sampling.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, PaddingConfig2d};
use burn::tensor::activation::{sigmoid, softmax};
use burn::tensor::{Device, Tensor};

/// A `k × k` convolution with bias: stride 1 with "same" padding, or stride 2 with taming's one
/// row and column of zeros at the bottom and right.
pub(crate) fn conv(inp: usize, out: usize, k: usize, stride: usize, device: &Device) -> Conv2d {
    let p = k / 2;
    let padding = if stride == 1 {
        PaddingConfig2d::Explicit(p, p, p, p)
    } else {
        PaddingConfig2d::Explicit(0, 0, 1, 1)
    };
    Conv2dConfig::new([inp, out], [k, k])
        .with_stride([stride, stride])
        .with_padding(padding)
        .init(device)
}

/// Group normalization with up to 32 groups, eps 1e-6, and an affine transform.
pub(crate) fn group_norm(channels: usize, device: &Device) -> GroupNorm {
    GroupNormConfig::new(32.min(channels).max(1), channels)
        .with_epsilon(1e-6)
        .init(device)
}

pub(crate) fn swish<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    x.clone() * sigmoid(x)
}

/// `x + conv2(swish(norm2(conv1(swish(norm1(x))))))`, with a 1×1 shortcut when channels change.
#[derive(Module, Debug)]
pub struct ResBlock {
    /// First norm.
    pub norm1: GroupNorm,
    /// First 3×3 convolution.
    pub conv1: Conv2d,
    /// Second norm.
    pub norm2: GroupNorm,
    /// Second 3×3 convolution.
    pub conv2: Conv2d,
    /// 1×1 shortcut when the channels change.
    pub nin_shortcut: Option<Conv2d>,
}

impl ResBlock {
    pub(crate) fn new(inp: usize, out: usize, device: &Device) -> Self {
        Self {
            norm1: group_norm(inp, device),
            conv1: conv(inp, out, 3, 1, device),
            norm2: group_norm(out, device),
            conv2: conv(out, out, 3, 1, device),
            nin_shortcut: (inp != out).then(|| conv(inp, out, 1, 1, device)),
        }
    }

    /// `[b, in, h, w]` → `[b, out, h, w]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let h = self.conv1.forward(swish(self.norm1.forward(x.clone())));
        let h = self.conv2.forward(swish(self.norm2.forward(h)));
        match &self.nin_shortcut {
            Some(s) => s.forward(x) + h,
            None => x + h,
        }
    }
}

/// Single-head self-attention over all spatial positions, with 1×1 q/k/v/out projections.
#[derive(Module, Debug)]
pub struct AttnBlock {
    /// Norm.
    pub norm: GroupNorm,
    /// Query projection.
    pub q: Conv2d,
    /// Key projection.
    pub k: Conv2d,
    /// Value projection.
    pub v: Conv2d,
    /// Output projection.
    pub proj_out: Conv2d,
}

impl AttnBlock {
    pub(crate) fn new(c: usize, device: &Device) -> Self {
        Self {
            norm: group_norm(c, device),
            q: conv(c, c, 1, 1, device),
            k: conv(c, c, 1, 1, device),
            v: conv(c, c, 1, 1, device),
            proj_out: conv(c, c, 1, 1, device),
        }
    }

    /// `[b, c, h, w]` → `[b, c, h, w]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let n = self.norm.forward(x.clone());
        let q = self
            .q
            .forward(n.clone())
            .reshape([b, c, h * w])
            .swap_dims(1, 2); // [b, hw, c]
        let k = self.k.forward(n.clone()).reshape([b, c, h * w]); // [b, c, hw]
        let v = self.v.forward(n).reshape([b, c, h * w]); // [b, c, hw]
        let att = softmax(q.matmul(k) / (c as f64).sqrt(), 2); // [b, hw_q, hw_k]
        let out = v.matmul(att.swap_dims(1, 2)).reshape([b, c, h, w]);
        x + self.proj_out.forward(out)
    }
}

/// Nearest-neighbour upsampling by an integer factor.
pub(crate) fn upsample(x: Tensor<4>, f: usize) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    x.reshape([b, c, h, 1, w, 1])
        .expand([b, c, h, f, w, f])
        .reshape([b, c, f * h, f * w])
}
