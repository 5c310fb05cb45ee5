//! Training the demo model's image tokenizer: the inference [`VqModel`] itself (taming layout,
//! l2-normalized codebook as in LlamaGen's VQ-16) on an autodiff device, with what only training
//! needs: nearest-neighbour quantization on the unit sphere with a straight-through estimator, a
//! codebook loss and a commitment loss, and restarts of codes left unused.

use burn::tensor::{Int, Tensor, TensorData};
use sjd2_models::vq::{VqConfig, VqLayout, VqModel};

use crate::error::{Result, TrainError};

/// The demo tokenizer: 64×64 images → 16×16 codes from a 512 × 8 l2-normalized codebook;
/// channels 16/32/64, one ResNet block per encoder level, latent 32, taming names.
pub fn demo_vq() -> VqConfig {
    VqConfig {
        ch: 16,
        ch_mult: vec![1, 2, 4],
        num_res_blocks: 1,
        z_channels: 32,
        embed_dim: 8,
        codebook_size: 512,
        attn_levels: vec![],
        l2_normalized: true,
        with_encoder: true,
        layout: VqLayout::Taming {
            prefix: String::new(),
        },
    }
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

/// A training forward pass of images `[b, 3, H, W]` in `[-1, 1]` with the straight-through
/// estimator.
///
/// # Errors
/// A model without an encoder.
pub fn training_forward(model: &VqModel, x: Tensor<4>) -> Result<VqOutput> {
    let z = model.latents(x)?;
    let [b, h, w, e] = z.dims();
    let zf = z.reshape([b * h * w, e]);
    let codes = model.nearest(zf.clone().detach());
    let zq = model.codebook_vectors().select(0, codes.clone());
    let codebook_loss = (zq.clone() - zf.clone().detach()).powf_scalar(2.0).mean();
    let commit = (zf.clone() - zq.clone().detach()).powf_scalar(2.0).mean();
    let st = zf.clone() + (zq - zf.clone()).detach();
    let recon = model.decode_latents(st.reshape([b, h, w, e]));
    Ok(VqOutput {
        recon,
        vq_loss: codebook_loss + commit * 0.25,
        codes,
        latents: zf.detach(),
    })
}

/// Replaces the codebook rows `dead` by `vectors` (one row each).
///
/// # Errors
/// [`TrainError::Config`] for a vector of the wrong width.
pub fn restart_codes(model: VqModel, dead: &[usize], vectors: &[Vec<f32>]) -> Result<VqModel> {
    let mut cb = model.codebook.val();
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
    let mut model = model;
    model.codebook = model.codebook.map(|_| cb.detach().require_grad());
    Ok(model)
}
