//! VQ image tokenizers: codes → RGB (decoders) and RGB → codes (encoders), and PNG output.
//!
//! Two architectures of the taming-transformers family are implemented on one configurable
//! encoder/decoder ([`VqModel`]), differing in key names, level order and codebook normalization:
//!
//! - **VQ-16** (LlamaGen `tokenizer/tokenizer_image/vq_model.py`; Janus / Janus-Pro
//!   `gen_vision_model`): l2-normalized codebook (16384 × 8), `conv_blocks[0]` is the *lowest*
//!   resolution, attention at the lowest resolution. Keys: `encoder.conv_blocks.{i}.res.{j}`,
//!   `decoder.conv_blocks.{i}.{res,attn}.{j}`, `decoder.mid.{0,1,2}`, `quantize.embedding.weight`,
//!   `quant_conv`, `post_quant_conv` (`quantize.codebook_used` is ignored). Janus' transformers
//!   layout (`model.vqmodel.decoder.up.{k}.block.{j}`, `mid.block_1`) is read too.
//! - **Chameleon VQGAN** (`chameleon/inference/vqgan.py`, Anole's `model.vqmodel.*`): plain
//!   codebook (8192 × 256), `up[0]` is the *highest* resolution, attention only in the middle.
//!   Keys: `encoder.down.{i}.block.{j}`, `decoder.up.{i}.block.{j}`,
//!   `decoder.mid.{block_1,attn_1,block_2}`.
//!
//! - **Emu3 MoVQ** ([`MovqDecoder`], `BAAI/Emu3-VisionTokenizer`, or `vqmodel.*` of `Emu3-Gen-hf`):
//!   SpatialNorm conditioned on the codes, a causal temporal stack run on both the latent and the
//!   codes, BatchNorm3d with running statistics; frame 0 is returned. Its encoder
//!   ([`MovqEncoder`]) repeats the image in time, downsamples time with causal convolutions and
//!   quantizes to the plain codebook.
//!
//! Encoders implement [`ImageEncoder`] (images → codes, for preparing training data).
//!
//! Decoded images are in about `[-1, 1]`; [`to_rgb8`] clamps and maps them to 8-bit as upstream
//! (`(x + 1) / 2 · 255`).

mod layers;
mod movq;
mod movq_encoder;

pub use movq::{MovqConfig, MovqDecoder, MovqLayout};
pub use movq_encoder::MovqEncoder;

use std::path::Path;

use burn::Tensor;
use burn::module::{Module, Param};
use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, Initializer};
use burn::tensor::{Device, Int, TensorData};
use sjd2_core::Error;

use crate::error::{LoadError, Result};
use crate::weights::{Checkpoint, NamedTensor, Wanted, WeightLoader};
pub use layers::{AttnBlock, ResBlock};
use layers::{conv, group_norm, swish, upsample};

/// Key layout and conventions of a VQ checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VqLayout {
    /// LlamaGen / original Janus names under `prefix` (`""` or `gen_vision_model.`).
    Vq16 {
        /// Key prefix.
        prefix: String,
    },
    /// Janus' transformers names under `prefix` (`model.vqmodel.`): decoder `up.{k}` with `k = 0`
    /// the lowest resolution, `block.{j}`, `mid.block_1`.
    Vq16Hf {
        /// Key prefix.
        prefix: String,
    },
    /// Chameleon / taming names under `prefix` (`""` or `model.vqmodel.`).
    Taming {
        /// Key prefix.
        prefix: String,
    },
}

/// Sizes of a [`VqModel`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VqConfig {
    /// Base channels.
    pub ch: usize,
    /// Channel multiplier per resolution level, highest resolution first.
    pub ch_mult: Vec<usize>,
    /// ResNet blocks per encoder level (decoder levels have one more).
    pub num_res_blocks: usize,
    /// Latent channels.
    pub z_channels: usize,
    /// Codebook vector width.
    pub embed_dim: usize,
    /// Codebook entries.
    pub codebook_size: usize,
    /// Resolution levels (0 = highest) with attention after each ResNet block.
    pub attn_levels: Vec<usize>,
    /// Whether codebook vectors (and encoder outputs) are l2-normalized.
    pub l2_normalized: bool,
    /// Whether the encoder is loaded (decoding needs only the decoder).
    pub with_encoder: bool,
    /// Names.
    pub layout: VqLayout,
}

impl VqConfig {
    /// LlamaGen's VQ-16 (`vq_ds16_c2i.pt`, `vq_ds16_t2i.pt`): ch 128, ch_mult `[1,1,2,2,4]`, 2 ResNet
    /// blocks, z 256, 16384 × 8 l2-normalized codebook.
    pub fn vq16() -> Self {
        Self {
            ch: 128,
            ch_mult: vec![1, 1, 2, 2, 4],
            num_res_blocks: 2,
            z_channels: 256,
            embed_dim: 8,
            codebook_size: 16_384,
            attn_levels: vec![4],
            l2_normalized: true,
            with_encoder: true,
            layout: VqLayout::Vq16 {
                prefix: String::new(),
            },
        }
    }

