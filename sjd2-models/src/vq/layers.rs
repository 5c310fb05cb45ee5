//! The convolutional building blocks shared by the VQ image tokenizers (taming-transformers
//! style): group norm, swish, ResNet blocks, single-head spatial attention, 2× up/down sampling.

use burn::Tensor;
use burn::tensor::activation::{sigmoid, softmax};
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;

use crate::weights::WeightLoader;

/// A 2-D convolution with bias.
#[derive(Debug, Clone)]
pub(crate) struct Conv {
    weight: Tensor<4>,
    bias: Tensor<1>,
    stride: usize,
    padding: usize,
}

impl Conv {
    /// Loads `{name}.weight` `[out, in, k, k]` and `{name}.bias`.
    pub(crate) fn load(
        loader: &mut WeightLoader,
        name: &str,
        out: usize,
        inp: usize,
        k: usize,
        stride: usize,
    ) -> Self {
        Self {
            weight: loader.tensor(&format!("{name}.weight"), [out, inp, k, k]),
            bias: loader.tensor(&format!("{name}.bias"), [out]),
            stride,
            padding: if stride == 1 { k / 2 } else { 0 },
        }
    }

    pub(crate) fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        conv2d(
            x,
            self.weight.clone(),
            Some(self.bias.clone()),
            ConvOptions::new(
                [self.stride, self.stride],
                [self.padding, self.padding],
                [1, 1],
                1,
            ),
        )
    }
}

/// Group normalization with 32 groups, eps 1e-6, and an affine transform.
#[derive(Debug, Clone)]
pub(crate) struct GroupNorm {
    weight: Tensor<1>,
    bias: Tensor<1>,
    groups: usize,
}

impl GroupNorm {
    pub(crate) fn load(loader: &mut WeightLoader, name: &str, channels: usize) -> Self {
        Self {
            weight: loader.tensor(&format!("{name}.weight"), [channels]),
            bias: loader.tensor(&format!("{name}.bias"), [channels]),
            groups: 32.min(channels).max(1),
        }
    }

    pub(crate) fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let g = self.groups;
        let grouped = x.reshape([b, g, (c / g) * h * w]);
        let mean = grouped.clone().mean_dim(2);
        let centered = grouped - mean;
        let var = centered.clone().powf_scalar(2.0).mean_dim(2);
        let normed = (centered / (var + 1e-6).sqrt()).reshape([b, c, h, w]);
        normed * self.weight.clone().reshape([1, c, 1, 1]) + self.bias.clone().reshape([1, c, 1, 1])
    }
}

pub(crate) fn swish(x: Tensor<4>) -> Tensor<4> {
    x.clone() * sigmoid(x)
}

/// `x + conv2(swish(norm2(conv1(swish(norm1(x))))))`, with a 1×1 shortcut when channels change.
#[derive(Debug, Clone)]
pub(crate) struct ResBlock {
    norm1: GroupNorm,
    conv1: Conv,
    norm2: GroupNorm,
    conv2: Conv,
    shortcut: Option<Conv>,
}

impl ResBlock {
    pub(crate) fn load(loader: &mut WeightLoader, name: &str, inp: usize, out: usize) -> Self {
        Self {
            norm1: GroupNorm::load(loader, &format!("{name}.norm1"), inp),
            conv1: Conv::load(loader, &format!("{name}.conv1"), out, inp, 3, 1),
            norm2: GroupNorm::load(loader, &format!("{name}.norm2"), out),
            conv2: Conv::load(loader, &format!("{name}.conv2"), out, out, 3, 1),
            shortcut: (inp != out)
                .then(|| Conv::load(loader, &format!("{name}.nin_shortcut"), out, inp, 1, 1)),
        }
    }

    pub(crate) fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let h = self.conv1.forward(swish(self.norm1.forward(x.clone())));
        let h = self.conv2.forward(swish(self.norm2.forward(h)));
        match &self.shortcut {
            Some(s) => s.forward(x) + h,
            None => x + h,
        }
    }
}

/// Single-head self-attention over all spatial positions, with 1×1 q/k/v/out projections.
#[derive(Debug, Clone)]
pub(crate) struct AttnBlock {
    norm: GroupNorm,
    q: Conv,
    k: Conv,
    v: Conv,
    proj_out: Conv,
}

impl AttnBlock {
    pub(crate) fn load(loader: &mut WeightLoader, name: &str, channels: usize) -> Self {
        let c = channels;
        Self {
            norm: GroupNorm::load(loader, &format!("{name}.norm"), c),
            q: Conv::load(loader, &format!("{name}.q"), c, c, 1, 1),
            k: Conv::load(loader, &format!("{name}.k"), c, c, 1, 1),
            v: Conv::load(loader, &format!("{name}.v"), c, c, 1, 1),
            proj_out: Conv::load(loader, &format!("{name}.proj_out"), c, c, 1, 1),
        }
    }

    pub(crate) fn forward(&self, x: Tensor<4>) -> Tensor<4> {
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

/// Nearest-neighbour 2× upsampling.
pub(crate) fn upsample2x(x: Tensor<4>) -> Tensor<4> {
    upsample(x, 2)
}

/// Pads one zero row at the bottom and one zero column at the right (taming's downsampling).
pub(crate) fn pad_bottom_right(x: Tensor<4>) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    let device = x.device();
    let x = Tensor::cat(vec![x, Tensor::zeros([b, c, h, 1], &device)], 3);
    Tensor::cat(vec![x, Tensor::zeros([b, c, 1, w + 1], &device)], 2)
}

/// Nearest-neighbour upsampling by an integer factor.
pub(crate) fn upsample(x: Tensor<4>, f: usize) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    x.reshape([b, c, h, 1, w, 1])
        .expand([b, c, h, f, w, f])
        .reshape([b, c, f * h, f * w])
}
