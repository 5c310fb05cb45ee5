//! Stage 1: training the VQ autoencoder ([`VqModel`], see [`crate::vq`]) on the shapes dataset.

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::Device;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use sjd2_core::error::tensor_to_vec;
use sjd2_models::weights::StoredDtype;

use sjd2_models::vq::{VqConfig, VqModel};

use crate::checkpoint::write_named;
use crate::error::{Result, TrainError};
use crate::run::{
    HELDOUT_SEED, RunDir, TRAIN_SEED, get_usize, images_tensor, ints, learning_rate, samples,
    scalar,
};
use crate::vq::{demo_vq, restart_codes, training_forward};

/// Settings of the VQ stage.
#[derive(Debug, Clone)]
pub struct VqTrainOptions {
    /// Architecture.
    pub model: VqConfig,
    /// Image side in pixels.
    pub image_size: usize,
    /// Optimizer steps in all.
    pub steps: usize,
    /// Images per step.
    pub batch: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Steps between checkpoints.
    pub checkpoint_every: usize,
    /// Steps between dead-code restarts.
    pub restart_every: usize,
    /// Initialization seed.
    pub seed: u64,
}

impl Default for VqTrainOptions {
    fn default() -> Self {
        Self {
            model: demo_vq(),
            image_size: 64,
            steps: 1500,
            batch: 16,
            lr: 2e-3,
            checkpoint_every: 100,
            restart_every: 50,
            seed: 0,
        }
    }
}

/// One logged step.
#[derive(Debug, Clone, Copy)]
pub struct VqStep {
    /// Step index (0-based).
    pub step: usize,
    /// Steps in all.
    pub total: usize,
    /// Reconstruction loss (MSE + L1 on `[-1, 1]` pixels).
    pub recon: f32,
    /// Codebook + commitment loss.
    pub vq: f32,
    /// Codes used since the last restart.
    pub used: usize,
}

/// Held-out evaluation of a VQ model.
#[derive(Debug, Clone, Copy)]
pub struct VqEval {
    /// Mean squared error on `[0, 1]` pixels.
    pub mse: f64,
    /// PSNR in dB for `[0, 1]` pixels.
    pub psnr: f64,
    /// Distinct codes used over the held-out images.
    pub codes_used: usize,
    /// Perplexity of the code histogram.
    pub perplexity: f64,
}

