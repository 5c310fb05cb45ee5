//! Emu3's vision tokenizer encoder (MoVQ-style): a taming-style 2-D encoder applied to each of
//! the `temporal_factor` copies of the image, a causal temporal stack that downsamples time
//! (stride-2 causal 3-D convolutions, then BatchNorm3d ResNet blocks), `quant_conv`, and the
//! nearest entry of the plain (not normalized) codebook.
//!
//! As transformers' `Emu3VQVAE.encode`, an image is repeated `temporal_factor` times; the
//! repeated frames are identical, so the 2-D encoder runs once per image and its output is
//! repeated (the result is the same, at a quarter of the cost).

use std::path::Path;

use burn::Tensor;
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{EmbeddingConfig, GroupNorm, Linear, LinearConfig};
use burn::tensor::{Device, Int};
use sjd2_core::Error;

use super::layers::{ResBlock, conv, group_norm, swish};
use super::movq::{CausalConv3d, Quantize, TimeRes, attend_positions, load_part, name_table};
use super::{ImageEncoder, MovqConfig, nearest_code};
use crate::error::Result;
use crate::weights::NamedTensor;

/// Single-head attention over positions with a group norm; `Linear` projections (1×1
/// convolutions in the original layout, `q_proj`… in transformers').
#[derive(Module, Debug)]
pub struct MovqEncoderAttn {
    /// Norm (`attn_norms.{j}` / `attn_norm` in transformers' names).
    pub norm: GroupNorm,
    /// Query projection.
    pub q: Linear,
    /// Key projection.
    pub k: Linear,
    /// Value projection.
    pub v: Linear,
    /// Output projection.
    pub proj_out: Linear,
}

impl MovqEncoderAttn {
    fn new(c: usize, device: &Device) -> Self {
        let linear = || LinearConfig::new(c, c).init(device);
        Self {
            norm: group_norm(c, device),
            q: linear(),
            k: linear(),
            v: linear(),
            proj_out: linear(),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let n = self.norm.forward(x.clone());
        x + attend_positions(n, [&self.q, &self.k, &self.v, &self.proj_out])
    }
}

/// A stride-2 3×3 convolution with one row and column of zeros at the bottom and right.
#[derive(Module, Debug)]
pub struct Downsample {
    /// The convolution.
    pub conv: Conv2d,
}

/// One resolution level of the encoder.
#[derive(Module, Debug)]
pub struct MovqEncoderLevel {
    /// ResNet blocks.
    pub block: Vec<ResBlock>,
    /// Attention after each ResNet block (attention levels only).
    pub attn: Vec<MovqEncoderAttn>,
    /// Downsampling (all levels but the lowest resolution).
    pub downsample: Option<Downsample>,
}

/// The middle block: ResNet, attention, ResNet.
#[derive(Module, Debug)]
pub struct MovqEncoderMid {
    /// ResNet block before attention.
    pub block_1: ResBlock,
    /// Attention.
    pub attn_1: MovqEncoderAttn,
    /// ResNet block after attention.
    pub block_2: ResBlock,
}

/// A 2× temporal downsampling: causal convolution `(4, 3, 3)` with temporal stride 2, then swish.
#[derive(Module, Debug)]
pub struct TimeDownsample {
    /// The convolution.
    pub conv: CausalConv3d,
}

/// The encoder proper: the 2-D encoder, then the temporal stack.
#[derive(Module, Debug)]
pub struct MovqEncoderStack {
    /// Input convolution.
    pub conv_in: Conv2d,
    /// Levels from the highest resolution down.
    pub down: Vec<MovqEncoderLevel>,
    /// Middle block.
    pub mid: MovqEncoderMid,
    /// Output norm.
    pub norm_out: GroupNorm,
    /// Output convolution (to `z_channels`).
    pub conv_out: Conv2d,
    /// Temporal 2× downsamplings.
    pub time_conv: Vec<TimeDownsample>,
    /// Temporal residual blocks.
    pub time_res_stack: Vec<TimeRes>,
}

/// Emu3's vision tokenizer encoder as a burn module: images `[b, 3, H, W]` in `[-1, 1]` to codes
/// on an `H/8 × W/8` grid. [`MovqEncoder::load`] reads either layout of the same checkpoint as
/// [`super::MovqDecoder`] (the decoder's tensors are ignored).
///
/// ```
/// use sjd2_models::vq::{ImageEncoder, MovqConfig, MovqEncoder};
/// let device = burn::tensor::Device::default();
/// let config = MovqConfig { ch: 32, codebook_size: 16, ..MovqConfig::emu3() };
/// let encoder = MovqEncoder::new(config, &device)?;
/// let image = burn::Tensor::<4>::zeros([1, 3, 16, 24], &device);
/// let codes = encoder.encode_batch(image)?;
/// assert_eq!(codes[0].len(), 2 * 3);
/// # Ok::<(), sjd2_core::Error>(())
/// ```
#[derive(Module, Debug)]
pub struct MovqEncoder {
    /// Encoder.
    pub encoder: MovqEncoderStack,
    /// Causal 3-D convolution from the latent to the codebook width.
    pub quant_conv: CausalConv3d,
    /// Codebook.
    pub quantize: Quantize,
    #[module(skip)]
    config: MovqConfig,
}

impl MovqEncoder {
    /// An encoder with fresh parameters (burn's default initialization, BatchNorm statistics 0
    /// and 1) on `device`, initialized lazily.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for zero sizes or a temporal factor that is not a power of two.
    pub fn new(config: MovqConfig, device: &Device) -> std::result::Result<Self, Error> {
        config.validate()?;
        let c = &config;
        let (z, e) = (c.z_channels, c.embed_dim);
        let levels = c.ch_mult.len();
        let mut block_in = c.ch;
        let conv_in = conv(3, block_in, 3, 1, device);
        let mut down = Vec::with_capacity(levels);
        for (r, &mult) in c.ch_mult.iter().enumerate() {
            let block_out = c.ch * mult;
            let (mut block, mut attn) = (Vec::new(), Vec::new());
            for _ in 0..c.num_res_blocks {
                block.push(ResBlock::new(block_in, block_out, device));
                block_in = block_out;
                if c.attn_levels.contains(&r) {
                    attn.push(MovqEncoderAttn::new(block_in, device));
                }
            }
            let downsample = (r + 1 != levels).then(|| Downsample {
                conv: conv(block_in, block_in, 3, 2, device),
            });
            down.push(MovqEncoderLevel {
                block,
                attn,
                downsample,
            });
        }
        let encoder = MovqEncoderStack {
            conv_in,
            down,
            mid: MovqEncoderMid {
                block_1: ResBlock::new(block_in, block_in, device),
                attn_1: MovqEncoderAttn::new(block_in, device),
                block_2: ResBlock::new(block_in, block_in, device),
            },
            norm_out: group_norm(block_in, device),
            conv_out: conv(block_in, z, 3, 1, device),
            time_conv: (0..c.temporal_factor.ilog2())
                .map(|_| TimeDownsample {
                    conv: CausalConv3d::strided(z, z, [4, 3, 3], 2, device),
                })
                .collect(),
            time_res_stack: (0..c.num_res_blocks)
                .map(|_| TimeRes::new(z, device))
                .collect(),
        };
        Ok(Self {
            encoder,
            quant_conv: CausalConv3d::new(z, e, [3, 1, 1], device),
            quantize: Quantize {
                embedding: EmbeddingConfig::new(c.codebook_size, e).init(device),
            },
            config,
        })
    }

