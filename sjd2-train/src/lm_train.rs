//! Stages 2 and 3: next-token training of the demo transformer (with prompt dropout for
//! classifier-free guidance), and the SJD2 next-clean-token fine-tune (ALGORITHM §3.3: the targets
//! stay the next clean tokens, but random segments of image-token inputs are replaced by noisy
//! normalized embeddings `s·(α_k ē₀ + σ_k ε) + μ`, plus the level conditioning).

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde_json::json;
use sjd2_core::{
    EmbeddingNormalizer, NoiseSchedule, NormalizationKind, ScheduleTable,
    sinusoidal_level_embedding,
};
use sjd2_models::demo::DemoConfig;
use sjd2_models::llama::Backbone;
use sjd2_models::prompt::{PromptTokenizer, Template};
use sjd2_models::weights::StoredDtype;

use crate::checkpoint::write_named;
use crate::error::{Result, TrainError};
use crate::run::{
    RunDir, TRAIN_SEED, get_usize, images_tensor, ints, learning_rate, samples, scalar,
};
use sjd2_models::vq::VqModel;

/// How noisy segments are laid out in a fine-tuning sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentPattern {
    /// One level for the whole segment.
    Constant,
    /// Levels rising along the segment from 1 to `K`, as in an SJD2 window whose far end is
    /// pure noise.
    Increasing,
}

/// Level conditioning used by the fine-tune (must match the decoder's setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LevelInput {
    /// Nothing added.
    None,
    /// `sjd2_core::sinusoidal_level_embedding` added to noisy inputs.
    Sinusoidal,
}

/// Noise settings of the next-clean-token fine-tune.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NoiseOptions {
    /// Noise levels `K`.
    pub levels: usize,
    /// Schedule (the decoder must use the same).
    pub schedule: NoiseSchedule,
    /// Segment pattern.
    pub pattern: SegmentPattern,
    /// Level conditioning.
    pub conditioning: LevelInput,
    /// Segment length range (inclusive).
    pub segment_len: (usize, usize),
    /// Segments per sequence (inclusive range). Targets after the last noisy input are not
    /// scored, since at inference noisy slots only trail the sequence.
    pub segments: (usize, usize),
}

impl Default for NoiseOptions {
    fn default() -> Self {
        Self {
            levels: 20,
            schedule: NoiseSchedule::default(),
            pattern: SegmentPattern::Increasing,
            conditioning: LevelInput::Sinusoidal,
            segment_len: (8, 48),
            segments: (1, 1),
        }
    }
}

/// Settings of a transformer stage.
#[derive(Debug, Clone)]
pub struct LmTrainOptions {
    /// Model configuration (sizes and vocabulary).
    pub config: DemoConfig,
    /// Optimizer steps.
    pub steps: usize,
    /// Sequences per step.
    pub batch: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Warm-up steps.
    pub warmup: usize,
    /// Probability of dropping the caption (unconditional sequence: `<boi>` + image).
    pub prompt_dropout: f64,
    /// `Some`: the SJD2 fine-tune; `None`: plain next-token training.
    pub noise: Option<NoiseOptions>,
    /// Steps between checkpoints.
    pub checkpoint_every: usize,
    /// Seed (initialization, dropout and noise draws).
    pub seed: u64,
    /// First dataset index (the fine-tune continues on images the base model has not seen).
    pub data_offset: u64,
    /// With an initialization and no checkpoint yet: the step it was trained to, where training
    /// continues (its learning-rate schedule and data position); 0 starts a new schedule.
    pub init_step: usize,
}

/// One logged step.
#[derive(Debug, Clone, Copy)]
pub struct LmStep {
    /// Step (0-based).
    pub step: usize,
    /// Steps in all.
    pub total: usize,
    /// Mean cross-entropy over image-token targets.
    pub loss: f32,
    /// The same over targets whose input was clean (fine-tune only; else equals `loss`).
    pub clean_loss: f32,
}