    /// Chameleon's VQGAN (`tokenizer/vqgan.ckpt`): ch 128, ch_mult `[1,1,2,2,4]`, 2 ResNet blocks,
    /// z 256, 8192 × 256 codebook, no attention outside the middle block.
    pub fn chameleon() -> Self {
        Self {
            ch: 128,
            ch_mult: vec![1, 1, 2, 2, 4],
            num_res_blocks: 2,
            z_channels: 256,
            embed_dim: 256,
            codebook_size: 8192,
            attn_levels: vec![],
            l2_normalized: false,
            with_encoder: true,
            layout: VqLayout::Taming {
                prefix: String::new(),
            },
        }
    }

    /// These settings with the sizes a checkpoint's config records (transformers' `vq_config`
    /// of Chameleon / Anole / Janus: `base_channels`, `channel_multiplier`, `num_res_blocks`,
    /// `latent_channels`, `embed_dim`, `num_embeddings`; the attention levels from
    /// `attn_resolutions` and `resolution` where both are given). Fields the config lacks keep
    /// their values here; the layout and the encoder choice are kept.
    ///
    /// ```
    /// use sjd2_models::vq::VqConfig;
    ///
    /// let janus = serde_json::json!({"base_channels": 32, "num_embeddings": 64, "latent_channels": 32});
    /// let c = VqConfig::vq16().sized_by(&janus, "config.json")?;
    /// assert_eq!((c.ch, c.codebook_size, c.z_channels, c.attn_levels.clone()), (32, 64, 32, vec![4]));
    /// let chameleon = serde_json::json!({"resolution": 512, "attn_resolutions": [32]});
    /// assert_eq!(VqConfig::chameleon().sized_by(&chameleon, "config.json")?.attn_levels, vec![4]);
    /// assert!(VqConfig::vq16().sized_by(&serde_json::json!({"embed_dim": -1}), "c").is_err());
    /// # Ok::<(), sjd2_models::LoadError>(())
    /// ```
    ///
    /// # Errors
    /// [`crate::LoadError::Config`] naming a field of the wrong type, with `origin` as the path.
    pub fn sized_by(&self, config: &serde_json::Value, origin: &str) -> crate::error::Result<Self> {
        use crate::config::{json_size, json_sizes};
        let size = |name: &str, current: usize| {
            json_size(config, &[name], origin).map(|v| v.unwrap_or(current))
        };
        let ch_mult =
            json_sizes(config, &["channel_multiplier"], origin)?.unwrap_or(self.ch_mult.clone());
        let attn_levels = match (
            json_sizes(config, &["attn_resolutions"], origin)?,
            json_size(config, &["resolution"], origin)?,
        ) {
            (Some(res), Some(r)) => (0..ch_mult.len())
                .filter(|&level| res.contains(&(r >> level)))
                .collect(),
            _ => self.attn_levels.clone(),
        };
        Ok(Self {
            ch: size("base_channels", self.ch)?,
            ch_mult,
            num_res_blocks: size("num_res_blocks", self.num_res_blocks)?,
            z_channels: size("latent_channels", self.z_channels)?,
            embed_dim: size("embed_dim", self.embed_dim)?,
            codebook_size: size("num_embeddings", self.codebook_size)?,
            attn_levels,
            ..self.clone()
        })
    }

