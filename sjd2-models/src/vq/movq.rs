//! Emu3's vision tokenizer decoder (MoVQ-style): a causal temporal stack run on both the
//! post-quantization latent and the quantized codes, then a 2-D decoder whose every norm is a
//! SpatialNorm conditioned on the codes. Frame 0 of the temporally upsampled video is the image.

use std::path::Path;

use burn::Tensor;
use burn::tensor::activation::{sigmoid, softmax};
use burn::tensor::module::conv3d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Int, TensorData};
use sjd2_core::Error;

use super::ImageDecoder;
use burn::nn::GroupNorm;
use burn::nn::conv::Conv2d;

use super::layers::{load_conv, load_group_norm, swish, upsample};
use crate::error::Result;
use crate::weights::{Checkpoint, WeightLoader};

/// Key layout of an Emu3 vision tokenizer checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MovqLayout {
    /// BAAI's original names (`decoder.mid.attn_1.{q,k,v,proj_out,norm}`, `decoder.up.{i}`).
    Original {
        /// Key prefix.
        prefix: String,
    },
    /// transformers' names (`decoder.middle_block`, `decoder.up_block.up.{i}`, `attn.{j}.q_proj`,
    /// `attn_norms.{j}`), `vqmodel.` in a full Emu3 checkpoint.
    HuggingFace {
        /// Key prefix.
        prefix: String,
    },
}

/// Sizes of the Emu3 vision tokenizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovqConfig {
    /// Base channels (256 released).
    pub ch: usize,
    /// Channel multipliers, highest resolution first (`[1, 2, 2, 4]` released).
    pub ch_mult: Vec<usize>,
    /// ResNet blocks per level (the decoder has one more).
    pub num_res_blocks: usize,
    /// Latent channels (4).
    pub z_channels: usize,
    /// Codebook width (4).
    pub embed_dim: usize,
    /// Codebook entries (32768).
    pub codebook_size: usize,
    /// Levels with attention (0 = highest resolution; `[3]` released).
    pub attn_levels: Vec<usize>,
    /// Temporal upsampling factor (4).
    pub temporal_factor: usize,
    /// Names.
    pub layout: MovqLayout,
}

impl MovqConfig {
    /// The released `BAAI/Emu3-VisionTokenizer` sizes, original names.
    pub fn emu3() -> Self {
        Self {
            ch: 256,
            ch_mult: vec![1, 2, 2, 4],
            num_res_blocks: 2,
            z_channels: 4,
            embed_dim: 4,
            codebook_size: 32_768,
            attn_levels: vec![3],
            temporal_factor: 4,
            layout: MovqLayout::Original {
                prefix: String::new(),
            },
        }
    }
}

#[derive(Debug, Clone)]
struct SpatialNorm {
    norm: GroupNorm,
    conv_y: Conv2d,
    conv_b: Conv2d,
}

impl SpatialNorm {
    fn load(l: &mut WeightLoader, name: &str, zq: usize, c: usize) -> Self {
        Self {
            norm: load_group_norm(l, &format!("{name}.norm_layer"), c),
            conv_y: load_conv(l, &format!("{name}.conv_y"), c, zq, 1, 1),
            conv_b: load_conv(l, &format!("{name}.conv_b"), c, zq, 1, 1),
        }
    }

    fn forward(&self, x: Tensor<4>, zq: &Tensor<4>) -> Tensor<4> {
        let f = x.dims()[2] / zq.dims()[2].max(1);
        let zq = upsample(zq.clone(), f.max(1));
        self.norm.forward(x) * self.conv_y.forward(zq.clone()) + self.conv_b.forward(zq)
    }
}

#[derive(Debug, Clone)]
struct ResBlock {
    norm1: SpatialNorm,
    conv1: Conv2d,
    norm2: SpatialNorm,
    conv2: Conv2d,
    shortcut: Option<Conv2d>,
}

impl ResBlock {
    fn load(l: &mut WeightLoader, name: &str, zq: usize, inp: usize, out: usize) -> Self {
        Self {
            norm1: SpatialNorm::load(l, &format!("{name}.norm1"), zq, inp),
            conv1: load_conv(l, &format!("{name}.conv1"), out, inp, 3, 1),
            norm2: SpatialNorm::load(l, &format!("{name}.norm2"), zq, out),
            conv2: load_conv(l, &format!("{name}.conv2"), out, out, 3, 1),
            shortcut: (inp != out)
                .then(|| load_conv(l, &format!("{name}.nin_shortcut"), out, inp, 1, 1)),
        }
    }