/// A tokenized training sequence: input ids, targets, loss mask and which inputs are image
/// tokens.
#[derive(Debug, Clone)]
pub struct Sequence {
    /// Input ids.
    pub ids: Vec<u32>,
    /// Target ids (the next token).
    pub targets: Vec<u32>,
    /// Whether the target is an image code (the loss covers those).
    pub scored: Vec<bool>,
    /// Index of the first image-code input.
    pub image_start: usize,
}

/// Builds the sequence `[<s> words… <boi>] rows+<eol> <eoi>` (without the caption when
/// `unconditional`) and shifts it into inputs and targets.
pub fn sequence(
    config: &DemoConfig,
    caption: &[u32],
    codes: &[u32],
    unconditional: bool,
) -> Sequence {
    let mut seq: Vec<u32> = if unconditional {
        vec![]
    } else {
        caption.to_vec()
    };
    seq.push(config.boi());
    let image_start = seq.len();
    for row in codes.chunks(config.grid) {
        seq.extend(row.iter().map(|&c| config.image_start() + c));
        seq.push(config.eol());
    }
    seq.push(config.eoi());
    let ids = seq[..seq.len() - 1].to_vec();
    let targets = seq[1..].to_vec();
    let img = config.image_start();
    let scored = targets.iter().map(|&t| t >= img).collect();
    Sequence {
        ids,
        targets,
        scored,
        image_start,
    }
}

/// Mean cross-entropy of `logits` `[b, len, vocab]` over the `mask`ed positions, and the
/// per-position negative log-likelihood `[b, len]`.
pub fn masked_cross_entropy(
    logits: Tensor<3>,
    targets: Tensor<2, Int>,
    mask: Tensor<2>,
) -> (Tensor<1>, Tensor<2>) {
    let [b, l, _] = logits.dims();
    let lp = log_softmax(logits, 2);
    let nll = lp
        .gather(2, targets.reshape([b, l, 1]))
        .reshape([b, l])
        .neg();
    let total = mask.clone().sum().clamp_min(1.0);
    ((nll.clone() * mask).sum() / total, nll)
}

/// Right-pads sequences into `[b, len]` ids, targets, the loss mask and the image-input mask.
pub fn batch_tensors(
    seqs: &[Sequence],
    pad: u32,
    device: &Device,
) -> (Tensor<2, Int>, Tensor<2, Int>, Tensor<2>) {
    let b = seqs.len();
    let l = seqs.iter().map(|s| s.ids.len()).max().unwrap_or(1);
    let mut ids = vec![i64::from(pad); b * l];
    let mut tg = vec![0i64; b * l];
    let mut m = vec![0f32; b * l];
    for (r, s) in seqs.iter().enumerate() {
        for (j, (&i, &t)) in s.ids.iter().zip(&s.targets).enumerate() {
            ids[r * l + j] = i64::from(i);
            tg[r * l + j] = i64::from(t);
            m[r * l + j] = if s.scored[j] { 1.0 } else { 0.0 };
        }
    }
    (
        Tensor::from_data(TensorData::new(ids, [b, l]), device),
        Tensor::from_data(TensorData::new(tg, [b, l]), device),
        Tensor::from_data(TensorData::new(m, [b, l]), device),
    )
}

/// Per-position noise levels (0 = clean) of one fine-tuning sequence: 1–3 segments inside the
/// image-code inputs.
pub fn noise_levels(seq: &Sequence, opts: &NoiseOptions, rng: &mut impl Rng) -> Vec<usize> {
    let mut levels = vec![0usize; seq.ids.len()];
    let img_lo = seq.image_start;
    let img_hi = seq.ids.len();
    if img_hi <= img_lo + 1 {
        return levels;
    }
    let n = rng.random_range(opts.segments.0..=opts.segments.1);
    for _ in 0..n {
        let len = rng
            .random_range(opts.segment_len.0..=opts.segment_len.1)
            .min(img_hi - img_lo);
        let start = rng.random_range(img_lo..=img_hi - len);
        let constant = rng.random_range(1..=opts.levels);
        for (j, lv) in levels[start..start + len].iter_mut().enumerate() {
            *lv = match opts.pattern {
                SegmentPattern::Constant => constant,
                SegmentPattern::Increasing => {
                    (((j + 1) * opts.levels).div_ceil(len)).clamp(1, opts.levels)
                }
            };
        }
    }
    levels
}