    /// The sizes the tensors of `checkpoint` have under this configuration's names: codebook
    /// and code width from `quantize.embedding`, latent channels from `post_quant_conv`, the
    /// levels, their channel multipliers, ResNet blocks and attention from the decoder's blocks,
    /// base channels from the encoder's `conv_in` (or, without an encoder, from the decoder's
    /// `conv_out`, taking the first multiplier as 1 as every published VQ does). A released
    /// tokenizer (`vqgan.ckpt`, `vq_ds16_*.pt`) needs no configuration beside it this way.
    /// Checkpoints without the decoder (transformers' encoder-only VQ) keep `self`.
    ///
    /// # Errors
    /// [`LoadError::Config`] for a decoder whose tensors contradict each other.
    pub fn sized_by_shapes(&self, checkpoint: &Checkpoint) -> Result<Self> {
        let p = self.layout.prefix().to_string();
        let shape = |name: &str| {
            checkpoint
                .shape(&format!("{p}{name}"))
                .map(<[usize]>::to_vec)
        };
        let (container, res) = match self.layout {
            VqLayout::Vq16 { .. } => ("conv_blocks", "res"),
            VqLayout::Vq16Hf { .. } | VqLayout::Taming { .. } => ("up", "block"),
        };
        let block = |level: usize, j: usize, t: &str| {
            shape(&format!("decoder.{container}.{level}.{res}.{j}.{t}"))
        };
        let levels = (0..)
            .take_while(|&k| block(k, 0, "conv1.weight").is_some())
            .count();
        let (Some(codebook), Some(post), Some(out)) = (
            shape("quantize.embedding.weight"),
            shape("post_quant_conv.weight"),
            shape("decoder.conv_out.weight"),
        ) else {
            return Ok(self.clone());
        };
        if levels == 0 || codebook.len() != 2 || post.len() != 4 || out.len() != 4 {
            return Ok(self.clone());
        }
        // Taming numbers decoder levels by resolution (0 = highest); the others lowest first.
        let resolution = |k: usize| match self.layout {
            VqLayout::Taming { .. } => k,
            _ => levels - 1 - k,
        };
        let blocks = (0..)
            .take_while(|&j| block(0, j, "conv1.weight").is_some())
            .count();
        let ch = shape("encoder.conv_in.weight").map_or(out[1], |s| s[0]);
        let bad = |reason: String| LoadError::Config {
            path: "VQ checkpoint".into(),
            field: format!("{p}decoder"),
            reason,
        };
        let mut ch_mult = vec![0; levels];
        let mut attn_levels = Vec::new();
        for k in 0..levels {
            let width = block(k, blocks.saturating_sub(1), "conv2.weight")
                .map(|s| s[0])
                .ok_or_else(|| bad(format!("level {k} has fewer than {blocks} ResNet blocks")))?;
            if ch == 0 || width % ch != 0 {
                return Err(bad(format!(
                    "level {k} has {width} channels, not a multiple of the base {ch}"
                )));
            }
            ch_mult[resolution(k)] = width / ch;
            if shape(&format!("decoder.{container}.{k}.attn.0.q.weight")).is_some() {
                attn_levels.push(resolution(k));
            }
        }
        attn_levels.sort_unstable();
        Ok(Self {
            ch,
            ch_mult,
            num_res_blocks: blocks.saturating_sub(1),
            z_channels: post[0],
            embed_dim: codebook[1],
            codebook_size: codebook[0],
            attn_levels,
            ..self.clone()
        })
    }

    /// Spatial downsampling factor (`2^(levels−1)`).
    pub fn downsample(&self) -> usize {
        1 << self.ch_mult.len().saturating_sub(1)
    }

    fn validate(&self) -> std::result::Result<(), Error> {
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
        Ok(())
    }
}

/// One resolution level of an encoder or decoder: ResNet blocks (each followed by attention at
/// attention levels) and the resampling convolution.
#[derive(Module, Debug)]
pub struct Level {
    /// ResNet blocks.
    pub res: Vec<ResBlock>,
    /// Attention after each ResNet block (attention levels only).
    pub attn: Vec<AttnBlock>,
    /// Up- (decoder, after nearest 2×) or down-sampling (encoder, stride 2) convolution.
    pub resample: Option<Conv2d>,
}

/// An encoder or a decoder: `conv_in`, the levels (decoders walk them lowest resolution first),
/// the middle block (ResNet, attention, ResNet), `norm_out`, `conv_out`.
#[derive(Module, Debug)]
pub struct Stack {
    /// Input convolution.
    pub conv_in: Conv2d,
    /// Middle ResNet block before attention.
    pub mid_block_1: ResBlock,
    /// Middle attention.
    pub mid_attn_1: AttnBlock,
    /// Middle ResNet block after attention.
    pub mid_block_2: ResBlock,
    /// Resolution levels in the order they run.
    pub levels: Vec<Level>,
    /// Output norm.
    pub norm_out: GroupNorm,
    /// Output convolution.
    pub conv_out: Conv2d,
}

/// Names of the parts of one encoder or decoder.
struct Names {
    root: String,
    level: Box<dyn Fn(usize) -> String>,
    res: &'static str,
    mid: [&'static str; 3],
    resample: &'static str,
}

impl VqLayout {
    fn names(&self, decoder: bool, levels: usize) -> Names {
        const MID: [&str; 3] = ["mid.block_1", "mid.attn_1", "mid.block_2"];
        let root = format!(
            "{}{}",
            self.prefix(),
            if decoder { "decoder" } else { "encoder" }
        );
        let r = root.clone();
        let (level, res, mid): (Box<dyn Fn(usize) -> String>, _, _) = match self {
            VqLayout::Vq16 { .. } => (
                Box::new(move |i| format!("{r}.conv_blocks.{i}")),
                "res",
                ["mid.0", "mid.1", "mid.2"],
            ),
            VqLayout::Vq16Hf { .. } => {
                let blocks = if decoder { "up" } else { "down" };
                (Box::new(move |i| format!("{r}.{blocks}.{i}")), "block", MID)
            }
            // Taming numbers decoder levels by resolution (0 = highest); we walk lowest first.
            VqLayout::Taming { .. } if decoder => (
                Box::new(move |i| format!("{r}.up.{}", levels - 1 - i)),
                "block",
                MID,
            ),
            VqLayout::Taming { .. } => (Box::new(move |i| format!("{r}.down.{i}")), "block", MID),
        };
        let resample = if decoder {
            "upsample.conv"
        } else {
            "downsample.conv"
        };
        Names {
            root,
            level,
            res,
            mid,
            resample,
        }
    }

