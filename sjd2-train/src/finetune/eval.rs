//! What a fine-tune buys, measured while it trains: decode a few held-out prompts with SJD2 and
//! the settings the export will write, and count forward passes per image ([`QuickEval`],
//! [`Finetuner::quick_eval`]). Also how those settings become a decoder configuration
//! ([`decoder_config`]), shared with `generate`.

use burn::module::Module;
use burn::tensor::Device;
use serde_json::json;
use sjd2_core::Prompt;
use sjd2_models::finetuned::Sjd2Settings;
use sjd2_sampler::{DecoderConfig, LevelConditioning, Mode, Sjd2Decoder};

use super::train::Finetuner;
use crate::error::{Result, TrainError};

/// `base` with the SJD2 inputs a fine-tune was trained for (`sjd2.json`): noise schedule, `K`,
/// normalization and level conditioning. Everything else (mode, window, sampling, guidance) is
/// `base`'s.
///
/// # Errors
/// A schedule or normalization name this version does not know.
///
/// ```
/// use sjd2_models::finetuned::Sjd2Settings;
/// use sjd2_sampler::DecoderConfig;
/// let s = Sjd2Settings::new(
///     sjd2_core::NoiseSchedule::default(),
///     5,
///     true,
///     sjd2_core::NormalizationKind::PerDimension,
/// );
/// let c = sjd2_train::finetune::decoder_config(&s, DecoderConfig::sjd2())?;
/// assert_eq!(c.sjd2.denoising_steps, 5);
/// # Ok::<(), sjd2_core::Error>(())
/// ```
pub fn decoder_config(
    settings: &Sjd2Settings,
    base: DecoderConfig,
) -> std::result::Result<DecoderConfig, sjd2_core::Error> {
    let mut c = base;
    c.sjd2.denoising_steps = settings.denoising_steps;
    c.sjd2.schedule = settings.noise_schedule()?;
    c.sjd2.normalization = settings.normalization_kind()?;
    c.sjd2.level_conditioning = if settings.sinusoidal_levels()? {
        LevelConditioning::Sinusoidal
    } else {
        LevelConditioning::None
    };
    Ok(c)
}

/// Forward passes per image of SJD2 on held-out prompts at one step of a fine-tune.
#[derive(Debug, Clone, PartialEq)]
pub struct QuickEval {
    /// Optimizer steps taken when it was measured.
    pub step: usize,
    /// Images decoded.
    pub images: usize,
    /// Mean tokens per image (what autoregressive decoding needs as passes).
    pub tokens_per_image: f64,
    /// Mean SJD2 forward passes per image.
    pub passes_per_image: f64,
}

impl QuickEval {
    /// Tokens per pass: how many times fewer passes than autoregressive decoding.
    pub fn step_compression(&self) -> f64 {
        self.tokens_per_image / self.passes_per_image.max(1.0)
    }
}

impl Finetuner {
    /// The decoder settings of the model as it is now (what [`super::export()`] writes as
    /// `sjd2.json` with `K` = the trained levels).
    pub fn settings(&self) -> Sjd2Settings {
        self.options().settings()
    }

    /// Decodes the prompts of the first `images` held-out examples with SJD2 on `device` (a
    /// device without autodiff; the parameters are copied there), with `base`'s sampling,
    /// guidance and window and [`Finetuner::settings`] for the noisy inputs, each prompt
    /// seeded by its index (the same images at every checkpoint). Appended to `log.jsonl` as
    /// `{"step", "eval_images", "eval_tokens_per_image", "eval_passes_per_image"}`.
    ///
    /// # Errors
    /// No held-out examples or `images == 0`; `base` not in SJD2 mode; decoding errors.
    pub fn quick_eval(
        &mut self,
        images: usize,
        device: &Device,
        base: DecoderConfig,
    ) -> Result<QuickEval> {
        let prompts: Vec<Vec<u32>> = self
            .held_out_examples()
            .iter()
            .take(images)
            .map(|e| e.prompt.clone())
            .collect();
        if prompts.is_empty() {
            return Err(TrainError::Config {
                field: "eval_images",
                reason: "needs at least one image and one held-out example".into(),
            });
        }
        if base.mode != Mode::Sjd2 {
            return Err(TrainError::Config {
                field: "eval decoder",
                reason: format!(
                    "the quick evaluation decodes with SJD2, not {:?}",
                    base.mode
                ),
            });
        }
        let config = decoder_config(&self.settings(), base)?;
        let model = self
            .model()?
            .clone()
            .map_backbone(|b| b.valid())
            .to_device(device);
        let decoder = Sjd2Decoder::new(model, config)?;
        let (mut tokens, mut passes) = (0usize, 0usize);
        for (i, p) in prompts.iter().enumerate() {
            let g = decoder.generate(&Prompt::new(p.clone()).with_seed(i as u64))?;
            tokens += g.tokens.len();
            passes += g.stats.forward_passes;
        }
        let n = prompts.len() as f64;
        let eval = QuickEval {
            step: self.step(),
            images: prompts.len(),
            tokens_per_image: tokens as f64 / n,
            passes_per_image: passes as f64 / n,
        };
        self.log(&json!({
            "step": eval.step,
            "eval_images": eval.images,
            "eval_tokens_per_image": eval.tokens_per_image,
            "eval_passes_per_image": eval.passes_per_image,
        }))?;
        Ok(eval)
    }
}
