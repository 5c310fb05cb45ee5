//! Emu3's vision tokenizer decoder (MoVQ-style) as a burn module: a causal temporal stack run on
//! both the post-quantization latent and the quantized codes, then a 2-D decoder whose every norm
//! is a SpatialNorm conditioned on the codes. Frame 0 of the temporally upsampled video is the
//! image.
//!
//! Module paths are BAAI's original key names (`decoder.up.3.attn.0.q.weight`), so the original
//! layout loads by prefix alone; transformers' names (`decoder.up_block.up.3.attn.0.q_proj`,
//! `attn_norms`, `middle_block`) are derived from them by [`hf_name`].

use std::path::Path;

use burn::Tensor;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv3d, Conv3dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Embedding, EmbeddingConfig, GroupNorm, Linear, LinearConfig,
    PaddingConfig3d,
};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Int, TensorData};
use sjd2_core::Error;

use super::ImageDecoder;
use super::layers::{conv, group_norm, swish, upsample};
use crate::error::Result;
use crate::weights::{Checkpoint, NamedTensor, RowView, Wanted, WeightLoader, param_paths};

/// Key layout of an Emu3 vision tokenizer checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MovqLayout {
    /// BAAI's original names (`decoder.mid.attn_1.{q,k,v,proj_out,norm}`, `decoder.up.{i}`),
    /// attention projections stored as 1×1 convolutions.
    Original {
        /// Key prefix.
        prefix: String,
    },
    /// transformers' names (`decoder.middle_block`, `decoder.up_block.up.{i}`, `attn.{j}.q_proj`,
    /// `attn_norms.{j}`), `vqmodel.` in a full Emu3 checkpoint; attention projections stored as
    /// `Linear` weights.
    HuggingFace {
        /// Key prefix.
        prefix: String,
    },
}

impl MovqLayout {
    pub(super) fn prefix(&self) -> &str {
        match self {
            Self::Original { prefix } | Self::HuggingFace { prefix } => prefix,
        }
    }
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

    /// These settings with the sizes a config records: transformers' `vq_config`
    /// (`base_channels`, `channel_multiplier`, `latent_channels`, `embed_dim`, `codebook_size`,
    /// `num_res_blocks`, `attn_resolutions`, `temporal_downsample_factor`) or the original
    /// vision tokenizer's `config.json` (`ch`, `ch_mult`, `z_channels`, the rest alike). Fields
    /// the config lacks, and the layout, are kept.
    ///
    /// ```
    /// use sjd2_models::vq::MovqConfig;
    ///
    /// let hf = serde_json::json!({"base_channels": 32, "codebook_size": 64, "channel_multiplier": [1, 2]});
    /// let c = MovqConfig::emu3().sized_by(&hf, "vq_config")?;
    /// assert_eq!((c.ch, c.codebook_size, c.ch_mult.clone()), (32, 64, vec![1, 2]));
    /// let original = serde_json::json!({"ch": 256, "z_channels": 4, "attn_resolutions": [3]});
    /// assert_eq!(MovqConfig::emu3().sized_by(&original, "config.json")?.codebook_size, 32_768);
    /// assert!(MovqConfig::emu3().sized_by(&serde_json::json!({"ch": "wide"}), "config.json").is_err());
    /// # Ok::<(), sjd2_models::LoadError>(())
    /// ```
    ///
    /// # Errors
    /// [`crate::LoadError::Config`] naming a field of the wrong type, with `origin` as the path.
    pub fn sized_by(&self, config: &serde_json::Value, origin: &str) -> Result<Self> {
        let size = |names: &[&str], current: usize| {
            crate::config::json_size(config, names, origin).map(|v| v.unwrap_or(current))
        };
        let sizes = |names: &[&str], current: &[usize]| {
            crate::config::json_sizes(config, names, origin)
                .map(|v| v.unwrap_or_else(|| current.to_vec()))
        };
        Ok(Self {
            ch: size(&["base_channels", "ch"], self.ch)?,
            ch_mult: sizes(&["channel_multiplier", "ch_mult"], &self.ch_mult)?,
            num_res_blocks: size(&["num_res_blocks"], self.num_res_blocks)?,
            z_channels: size(&["latent_channels", "z_channels"], self.z_channels)?,
            embed_dim: size(&["embed_dim"], self.embed_dim)?,
            codebook_size: size(&["codebook_size"], self.codebook_size)?,
            attn_levels: sizes(&["attn_resolutions"], &self.attn_levels)?,
            temporal_factor: size(&["temporal_downsample_factor"], self.temporal_factor)?,
            layout: self.layout.clone(),
        })
    }