/// Input embeddings of a fine-tuning batch: clean embeddings, with the positions of `levels > 0`
/// replaced by `α_k (E[x] − μ) + σ_k s ε + μ` (+ the level conditioning). The noisy part is a
/// constant for the optimizer (no gradient flows into the table through it). `μ`, `s` come from
/// [`EmbeddingNormalizer`], exactly as in the decoder.
///
/// # Errors
/// An image-token table with fewer than two rows.
#[allow(clippy::too_many_arguments)]
pub fn noisy_inputs(
    model: &Backbone,
    ids: Tensor<2, Int>,
    levels: &[Vec<usize>],
    table: &ScheduleTable,
    opts: &NoiseOptions,
    config: &DemoConfig,
    rng: &mut impl Rng,
) -> Result<Tensor<3>> {
    let clean = model.embed(ids.clone());
    let [b, l, d] = clean.dims();
    let device = clean.device();
    let e = model.embedding_table().inner();
    let s0 = config.image_start() as usize;
    // The statistics the decoder uses: per-dimension mean and deviation of the image rows.
    let norm = EmbeddingNormalizer::from_table(
        e.clone().narrow(0, s0, config.codebook_size),
        NormalizationKind::PerDimension,
    )?;
    let mut a = vec![1f32; b * l];
    let mut s = vec![0f32; b * l];
    let mut t = vec![0f32; b * l];
    let mut noisy = vec![false; b * l];
    for (r, lv) in levels.iter().enumerate() {
        for (j, &k) in lv.iter().enumerate() {
            if k > 0 {
                a[r * l + j] = table.alpha(k) as f32;
                s[r * l + j] = table.sigma(k) as f32;
                t[r * l + j] = k as f32 / opts.levels as f32;
                noisy[r * l + j] = true;
            }
        }
    }
    let eps: Vec<f32> = (0..b * l * d).map(|_| StandardNormal.sample(rng)).collect();
    let eps = Tensor::<3>::from_data(TensorData::new(eps, [b, l, d]), &device.clone().inner());
    let x0 = burn::tensor::module::embedding(e, ids.inner()); // [b, l, d]
    let at = Tensor::<3>::from_data(TensorData::new(a, [b, l, 1]), &device.clone().inner());
    let st = Tensor::<3>::from_data(TensorData::new(s, [b, l, 1]), &device.clone().inner());
    let mut nz = norm.denormalize(norm.normalize(x0) * at + eps * st);
    if opts.conditioning == LevelInput::Sinusoidal {
        let tt = Tensor::<2>::from_data(TensorData::new(t, [b, l]), &device.clone().inner());
        nz = nz + sinusoidal_level_embedding(tt, d);
    }
    let mask =
        Tensor::<3, Bool>::from_data(TensorData::new(noisy, [b, l, 1]), &device).expand([b, l, d]);
    Ok(clean.mask_where(mask, nz.autodiff()))
}