    fn prefix(&self) -> &str {
        match self {
            VqLayout::Vq16 { prefix }
            | VqLayout::Vq16Hf { prefix }
            | VqLayout::Taming { prefix } => prefix,
        }
    }
}

/// Module path ↔ checkpoint name of every parameter, built by walking the module itself.
#[derive(Default)]
struct NameTable(Vec<Wanted>);

impl NameTable {
    fn conv(&mut self, path: &str, file: &str) {
        for p in ["weight", "bias"] {
            self.0.push(Wanted::new(
                format!("{path}.{p}"),
                format!("{file}.{p}"),
                false,
            ));
        }
    }

    fn norm(&mut self, path: &str, file: &str) {
        for (p, f) in [("gamma", "weight"), ("beta", "bias")] {
            self.0.push(Wanted::new(
                format!("{path}.{p}"),
                format!("{file}.{f}"),
                false,
            ));
        }
    }

    fn res(&mut self, block: &ResBlock, path: &str, file: &str) {
        self.norm(&format!("{path}.norm1"), &format!("{file}.norm1"));
        self.conv(&format!("{path}.conv1"), &format!("{file}.conv1"));
        self.norm(&format!("{path}.norm2"), &format!("{file}.norm2"));
        self.conv(&format!("{path}.conv2"), &format!("{file}.conv2"));
        if block.nin_shortcut.is_some() {
            self.conv(
                &format!("{path}.nin_shortcut"),
                &format!("{file}.nin_shortcut"),
            );
        }
    }

    fn attn(&mut self, path: &str, file: &str) {
        self.norm(&format!("{path}.norm"), &format!("{file}.norm"));
        for p in ["q", "k", "v", "proj_out"] {
            self.conv(&format!("{path}.{p}"), &format!("{file}.{p}"));
        }
    }

    fn stack(&mut self, stack: &Stack, path: &str, n: &Names) {
        let root = &n.root;
        self.conv(&format!("{path}.conv_in"), &format!("{root}.conv_in"));
        self.res(
            &stack.mid_block_1,
            &format!("{path}.mid_block_1"),
            &format!("{root}.{}", n.mid[0]),
        );
        self.attn(
            &format!("{path}.mid_attn_1"),
            &format!("{root}.{}", n.mid[1]),
        );
        self.res(
            &stack.mid_block_2,
            &format!("{path}.mid_block_2"),
            &format!("{root}.{}", n.mid[2]),
        );
        for (i, level) in stack.levels.iter().enumerate() {
            let (lp, lf) = (format!("{path}.levels.{i}"), (n.level)(i));
            for (j, res) in level.res.iter().enumerate() {
                self.res(
                    res,
                    &format!("{lp}.res.{j}"),
                    &format!("{lf}.{}.{j}", n.res),
                );
            }
            for j in 0..level.attn.len() {
                self.attn(&format!("{lp}.attn.{j}"), &format!("{lf}.attn.{j}"));
            }
            if level.resample.is_some() {
                self.conv(&format!("{lp}.resample"), &format!("{lf}.{}", n.resample));
            }
        }
        self.norm(&format!("{path}.norm_out"), &format!("{root}.norm_out"));
        self.conv(&format!("{path}.conv_out"), &format!("{root}.conv_out"));
    }
}

impl Stack {
    /// A decoder (levels from the lowest resolution up, `num_res_blocks + 1` ResNet blocks each,
    /// nearest 2× upsampling after all but the last) or an encoder (from the highest resolution
    /// down, `num_res_blocks` blocks each, strided downsampling after all but the last).
    fn build(c: &VqConfig, decoder: bool, device: &Device) -> Self {
        let l = c.ch_mult.len();
        let (order, blocks, mut block_in, (inp, out)): (Vec<usize>, _, _, _) = if decoder {
            let top = c.ch * c.ch_mult[l - 1];
            (
                (0..l).rev().collect(),
                c.num_res_blocks + 1,
                top,
                (c.z_channels, 3),
            )
        } else {
            ((0..l).collect(), c.num_res_blocks, c.ch, (3, c.z_channels))
        };
        let conv_in = conv(inp, block_in, 3, 1, device);
        // The decoder's middle block runs before its levels, the encoder's after.
        let mid_before = block_in;
        let mut levels = Vec::with_capacity(l);
        for r in order {
            let block_out = c.ch * c.ch_mult[r];
            let (mut res, mut attn) = (Vec::new(), Vec::new());
            for _ in 0..blocks {
                res.push(ResBlock::new(block_in, block_out, device));
                block_in = block_out;
                if c.attn_levels.contains(&r) {
                    attn.push(AttnBlock::new(block_in, device));
                }
            }
            let resample = match decoder {
                true => (r != 0).then(|| conv(block_in, block_in, 3, 1, device)),
                false => (r != l - 1).then(|| conv(block_in, block_in, 3, 2, device)),
            };
            levels.push(Level {
                res,
                attn,
                resample,
            });
        }
        let mid = if decoder { mid_before } else { block_in };
        Self {
            conv_in,
            mid_block_1: ResBlock::new(mid, mid, device),
            mid_attn_1: AttnBlock::new(mid, device),
            mid_block_2: ResBlock::new(mid, mid, device),
            levels,
            norm_out: group_norm(block_in, device),
            conv_out: conv(block_in, out, 3, 1, device),
        }
    }