    /// The vision tokenizer of a transformers Emu3 checkpoint (`weights`, a directory or file):
    /// `vqmodel.*` (Emu3-Gen-hf) or `model.vqmodel.*` (saved by transformers 5), sized by the
    /// `vq_config` of the `config.json` beside it (the released sizes without one).
    ///
    /// # Errors
    /// [`crate::LoadError`] for an unreadable checkpoint or a malformed config.
    pub fn in_checkpoint(weights: impl AsRef<Path>) -> Result<Self> {
        let weights = weights.as_ref();
        let nested = Checkpoint::open(weights)?
            .shape("model.vqmodel.quantize.embedding.weight")
            .is_some();
        let released = Self {
            layout: MovqLayout::HuggingFace {
                prefix: if nested { "model.vqmodel." } else { "vqmodel." }.into(),
            },
            ..Self::emu3()
        };
        released.sized_by_config_beside(weights, Some("vq_config"))
    }

    /// [`MovqConfig::emu3`] (original names) sized by the vision tokenizer's own `config.json`
    /// beside `path` (a directory or file), when there is one.
    ///
    /// # Errors
    /// [`crate::LoadError`] for a malformed config.
    pub fn original(path: impl AsRef<Path>) -> Result<Self> {
        Self::emu3().sized_by_config_beside(path.as_ref(), None)
    }

    fn sized_by_config_beside(self, checkpoint: &Path, key: Option<&str>) -> Result<Self> {
        match crate::config::config_beside(checkpoint, key)? {
            Some((config, origin)) => self.sized_by(&config, &origin),
            None => Ok(self),
        }
    }

    pub(super) fn validate(&self) -> std::result::Result<(), Error> {
        if self.ch == 0 || self.ch_mult.is_empty() || self.ch_mult.contains(&0) {
            return Err(Error::config(
                "ch_mult",
                "channels and multipliers must be >= 1",
            ));
        }
        if self.codebook_size == 0 || self.embed_dim == 0 || self.z_channels == 0 {
            return Err(Error::config(
                "codebook_size",
                "codebook size, embed_dim and z_channels must be >= 1",
            ));
        }
        if !self.temporal_factor.is_power_of_two() {
            return Err(Error::config(
                "temporal_factor",
                "the temporal upsampling factor must be a power of two",
            ));
        }
        Ok(())
    }
}

/// Group norm modulated by the codes: `norm(x) · conv_y(zq) + conv_b(zq)`, with `zq` upsampled
/// to `x`'s size.
#[derive(Module, Debug)]
pub struct SpatialNorm {
    /// Group norm of `x`.
    pub norm_layer: GroupNorm,
    /// 1×1 scale from the codes.
    pub conv_y: Conv2d,
    /// 1×1 shift from the codes.
    pub conv_b: Conv2d,
}

impl SpatialNorm {
    fn new(zq: usize, c: usize, device: &Device) -> Self {
        Self {
            norm_layer: group_norm(c, device),
            conv_y: conv(zq, c, 1, 1, device),
            conv_b: conv(zq, c, 1, 1, device),
        }
    }

    fn forward(&self, x: Tensor<4>, zq: &Tensor<4>) -> Tensor<4> {
        let f = x.dims()[2] / zq.dims()[2].max(1);
        let zq = upsample(zq.clone(), f.max(1));
        self.norm_layer.forward(x) * self.conv_y.forward(zq.clone()) + self.conv_b.forward(zq)
    }
}