/// Trains (or resumes) the transformer in `dir`, then writes `model.safetensors` (inference
/// names). `vq` tokenizes the images (on the inner, non-autodiff device); `device` must be an
/// autodiff device. With `init`, training starts from those parameters (the fine-tune starts
/// from the base model).
///
/// # Errors
/// I/O, checkpoint and tensor errors.
pub fn train_lm(
    opts: &LmTrainOptions,
    dir: &RunDir,
    vq: &VqModel,
    init: Option<&std::path::Path>,
    device: &Device,
    mut on_step: impl FnMut(&LmStep),
) -> Result<()> {
    if opts.batch == 0 || opts.steps == 0 {
        return Err(TrainError::Config {
            field: "steps/batch",
            reason: "must be >= 1".into(),
        });
    }
    device.seed(opts.seed);
    let c = &opts.config;
    let names = DemoConfig::key_names();
    let mut start = 0;
    let mut model = if let Some(state) = dir.state()? {
        start = get_usize(&state, "step");
        tracing::info!(step = start, "resuming");
        c.load_backbone(dir.checkpoint(), device)?
    } else if let Some(p) = init {
        start = opts.init_step.min(opts.steps);
        c.load_backbone(p, device)?
    } else {
        Backbone::new(c.backbone(), device)?
    };
    let tokenizer = PromptTokenizer::from_json(&crate::vocab::tokenizer_json())?;
    let inner = device.clone().inner();
    let schedule = match &opts.noise {
        Some(n) => Some(n.schedule.table(n.levels)?),
        None => None,
    };
    let mut optim = AdamWConfig::new().with_weight_decay(0.01).init();
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed.wrapping_add(start as u64 * 7919));
    let g = c.grid;
    for step in start..opts.steps {
        let first = opts.data_offset + (step * opts.batch) as u64;
        let batch = samples(TRAIN_SEED, first, opts.batch, c.image_size);
        let pix: Vec<&[u8]> = batch.iter().map(|s| s.pixels.as_slice()).collect();
        let codes = vq.codes(images_tensor(&pix, c.image_size, &inner))?;
        let codes = ints(codes.reshape([opts.batch * g * g]))?;
        let mut seqs = Vec::with_capacity(opts.batch);
        for (i, s) in batch.iter().enumerate() {
            let caption = tokenizer.encode(&s.caption, &Template::Chameleon)?.tokens;
            let cs: Vec<u32> = codes[i * g * g..(i + 1) * g * g]
                .iter()
                .map(|&v| v as u32)
                .collect();
            let uncond = rng.random_bool(opts.prompt_dropout);
            seqs.push(sequence(c, &caption, &cs, uncond));
        }
        let levels: Option<Vec<Vec<usize>>> = opts.noise.as_ref().map(|n| {
            seqs.iter_mut()
                .map(|s| {
                    let lv = noise_levels(s, n, &mut rng);
                    // At inference noisy slots only ever trail the sequence: targets whose
                    // inputs come after noisy ones are not trained on.
                    if let Some(last) = lv.iter().rposition(|&k| k > 0) {
                        s.scored.iter_mut().skip(last + 1).for_each(|m| *m = false);
                    }
                    lv
                })
                .collect()
        });
        let (ids, targets, mask) = batch_tensors(&seqs, c.pad, device);
        let (x, noisy_mask) = match (&opts.noise, &schedule, levels) {
            (Some(n), Some(table), Some(levels)) => {
                let [b, l] = ids.dims();
                let mut nm = vec![0f32; b * l];
                for (r, lv) in levels.iter().enumerate() {
                    for (j, &k) in lv.iter().enumerate() {
                        if k > 0 {
                            nm[r * l + j] = 1.0;
                        }
                    }
                }
                let x = noisy_inputs(&model, ids.clone(), &levels, table, n, c, &mut rng)?;
                (
                    x,
                    Some(Tensor::<2>::from_data(TensorData::new(nm, [b, l]), device)),
                )
            }
            _ => (model.embed(ids.clone()), None),
        };
        let logits = model.logits(model.forward_sequence(x)?);
        let (loss, nll) = masked_cross_entropy(logits, targets, mask.clone());
        let loss_value = scalar(loss.clone().inner(), "loss")?;
        let clean_loss = match noisy_mask {
            Some(nm) => {
                let cm = mask * (nm.neg() + 1.0);
                let denom = cm.clone().sum().clamp_min(1.0);
                scalar(
                    ((nll.detach() * cm).sum() / denom).inner(),
                    "clean-input loss",
                )?
            }
            None => loss_value,
        };
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let lr = learning_rate(step, opts.steps, opts.warmup, opts.lr, 0.1);
        model = optim.step(lr, model, grads);
        let report = LmStep {
            step,
            total: opts.steps,
            loss: loss_value,
            clean_loss,
        };
        on_step(&report);
        dir.log(
            &json!({"step": step, "loss": report.loss, "clean_loss": report.clean_loss, "lr": lr}),
        )?;
        if (step + 1) % opts.checkpoint_every == 0 || step + 1 == opts.steps {
            dir.save_checkpoint(&model.export(&names)?)?;
            dir.save_state(&json!({"step": step + 1, "steps": opts.steps}))?;
        }
    }
    let tensors = model.valid().export(&names)?;
    dir.atomically("model.safetensors", |p| {
        write_named(p, &tensors, StoredDtype::F16)
    })
}