    fn run_levels(&self, mut h: Tensor<4>, decoder: bool) -> Tensor<4> {
        for level in &self.levels {
            for (j, res) in level.res.iter().enumerate() {
                h = res.forward(h);
                if let Some(a) = level.attn.get(j) {
                    h = a.forward(h);
                }
            }
            if let Some(conv) = &level.resample {
                h = if decoder {
                    conv.forward(upsample(h, 2))
                } else {
                    conv.forward(h)
                };
            }
        }
        h
    }

    fn mid(&self, h: Tensor<4>) -> Tensor<4> {
        self.mid_block_2
            .forward(self.mid_attn_1.forward(self.mid_block_1.forward(h)))
    }

    fn out(&self, h: Tensor<4>) -> Tensor<4> {
        self.conv_out.forward(swish(self.norm_out.forward(h)))
    }

    fn decode(&self, z: Tensor<4>) -> Tensor<4> {
        let h = self.mid(self.conv_in.forward(z));
        self.out(self.run_levels(h, true))
    }

    fn encode(&self, x: Tensor<4>) -> Tensor<4> {
        let h = self.run_levels(self.conv_in.forward(x), false);
        self.out(self.mid(h))
    }
}

/// Checks that `codes` fill a `rows × cols` grid and lie in `0..codebook_size`.
fn check_codes(
    codes: &[u32],
    rows: usize,
    cols: usize,
    codebook_size: usize,
) -> std::result::Result<(), Error> {
    if rows == 0 || cols == 0 || rows.checked_mul(cols) != Some(codes.len()) {
        return Err(Error::Shape {
            what: "code grid".into(),
            expected: vec![rows, cols],
            got: vec![codes.len()],
        });
    }
    if let Some(&bad) = codes.iter().find(|&&c| c as usize >= codebook_size) {
        return Err(Error::TokenOutOfRange {
            what: "VQ codes".into(),
            token: bad,
            allowed: format!("0..{codebook_size}"),
        });
    }
    Ok(())
}

/// Turns image-token codes into pixels.
pub trait ImageDecoder {
    /// Codebook entries (valid codes are `0..codebook_size`).
    fn codebook_size(&self) -> usize;

    /// Pixels per code along each side.
    fn downsample(&self) -> usize;

    /// Decodes a `rows × cols` grid of codes (raster order) into an image `[1, 3, H, W]` with
    /// values in about `[-1, 1]`.
    ///
    /// # Errors
    /// [`Error::TokenOutOfRange`] for a code outside the codebook, [`Error::Shape`] when the grid
    /// does not match the number of codes.
    fn decode(
        &self,
        codes: &[u32],
        rows: usize,
        cols: usize,
    ) -> std::result::Result<Tensor<4>, Error>;
}

/// A VQ autoencoder as a burn module: codebook, decoder and (optionally) encoder. The same module
/// is loaded for inference ([`VqModel::load`]) and trained by `sjd2-train` ([`VqModel::new`] on an
/// autodiff device).
#[derive(Module, Debug)]
pub struct VqModel {
    /// Codebook `[codebook_size, embed_dim]` as stored (l2-normalized on use for VQ-16).
    pub codebook: Param<Tensor<2>>,
    /// Latent → codebook width (encoder side).
    pub quant_conv: Option<Conv2d>,
    /// Codebook width → latent (decoder side).
    pub post_quant_conv: Conv2d,
    /// Image → latent.
    pub encoder: Option<Stack>,
    /// Latent → image.
    pub decoder: Stack,
    #[module(skip)]
    config: VqConfig,
}

impl VqModel {
    /// A VQ model with fresh parameters (burn's default convolution initialization, codebook
    /// N(0, 1)), on `device` (an autodiff device to train it). Parameters are initialized lazily,
    /// so loading over them allocates nothing twice.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for zero sizes.
    pub fn new(config: VqConfig, device: &Device) -> std::result::Result<Self, Error> {
        config.validate()?;
        let c = &config;
        let codebook = Initializer::Normal {
            mean: 0.0,
            std: 1.0,
        }
        .init([c.codebook_size, c.embed_dim], device);
        Ok(Self {
            codebook,
            quant_conv: c
                .with_encoder
                .then(|| conv(c.z_channels, c.embed_dim, 1, 1, device)),
            post_quant_conv: conv(c.embed_dim, c.z_channels, 1, 1, device),
            encoder: c.with_encoder.then(|| Stack::build(c, false, device)),
            decoder: Stack::build(c, true, device),
            config,
        })
    }