/// A ResNet block with SpatialNorms.
#[derive(Module, Debug)]
pub struct MovqResBlock {
    /// First norm.
    pub norm1: SpatialNorm,
    /// First 3×3 convolution.
    pub conv1: Conv2d,
    /// Second norm.
    pub norm2: SpatialNorm,
    /// Second 3×3 convolution.
    pub conv2: Conv2d,
    /// 1×1 shortcut when the channels change.
    pub nin_shortcut: Option<Conv2d>,
}

impl MovqResBlock {
    fn new(zq: usize, inp: usize, out: usize, device: &Device) -> Self {
        Self {
            norm1: SpatialNorm::new(zq, inp, device),
            conv1: conv(inp, out, 3, 1, device),
            norm2: SpatialNorm::new(zq, out, device),
            conv2: conv(out, out, 3, 1, device),
            nin_shortcut: (inp != out).then(|| conv(inp, out, 1, 1, device)),
        }
    }

    fn forward(&self, x: Tensor<4>, zq: &Tensor<4>) -> Tensor<4> {
        let h = self.conv1.forward(swish(self.norm1.forward(x.clone(), zq)));
        let h = self.conv2.forward(swish(self.norm2.forward(h, zq)));
        match &self.nin_shortcut {
            Some(s) => s.forward(x) + h,
            None => x + h,
        }
    }
}

/// Single-head attention over positions with a SpatialNorm; the projections are `Linear`
/// (stored as 1×1 convolutions in the original layout).
#[derive(Module, Debug)]
pub struct MovqAttn {
    /// Norm.
    pub norm: SpatialNorm,
    /// Query projection.
    pub q: Linear,
    /// Key projection.
    pub k: Linear,
    /// Value projection.
    pub v: Linear,
    /// Output projection.
    pub proj_out: Linear,
}

impl MovqAttn {
    fn new(zq: usize, c: usize, device: &Device) -> Self {
        let linear = || LinearConfig::new(c, c).init(device);
        Self {
            norm: SpatialNorm::new(zq, c, device),
            q: linear(),
            k: linear(),
            v: linear(),
            proj_out: linear(),
        }
    }

    fn forward(&self, x: Tensor<4>, zq: &Tensor<4>) -> Tensor<4> {
        let n = self.norm.forward(x.clone(), zq);
        x + attend_positions(n, [&self.q, &self.k, &self.v, &self.proj_out])
    }
}

/// Single-head attention over the positions of normalized features `n` `[b, c, h, w]` with
/// `Linear` projections `[q, k, v, out]` (scale `c^-1/2`); the residual is the caller's.
pub(super) fn attend_positions(n: Tensor<4>, [q, k, v, out]: [&Linear; 4]) -> Tensor<4> {
    let [b, c, h, w] = n.dims();
    let n = n.reshape([b, c, h * w]).swap_dims(1, 2); // [b, hw, c]
    let (q, k, v) = (q.forward(n.clone()), k.forward(n.clone()), v.forward(n));
    let att = softmax(q.matmul(k.swap_dims(1, 2)) / (c as f64).sqrt(), 2);
    let o = out.forward(att.matmul(v)); // [b, hw, c]
    o.swap_dims(1, 2).reshape([b, c, h, w])
}

/// A causal 3-D convolution: `k_t − s_t` zero frames in front (`s_t` the temporal stride, as
/// BAAI's `CausalConv3d` and transformers' `Emu3VQVAEConv3d`), spatial padding `k / 2`.
#[derive(Module, Debug)]
pub struct CausalConv3d {
    /// The convolution (temporal padding added by hand).
    pub conv: Conv3d,
}

impl CausalConv3d {
    pub(super) fn new(inp: usize, out: usize, k: [usize; 3], device: &Device) -> Self {
        Self::strided(inp, out, k, 1, device)
    }