    fn forward(&self, x: Tensor<4>, zq: &Tensor<4>) -> Tensor<4> {
        let h = self.conv1.forward(swish(self.norm1.forward(x.clone(), zq)));
        let h = self.conv2.forward(swish(self.norm2.forward(h, zq)));
        match &self.shortcut {
            Some(s) => s.forward(x) + h,
            None => x + h,
        }
    }
}

/// Single-head attention over positions; projections stored as `[in, out]` matrices.
#[derive(Debug, Clone)]
struct Attn {
    norm: SpatialNorm,
    proj: [(Tensor<2>, Tensor<1>); 4],
}

impl Attn {
    /// `names` = (norm, [q, k, v, out]); `linear` = transformers' `Linear` weights, else 1×1 convs.
    fn load(
        l: &mut WeightLoader,
        norm: &str,
        projs: [String; 4],
        linear: bool,
        zq: usize,
        c: usize,
    ) -> Self {
        let mut load = |name: &String| {
            let w = if linear {
                l.tensor(&format!("{name}.weight"), [c, c])
            } else {
                l.tensor::<4>(&format!("{name}.weight"), [c, c, 1, 1])
                    .reshape([c, c])
            };
            (w.transpose(), l.tensor(&format!("{name}.bias"), [c]))
        };
        let proj = [
            load(&projs[0]),
            load(&projs[1]),
            load(&projs[2]),
            load(&projs[3]),
        ];
        Self {
            norm: SpatialNorm::load(l, norm, zq, c),
            proj,
        }
    }

    fn forward(&self, x: Tensor<4>, zq: &Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let n = self
            .norm
            .forward(x.clone(), zq)
            .reshape([b, c, h * w])
            .swap_dims(1, 2); // [b, hw, c]
        let lin = |i: usize, t: Tensor<3>| {
            t.matmul(self.proj[i].0.clone().unsqueeze()) + self.proj[i].1.clone().unsqueeze::<3>()
        };
        let (q, k, v) = (lin(0, n.clone()), lin(1, n.clone()), lin(2, n));
        let att = softmax(q.matmul(k.swap_dims(1, 2)) / (c as f64).sqrt(), 2);
        let out = lin(3, att.matmul(v)); // [b, hw, c]
        x + out.swap_dims(1, 2).reshape([b, c, h, w])
    }
}

/// A causal 3-D convolution: two zero frames in front, spatial padding `k/2`.
#[derive(Debug, Clone)]
struct CausalConv3d {
    weight: Tensor<5>,
    bias: Tensor<1>,
}

impl CausalConv3d {
    fn load(l: &mut WeightLoader, name: &str, out: usize, inp: usize, k: [usize; 3]) -> Self {
        Self {
            weight: l.tensor(&format!("{name}.weight"), [out, inp, k[0], k[1], k[2]]),
            bias: l.tensor(&format!("{name}.bias"), [out]),
        }
    }

    fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let [b, c, _, h, w] = x.dims();
        let [_, _, kt, kh, kw] = self.weight.dims();
        let x = Tensor::cat(vec![Tensor::zeros([b, c, kt - 1, h, w], &x.device()), x], 2);
        conv3d(
            x,
            self.weight.clone(),
            Some(self.bias.clone()),
            ConvOptions::new([1, 1, 1], [0, kh / 2, kw / 2], [1, 1, 1], 1),
        )
    }
}

#[derive(Debug, Clone)]
struct BatchNorm {
    scale: Tensor<1>,
    shift: Tensor<1>,
}

impl BatchNorm {
    /// Eval-mode BatchNorm3d (running statistics, eps 1e-5) folded into scale and shift.
    fn load(l: &mut WeightLoader, name: &str, c: usize) -> Self {
        let w: Tensor<1> = l.tensor(&format!("{name}.weight"), [c]);
        let b: Tensor<1> = l.tensor(&format!("{name}.bias"), [c]);
        let mean: Tensor<1> = l.tensor(&format!("{name}.running_mean"), [c]);
        let var: Tensor<1> = l.tensor(&format!("{name}.running_var"), [c]);
        l.skip(&format!("{name}.num_batches_tracked"));
        let scale = w / (var + 1e-5).sqrt();
        Self {
            shift: b - mean * scale.clone(),
            scale,
        }
    }

    fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let c = self.scale.dims()[0];
        x * self.scale.clone().reshape([1, c, 1, 1, 1])
            + self.shift.clone().reshape([1, c, 1, 1, 1])
    }
}

fn swish5(x: Tensor<5>) -> Tensor<5> {
    x.clone() * sigmoid(x)
}

#[derive(Debug, Clone)]
struct TimeRes {
    norm1: BatchNorm,
    conv1: CausalConv3d,
    norm2: BatchNorm,
    conv2: CausalConv3d,
}

#[derive(Debug, Clone)]
struct Level {
    res: Vec<ResBlock>,
    attn: Vec<Attn>,
    upsample: Option<Conv2d>,
}

/// Emu3's vision tokenizer decoder.
#[derive(Debug, Clone)]
pub struct MovqDecoder {
    config: MovqConfig,
    device: Device,
    codebook: Tensor<2>,
    post_quant: CausalConv3d,
    time_res: Vec<TimeRes>,
    time_conv: Vec<CausalConv3d>,
    conv_in: Conv2d,
    mid: (ResBlock, Attn, ResBlock),
    levels: Vec<Level>,
    norm_out: SpatialNorm,
    conv_out: Conv2d,
}

impl MovqDecoder {
    /// Loads the decoder (the encoder and `quant_conv` in the same file are ignored).
    ///
    /// # Errors
    /// [`crate::LoadError`] naming the file or tensors at fault.
    pub fn load(path: impl AsRef<Path>, config: MovqConfig, device: &Device) -> Result<Self> {
        let mut l = WeightLoader::new(Checkpoint::open(path)?, device);
        let c = &config;
        let (p, hf) = match &c.layout {
            MovqLayout::Original { prefix } => (prefix.clone(), false),
            MovqLayout::HuggingFace { prefix } => (prefix.clone(), true),
        };
        let d = format!("{p}decoder");
        let (z, e) = (c.z_channels, c.embed_dim);
        let codebook = l.tensor(
            &format!("{p}quantize.embedding.weight"),
            [c.codebook_size, e],
        );
        let post_quant =
            CausalConv3d::load(&mut l, &format!("{p}post_quant_conv.conv"), z, e, [3, 1, 1]);
        let time_res = (0..c.num_res_blocks)
            .map(|i| {
                let n = format!("{d}.time_res_stack.{i}");
                TimeRes {
                    norm1: BatchNorm::load(&mut l, &format!("{n}.norm1"), z),
                    conv1: CausalConv3d::load(&mut l, &format!("{n}.conv1.conv"), z, z, [3, 3, 3]),
                    norm2: BatchNorm::load(&mut l, &format!("{n}.norm2"), z),
                    conv2: CausalConv3d::load(&mut l, &format!("{n}.conv2.conv"), z, z, [3, 3, 3]),
                }
            })
            .collect();
        let steps = c.temporal_factor.max(1).ilog2() as usize;
        let time_conv = (0..steps)
            .map(|i| {
                CausalConv3d::load(
                    &mut l,
                    &format!("{d}.time_conv.{i}.conv.conv"),
                    z,
                    z,
                    [3, 3, 3],
                )
            })
            .collect();
        let levels_n = c.ch_mult.len();
        let mut block_in = c.ch * c.ch_mult[levels_n - 1];
        let conv_in = load_conv(&mut l, &format!("{d}.conv_in"), block_in, z, 3, 1);
        let attn = |l: &mut WeightLoader, base: &str, norm: String, ch: usize| {
            let names = if hf {
                ["q_proj", "k_proj", "v_proj", "out_proj"]
            } else {
                ["q", "k", "v", "proj_out"]
            };
            Attn::load(l, &norm, names.map(|n| format!("{base}.{n}")), hf, e, ch)
        };
        let (mid_root, mid_attn_norm) = if hf {
            (
                format!("{d}.middle_block"),
                format!("{d}.middle_block.attn_norm"),
            )
        } else {
            (format!("{d}.mid"), format!("{d}.mid.attn_1.norm"))
        };
        let mid = (
            ResBlock::load(
                &mut l,
                &format!("{mid_root}.block_1"),
                e,
                block_in,
                block_in,
            ),
            attn(
                &mut l,
                &format!("{mid_root}.attn_1"),
                mid_attn_norm,
                block_in,
            ),
            ResBlock::load(
                &mut l,
                &format!("{mid_root}.block_2"),
                e,
                block_in,
                block_in,
            ),
        );
        let up = if hf {
            format!("{d}.up_block.up")
        } else {
            format!("{d}.up")
        };
        let mut levels = Vec::with_capacity(levels_n);
        for r in (0..levels_n).rev() {
            let name = format!("{up}.{r}");
            let block_out = c.ch * c.ch_mult[r];
            let mut res = Vec::new();
            let mut attns = Vec::new();
            for j in 0..=c.num_res_blocks {
                res.push(ResBlock::load(
                    &mut l,
                    &format!("{name}.block.{j}"),
                    e,
                    block_in,
                    block_out,
                ));
                block_in = block_out;
                if c.attn_levels.contains(&r) {
                    let norm = if hf {
                        format!("{name}.attn_norms.{j}")
                    } else {
                        format!("{name}.attn.{j}.norm")
                    };
                    attns.push(attn(&mut l, &format!("{name}.attn.{j}"), norm, block_in));
                }
            }
            let upsample = (r != 0).then(|| {
                load_conv(
                    &mut l,
                    &format!("{name}.upsample.conv"),
                    block_in,
                    block_in,
                    3,
                    1,
                )
            });
            levels.push(Level {
                res,
                attn: attns,
                upsample,
            });
        }
        let norm_out = SpatialNorm::load(&mut l, &format!("{d}.norm_out"), e, block_in);
        let conv_out = load_conv(&mut l, &format!("{d}.conv_out"), 3, block_in, 3, 1);
        l.finish(|n| {
            !n.starts_with(&p)
                || n.starts_with(&format!("{p}encoder."))
                || n.starts_with(&format!("{p}quant_conv."))
        })?;
        Ok(Self {
            config,
            device: device.clone(),
            codebook,
            post_quant,
            time_res,
            time_conv,
            conv_in,
            mid,
            levels,
            norm_out,
            conv_out,
        })
    }
}