    /// Module path ↔ checkpoint name of every parameter in the configured layout.
    fn name_table(&self) -> Vec<Wanted> {
        let c = &self.config;
        let p = c.layout.prefix();
        let l = c.ch_mult.len();
        let mut t = NameTable::default();
        t.0.push(Wanted::new(
            "codebook".into(),
            format!("{p}quantize.embedding.weight"),
            false,
        ));
        t.conv("post_quant_conv", &format!("{p}post_quant_conv"));
        t.stack(&self.decoder, "decoder", &c.layout.names(true, l));
        if let Some(encoder) = &self.encoder {
            t.conv("quant_conv", &format!("{p}quant_conv"));
            t.stack(encoder, "encoder", &c.layout.names(false, l));
        }
        t.0
    }

    /// Loads a VQ model from a checkpoint (safetensors or `.pt`; the tensors under the layout's
    /// prefix must match exactly, tensors outside it are left to other loaders), through
    /// burn-store in the device's float dtype.
    ///
    /// # Errors
    /// [`LoadError`] naming the file or tensors at fault.
    pub fn load(path: impl AsRef<Path>, config: VqConfig, device: &Device) -> Result<Self> {
        let mut loader = WeightLoader::new(Checkpoint::open(path)?, device);
        let mut model = Self::new(config, device)?;
        let table = model.name_table();
        loader.apply(&mut model, table);
        let c = &model.config;
        let p = c.layout.prefix().to_string();
        let with_encoder = c.with_encoder;
        loader.finish(|n| {
            !n.starts_with(&p)
                || n == format!("{p}quantize.codebook_used")
                // taming's training checkpoints (Chameleon's `vqgan.ckpt`) also hold the loss
                // module (`loss.discriminator.*`, `loss.perceptual_loss.*`).
                || n.starts_with(&format!("{p}loss."))
                || (!with_encoder
                    && (n.starts_with(&format!("{p}encoder."))
                        || n == format!("{p}quant_conv.weight")
                        || n == format!("{p}quant_conv.bias")))
        })?;
        Ok(model)
    }

    /// Every parameter under its checkpoint name in the configured layout, as `f32` host values:
    /// what [`VqModel::load`] reads back.
    ///
    /// # Errors
    /// [`Error::TensorData`] when a parameter cannot be read back.
    pub fn export(&self) -> std::result::Result<Vec<NamedTensor>, Error> {
        crate::weights::export_table(self, self.name_table())
    }

    /// The configuration.
    pub fn config(&self) -> &VqConfig {
        &self.config
    }

    /// The codebook vectors as used: l2-normalized for VQ-16, as stored otherwise.
    pub fn codebook_vectors(&self) -> Tensor<2> {
        let cb = self.codebook.val();
        if self.config.l2_normalized {
            l2_normalize(cb)
        } else {
            cb
        }
    }

    /// The codebook vectors of `codes` as a latent `[1, embed_dim, rows, cols]` (normalized for
    /// VQ-16).
    ///
    /// # Errors
    /// As [`ImageDecoder::decode`].
    pub fn quantized(
        &self,
        codes: &[u32],
        rows: usize,
        cols: usize,
    ) -> std::result::Result<Tensor<4>, Error> {
        check_codes(codes, rows, cols, self.config.codebook_size)?;
        let idx: Vec<i64> = codes.iter().map(|&c| i64::from(c)).collect();
        let device = self.post_quant_conv.weight.device();
        let idx = Tensor::<2, Int>::from_data(TensorData::new(idx, [1, codes.len()]), &device);
        Ok(self.lookup(idx, rows, cols).permute([0, 3, 1, 2]))
    }

    /// Codebook vectors `[b, rows, cols, embed_dim]` of codes `[b, rows·cols]` (raster order).
    fn lookup(&self, codes: Tensor<2, Int>, rows: usize, cols: usize) -> Tensor<4> {
        let [b, n] = codes.dims();
        let e = self.config.embed_dim;
        self.codebook_vectors()
            .select(0, codes.reshape([b * n]))
            .reshape([b, rows, cols, e])
    }

    /// Encoder latents `[b, h, w, embed_dim]` (l2-normalized for VQ-16) of images `[b, 3, H, W]`
    /// in `[-1, 1]`.
    ///
    /// # Errors
    /// [`Error::Unsupported`] without an encoder.
    pub fn latents(&self, images: Tensor<4>) -> std::result::Result<Tensor<4>, Error> {
        let (Some(encoder), Some(quant)) = (&self.encoder, &self.quant_conv) else {
            return Err(Error::Unsupported(
                "this VQ model was loaded without its encoder".into(),
            ));
        };
        let z = quant.forward(encoder.encode(images)); // [b, e, h, w]
        let [b, e, h, w] = z.dims();
        let z = z.permute([0, 2, 3, 1]);
        Ok(if self.config.l2_normalized {
            l2_normalize(z.reshape([b * h * w, e])).reshape([b, h, w, e])
        } else {
            z
        })
    }