    /// With temporal stride `stride` (the encoder's 2× temporal downsampling).
    pub(super) fn strided(
        inp: usize,
        out: usize,
        k: [usize; 3],
        stride: usize,
        device: &Device,
    ) -> Self {
        Self {
            conv: Conv3dConfig::new([inp, out], k)
                .with_stride([stride, 1, 1])
                .with_padding(PaddingConfig3d::Explicit(0, k[1] / 2, k[2] / 2))
                .init(device),
        }
    }

    pub(super) fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let [b, c, _, h, w] = x.dims();
        let pad = self.conv.weight.dims()[2].saturating_sub(self.conv.stride[0]);
        if pad == 0 {
            return self.conv.forward(x);
        }
        let front = Tensor::zeros([b, c, pad, h, w], &x.device());
        self.conv.forward(Tensor::cat(vec![front, x], 2))
    }
}

/// A residual block of the temporal stack: BatchNorm3d (running statistics), swish, causal conv,
/// twice.
#[derive(Module, Debug)]
pub struct TimeRes {
    /// First norm.
    pub norm1: BatchNorm,
    /// First convolution.
    pub conv1: CausalConv3d,
    /// Second norm.
    pub norm2: BatchNorm,
    /// Second convolution.
    pub conv2: CausalConv3d,
}

impl TimeRes {
    pub(super) fn new(z: usize, device: &Device) -> Self {
        let norm = || BatchNormConfig::new(z).init(device).valid();
        Self {
            norm1: norm(),
            conv1: CausalConv3d::new(z, z, [3, 3, 3], device),
            norm2: norm(),
            conv2: CausalConv3d::new(z, z, [3, 3, 3], device),
        }
    }

    pub(super) fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let h = self.conv1.forward(swish(self.norm1.forward(x.clone())));
        x + self.conv2.forward(swish(self.norm2.forward(h)))
    }
}

/// 2× temporal upsampling: frames repeated, then a causal convolution and swish.
#[derive(Module, Debug)]
pub struct TimeUpsample {
    /// The convolution.
    pub conv: CausalConv3d,
}

/// A 2× nearest upsampling followed by a 3×3 convolution.
#[derive(Module, Debug)]
pub struct Upsample {
    /// The convolution.
    pub conv: Conv2d,
}

/// One resolution level of the decoder.
#[derive(Module, Debug)]
pub struct MovqLevel {
    /// ResNet blocks.
    pub block: Vec<MovqResBlock>,
    /// Attention after each ResNet block (attention levels only).
    pub attn: Vec<MovqAttn>,
    /// Upsampling (all levels but the highest resolution).
    pub upsample: Option<Upsample>,
}

/// The middle block: ResNet, attention, ResNet.
#[derive(Module, Debug)]
pub struct MovqMid {
    /// ResNet block before attention.
    pub block_1: MovqResBlock,
    /// Attention.
    pub attn_1: MovqAttn,
    /// ResNet block after attention.
    pub block_2: MovqResBlock,
}

/// The decoder proper: temporal stack, then the 2-D decoder.
#[derive(Module, Debug)]
pub struct MovqStack {
    /// Temporal residual blocks.
    pub time_res_stack: Vec<TimeRes>,
    /// Temporal 2× upsamplings.
    pub time_conv: Vec<TimeUpsample>,
    /// Input convolution.
    pub conv_in: Conv2d,
    /// Middle block.
    pub mid: MovqMid,
    /// Levels indexed by resolution (0 = highest); run from the last.
    pub up: Vec<MovqLevel>,
    /// Output norm.
    pub norm_out: SpatialNorm,
    /// Output convolution.
    pub conv_out: Conv2d,
}

/// The codebook.
#[derive(Module, Debug)]
pub struct Quantize {
    /// Codebook vectors `[codebook_size, embed_dim]`.
    pub embedding: Embedding,
}

