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
//!   codes, BatchNorm3d with running statistics; frame 0 is returned. Decoder only.
//!
//! Decoded images are in about `[-1, 1]`; [`to_rgb8`] clamps and maps them to 8-bit as upstream
//! (`(x + 1) / 2 · 255`).

mod layers;
mod movq;

pub use movq::{MovqConfig, MovqDecoder, MovqLayout};

use std::path::Path;

use burn::Tensor;
use burn::tensor::{Device, Int, TensorData};
use sjd2_core::Error;

use crate::error::{LoadError, Result};
use crate::weights::{Checkpoint, WeightLoader};
use layers::{AttnBlock, Conv, GroupNorm, ResBlock, pad_bottom_right, swish, upsample2x};

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

#[derive(Debug, Clone)]
struct Level {
    res: Vec<ResBlock>,
    attn: Vec<AttnBlock>,
    resample: Option<Conv>,
}

#[derive(Debug, Clone)]
struct Stack {
    conv_in: Conv,
    mid: (ResBlock, AttnBlock, ResBlock),
    levels: Vec<Level>,
    norm_out: GroupNorm,
    conv_out: Conv,
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
        let part = if decoder { "decoder" } else { "encoder" };
        let resample = if decoder {
            "upsample.conv"
        } else {
            "downsample.conv"
        };
        match self {
            VqLayout::Vq16 { prefix } => {
                let root = format!("{prefix}{part}");
                let r = root.clone();
                Names {
                    level: Box::new(move |i| format!("{r}.conv_blocks.{i}")),
                    root,
                    res: "res",
                    mid: ["mid.0", "mid.1", "mid.2"],
                    resample,
                }
            }
            VqLayout::Vq16Hf { prefix } => {
                let root = format!("{prefix}{part}");
                let r = root.clone();
                let blocks = if decoder { "up" } else { "down" };
                Names {
                    level: Box::new(move |i| format!("{r}.{blocks}.{i}")),
                    root,
                    res: "block",
                    mid: ["mid.block_1", "mid.attn_1", "mid.block_2"],
                    resample,
                }
            }
            VqLayout::Taming { prefix } => {
                let root = format!("{prefix}{part}");
                let r = root.clone();
                // Taming numbers decoder levels by resolution (0 = highest); we walk lowest first.
                let level: Box<dyn Fn(usize) -> String> = if decoder {
                    Box::new(move |i| format!("{r}.up.{}", levels - 1 - i))
                } else {
                    Box::new(move |i| format!("{r}.down.{i}"))
                };
                Names {
                    level,
                    root,
                    res: "block",
                    mid: ["mid.block_1", "mid.attn_1", "mid.block_2"],
                    resample,
                }
            }
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

fn load_decoder(loader: &mut WeightLoader, c: &VqConfig) -> Stack {
    let l = c.ch_mult.len();
    let n = c.layout.names(true, l);
    let mut block_in = c.ch * c.ch_mult[l - 1];
    let conv_in = Conv::load(
        loader,
        &format!("{}.conv_in", n.root),
        block_in,
        c.z_channels,
        3,
        1,
    );
    let mid = (
        ResBlock::load(
            loader,
            &format!("{}.{}", n.root, n.mid[0]),
            block_in,
            block_in,
        ),
        AttnBlock::load(loader, &format!("{}.{}", n.root, n.mid[1]), block_in),
        ResBlock::load(
            loader,
            &format!("{}.{}", n.root, n.mid[2]),
            block_in,
            block_in,
        ),
    );
    let mut levels = Vec::with_capacity(l);
    for i in 0..l {
        let r = l - 1 - i; // resolution level, 0 = highest
        let name = (n.level)(i);
        let block_out = c.ch * c.ch_mult[r];
        let mut res = Vec::new();
        let mut attn = Vec::new();
        for j in 0..=c.num_res_blocks {
            res.push(ResBlock::load(
                loader,
                &format!("{name}.{}.{j}", n.res),
                block_in,
                block_out,
            ));
            block_in = block_out;
            if c.attn_levels.contains(&r) {
                attn.push(AttnBlock::load(
                    loader,
                    &format!("{name}.attn.{j}"),
                    block_in,
                ));
            }
        }
        let resample = (r != 0).then(|| {
            Conv::load(
                loader,
                &format!("{name}.{}", n.resample),
                block_in,
                block_in,
                3,
                1,
            )
        });
        levels.push(Level {
            res,
            attn,
            resample,
        });
    }
    Stack {
        conv_in,
        mid,
        levels,
        norm_out: GroupNorm::load(loader, &format!("{}.norm_out", n.root), block_in),
        conv_out: Conv::load(loader, &format!("{}.conv_out", n.root), 3, block_in, 3, 1),
    }
}

fn load_encoder(loader: &mut WeightLoader, c: &VqConfig) -> Stack {
    let l = c.ch_mult.len();
    let n = c.layout.names(false, l);
    let conv_in = Conv::load(loader, &format!("{}.conv_in", n.root), c.ch, 3, 3, 1);
    let mut block_in = c.ch;
    let mut levels = Vec::with_capacity(l);
    for r in 0..l {
        let name = (n.level)(r);
        let block_out = c.ch * c.ch_mult[r];
        let mut res = Vec::new();
        let mut attn = Vec::new();
        for j in 0..c.num_res_blocks {
            res.push(ResBlock::load(
                loader,
                &format!("{name}.{}.{j}", n.res),
                block_in,
                block_out,
            ));
            block_in = block_out;
            if c.attn_levels.contains(&r) {
                attn.push(AttnBlock::load(
                    loader,
                    &format!("{name}.attn.{j}"),
                    block_in,
                ));
            }
        }
        let resample = (r != l - 1).then(|| {
            Conv::load(
                loader,
                &format!("{name}.{}", n.resample),
                block_in,
                block_in,
                3,
                2,
            )
        });
        levels.push(Level {
            res,
            attn,
            resample,
        });
    }
    let mid = (
        ResBlock::load(
            loader,
            &format!("{}.{}", n.root, n.mid[0]),
            block_in,
            block_in,
        ),
        AttnBlock::load(loader, &format!("{}.{}", n.root, n.mid[1]), block_in),
        ResBlock::load(
            loader,
            &format!("{}.{}", n.root, n.mid[2]),
            block_in,
            block_in,
        ),
    );
    Stack {
        conv_in,
        mid,
        levels,
        norm_out: GroupNorm::load(loader, &format!("{}.norm_out", n.root), block_in),
        conv_out: Conv::load(
            loader,
            &format!("{}.conv_out", n.root),
            c.z_channels,
            block_in,
            3,
            1,
        ),
    }
}

impl Stack {
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
                    conv.forward(upsample2x(h))
                } else {
                    conv.forward(pad_bottom_right(h))
                };
            }
        }
        h
    }

    fn mid(&self, h: Tensor<4>) -> Tensor<4> {
        self.mid
            .2
            .forward(self.mid.1.forward(self.mid.0.forward(h)))
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

/// A VQ autoencoder: codebook, decoder and (optionally) encoder.
#[derive(Debug, Clone)]
pub struct VqModel {
    config: VqConfig,
    device: Device,
    codebook: Tensor<2>,
    post_quant: Conv,
    quant: Option<Conv>,
    decoder: Stack,
    encoder: Option<Stack>,
}

impl VqModel {
    /// Loads a VQ model from a checkpoint (safetensors or `.pt`; the tensors under the layout's
    /// prefix must match exactly, tensors outside it are left to other loaders).
    ///
    /// # Errors
    /// [`LoadError`] naming the file or tensors at fault.
    pub fn load(path: impl AsRef<Path>, config: VqConfig, device: &Device) -> Result<Self> {
        config.validate()?;
        let mut loader = WeightLoader::new(Checkpoint::open(path)?, device);
        let c = &config;
        let p = c.layout.prefix().to_string();
        let codebook = loader.tensor(
            &format!("{p}quantize.embedding.weight"),
            [c.codebook_size, c.embed_dim],
        );
        let post_quant = Conv::load(
            &mut loader,
            &format!("{p}post_quant_conv"),
            c.z_channels,
            c.embed_dim,
            1,
            1,
        );
        let decoder = load_decoder(&mut loader, c);
        let (quant, encoder) = if c.with_encoder {
            (
                Some(Conv::load(
                    &mut loader,
                    &format!("{p}quant_conv"),
                    c.embed_dim,
                    c.z_channels,
                    1,
                    1,
                )),
                Some(load_encoder(&mut loader, c)),
            )
        } else {
            (None, None)
        };
        let with_encoder = c.with_encoder;
        loader.finish(|n| {
            !n.starts_with(&p)
                || n == format!("{p}quantize.codebook_used")
                || (!with_encoder
                    && (n.starts_with(&format!("{p}encoder."))
                        || n == format!("{p}quant_conv.weight")
                        || n == format!("{p}quant_conv.bias")))
        })?;
        let codebook = if c.l2_normalized {
            l2_normalize(codebook)
        } else {
            codebook
        };
        Ok(Self {
            config,
            device: device.clone(),
            codebook,
            post_quant,
            quant,
            decoder,
            encoder,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &VqConfig {
        &self.config
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
        let idx = Tensor::<1, Int>::from_data(TensorData::new(idx, [codes.len()]), &self.device);
        let e = self.config.embed_dim;
        Ok(self
            .codebook
            .clone()
            .select(0, idx)
            .reshape([1, rows, cols, e])
            .permute([0, 3, 1, 2]))
    }

    /// Encodes an image `[1, 3, H, W]` (values in `[-1, 1]`, sides multiples of the downsampling
    /// factor) into codes in raster order, with the grid size.
    ///
    /// # Errors
    /// [`Error::Unsupported`] without an encoder, [`Error::Shape`] for a bad image size.
    pub fn encode(&self, image: Tensor<4>) -> std::result::Result<(Vec<u32>, usize, usize), Error> {
        let (Some(encoder), Some(quant)) = (&self.encoder, &self.quant) else {
            return Err(Error::Unsupported(
                "this VQ model was loaded without its encoder".into(),
            ));
        };
        let [b, c, h, w] = image.dims();
        let f = self.config.downsample();
        if b != 1 || c != 3 || h == 0 || w == 0 || h % f != 0 || w % f != 0 {
            return Err(Error::Shape {
                what: format!("image to encode (sides must be multiples of {f})"),
                expected: vec![1, 3, h.div_ceil(f).max(1) * f, w.div_ceil(f).max(1) * f],
                got: vec![b, c, h, w],
            });
        }
        let z = quant.forward(encoder.encode(image)); // [1, e, h', w']
        let [_, e, hh, ww] = z.dims();
        let mut z = z.permute([0, 2, 3, 1]).reshape([hh * ww, e]);
        if self.config.l2_normalized {
            z = l2_normalize(z);
        }
        // argmin ‖z − e‖² = argmin (‖e‖² − 2 z·e)
        let cb = self.codebook.clone();
        let dist = cb
            .clone()
            .powf_scalar(2.0)
            .sum_dim(1)
            .reshape([1, self.config.codebook_size])
            - z.matmul(cb.transpose()) * 2.0;
        let codes = dist.argmin(1).reshape([hh * ww]);
        let codes = codes
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .map_err(|e| Error::TensorData {
                what: "VQ codes".into(),
                detail: format!("{e:?}"),
            })?;
        Ok((codes.into_iter().map(|c| c as u32).collect(), hh, ww))
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
        let z = self.post_quant.forward(self.quantized(codes, rows, cols)?);
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