impl ImageDecoder for MovqDecoder {
    fn codebook_size(&self) -> usize {
        self.config.codebook_size
    }

    fn downsample(&self) -> usize {
        1 << self.config.ch_mult.len().saturating_sub(1)
    }

    fn decode(
        &self,
        codes: &[u32],
        rows: usize,
        cols: usize,
    ) -> std::result::Result<Tensor<4>, Error> {
        super::check_codes(codes, rows, cols, self.config.codebook_size)?;
        let e = self.config.embed_dim;
        let idx: Vec<i64> = codes.iter().map(|&c| i64::from(c)).collect();
        let idx = Tensor::<1, Int>::from_data(TensorData::new(idx, [codes.len()]), &self.device);
        let quant = self
            .codebook
            .clone()
            .select(0, idx)
            .reshape([1, rows, cols, e])
            .permute([0, 3, 1, 2])
            .reshape([1, e, 1, rows, cols]);
        let post = self.post_quant.forward(quant.clone());
        // Both streams through the temporal stack, as upstream (batch [post; quant]).
        let mut x = Tensor::cat(vec![post, quant], 0);
        for t in &self.time_res {
            let h = t.conv1.forward(swish5(t.norm1.forward(x.clone())));
            let h = t.conv2.forward(swish5(t.norm2.forward(h)));
            x = x + h;
        }
        for conv in &self.time_conv {
            let [b, c, f, h, w] = x.dims();
            x = x
                .reshape([b, c, f, 1, h, w])
                .expand([b, c, f, 2, h, w])
                .reshape([b, c, 2 * f, h, w]);
            x = swish5(conv.forward(x));
        }
        // Frame 0 of each stream.
        let frame0 = x.narrow(2, 0, 1).squeeze_dim::<4>(2); // [2, c, h, w]
        let z = frame0.clone().narrow(0, 0, 1);
        let zq = frame0.narrow(0, 1, 1);
        let mut h = self.conv_in.forward(z);
        h = self.mid.0.forward(h, &zq);
        h = self.mid.1.forward(h, &zq);
        h = self.mid.2.forward(h, &zq);
        for level in &self.levels {
            for (j, res) in level.res.iter().enumerate() {
                h = res.forward(h, &zq);
                if let Some(a) = level.attn.get(j) {
                    h = a.forward(h, &zq);
                }
            }
            if let Some(conv) = &level.upsample {
                h = conv.forward(upsample(h, 2));
            }
        }
        Ok(self.conv_out.forward(swish(self.norm_out.forward(h, &zq))))
    }
}