/// Emu3's vision tokenizer decoder as a burn module. [`MovqDecoder::load`] reads either layout
/// through burn-store in the device's float dtype (BatchNorm statistics included);
/// [`MovqDecoder::export`] writes it back.
#[derive(Module, Debug)]
pub struct MovqDecoder {
    /// Codebook.
    pub quantize: Quantize,
    /// Causal 3-D convolution from the codebook width to the latent.
    pub post_quant_conv: CausalConv3d,
    /// Decoder.
    pub decoder: MovqStack,
    #[module(skip)]
    config: MovqConfig,
}

/// transformers' name of an original-layout key (after the prefix), for the encoder and the
/// decoder: `{en,de}coder.mid.attn_1.norm` → `middle_block.attn_norm`, `mid` → `middle_block`,
/// `encoder.down.{i}` → `encoder.down_block.down.{i}` (`decoder.up.{i}` → `up_block.up.{i}`),
/// `….attn.{j}.norm` → `attn_norms.{j}`, `q`/`k`/`v`/`proj_out` → `q_proj`/…/`out_proj`.
pub(super) fn hf_name(original: &str) -> String {
    let mut parts: Vec<&str> = original.split('.').collect();
    let mut out: Vec<String> = Vec::with_capacity(parts.len() + 1);
    let root = parts.first().copied().unwrap_or_default();
    let levels = match root {
        "encoder" => Some(("down", "down_block")),
        "decoder" => Some(("up", "up_block")),
        _ => None,
    };
    if let (Some((level, block)), true) = (levels, parts.len() > 3) {
        if parts[1] == "mid" {
            out.extend([root, "middle_block"].map(String::from));
            if parts[2] == "attn_1" && parts[3] == "norm" {
                out.push("attn_norm".into());
                parts.drain(..4);
            } else {
                parts.drain(..2);
            }
        } else if parts[1] == level {
            out.extend([root, block, level, parts[2]].map(String::from));
            if parts.len() > 5 && parts[3] == "attn" && parts[5] == "norm" {
                out.extend(["attn_norms", parts[4]].map(String::from));
                parts.drain(..6);
            } else {
                parts.drain(..3);
            }
        }
    }
    let renamed = parts.iter().enumerate().map(|(i, p)| {
        let in_attn =
            i > 0 && matches!(parts[i - 1], "attn_1") || (i > 1 && parts[i - 2] == "attn");
        match *p {
            "q" | "k" | "v" if in_attn => format!("{p}_proj"),
            "proj_out" if in_attn => "out_proj".to_string(),
            other => other.to_string(),
        }
    });
    out.extend(renamed);
    out.join(".")
}

/// Loads `model` (one part of the vision tokenizer) from the checkpoint at `path` by
/// [`name_table`]: tensors under the layout's prefix that belong to the other part (`other`
/// roots) and BatchNorm `num_batches_tracked` counters are ignored; anything else under the
/// prefix must match exactly.
pub(super) fn load_part<M: Module + burn::store::ModuleSnapshot>(
    path: &Path,
    mut model: M,
    layout: &MovqLayout,
    other: [&str; 2],
    device: &Device,
) -> Result<M> {
    let mut loader = WeightLoader::new(Checkpoint::open(path)?, device);
    let table = name_table(&model, layout);
    loader.apply(&mut model, table);
    let p = layout.prefix().to_string();
    loader.finish(|n| {
        !n.starts_with(&p)
            || other.iter().any(|o| n.starts_with(&format!("{p}{o}")))
            || n.ends_with(".num_batches_tracked")
    })?;
    Ok(model)
}

