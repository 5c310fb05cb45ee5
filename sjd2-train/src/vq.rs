//! The demo model's image tokenizer: a small taming-style VQ autoencoder trained with burn's
//! autodiff, exported under the names [`sjd2_models::vq::VqModel`] reads (`VqLayout::Taming`,
//! l2-normalized codebook as in LlamaGen's VQ-16).
//!
//! The trainable modules mirror the inference code block for block: `conv_in`, one level per
//! resolution with ResNet blocks (GroupNorm, swish, 3×3 convolutions, 1×1 shortcut), a
//! bottom-right-padded stride-2 downsampling convolution or a nearest 2× upsampling one, a middle
//! block (ResNet, single-head attention, ResNet), `norm_out` and `conv_out`. Quantization is
//! nearest-neighbour on the unit sphere with a straight-through estimator, a codebook loss and a
//! commitment loss; codes left unused for a while are restarted from encoder outputs.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, PaddingConfig2d};
use burn::tensor::activation::{sigmoid, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::checkpoint::{NamedTensor, named_parameters};
use crate::error::{Result, TrainError};

/// Sizes of the demo VQ autoencoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VqTrainConfig {
    /// Base channels.
    pub ch: usize,
    /// Channel multiplier per level, highest resolution first (downsampling `2^(len−1)`).
    pub ch_mult: Vec<usize>,
    /// ResNet blocks per encoder level (decoder levels have one more).
    pub num_res_blocks: usize,
    /// Latent channels.
    pub z_channels: usize,
    /// Codebook vector width.
    pub embed_dim: usize,
    /// Codebook entries.
    pub codebook_size: usize,
}

impl VqTrainConfig {
    /// The demo tokenizer: 64×64 images → 16×16 codes from a 512 × 8 codebook; channels 16/32/64.
    pub fn demo() -> Self {
        Self {
            ch: 16,
            ch_mult: vec![1, 2, 4],
            num_res_blocks: 1,
            z_channels: 32,
            embed_dim: 8,
            codebook_size: 512,
        }
    }

    /// Spatial downsampling factor.
    pub fn downsample(&self) -> usize {
        1 << self.ch_mult.len().saturating_sub(1)
    }
}

fn conv(inp: usize, out: usize, k: usize, device: &Device) -> Conv2d {
    let p = k / 2;
    Conv2dConfig::new([inp, out], [k, k])
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .init(device)
}

fn norm(c: usize, device: &Device) -> GroupNorm {
    GroupNormConfig::new(32.min(c), c)
        .with_epsilon(1e-6)
        .init(device)
}

fn swish(x: Tensor<4>) -> Tensor<4> {
    x.clone() * sigmoid(x)
}

/// A ResNet block.
#[derive(Module, Debug)]
pub struct Res {
    norm1: GroupNorm,
    conv1: Conv2d,
    norm2: GroupNorm,
    conv2: Conv2d,
    nin_shortcut: Option<Conv2d>,
}

