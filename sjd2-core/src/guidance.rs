//! Classifier-free guidance and the parameter-free level embedding.

use burn::Tensor;
use burn::tensor::activation::log_softmax;

/// How a model family combines its conditional and unconditional logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum GuidanceStyle {
    /// `u + s · (c − u)` on raw logits (LlamaGen, Lumina-mGPT, Janus).
    #[default]
    RawLogits,
    /// `log_softmax(u) + s · (log_softmax(c) − log_softmax(u))` (Emu3).
    LogSoftmax,
}

/// Combines conditional and unconditional logits with guidance scale `scale`.
///
/// # Shapes
/// - `cond`, `uncond`: `[batch, positions, vocab]`; the result has the same shape.
pub fn guide(cond: Tensor<3>, uncond: Tensor<3>, scale: f32, style: GuidanceStyle) -> Tensor<3> {
    let (c, u) = match style {
        GuidanceStyle::RawLogits => (cond, uncond),
        GuidanceStyle::LogSoftmax => (log_softmax(cond, 2), log_softmax(uncond, 2)),
    };
    u.clone() + (c - u) * scale
}

/// Three-way ("instruct") guidance, as Chameleon's inference code guides image generation
/// (`InBatchInstructCFGLogitsProcessor` in `facebookresearch/chameleon`, after InstructPix2Pix,
/// arXiv 2211.09800): `u + s_image · (i − u) + s_text · (c − i)` for the full-conditioned `c`,
/// image-conditioned `i` and unconditional `u` logits (after `style`'s transform). With `i = u`
/// it equals [`guide`] at `s_text`.
///
/// ```
/// use burn::Tensor;
/// use sjd2_core::{GuidanceStyle, guide, guide_instruct};
/// let device = sjd2_core::Device::flex();
/// let c = Tensor::<3>::from_floats([[[1.0, 3.0]]], &device);
/// let i = Tensor::<3>::from_floats([[[0.0, 1.0]]], &device);
/// let u = Tensor::<3>::from_floats([[[2.0, 2.0]]], &device);
/// let g = guide_instruct(c.clone(), i, u.clone(), 3.0, 1.2, GuidanceStyle::RawLogits);
/// // u + 1.2 (i - u) + 3 (c - i) = [2 - 2.4 + 3, 2 - 1.2 + 6]
/// let g = g.into_data().to_vec::<f32>().unwrap();
/// assert!((g[0] - 2.6).abs() < 1e-6 && (g[1] - 6.8).abs() < 1e-6);
/// let same = guide_instruct(c.clone(), u.clone(), u.clone(), 3.0, 1.2, GuidanceStyle::RawLogits);
/// let two_way = guide(c, u, 3.0, GuidanceStyle::RawLogits);
/// assert_eq!(same.into_data().to_vec::<f32>().unwrap(), two_way.into_data().to_vec::<f32>().unwrap());
/// ```
///
/// # Shapes
/// - `cond`, `image_cond`, `uncond`: `[batch, positions, vocab]`; the result has the same shape.
pub fn guide_instruct(
    cond: Tensor<3>,
    image_cond: Tensor<3>,
    uncond: Tensor<3>,
    text_scale: f32,
    image_scale: f32,
    style: GuidanceStyle,
) -> Tensor<3> {
    let (c, i, u) = match style {
        GuidanceStyle::RawLogits => (cond, image_cond, uncond),
        GuidanceStyle::LogSoftmax => (
            log_softmax(cond, 2),
            log_softmax(image_cond, 2),
            log_softmax(uncond, 2),
        ),
    };
    u.clone() + (i.clone() - u) * image_scale + (c - i) * text_scale
}

/// Guides logits whose rows are grouped by branch, `samples` rows per group, as
/// [`PromptRow::grouped`](crate::PromptRow::grouped) orders them: one group is unguided, two are
/// conditional and unconditional ([`guide`] at `scale`), three add the image-conditioned rows
/// ([`guide_instruct`] at `scale` and `image_scale`, 1 when `None`).
///
/// # Shapes
/// - `logits`: `[groups · samples, positions, vocab]`; returns `[samples, positions, vocab]`
pub fn guide_branches(
    logits: Tensor<3>,
    samples: usize,
    scale: f32,
    image_scale: Option<f32>,
    style: GuidanceStyle,
) -> Tensor<3> {
    let branch = |g: usize| logits.clone().narrow(0, g * samples, samples);
    match logits.dims()[0] / samples.max(1) {
        3 => guide_instruct(
            branch(0),
            branch(2),
            branch(1),
            scale,
            image_scale.unwrap_or(1.0),
            style,
        ),
        2 => guide(branch(0), branch(1), scale, style),
        _ => logits,
    }
}

/// A parameter-free sinusoidal embedding of noise levels, zero at level 0.
///
/// Entry `2i` is `sin(ω_i t)` and entry `2i+1` is `cos(ω_i t) − 1`, with `t = k / K` in `[0, 1]`
/// and `ω_i = 1000 / 10000^{2i/dim}` (the transformer timestep frequencies applied to `1000·t`).
/// Clean inputs are therefore left unchanged, so a model that was never fine-tuned sees exactly
/// its usual inputs at level 0.
///
/// # Shapes
/// - `t`: `[batch, slots]` with values in `[0, 1]`; result `[batch, slots, dim]`.
pub fn sinusoidal_level_embedding(t: Tensor<2>, dim: usize) -> Tensor<3> {
    let device = t.device();
    let [b, s] = t.dims();
    let half = dim / 2;
    let freqs: Vec<f32> = (0..half)
        .map(|i| 1000.0 * 10000f32.powf(-(2.0 * i as f32) / dim as f32))
        .collect();
    let freqs = Tensor::<1>::from_floats(freqs.as_slice(), &device).reshape([1, 1, half]);
    let angles = t.unsqueeze_dim::<3>(2) * freqs; // [b, s, half]
    let sin = angles.clone().sin();
    let cos = angles.cos() - 1.0;
    let pairs = Tensor::stack::<4>(vec![sin, cos], 3).reshape([b, s, 2 * half]);
    if 2 * half == dim {
        pairs
    } else {
        Tensor::cat(
            vec![pairs, Tensor::zeros([b, s, dim - 2 * half], &device)],
            2,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    #[test]
    fn raw_and_log_softmax_guidance() {
        let device = Device::flex();
        let c = Tensor::<3>::from_floats([[[1.0, 3.0]]], &device);
        let u = Tensor::<3>::from_floats([[[2.0, 2.0]]], &device);
        let g = guide(c.clone(), u.clone(), 3.0, GuidanceStyle::RawLogits);
        assert_eq!(g.into_data().try_to_vec::<f32>().unwrap(), vec![-1.0, 5.0]);
        let g = guide(c, u, 1.0, GuidanceStyle::LogSoftmax)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let lse = (1f32.exp() + 3f32.exp()).ln();
        assert!((g[0] - (1.0 - lse)).abs() < 1e-5 && (g[1] - (3.0 - lse)).abs() < 1e-5);
    }

    #[test]
    fn level_embedding_is_zero_at_level_zero() {
        let device = Device::flex();
        let t = Tensor::<2>::from_floats([[0.0, 0.5]], &device);
        let e = sinusoidal_level_embedding(t, 7)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert!(e[..7].iter().all(|x| x.abs() < 1e-7), "{e:?}");
        assert!(e[7..].iter().any(|x| x.abs() > 0.1));
        assert_eq!(e[13], 0.0, "odd dim pads with zero");
    }
}