/// Module path ↔ checkpoint name of every parameter of a MoVQ part in `layout`: the module path
/// is the original name (norm `gamma` / `beta` stored as `weight` / `bias`), renamed for
/// transformers' layout; attention projections are `Linear` weights, stored as 1×1 convolutions
/// in the original layout.
pub(super) fn name_table<M: Module>(module: &M, layout: &MovqLayout) -> Vec<Wanted> {
    let hf = matches!(layout, MovqLayout::HuggingFace { .. });
    let prefix = layout.prefix();
    param_paths(module)
        .into_iter()
        .map(|path| {
            let original = path
                .strip_suffix(".gamma")
                .map(|p| format!("{p}.weight"))
                .or_else(|| path.strip_suffix(".beta").map(|p| format!("{p}.bias")))
                .unwrap_or_else(|| path.clone());
            let projection = ["q", "k", "v", "proj_out"]
                .iter()
                .any(|p| original.ends_with(&format!(".{p}.weight")))
                && original.contains(".attn");
            let name = if hf { hf_name(&original) } else { original };
            let view = RowView {
                transpose: projection,
                conv1x1: projection && !hf,
                ..RowView::default()
            };
            Wanted {
                path,
                name: format!("{prefix}{name}"),
                view,
            }
        })
        .collect()
}

impl MovqDecoder {
    /// A decoder with fresh parameters (burn's default initialization, BatchNorm statistics 0 and
    /// 1) on `device`, initialized lazily.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for zero sizes or a temporal factor that is not a power of two.
    pub fn new(config: MovqConfig, device: &Device) -> std::result::Result<Self, Error> {
        config.validate()?;
        let c = &config;
        let (z, e) = (c.z_channels, c.embed_dim);
        let levels = c.ch_mult.len();
        let mut block_in = c.ch * c.ch_mult[levels - 1];
        let conv_in = conv(z, block_in, 3, 1, device);
        let mid = MovqMid {
            block_1: MovqResBlock::new(e, block_in, block_in, device),
            attn_1: MovqAttn::new(e, block_in, device),
            block_2: MovqResBlock::new(e, block_in, block_in, device),
        };
        let mut up: Vec<MovqLevel> = Vec::with_capacity(levels);
        for r in (0..levels).rev() {
            let block_out = c.ch * c.ch_mult[r];
            let (mut block, mut attn) = (Vec::new(), Vec::new());
            for _ in 0..=c.num_res_blocks {
                block.push(MovqResBlock::new(e, block_in, block_out, device));
                block_in = block_out;
                if c.attn_levels.contains(&r) {
                    attn.push(MovqAttn::new(e, block_in, device));
                }
            }
            let upsample = (r != 0).then(|| Upsample {
                conv: conv(block_in, block_in, 3, 1, device),
            });
            up.push(MovqLevel {
                block,
                attn,
                upsample,
            });
        }
        up.reverse();
        let decoder = MovqStack {
            time_res_stack: (0..c.num_res_blocks)
                .map(|_| TimeRes::new(z, device))
                .collect(),
            time_conv: (0..c.temporal_factor.ilog2())
                .map(|_| TimeUpsample {
                    conv: CausalConv3d::new(z, z, [3, 3, 3], device),
                })
                .collect(),
            conv_in,
            mid,
            up,
            norm_out: SpatialNorm::new(e, block_in, device),
            conv_out: conv(block_in, 3, 3, 1, device),
        };
        Ok(Self {
            quantize: Quantize {
                embedding: EmbeddingConfig::new(c.codebook_size, e).init(device),
            },
            post_quant_conv: CausalConv3d::new(e, z, [3, 1, 1], device),
            decoder,
            config,
        })
    }

    /// Loads the decoder from a checkpoint (the encoder and `quant_conv` in the same file, and
    /// BatchNorm `num_batches_tracked`, are ignored; anything else under the layout's prefix
    /// must match exactly).
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
            ["encoder.", "quant_conv."],
            device,
        )
    }

    /// Every parameter under its checkpoint name in the configured layout, as `f32` host
    /// values: what [`MovqDecoder::load`] reads back.
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
}