impl Res {
    fn new(inp: usize, out: usize, device: &Device) -> Self {
        Self {
            norm1: norm(inp, device),
            conv1: conv(inp, out, 3, device),
            norm2: norm(out, device),
            conv2: conv(out, out, 3, device),
            nin_shortcut: (inp != out).then(|| conv(inp, out, 1, device)),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let h = self.conv1.forward(swish(self.norm1.forward(x.clone())));
        let h = self.conv2.forward(swish(self.norm2.forward(h)));
        match &self.nin_shortcut {
            Some(s) => s.forward(x) + h,
            None => x + h,
        }
    }
}

/// Single-head spatial self-attention.
#[derive(Module, Debug)]
pub struct Attn {
    norm: GroupNorm,
    q: Conv2d,
    k: Conv2d,
    v: Conv2d,
    proj_out: Conv2d,
}

impl Attn {
    fn new(c: usize, device: &Device) -> Self {
        Self {
            norm: norm(c, device),
            q: conv(c, c, 1, device),
            k: conv(c, c, 1, device),
            v: conv(c, c, 1, device),
            proj_out: conv(c, c, 1, device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let n = self.norm.forward(x.clone());
        let q = self
            .q
            .forward(n.clone())
            .reshape([b, c, h * w])
            .swap_dims(1, 2);
        let k = self.k.forward(n.clone()).reshape([b, c, h * w]);
        let v = self.v.forward(n).reshape([b, c, h * w]);
        let att = softmax(q.matmul(k) / (c as f64).sqrt(), 2);
        x + self
            .proj_out
            .forward(v.matmul(att.swap_dims(1, 2)).reshape([b, c, h, w]))
    }
}

/// Resampling convolution of one level.
#[derive(Module, Debug)]
pub struct Resample {
    conv: Conv2d,
}

/// One resolution level.
#[derive(Module, Debug)]
pub struct Level {
    block: Vec<Res>,
    downsample: Option<Resample>,
    upsample: Option<Resample>,
}

/// The middle block.
#[derive(Module, Debug)]
pub struct Mid {
    block_1: Res,
    attn_1: Attn,
    block_2: Res,
}

impl Mid {
    fn new(c: usize, device: &Device) -> Self {
        Self {
            block_1: Res::new(c, c, device),
            attn_1: Attn::new(c, device),
            block_2: Res::new(c, c, device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.block_2
            .forward(self.attn_1.forward(self.block_1.forward(x)))
    }
}

/// Encoder: image → latent.
#[derive(Module, Debug)]
pub struct Encoder {
    conv_in: Conv2d,
    down: Vec<Level>,
    mid: Mid,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

/// Decoder: latent → image. `up[0]` is the highest resolution (taming order).
#[derive(Module, Debug)]
pub struct Decoder {
    conv_in: Conv2d,
    mid: Mid,
    up: Vec<Level>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

/// The trainable VQ autoencoder.
#[derive(Module, Debug)]
pub struct VqAutoencoder {
    encoder: Encoder,
    quant_conv: Conv2d,
    /// `[codebook_size, embed_dim]` (normalized when used).
    codebook: Param<Tensor<2>>,
    post_quant_conv: Conv2d,
    decoder: Decoder,
}

/// The outputs of one training forward pass.
#[derive(Debug)]
pub struct VqOutput {
    /// Reconstruction `[b, 3, H, W]`.
    pub recon: Tensor<4>,
    /// Codebook + 0.25 × commitment loss.
    pub vq_loss: Tensor<1>,
    /// Codes `[b·h·w]`, raster order per image.
    pub codes: Tensor<1, Int>,
    /// Normalized encoder outputs `[b·h·w, embed_dim]`, detached (for code restarts).
    pub latents: Tensor<2>,
}

fn l2n(x: Tensor<2>) -> Tensor<2> {
    let n = x
        .clone()
        .powf_scalar(2.0)
        .sum_dim(1)
        .sqrt()
        .clamp_min(1e-12);
    x / n
}

impl VqAutoencoder {
    /// A randomly initialized autoencoder.
    pub fn new(c: &VqTrainConfig, device: &Device) -> Self {
        let l = c.ch_mult.len();
        // Encoder.
        let mut block_in = c.ch;
        let mut down = Vec::with_capacity(l);
        for r in 0..l {
            let out = c.ch * c.ch_mult[r];
            let mut block = Vec::new();
            for _ in 0..c.num_res_blocks {
                block.push(Res::new(block_in, out, device));
                block_in = out;
            }
            let downsample = (r != l - 1).then(|| Resample {
                conv: Conv2dConfig::new([block_in, block_in], [3, 3])
                    .with_stride([2, 2])
                    .with_padding(PaddingConfig2d::Explicit(0, 0, 1, 1))
                    .init(device),
            });
            down.push(Level {
                block,
                downsample,
                upsample: None,
            });
        }
        let encoder = Encoder {
            conv_in: conv(3, c.ch, 3, device),
            down,
            mid: Mid::new(block_in, device),
            norm_out: norm(block_in, device),
            conv_out: conv(block_in, c.z_channels, 3, device),
        };
        // Decoder, built lowest resolution first, stored highest first.
        let mut block_in = c.ch * c.ch_mult[l - 1];
        let dec_in = conv(c.z_channels, block_in, 3, device);
        let dec_mid = Mid::new(block_in, device);
        let mut up = Vec::with_capacity(l);
        for i in 0..l {
            let r = l - 1 - i;
            let out = c.ch * c.ch_mult[r];
            let mut block = Vec::new();
            for _ in 0..=c.num_res_blocks {
                block.push(Res::new(block_in, out, device));
                block_in = out;
            }
            let upsample = (r != 0).then(|| Resample {
                conv: conv(block_in, block_in, 3, device),
            });
            up.push(Level {
                block,
                downsample: None,
                upsample,
            });
        }
        up.reverse();
        let decoder = Decoder {
            conv_in: dec_in,
            mid: dec_mid,
            up,
            norm_out: norm(block_in, device),
            conv_out: conv(block_in, 3, 3, device),
        };
        let codebook = Tensor::<2>::random(
            [c.codebook_size, c.embed_dim],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            device,
        );
        Self {
            encoder,
            quant_conv: conv(c.z_channels, c.embed_dim, 1, device),
            codebook: Param::from_tensor(codebook),
            post_quant_conv: conv(c.embed_dim, c.z_channels, 1, device),
            decoder,
        }
    }

    /// Normalized latents `[b, h, w, e]` of images `[b, 3, H, W]` in `[-1, 1]`.
    pub fn encode(&self, x: Tensor<4>) -> Tensor<4> {
        let e = &self.encoder;
        let mut h = e.conv_in.forward(x);
        for level in &e.down {
            for b in &level.block {
                h = b.forward(h);
            }
            if let Some(d) = &level.downsample {
                h = d.conv.forward(h);
            }
        }
        let h = e
            .conv_out
            .forward(swish(e.norm_out.forward(e.mid.forward(h))));
        let z = self.quant_conv.forward(h);
        let [b, c, hh, ww] = z.dims();
        let z = z.permute([0, 2, 3, 1]).reshape([b * hh * ww, c]);
        l2n(z).reshape([b, hh, ww, c])
    }

    /// Decodes latents `[b, h, w, e]` into images `[b, 3, H, W]`.
    pub fn decode(&self, zq: Tensor<4>) -> Tensor<4> {
        let d = &self.decoder;
        let mut h = d.mid.forward(
            d.conv_in
                .forward(self.post_quant_conv.forward(zq.permute([0, 3, 1, 2]))),
        );
        for level in d.up.iter().rev() {
            for b in &level.block {
                h = b.forward(h);
            }
            if let Some(u) = &level.upsample {
                let [b, c, hh, ww] = h.dims();
                h = u.conv.forward(
                    h.reshape([b, c, hh, 1, ww, 1])
                        .expand([b, c, hh, 2, ww, 2])
                        .reshape([b, c, 2 * hh, 2 * ww]),
                );
            }
        }
        d.conv_out.forward(swish(d.norm_out.forward(h)))
    }

    /// Resolution levels (the downsampling factor is `2^(levels − 1)`).
    pub fn levels(&self) -> usize {
        self.encoder.down.len()
    }

    /// The normalized codebook.
    pub fn normalized_codebook(&self) -> Tensor<2> {
        l2n(self.codebook.val())
    }

    /// Nearest codes of normalized latents `[n, e]`.
    pub fn nearest(&self, z: Tensor<2>) -> Tensor<1, Int> {
        let cb = self.normalized_codebook();
        let n = z.dims()[0];
        z.matmul(cb.transpose()).argmax(1).reshape([n])
    }

    /// Codes of images `[b, 3, H, W]`: `[b, h·w]` in raster order.
    pub fn codes(&self, x: Tensor<4>) -> Tensor<2, Int> {
        let z = self.encode(x);
        let [b, h, w, e] = z.dims();
        self.nearest(z.reshape([b * h * w, e])).reshape([b, h * w])
    }

    /// Decodes codes `[b, h·w]` of an `h × w` grid.
    pub fn decode_codes(&self, codes: Tensor<2, Int>, h: usize, w: usize) -> Tensor<4> {
        let [b, _] = codes.dims();
        let cb = self.normalized_codebook();
        let e = cb.dims()[1];
        let zq = cb.select(0, codes.reshape([b * h * w]));
        self.decode(zq.reshape([b, h, w, e]))
    }

    /// A training forward pass with the straight-through estimator.
    pub fn forward(&self, x: Tensor<4>) -> VqOutput {
        let z = self.encode(x);
        let [b, h, w, e] = z.dims();
        let zf = z.reshape([b * h * w, e]);
        let codes = self.nearest(zf.clone().detach());
        let zq = self.normalized_codebook().select(0, codes.clone());
        let codebook_loss = (zq.clone() - zf.clone().detach()).powf_scalar(2.0).mean();
        let commit = (zf.clone() - zq.clone().detach()).powf_scalar(2.0).mean();
        let st = zf.clone() + (zq - zf.clone()).detach();
        let recon = self.decode(st.reshape([b, h, w, e]));
        VqOutput {
            recon,
            vq_loss: codebook_loss + commit * 0.25,
            codes,
            latents: zf.detach(),
        }
    }

    /// Replaces the codebook rows `dead` by `vectors` (one row each).
    pub fn restart_codes(self, dead: &[usize], vectors: &[Vec<f32>]) -> Result<Self> {
        let mut cb = self.codebook.val();
        let e = cb.dims()[1];
        let device = cb.device();
        for (&i, v) in dead.iter().zip(vectors) {
            if v.len() != e {
                return Err(TrainError::Config {
                    field: "restart vector",
                    reason: format!("{} values for width {e}", v.len()),
                });
            }
            let row = Tensor::<2>::from_data(TensorData::new(v.clone(), [1, e]), &device);
            cb = cb.slice_assign([i..i + 1, 0..e], row);
        }
        let mut this = self;
        this.codebook = this.codebook.map(|_| cb.detach().require_grad());
        Ok(this)
    }

    /// An autoencoder for `config` initialized from an inference file written by
    /// [`VqAutoencoder::export`] (for example `assets/demo/vq.safetensors`).
    ///
    /// # Errors
    /// Unreadable files; missing, unexpected or mis-shaped tensors (named).
    pub fn from_inference(
        config: &VqTrainConfig,
        path: &std::path::Path,
        device: &Device,
    ) -> Result<Self> {
        let mut values = std::collections::BTreeMap::new();
        for (name, shape, v) in crate::checkpoint::read_named(path)? {
            let parts: Vec<&str> = name.split('.').collect();
            let is_norm = parts.len() >= 2 && parts[parts.len() - 2].starts_with("norm");
            let renamed = if name == "quantize.embedding.weight" {
                "codebook".to_string()
            } else if is_norm {
                let head = parts[..parts.len() - 1].join(".");
                match parts[parts.len() - 1] {
                    "weight" => format!("{head}.gamma"),
                    "bias" => format!("{head}.beta"),
                    _ => name.clone(),
                }
            } else {
                name.clone()
            };
            values.insert(renamed, (shape, v));
        }
        crate::checkpoint::assign_named(
            Self::new(config, device),
            values,
            &path.display().to_string(),
        )
    }

    /// The inference tensors, named as `VqModel` with [`sjd2_models::vq::VqLayout::Taming`] reads them.
    ///
    /// # Errors
    /// Unreadable parameters.
    pub fn export(&self) -> Result<Vec<NamedTensor>> {
        let mut out = Vec::new();
        for (name, shape, v) in named_parameters(self)? {
            let name = name
                .replace(".gamma", ".weight")
                .replace(".beta", ".bias")
                .replace("codebook", "quantize.embedding.weight");
            out.push((name, shape, v));
        }
        Ok(out)
    }
}