    /// Loads the encoder, `quant_conv` and the codebook from a checkpoint (the decoder and
    /// `post_quant_conv` in the same file, and BatchNorm `num_batches_tracked`, are ignored;
    /// anything else under the layout's prefix must match exactly).
    ///
    /// # Errors
    /// [`crate::LoadError`] naming the file or tensors at fault.
    pub fn load(path: impl AsRef<Path>, config: MovqConfig, device: &Device) -> Result<Self> {
        let layout = config.layout.clone();
        let model = Self::new(config, device)?;
        load_part(
            path.as_ref(),
            model,
            &layout,
            ["decoder.", "post_quant_conv."],
            device,
        )
    }

    /// Every parameter under its checkpoint name in the configured layout, as `f32` host
    /// values: what [`MovqEncoder::load`] reads back.
    ///
    /// # Errors
    /// [`Error::TensorData`] when a parameter cannot be read back.
    pub fn export(&self) -> std::result::Result<Vec<NamedTensor>, Error> {
        crate::weights::export_table(self, name_table(self, &self.config.layout))
    }

    /// The configuration.
    pub fn config(&self) -> &MovqConfig {
        &self.config
    }

    /// Latents `[b, embed_dim, H/f, W/f]` before quantization (after `quant_conv`, frame 0) of
    /// images `[b, 3, H, W]`, `f` the spatial downsampling factor.
    pub fn latents(&self, images: Tensor<4>) -> Tensor<4> {
        let s = &self.encoder;
        let mut h = s.conv_in.forward(images);
        for level in &s.down {
            for (j, block) in level.block.iter().enumerate() {
                h = block.forward(h);
                if let Some(a) = level.attn.get(j) {
                    h = a.forward(h);
                }
            }
            if let Some(d) = &level.downsample {
                h = d.conv.forward(h);
            }
        }
        h = s
            .mid
            .block_2
            .forward(s.mid.attn_1.forward(s.mid.block_1.forward(h)));
        let h = s.conv_out.forward(swish(s.norm_out.forward(h)));
        // The image as `temporal_factor` identical frames.
        let [b, z, rows, cols] = h.dims();
        let t = self.config.temporal_factor;
        let mut x = h
            .reshape([b, z, 1, rows, cols])
            .expand([b, z, t, rows, cols]);
        for down in &s.time_conv {
            x = swish(down.conv.forward(x));
        }
        for block in &s.time_res_stack {
            x = block.forward(x);
        }
        self.quant_conv
            .forward(x)
            .narrow(2, 0, 1)
            .squeeze_dim::<4>(2)
    }

    /// Codes `[b, rows·cols]` (raster order) of images `[b, 3, H, W]` in `[-1, 1]`.
    pub fn codes(&self, images: Tensor<4>) -> Tensor<2, Int> {
        let z = self.latents(images);
        let [b, e, rows, cols] = z.dims();
        let flat = z.permute([0, 2, 3, 1]).reshape([b * rows * cols, e]);
        nearest_code(flat, self.quantize.embedding.weight.val()).reshape([b, rows * cols])
    }
}

impl ImageEncoder for MovqEncoder {
    fn downsample(&self) -> usize {
        1 << self.config.ch_mult.len().saturating_sub(1)
    }

    fn codebook_size(&self) -> usize {
        self.config.codebook_size
    }

    fn encode_codes(&self, images: Tensor<4>) -> std::result::Result<Tensor<2, Int>, Error> {
        Ok(self.codes(images))
    }
}