    /// The nearest codebook entry of each latent `[n, embed_dim]`: `argmin ‖z − e‖²`.
    pub fn nearest(&self, latents: Tensor<2>) -> Tensor<1, Int> {
        nearest_code(latents, self.codebook_vectors())
    }

    /// Codes `[b, h·w]` (raster order) of images `[b, 3, H, W]` in `[-1, 1]`.
    ///
    /// # Errors
    /// [`Error::Unsupported`] without an encoder.
    pub fn codes(&self, images: Tensor<4>) -> std::result::Result<Tensor<2, Int>, Error> {
        let z = self.latents(images)?;
        let [b, h, w, e] = z.dims();
        Ok(self.nearest(z.reshape([b * h * w, e])).reshape([b, h * w]))
    }

    /// Images `[b, 3, H, W]` of latents `[b, h, w, embed_dim]`.
    pub fn decode_latents(&self, latents: Tensor<4>) -> Tensor<4> {
        let z = self.post_quant_conv.forward(latents.permute([0, 3, 1, 2]));
        self.decoder.decode(z)
    }

    /// Images `[b, 3, H, W]` of codes `[b, rows·cols]` (raster order, not range-checked: see
    /// [`ImageDecoder::decode`] for checked decoding).
    pub fn decode_codes(&self, codes: Tensor<2, Int>, rows: usize, cols: usize) -> Tensor<4> {
        self.decode_latents(self.lookup(codes, rows, cols))
    }

    /// Encodes an image `[1, 3, H, W]` (values in `[-1, 1]`, sides multiples of the downsampling
    /// factor) into codes in raster order, with the grid size.
    ///
    /// # Errors
    /// [`Error::Unsupported`] without an encoder, [`Error::Shape`] for a bad image size or a
    /// batch of more than one image.
    pub fn encode(&self, image: Tensor<4>) -> std::result::Result<(Vec<u32>, usize, usize), Error> {
        let [b, _, h, w] = image.dims();
        let f = self.config.downsample();
        if b != 1 {
            return Err(Error::Shape {
                what: "image to encode (one image)".into(),
                expected: vec![1, 3, h, w],
                got: image.dims().to_vec(),
            });
        }
        let codes = self.encode_batch(image)?.pop().unwrap_or_default();
        Ok((codes, h / f, w / f))
    }
}

impl ImageEncoder for VqModel {
    fn downsample(&self) -> usize {
        self.config.downsample()
    }

    fn codebook_size(&self) -> usize {
        self.config.codebook_size
    }

    fn encode_codes(&self, images: Tensor<4>) -> std::result::Result<Tensor<2, Int>, Error> {
        self.codes(images)
    }
}

/// Index of the nearest codebook row (Euclidean) of each latent `[n, e]` in `codebook` `[K, e]`
/// (the first of equals, as `torch.argmin`).
pub(crate) fn nearest_code(latents: Tensor<2>, codebook: Tensor<2>) -> Tensor<1, Int> {
    let [n, _] = latents.dims();
    let [k, _] = codebook.dims();
    let dist = codebook.clone().powf_scalar(2.0).sum_dim(1).reshape([1, k])
        - latents.matmul(codebook.transpose()) * 2.0;
    dist.argmin(1).reshape([n])
}

/// RGB → codes: an image tokenizer's encoder, what preparing training data needs. Implemented by
/// [`VqModel`] (with its encoder loaded) and [`MovqEncoder`].
pub trait ImageEncoder {
    /// Pixels per code along each side.
    fn downsample(&self) -> usize;

    /// Codebook entries (codes lie in `0..codebook_size`).
    fn codebook_size(&self) -> usize;

    /// Codes `[b, rows·cols]` (raster order) of images `[b, 3, H, W]` in `[-1, 1]`, sides
    /// multiples of [`ImageEncoder::downsample`] (not checked: see
    /// [`ImageEncoder::encode_batch`]).
    ///
    /// # Errors
    /// [`Error::Unsupported`] when the encoder is not loaded.
    fn encode_codes(&self, images: Tensor<4>) -> std::result::Result<Tensor<2, Int>, Error>;

    /// The codes of each image of `[b, 3, H, W]` (values in `[-1, 1]`), in raster order on an
    /// `H/f × W/f` grid.
    ///
    /// # Errors
    /// [`Error::Shape`] for an empty batch, a channel count other than 3 or sides that are not
    /// positive multiples of the downsampling factor `f`; [`Error::Unsupported`] without an
    /// encoder.
    fn encode_batch(&self, images: Tensor<4>) -> std::result::Result<Vec<Vec<u32>>, Error> {
        let [b, c, h, w] = images.dims();
        let f = self.downsample().max(1);
        if b == 0 || c != 3 || h == 0 || w == 0 || h % f != 0 || w % f != 0 {
            return Err(Error::Shape {
                what: format!("images to encode (3 channels, sides multiples of {f})"),
                expected: vec![
                    b.max(1),
                    3,
                    h.div_ceil(f).max(1) * f,
                    w.div_ceil(f).max(1) * f,
                ],
                got: vec![b, c, h, w],
            });
        }
        let codes = self
            .encode_codes(images)?
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .map_err(|e| Error::TensorData {
                what: "VQ codes".into(),
                detail: format!("{e:?}"),
            })?;
        Ok(codes
            .chunks((h / f) * (w / f))
            .map(|c| c.iter().map(|&x| x as u32).collect())
            .collect())
    }
}

fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x
        .clone()
        .powf_scalar(2.0)
        .sum_dim(1)
        .sqrt()
        .clamp_min(1e-12);
    x / norm
}