/// The demo model's configuration: 192 wide, 4 blocks of 6 heads, SwiGLU 512, 64×64 images as
/// 16×16 codes of a 512-entry codebook, the vocabulary of [`crate::vocab`].
pub fn demo_config() -> DemoConfig {
    let vq = crate::vq::demo_vq();
    DemoConfig {
        family: "sjd2-demo".into(),
        text_vocab: crate::vocab::SPECIAL_TOKENS.len() + crate::vocab::caption_words().len(),
        pad: 1,
        image_size: 64,
        grid: 64 / vq.downsample(),
        codebook_size: vq.codebook_size,
        hidden: 192,
        layers: 4,
        heads: 6,
        intermediate: 512,
        rope_theta: 10_000.0,
        rms_eps: 1e-5,
        vq_ch: vq.ch,
        vq_ch_mult: vq.ch_mult.clone(),
        vq_res_blocks: vq.num_res_blocks,
        vq_z_channels: vq.z_channels,
        vq_embed_dim: vq.embed_dim,
        guidance_scale: 3.0,
        level_conditioning: None,
        denoising_steps: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_follow_the_lumina_layout() {
        let c = demo_config();
        let codes: Vec<u32> = (0..256).collect();
        let s = sequence(&c, &[2, 10, 11], &codes, false);
        // <s> w w <boi> 16 × (16 codes + <eol>) <eoi>, shifted by one.
        assert_eq!(s.ids.len(), 3 + 1 + 16 * 17);
        assert_eq!(s.ids[3], c.boi());
        assert_eq!(s.image_start, 4);
        assert_eq!(s.ids[4], c.image_start());
        assert_eq!(s.ids[4 + 16], c.eol());
        assert_eq!(*s.targets.last().unwrap(), c.eoi());
        assert_eq!(s.scored.iter().filter(|&&m| m).count(), 256);
        let u = sequence(&c, &[2, 10, 11], &codes, true);
        assert_eq!(u.ids[0], c.boi());
        assert_eq!(u.ids.len(), s.ids.len() - 3);
    }

    #[test]
    fn noise_segments_stay_in_the_image_and_follow_their_pattern() {
        let c = demo_config();
        let codes: Vec<u32> = (0..256).collect();
        let s = sequence(&c, &[2, 10], &codes, false);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        for pattern in [SegmentPattern::Constant, SegmentPattern::Increasing] {
            let opts = NoiseOptions {
                pattern,
                ..NoiseOptions::default()
            };
            for _ in 0..50 {
                let lv = noise_levels(&s, &opts, &mut rng);
                let noisy: Vec<usize> = (0..lv.len()).filter(|&i| lv[i] > 0).collect();
                assert!(!noisy.is_empty());
                assert!(noisy[0] >= s.image_start);
                assert!(noisy.len() >= 8 && noisy.len() <= 48);
                assert_eq!(noisy.last().unwrap() - noisy[0] + 1, noisy.len());
                let levels: Vec<usize> = noisy.iter().map(|&i| lv[i]).collect();
                assert!(levels.iter().all(|&k| (1..=20).contains(&k)));
                match pattern {
                    SegmentPattern::Constant => assert!(levels.iter().all(|&k| k == levels[0])),
                    SegmentPattern::Increasing => {
                        assert!(levels.windows(2).all(|w| w[0] <= w[1]));
                        assert_eq!(*levels.last().unwrap(), 20);
                    }
                }
            }
        }
    }
}