impl MovqStack {
    fn forward(&self, quant: Tensor<5>, post: Tensor<5>) -> Tensor<4> {
        // Both streams through the temporal stack, as upstream (batch [post; quant]).
        let mut x = Tensor::cat(vec![post, quant], 0);
        for block in &self.time_res_stack {
            x = block.forward(x);
        }
        for up in &self.time_conv {
            let [b, c, f, h, w] = x.dims();
            x = x
                .reshape([b, c, f, 1, h, w])
                .expand([b, c, f, 2, h, w])
                .reshape([b, c, 2 * f, h, w]);
            x = swish(up.conv.forward(x));
        }
        // Frame 0 of each stream.
        let frame0 = x.narrow(2, 0, 1).squeeze_dim::<4>(2); // [2, c, h, w]
        let z = frame0.clone().narrow(0, 0, 1);
        let zq = frame0.narrow(0, 1, 1);
        let mut h = self.conv_in.forward(z);
        h = self.mid.block_1.forward(h, &zq);
        h = self.mid.attn_1.forward(h, &zq);
        h = self.mid.block_2.forward(h, &zq);
        for level in self.up.iter().rev() {
            for (j, res) in level.block.iter().enumerate() {
                h = res.forward(h, &zq);
                if let Some(a) = level.attn.get(j) {
                    h = a.forward(h, &zq);
                }
            }
            if let Some(up) = &level.upsample {
                h = up.conv.forward(upsample(h, 2));
            }
        }
        self.conv_out.forward(swish(self.norm_out.forward(h, &zq)))
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
        let table = self.quantize.embedding.weight.val();
        let idx: Vec<i64> = codes.iter().map(|&c| i64::from(c)).collect();
        let idx = Tensor::<1, Int>::from_data(TensorData::new(idx, [codes.len()]), &table.device());
        let quant = table
            .select(0, idx)
            .reshape([1, rows, cols, e])
            .permute([0, 3, 1, 2])
            .reshape([1, e, 1, rows, cols]);
        let post = self.post_quant_conv.forward(quant.clone());
        Ok(self.decoder.forward(quant, post))
    }
}

#[cfg(test)]
mod tests {
    use super::hf_name;

    #[test]
    fn transformers_names_follow_the_conversion_rules() {
        for (original, hf) in [
            (
                "decoder.mid.attn_1.norm.conv_y.weight",
                "decoder.middle_block.attn_norm.conv_y.weight",
            ),
            (
                "decoder.mid.attn_1.q.weight",
                "decoder.middle_block.attn_1.q_proj.weight",
            ),
            (
                "decoder.mid.block_1.norm1.norm_layer.bias",
                "decoder.middle_block.block_1.norm1.norm_layer.bias",
            ),
            (
                "decoder.up.3.attn.2.norm.conv_b.bias",
                "decoder.up_block.up.3.attn_norms.2.conv_b.bias",
            ),
            (
                "decoder.up.3.attn.2.proj_out.weight",
                "decoder.up_block.up.3.attn.2.out_proj.weight",
            ),
            (
                "decoder.up.1.block.0.nin_shortcut.weight",
                "decoder.up_block.up.1.block.0.nin_shortcut.weight",
            ),
            (
                "decoder.up.1.upsample.conv.weight",
                "decoder.up_block.up.1.upsample.conv.weight",
            ),
            (
                "decoder.time_conv.0.conv.conv.bias",
                "decoder.time_conv.0.conv.conv.bias",
            ),
            ("quantize.embedding.weight", "quantize.embedding.weight"),
            (
                "encoder.mid.attn_1.norm.weight",
                "encoder.middle_block.attn_norm.weight",
            ),
            (
                "encoder.mid.attn_1.proj_out.bias",
                "encoder.middle_block.attn_1.out_proj.bias",
            ),
            (
                "encoder.down.3.attn.1.norm.bias",
                "encoder.down_block.down.3.attn_norms.1.bias",
            ),
            (
                "encoder.down.3.attn.1.k.weight",
                "encoder.down_block.down.3.attn.1.k_proj.weight",
            ),
            (
                "encoder.down.0.downsample.conv.weight",
                "encoder.down_block.down.0.downsample.conv.weight",
            ),
            (
                "encoder.time_conv.1.conv.conv.weight",
                "encoder.time_conv.1.conv.conv.weight",
            ),
            ("quant_conv.conv.bias", "quant_conv.conv.bias"),
        ] {
            assert_eq!(hf_name(original), hf, "{original}");
        }
    }
}