/// Trains (or resumes) the VQ autoencoder in `dir`, then writes `vq.safetensors` (inference
/// names) and returns the held-out evaluation. `device` must be an autodiff device.
///
/// # Errors
/// I/O, checkpoint and tensor errors.
pub fn train_vq(
    opts: &VqTrainOptions,
    dir: &RunDir,
    device: &Device,
    mut on_step: impl FnMut(&VqStep),
) -> Result<VqEval> {
    if opts.batch == 0 || opts.steps == 0 {
        return Err(TrainError::Config {
            field: "steps/batch",
            reason: "must be >= 1".into(),
        });
    }
    device.seed(opts.seed);
    let mut start = 0;
    let mut model = match dir.state()? {
        Some(state) => {
            start = get_usize(&state, "step");
            tracing::info!(step = start, "resuming the VQ stage");
            VqModel::load(dir.checkpoint(), opts.model.clone(), device)?
        }
        None => VqModel::new(opts.model.clone(), device)?,
    };
    let mut optim = AdamWConfig::new().with_weight_decay(0.0).init();
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed ^ start as u64);
    let k = opts.model.codebook_size;
    let mut usage = vec![0usize; k];
    for step in start..opts.steps {
        let batch = samples(
            TRAIN_SEED,
            (step * opts.batch) as u64,
            opts.batch,
            opts.image_size,
        );
        let pix: Vec<&[u8]> = batch.iter().map(|s| s.pixels.as_slice()).collect();
        let x = images_tensor(&pix, opts.image_size, device);
        let out = training_forward(&model, x.clone())?;
        let diff = out.recon - x;
        let recon = diff.clone().powf_scalar(2.0).mean() + diff.abs().mean();
        let loss = recon.clone() + out.vq_loss.clone();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let lr = learning_rate(step, opts.steps, 50, opts.lr, 0.05);
        model = optim.step(lr, model, grads);
        for c in ints(out.codes)? {
            usage[c as usize] += 1;
        }
        let report = VqStep {
            step,
            total: opts.steps,
            recon: scalar(recon.inner(), "reconstruction loss")?,
            vq: scalar(out.vq_loss.inner(), "VQ loss")?,
            used: usage.iter().filter(|&&u| u > 0).count(),
        };
        if (step + 1) % opts.restart_every == 0 {
            let dead: Vec<usize> = (0..k).filter(|&i| usage[i] == 0).collect();
            if !dead.is_empty() {
                let lat = out.latents.inner();
                let [n, e] = lat.dims();
                let lat = tensor_to_vec(lat, "VQ latents")?;
                let vectors: Vec<Vec<f32>> = dead
                    .iter()
                    .map(|_| {
                        let r = rng.random_range(0..n);
                        lat[r * e..(r + 1) * e]
                            .iter()
                            .map(|&v| v + rng.random_range(-0.01..0.01))
                            .collect()
                    })
                    .collect();
                model = restart_codes(model, &dead, &vectors)?;
            }
            usage.iter_mut().for_each(|u| *u = 0);
        }
        on_step(&report);
        dir.log(&json!({"step": step, "recon": report.recon, "vq": report.vq, "used": report.used, "lr": lr}))?;
        if (step + 1) % opts.checkpoint_every == 0 || step + 1 == opts.steps {
            dir.save_checkpoint(&model.export()?)?;
            dir.save_state(&json!({"stage": "vq", "step": step + 1, "steps": opts.steps}))?;
        }
    }
    let model = model.valid();
    let tensors = model.export()?;
    dir.atomically("vq.safetensors", |p| {
        write_named(p, &tensors, StoredDtype::F32)
    })?;
    let eval = evaluate_vq(&model, opts.image_size, 256, &device.clone().inner())?;
    dir.save_state(&json!({
        "stage": "vq", "step": opts.steps, "steps": opts.steps,
        "heldout_mse": eval.mse, "heldout_psnr": eval.psnr,
        "codes_used": eval.codes_used, "perplexity": eval.perplexity,
    }))?;
    Ok(eval)
}

/// Reconstruction error and code usage of `model` on `n` held-out images.
///
/// # Errors
/// Tensor errors.
pub fn evaluate_vq(model: &VqModel, size: usize, n: usize, device: &Device) -> Result<VqEval> {
    let model = model.clone().to_device(device);
    let mut se = 0.0f64;
    let mut count = 0usize;
    let mut hist = vec![0usize; model.config().codebook_size];
    for chunk in 0..n.div_ceil(32) {
        let m = 32.min(n - chunk * 32);
        let batch = samples(HELDOUT_SEED, (chunk * 32) as u64, m, size);
        let pix: Vec<&[u8]> = batch.iter().map(|s| s.pixels.as_slice()).collect();
        let x = images_tensor(&pix, size, device);
        let codes = model.codes(x.clone())?;
        let g = size / model.config().downsample();
        let recon = model.decode_codes(codes.clone(), g, g).clamp(-1.0, 1.0);
        let d = (recon - x) / 2.0;
        se += f64::from(scalar(d.powf_scalar(2.0).sum(), "squared error")?);
        count += m * 3 * size * size;
        for c in ints(codes.reshape([m * g * g]))? {
            hist[c as usize] += 1;
        }
    }
    let mse = se / count as f64;
    let total: usize = hist.iter().sum();
    let entropy: f64 = hist
        .iter()
        .filter(|&&h| h > 0)
        .map(|&h| {
            let p = h as f64 / total as f64;
            -p * p.ln()
        })
        .sum();
    Ok(VqEval {
        mse,
        psnr: -10.0 * mse.log10(),
        codes_used: hist.iter().filter(|&&h| h > 0).count(),
        perplexity: entropy.exp(),
    })
}