impl ImageDecoder for VqModel {
    fn codebook_size(&self) -> usize {
        self.config.codebook_size
    }

    fn downsample(&self) -> usize {
        self.config.downsample()
    }

    fn decode(
        &self,
        codes: &[u32],
        rows: usize,
        cols: usize,
    ) -> std::result::Result<Tensor<4>, Error> {
        let z = self
            .post_quant_conv
            .forward(self.quantized(codes, rows, cols)?);
        Ok(self.decoder.decode(z))
    }
}

/// An 8-bit RGB image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rgb8 {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Row-major RGB bytes.
    pub pixels: Vec<u8>,
}

/// Tiles images into a contact sheet: `rows[r][c]` goes to grid cell `(r, c)`, every cell as large
/// as the largest image, with `gap` pixels of grey level `background` between cells (rows may
/// have different lengths; an empty input gives a 0×0 image). Each image must hold
/// `width · height · 3` bytes.
///
/// ```
/// use sjd2_models::vq::{Rgb8, tile};
///
/// let red = Rgb8 { width: 2, height: 2, pixels: [255, 0, 0].repeat(4) };
/// let sheet = tile(&[vec![red.clone(), red.clone()], vec![red]], 1, 255);
/// assert_eq!((sheet.width, sheet.height), (6, 6));
/// assert_eq!(&sheet.pixels[..3], &[255, 0, 0]);
/// assert_eq!(&sheet.pixels[2 * 3..3 * 3], &[255, 255, 255]); // the gap
/// ```
pub fn tile(rows: &[Vec<Rgb8>], gap: usize, background: u8) -> Rgb8 {
    let cw = rows.iter().flatten().map(|i| i.width).max().unwrap_or(0);
    let ch = rows.iter().flatten().map(|i| i.height).max().unwrap_or(0);
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let (w, h) = (cols * (cw + gap), rows.len() * (ch + gap));
    let mut pixels = vec![background; w * h * 3];
    for (r, row) in rows.iter().enumerate() {
        for (c, img) in row.iter().enumerate() {
            for y in 0..img.height {
                let src = y * img.width * 3;
                let dst = ((r * (ch + gap) + y) * w + c * (cw + gap)) * 3;
                if let (Some(from), Some(to)) = (
                    img.pixels.get(src..src + img.width * 3),
                    pixels.get_mut(dst..dst + img.width * 3),
                ) {
                    to.copy_from_slice(from);
                }
            }
        }
    }
    Rgb8 {
        width: w,
        height: h,
        pixels,
    }
}

/// Maps a decoded `[1, 3, H, W]` image in `[-1, 1]` to 8-bit RGB: clamp, `(x + 1) / 2 · 255`,
/// rounded.
///
/// # Errors
/// [`Error::Shape`] for another shape, [`Error::NonFinite`] for NaN pixels.
pub fn to_rgb8(image: Tensor<4>) -> std::result::Result<Rgb8, Error> {
    let [b, c, h, w] = image.dims();
    if b != 1 || c != 3 {
        return Err(Error::Shape {
            what: "decoded image".into(),
            expected: vec![1, 3, h, w],
            got: vec![b, c, h, w],
        });
    }
    let v = sjd2_core::error::tensor_to_vec(image.permute([0, 2, 3, 1]), "decoded image")?;
    if v.iter().any(|x| x.is_nan()) {
        return Err(Error::NonFinite {
            what: "decoded image".into(),
            detail: "NaN pixels".into(),
        });
    }
    let pixels = v
        .iter()
        .map(|&x| ((x.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8)
        .collect();
    Ok(Rgb8 {
        width: w,
        height: h,
        pixels,
    })
}

/// Writes an [`Rgb8`] image as PNG.
///
/// # Errors
/// [`LoadError::Io`] when the file cannot be written.
pub fn save_png(path: impl AsRef<Path>, image: &Rgb8) -> Result<()> {
    let path = path.as_ref();
    let buffer = image::RgbImage::from_raw(
        image.width as u32,
        image.height as u32,
        image.pixels.clone(),
    )
    .ok_or_else(|| LoadError::Corrupt {
        path: path.to_path_buf(),
        detail: "pixel buffer does not match the image size".into(),
    })?;
    buffer
        .save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| LoadError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })
}
