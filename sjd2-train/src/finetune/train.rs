//! `finetune train`: SJD2's next-clean-token fine-tune of any [`LlamaT2I`] (ALGORITHM §3.3).
//!
//! Each sequence is laid out exactly as decoding sees it ([`LlamaT2I::training_batch`]); random
//! segments of its grid-cell inputs are replaced by noisy normalized embeddings
//! `s·(α_k ē₀ + σ_k ε) + μ` (plus the level conditioning), with the same [`EmbeddingNormalizer`]
//! and schedule the decoder uses; the targets stay the next clean tokens. Targets after the last
//! noisy input are not scored, since at inference noisy slots only trail the sequence. Prompt
//! dropout trains the unconditional row of classifier-free guidance.
//!
//! The backbone is adapted with burn's own LoRA ([`Module::apply_lora`]: frozen base, trainable
//! `A`, `B` factors on the chosen projections) or fully fine-tuned; AdamW with linear warm-up and
//! cosine decay, gradient accumulation and per-tensor gradient-norm clipping (burn's
//! [`GradientClippingConfig::Norm`]). Parts outside the backbone (Janus' aligner and image
//! head, LlamaGen's class table and caption projection, any caption encoder) stay frozen.
//!
//! A run directory holds `state.json` (step reached, settings, the current checkpoint),
//! `checkpoint-NNNNNNN/` (the trainable parameters and the optimizer state, as burnpack records
//! keyed by parameter id) and `log.jsonl`. A checkpoint is written into a `.partial` folder and
//! renamed when complete, and `state.json` is replaced after it, so an interrupted or failed
//! write (disk full) leaves the previous checkpoint in force. The data order and every random
//! draw are functions of the seed and the step, so a resumed run continues mid-epoch exactly
//! where it stopped.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::{Lora, Module, ParamGroup};
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{
    AdamWConfig, GradientsAccumulator, GradientsParams, ModuleOptimizer, MultiGradientsParams,
};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sjd2_core::{
    EmbeddingNormalizer, JacobiDenoiser, NormalizationKind, Prompt, Role, ScheduleTable,
    sinusoidal_level_embedding,
};
use sjd2_models::llama::Backbone;
use sjd2_models::{ImageIo, LlamaT2I, TrainingBatch, TrainingExample};

use super::data::Example;
use crate::error::{Result, TrainError, io};
use crate::lm_train::{LevelInput, NoiseOptions, SegmentPattern, masked_cross_entropy};
use crate::run::{RunDir, learning_rate, scalar};

/// Which backbone projections get LoRA adapters: regular expressions over parameter paths such
/// as `layers.3.self_attn.q_proj.weight`.
pub mod targets {
    /// The four attention projections.
    pub const ATTENTION: &str = r"self_attn\.(q|k|v|o)_proj\.weight$";
    /// Attention and the three SwiGLU projections (the default).
    pub const ATTENTION_MLP: &str =
        r"(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)\.weight$";
}

/// LoRA settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraOptions {
    /// Rank `r` of the adapters.
    pub rank: usize,
    /// Scale numerator: the update is `(alpha / r)·A·B`.
    pub alpha: f64,
    /// Regular expressions selecting the adapted weights ([`targets`]).
    pub targets: Vec<String>,
}

impl LoraOptions {
    /// Rank `rank`, `alpha = 2·rank`, every attention and MLP projection.
    pub fn new(rank: usize) -> Self {
        Self {
            rank,
            alpha: 2.0 * rank as f64,
            targets: vec![targets::ATTENTION_MLP.to_string()],
        }
    }
}

/// Settings of a fine-tune. Every field but `checkpoint_every` must be the same to resume a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinetuneOptions {
    /// `Some`: LoRA adapters over a frozen base; `None`: full fine-tuning of the backbone.
    pub lora: Option<LoraOptions>,
    /// Optimizer steps.
    pub steps: usize,
    /// Sequences per micro-batch.
    pub batch: usize,
    /// Micro-batches per optimizer step (the global batch is `batch × grad_accum`).
    pub grad_accum: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Linear warm-up steps.
    pub warmup: usize,
    /// Final learning rate of the cosine decay, as a fraction of `lr`.
    pub min_lr_ratio: f64,
    /// AdamW weight decay.
    pub weight_decay: f32,
    /// Clip each parameter's gradient to this L2 norm (burn clips per tensor).
    pub clip_norm: Option<f32>,
    /// Noise levels, schedule, segments, level conditioning.
    #[serde(with = "noise_serde")]
    pub noise: NoiseOptions,
    /// Normalization statistics (must match the decoder's).
    #[serde(with = "normalization_serde")]
    pub normalization: NormalizationKind,
    /// Probability of training a sequence as the unconditional row.
    pub prompt_dropout: f64,
    /// Examples held out from the end of the data for the evaluation loss.
    pub held_out: usize,
    /// Steps between checkpoints.
    pub checkpoint_every: usize,
    /// Seed of the adapters' initialization, the data order, dropout and noise.
    pub seed: u64,
}

impl Default for FinetuneOptions {
    /// LoRA rank 16 on every projection, 1 000 steps of batch 8, lr 1e-4 (warm-up 50, cosine to
    /// 10 %), weight decay 0.01, clipping at 1.0, K = 20 levels on the default schedule with
    /// increasing levels along 8–48-slot segments and sinusoidal level conditioning, per-dimension
    /// normalization, prompt dropout 0.1, 16 held-out examples, a checkpoint every 100 steps.
    fn default() -> Self {
        Self {
            lora: Some(LoraOptions::new(16)),
            steps: 1000,
            batch: 8,
            grad_accum: 1,
            lr: 1e-4,
            warmup: 50,
            min_lr_ratio: 0.1,
            weight_decay: 0.01,
            clip_norm: Some(1.0),
            noise: NoiseOptions::default(),
            normalization: NormalizationKind::PerDimension,
            prompt_dropout: 0.1,
            held_out: 16,
            checkpoint_every: 100,
            seed: 0,
        }
    }
}

impl FinetuneOptions {
    fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, reason: &str| {
            Err(TrainError::Config {
                field,
                reason: reason.into(),
            })
        };
        if self.steps == 0 || self.batch == 0 || self.grad_accum == 0 {
            return bad("steps/batch/grad_accum", "must be >= 1");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("lr", "must be a positive number");
        }
        if !(0.0..=1.0).contains(&self.prompt_dropout) {
            return bad("prompt_dropout", "must be in [0, 1]");
        }
        if self.checkpoint_every == 0 {
            return bad("checkpoint_every", "must be >= 1");
        }
        let n = &self.noise;
        if n.levels == 0
            || n.segment_len.0 == 0
            || n.segment_len.0 > n.segment_len.1
            || n.segments.0 > n.segments.1
        {
            return bad(
                "noise",
                "levels >= 1 and non-empty segment ranges are required",
            );
        }
        if let Some(l) = &self.lora
            && (l.rank == 0 || l.targets.is_empty())
        {
            return bad("lora", "rank >= 1 and at least one target are required");
        }
        Ok(())
    }

    /// The decoder settings a model trained with these options needs (`sjd2.json`): the noise
    /// schedule, `K` = the trained levels, the level conditioning and the normalization.
    pub fn settings(&self) -> sjd2_models::finetuned::Sjd2Settings {
        sjd2_models::finetuned::Sjd2Settings::new(
            self.noise.schedule,
            self.noise.levels,
            self.noise.conditioning == LevelInput::Sinusoidal,
            self.normalization,
        )
    }

    /// The settings a resumed run must share (everything but `checkpoint_every`).
    fn fingerprint(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.remove("checkpoint_every");
        }
        v
    }
}

mod noise_serde {
    use super::{LevelInput, NoiseOptions, SegmentPattern};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use sjd2_models::finetuned::{schedule_fields, schedule_from_fields};

    #[derive(Serialize, Deserialize)]
    struct Repr {
        levels: usize,
        schedule: String,
        sigma_min: Option<f64>,
        sigma_max: Option<f64>,
        rho: Option<f64>,
        pattern: String,
        conditioning: String,
        segment_len: (usize, usize),
        segments: (usize, usize),
    }

    pub fn serialize<S: Serializer>(n: &NoiseOptions, s: S) -> Result<S::Ok, S::Error> {
        let (schedule, sigma_min, sigma_max, rho) = schedule_fields(n.schedule);
        Repr {
            levels: n.levels,
            schedule,
            sigma_min,
            sigma_max,
            rho,
            pattern: match n.pattern {
                SegmentPattern::Constant => "constant",
                SegmentPattern::Increasing => "increasing",
            }
            .into(),
            conditioning: match n.conditioning {
                LevelInput::None => "none",
                LevelInput::Sinusoidal => "sinusoidal",
            }
            .into(),
            segment_len: n.segment_len,
            segments: n.segments,
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NoiseOptions, D::Error> {
        use serde::de::Error;
        let r = Repr::deserialize(d)?;
        let schedule = schedule_from_fields(&r.schedule, r.sigma_min, r.sigma_max, r.rho)
            .map_err(D::Error::custom)?;
        Ok(NoiseOptions {
            levels: r.levels,
            schedule,
            pattern: match r.pattern.as_str() {
                "constant" => SegmentPattern::Constant,
                _ => SegmentPattern::Increasing,
            },
            conditioning: match r.conditioning.as_str() {
                "sinusoidal" => LevelInput::Sinusoidal,
                _ => LevelInput::None,
            },
            segment_len: r.segment_len,
            segments: r.segments,
        })
    }
}

mod normalization_serde {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use sjd2_core::NormalizationKind;
    use sjd2_models::finetuned::{normalization_from_name, normalization_name};

    pub fn serialize<S: Serializer>(n: &NormalizationKind, s: S) -> Result<S::Ok, S::Error> {
        normalization_name(*n).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NormalizationKind, D::Error> {
        normalization_from_name(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// One optimizer step's report.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FinetuneStep {
    /// Step just taken (0-based).
    pub step: usize,
    /// Steps in all.
    pub total: usize,
    /// Mean next-clean-token cross-entropy over the scored targets.
    pub loss: f32,
    /// The same over targets whose input was clean.
    pub clean_loss: f32,
    /// Learning rate used.
    pub lr: f64,
    /// Scored target tokens per second in this step.
    pub tokens_per_s: f64,
}

/// A fine-tuning run: the model (on an autodiff device), optimizer and data.
pub struct Finetuner {
    /// Always `Some` between calls (taken only while the optimizer updates the backbone, so that
    /// no second handle keeps the old parameters alive and the update can happen in place).
    model: Option<LlamaT2I>,
    optim: ModuleOptimizer,
    opts: FinetuneOptions,
    train: Vec<Example>,
    held_out: Vec<Example>,
    step: usize,
    run: RunDir,
    table: ScheduleTable,
    normalizer: Option<EmbeddingNormalizer>,
    order: (usize, Vec<usize>),
    devices: Vec<Device>,
}

impl std::fmt::Debug for Finetuner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Finetuner")
            .field("step", &self.step)
            .field("run", &self.run)
            .field("train", &self.train.len())
            .field("held_out", &self.held_out.len())
            .finish_non_exhaustive()
    }
}

/// Redraws every LoRA `A` factor, `N(0, 1/r)` as burn draws it, from the run's seed with our own
/// generator: burn draws from the device's generator, which every thread of the process shares,
/// so two runs started together would otherwise not get the same adapters for the same seed.
struct SeededAdapters {
    rng: ChaCha8Rng,
    std: f64,
    path: Vec<String>,
}

impl SeededAdapters {
    fn new(seed: u64, rank: usize) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x4C6F_5241_4164_6170),
            std: 1.0 / rank as f64,
            path: Vec::new(),
        }
    }
}

impl burn::module::ModuleMapper for SeededAdapters {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<Tensor<D>>,
    ) -> burn::module::Param<Tensor<D>> {
        let is_a = self.path.last().is_some_and(|n| n == "a");
        if !is_a || !self.path.iter().any(|n| n == "lora") {
            return param;
        }
        let (rng, std) = (&mut self.rng, self.std);
        param.map(|t| {
            let (shape, dtype, device, grad) =
                (t.shape(), t.dtype(), t.device(), t.is_require_grad());
            let n = shape.num_elements();
            let v: Vec<f32> = (0..n)
                .map(|_| {
                    let z: f64 = StandardNormal.sample(rng);
                    (z * std) as f32
                })
                .collect();
            Tensor::<D>::from_data(TensorData::new(v, shape), &device)
                .cast(dtype)
                .set_require_grad(grad)
        })
    }
}

/// The adapter factors of every LoRA'd weight (`….weight.lora.a` / `.b`).
fn adapter_group() -> Result<ParamGroup> {
    ParamGroup::from_regex(r"\.lora\.(a|b)$").map_err(|e| TrainError::Config {
        field: "lora",
        reason: format!("{e:?}"),
    })
}

fn record_error(path: &Path) -> impl FnOnce(burn::store::RecordError) -> TrainError + '_ {
    move |e| TrainError::Checkpoint {
        path: path.display().to_string(),
        detail: e.to_string(),
    }
}

const STATE: &str = "state.json";

fn gone() -> TrainError {
    TrainError::Tensor("the model was lost in a failed optimizer update".into())
}

impl Finetuner {
    /// Starts (or resumes) a run in `dir`. `model` must live on an autodiff device
    /// (`Device::flex().autodiff()`, or a GPU's); the last `opts.held_out` examples of `data` are
    /// held out.
    ///
    /// # Errors
    /// Invalid settings; too little data; a run directory whose `state.json` holds other
    /// settings (naming them) or an unreadable checkpoint; a LoRA target that matches nothing.
    pub fn new(
        model: LlamaT2I,
        data: Vec<Example>,
        opts: FinetuneOptions,
        dir: &Path,
    ) -> Result<Self> {
        opts.validate()?;
        if data.len() <= opts.held_out {
            return Err(TrainError::Config {
                field: "held_out",
                reason: format!(
                    "{} examples leave none to train on after holding out {}",
                    data.len(),
                    opts.held_out
                ),
            });
        }
        let model = attach_lora(model, &opts)?;
        let mut optim_cfg = AdamWConfig::new().with_weight_decay(opts.weight_decay);
        if let Some(c) = opts.clip_norm {
            optim_cfg = optim_cfg.with_grad_clipping(Some(GradientClippingConfig::Norm(c)));
        }
        let mut optim = optim_cfg.init();
        let run = RunDir::open(dir)?;
        let mut model = model;
        let mut step = 0;
        if let Some(state) = read_state(dir)? {
            let saved = state.get("settings").cloned().unwrap_or_default();
            let now = opts.fingerprint();
            if saved != now {
                let differing: Vec<String> = now
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(k, v)| saved.get(k.as_str()) != Some(v))
                    .map(|(k, v)| {
                        format!(
                            "{k}: run has {}, asked {v}",
                            saved.get(k.as_str()).cloned().unwrap_or_default()
                        )
                    })
                    .collect();
                return Err(TrainError::Config {
                    field: "resume",
                    reason: format!(
                        "{} holds a run with other settings ({}); use another directory or the same settings",
                        dir.display(),
                        differing.join("; ")
                    ),
                });
            }
            let data_n = state
                .get("examples")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0) as usize;
            if data_n != data.len() {
                return Err(TrainError::Config {
                    field: "resume",
                    reason: format!(
                        "{} was trained on {data_n} examples, this data has {}",
                        dir.display(),
                        data.len()
                    ),
                });
            }
            let ck;
            (model, ck, step) = load_checkpoint(model, dir, &state, opts.lora.is_some())?;
            let opt_path = ck.join("optimizer.bpk");
            optim = optim.load(&opt_path).map_err(record_error(&opt_path))?;
            tracing::info!(step, "resuming");
        }
        let table = opts.noise.schedule.table(opts.noise.levels)?;
        let mut train = data;
        let held_out = train.split_off(train.len() - opts.held_out);
        Ok(Self {
            model: Some(model),
            optim,
            opts,
            train,
            held_out,
            step,
            run,
            table,
            normalizer: None,
            order: (usize::MAX, Vec::new()),
            devices: Vec::new(),
        })
    }

    /// Steps taken so far.
    pub fn step(&self) -> usize {
        self.step
    }

    /// Whether every step has been taken.
    pub fn done(&self) -> bool {
        self.step >= self.opts.steps
    }

    /// The model being trained (with its adapters).
    ///
    /// # Errors
    /// Only after a failed optimizer update (the run cannot continue).
    pub fn model(&self) -> Result<&LlamaT2I> {
        self.model.as_ref().ok_or_else(gone)
    }

    /// The settings.
    pub fn options(&self) -> &FinetuneOptions {
        &self.opts
    }

    /// The examples held out of training (the last `held_out` of the data).
    pub fn held_out_examples(&self) -> &[Example] {
        &self.held_out
    }

    /// Appends a line to the run's `log.jsonl`.
    pub(super) fn log(&self, line: &serde_json::Value) -> Result<()> {
        self.run.log(line)
    }

    /// The trained model (adapters still attached; [`super::export()`] merges them).
    ///
    /// # Errors
    /// Only after a failed optimizer update.
    pub fn into_model(self) -> Result<LlamaT2I> {
        self.model.ok_or_else(gone)
    }

    /// Example `g` of the endless, per-epoch shuffled stream of training examples.
    fn example(&mut self, g: usize) -> usize {
        let n = self.train.len();
        let epoch = g / n;
        if self.order.0 != epoch {
            let mut idx: Vec<usize> = (0..n).collect();
            idx.shuffle(&mut ChaCha8Rng::seed_from_u64(
                self.opts.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            ));
            self.order = (epoch, idx);
        }
        self.order.1[g % n]
    }

    fn normalizer(&mut self) -> Result<EmbeddingNormalizer> {
        // A fully fine-tuned shared embedding table moves: recompute its statistics each step.
        let model = self.model()?;
        let moving = self.opts.lora.is_none() && matches!(model.image_io(), ImageIo::Shared);
        if let (Some(n), false) = (&self.normalizer, moving) {
            return Ok(n.clone());
        }
        let table = model.image_embedding_table()?.detach().inner();
        let n = EmbeddingNormalizer::from_table(table, self.opts.normalization)?;
        self.normalizer = Some(n.clone());
        Ok(n)
    }

    /// The examples of micro-batch `m` of `step`.
    fn micro_batch(&mut self, step: usize, m: usize) -> Vec<Example> {
        let first = (step * self.opts.grad_accum + m) * self.opts.batch;
        (0..self.opts.batch)
            .map(|i| {
                let k = self.example(first + i);
                self.train[k].clone()
            })
            .collect()
    }

    /// Takes one optimizer step: `grad_accum` micro-batches, spread over the devices of
    /// [`Finetuner::with_devices`] (device `k` takes micro-batches `k, k + n, …`). Each
    /// micro-batch draws its dropout and noise from its own seed, so the step is the same on
    /// one device or several.
    ///
    /// # Errors
    /// Tensor and model errors.
    pub fn train_step(&mut self) -> Result<FinetuneStep> {
        let started = Instant::now();
        let step = self.step;
        let micro = self.opts.grad_accum;
        let batches: Vec<Vec<Example>> = (0..micro).map(|m| self.micro_batch(step, m)).collect();
        let seed = |m: usize| {
            self.opts
                .seed
                .wrapping_add((step as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D))
                .wrapping_add((m as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
        };
        let seeds: Vec<u64> = (0..micro).map(seed).collect();
        let normalizer = self.normalizer()?;
        let model = self.model.take().ok_or_else(gone)?;
        let ctx = MicroContext {
            opts: &self.opts,
            table: &self.table,
            scale: 1.0 / micro as f32,
        };
        let result = if self.devices.len() <= 1 {
            ctx.run(&model, &normalizer, &batches, &seeds, 0, 1)
                .map(|r| (r.0, r.1, r.2, r.3, None))
        } else {
            let n = self.devices.len();
            let replicas: Vec<LlamaT2I> = self.devices.iter().map(|d| model.to_device(d)).collect();
            let outcomes: Vec<Result<(GradientsParams, f32, f32, usize)>> =
                std::thread::scope(|s| {
                    let handles: Vec<_> = replicas
                        .iter()
                        .enumerate()
                        .map(|(k, replica)| {
                            let (ctx, batches, seeds) = (&ctx, &batches, &seeds);
                            s.spawn(move || {
                                let table = replica.image_embedding_table()?.detach().inner();
                                let norm =
                                    EmbeddingNormalizer::from_table(table, ctx.opts.normalization)?;
                                ctx.run(replica, &norm, batches, seeds, k, n)
                            })
                        })
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| {
                            h.join().unwrap_or_else(|_| {
                                Err(TrainError::Tensor(
                                    "a device's training thread panicked".into(),
                                ))
                            })
                        })
                        .collect()
                });
            let mut multi = MultiGradientsParams { grads: Vec::new() };
            let (mut l, mut c, mut t) = (0f32, 0f32, 0usize);
            let mut failed = None;
            for (k, o) in outcomes.into_iter().enumerate() {
                match o {
                    Ok((g, a, b, n)) => {
                        multi.grads.push((g, self.devices[k].clone()));
                        l += a;
                        c += b;
                        t += n;
                    }
                    Err(e) => failed = Some(e),
                }
            }
            match failed {
                Some(e) => Err(e),
                None => Ok((GradientsParams::new(), l, c, t, Some(multi))),
            }
        };
        let (grads, loss_sum, clean_sum, tokens, multi) = match result {
            Ok(r) => r,
            Err(e) => {
                self.model = Some(model);
                return Err(e);
            }
        };
        let lr = learning_rate(
            step,
            self.opts.steps,
            self.opts.warmup,
            self.opts.lr,
            self.opts.min_lr_ratio,
        );
        let optim = &mut self.optim;
        self.model = Some(model.map_backbone(|b| match multi {
            Some(m) => optim.step_multi(lr, b, m),
            None => optim.step(lr, b, grads),
        }));
        self.step += 1;
        let report = FinetuneStep {
            step,
            total: self.opts.steps,
            loss: loss_sum / micro as f32,
            clean_loss: clean_sum / micro as f32,
            lr,
            tokens_per_s: tokens as f64 / started.elapsed().as_secs_f64().max(1e-9),
        };
        self.run.log(&json!({"step": step, "loss": report.loss, "clean_loss": report.clean_loss, "lr": lr, "tokens_per_s": report.tokens_per_s}))?;
        Ok(report)
    }

    /// Trains data-parallel on `devices` (autodiff devices; the model's own device should be
    /// the first): every device holds a full copy of the model, forked from the trained one at
    /// each step, computes the gradients of its share of the micro-batches, and burn's
    /// [`MultiGradientsParams`] sums them for one optimizer step
    /// ([`ModuleOptimizer::step_multi`]). With one device (the default) nothing is copied.
    pub fn with_devices(mut self, devices: Vec<Device>) -> Self {
        self.devices = devices;
        self
    }
}

/// What computing a micro-batch's gradients needs besides the model.
struct MicroContext<'a> {
    opts: &'a FinetuneOptions,
    table: &'a ScheduleTable,
    /// Loss scale (1 / micro-batches per step).
    scale: f32,
}

impl MicroContext<'_> {
    /// Gradients (summed) and loss sums of micro-batches `first, first + stride, …` on `model`.
    fn run(
        &self,
        model: &LlamaT2I,
        normalizer: &EmbeddingNormalizer,
        batches: &[Vec<Example>],
        seeds: &[u64],
        first: usize,
        stride: usize,
    ) -> Result<(GradientsParams, f32, f32, usize)> {
        let mut accum = GradientsAccumulator::<Backbone>::new();
        let (mut loss_sum, mut clean_sum, mut tokens) = (0f32, 0f32, 0usize);
        for m in (first..batches.len()).step_by(stride) {
            let mut rng = ChaCha8Rng::seed_from_u64(seeds[m]);
            let (loss, clean, count) = micro_batch_loss(
                model,
                &batches[m],
                &mut rng,
                self.opts,
                self.table,
                normalizer,
            )?;
            loss_sum += scalar(loss.clone().inner(), "loss")?;
            clean_sum += clean;
            tokens += count;
            let grads =
                GradientsParams::from_grads((loss * self.scale).backward(), model.backbone());
            accum.accumulate(model.backbone(), grads);
        }
        Ok((accum.grads(), loss_sum, clean_sum, tokens))
    }
}

/// Loss of one micro-batch: `(mean loss tensor, clean-input loss, scored tokens)`; prompt
/// dropout and noise drawn from `rng`.
fn micro_batch_loss(
    model: &LlamaT2I,
    examples: &[Example],
    rng: &mut ChaCha8Rng,
    opts: &FinetuneOptions,
    table: &ScheduleTable,
    normalizer: &EmbeddingNormalizer,
) -> Result<(Tensor<1>, f32, usize)> {
    let prompts: Vec<Prompt> = examples
        .iter()
        .map(|e| Prompt::new(e.prompt.clone()))
        .collect();
    let roles: Vec<Role> = examples
        .iter()
        .map(|_| {
            if rng.random_bool(opts.prompt_dropout) {
                Role::Unconditional
            } else {
                Role::Conditional
            }
        })
        .collect();
    let rows: Vec<TrainingExample<'_>> = examples
        .iter()
        .zip(&prompts)
        .zip(&roles)
        .map(|((e, p), &role)| TrainingExample {
            prompt: p,
            role,
            codes: &e.codes,
        })
        .collect();
    let batch = model.training_batch(&rows)?;
    let plan = NoisePlan::draw(&batch, &opts.noise, table, model.hidden_size(), rng);
    let count = plan.scored.iter().filter(|&&m| m).count();
    let sinusoidal = opts.noise.conditioning == LevelInput::Sinusoidal;
    let (loss, clean_loss) = next_clean_token_loss(model, batch, &plan, normalizer, sinusoidal)?;
    let clean_loss = scalar(clean_loss.inner(), "clean-input loss")?;
    Ok((loss, clean_loss, count))
}

impl Finetuner {
    /// Mean next-clean-token loss on the held-out examples, with noise and dropout drawn from a
    /// fixed seed (so that two calls on the same parameters agree): conditional rows only.
    /// Appended to `log.jsonl` as `{"step", "held_out_loss"}`.
    ///
    /// # Errors
    /// No held-out examples; tensor and model errors.
    pub fn held_out_loss(&mut self) -> Result<f32> {
        if self.held_out.is_empty() {
            return Err(TrainError::Config {
                field: "held_out",
                reason: "no held-out examples".into(),
            });
        }
        let opts = FinetuneOptions {
            prompt_dropout: 0.0,
            ..self.opts.clone()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(self.opts.seed ^ 0x05EE_D0F4_E1D0_u64);
        let normalizer = self.normalizer()?;
        let model = self.model()?;
        let mut total = 0f32;
        for chunk in self.held_out.chunks(self.opts.batch) {
            let (loss, _, _) =
                micro_batch_loss(model, chunk, &mut rng, &opts, &self.table, &normalizer)?;
            total += scalar(loss.inner(), "held-out loss")? * chunk.len() as f32;
        }
        let loss = total / self.held_out.len() as f32;
        self.run
            .log(&json!({"step": self.step, "held_out_loss": loss}))?;
        Ok(loss)
    }

    /// Writes a checkpoint of the current step (see the module documentation): the trainable
    /// parameters (the adapters alone with LoRA) and the optimizer state into
    /// `checkpoint-NNNNNNN/`, then `state.json`; older checkpoints are removed afterwards.
    ///
    /// # Errors
    /// I/O errors (the previous checkpoint then stays in force).
    pub fn save_checkpoint(&self) -> Result<PathBuf> {
        let name = format!("checkpoint-{:07}", self.step);
        let partial = self.run.file(&format!("{name}.partial"));
        if partial.exists() {
            std::fs::remove_dir_all(&partial).map_err(io(&partial))?;
        }
        std::fs::create_dir_all(&partial).map_err(io(&partial))?;
        let backbone = self.model()?.backbone().clone();
        let record = match &self.opts.lora {
            Some(_) => backbone.into_record_group(adapter_group()?),
            None => backbone.into_record(),
        };
        let rec_path = partial.join("trainable.bpk");
        record.save(&rec_path).map_err(record_error(&rec_path))?;
        let opt_path = partial.join("optimizer.bpk");
        self.optim
            .save(&opt_path)
            .map_err(record_error(&opt_path))?;
        let done = self.run.file(&name);
        if done.exists() {
            std::fs::remove_dir_all(&done).map_err(io(&done))?;
        }
        std::fs::rename(&partial, &done).map_err(io(&done))?;
        let state = json!({
            "step": self.step,
            "checkpoint": name,
            "examples": self.train.len() + self.held_out.len(),
            "settings": self.opts.fingerprint(),
        });
        self.run.save_state(&state)?;
        // Older checkpoints are no longer referenced.
        if let Ok(entries) = std::fs::read_dir(self.run.file("")) {
            for e in entries.flatten() {
                let n = e.file_name().to_string_lossy().to_string();
                if n.starts_with("checkpoint-") && n != name {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        Ok(done)
    }

    /// Trains to the last step, writing a checkpoint every `checkpoint_every` steps and at the
    /// end; `on_step` sees every step, `on_checkpoint` every checkpoint (for an evaluation).
    ///
    /// # Errors
    /// As [`Finetuner::train_step`] and [`Finetuner::save_checkpoint`], and whatever
    /// `on_checkpoint` returns.
    pub fn run(
        &mut self,
        mut on_step: impl FnMut(&FinetuneStep),
        mut on_checkpoint: impl FnMut(&mut Self) -> Result<()>,
    ) -> Result<()> {
        while !self.done() {
            let report = self.train_step()?;
            on_step(&report);
            if self.step.is_multiple_of(self.opts.checkpoint_every) || self.done() {
                self.save_checkpoint()?;
                on_checkpoint(self)?;
            }
        }
        Ok(())
    }
}

/// The model of a run directory's last checkpoint: `model` (the base the run started from, on
/// any device) with the run's adapters attached and loaded (LoRA) or its trained parameters
/// (full fine-tuning), and the run's settings. What `finetune export` merges and writes.
///
/// # Errors
/// A directory without a run, a corrupt `state.json` or checkpoint, a base that does not fit.
pub fn load_trained(model: LlamaT2I, run: &Path) -> Result<(LlamaT2I, FinetuneOptions, usize)> {
    let state = read_state(run)?.ok_or_else(|| TrainError::Data {
        path: run.display().to_string(),
        detail: "no fine-tuning run here (no state.json)".into(),
    })?;
    let corrupt = |detail: String| TrainError::Checkpoint {
        path: run.join(STATE).display().to_string(),
        detail,
    };
    let opts: FinetuneOptions = serde_json::from_value(
        state
            .get("settings")
            .cloned()
            .map(|mut s| {
                if let Some(o) = s.as_object_mut() {
                    o.insert("checkpoint_every".into(), json!(1));
                }
                s
            })
            .unwrap_or_default(),
    )
    .map_err(|e| corrupt(format!("settings: {e}")))?;
    let model = attach_lora(model, &opts)?;
    let (model, _, step) = load_checkpoint(model, run, &state, opts.lora.is_some())?;
    Ok((model, opts, step))
}

/// `state.json` of a run directory, if there is one.
fn read_state(run: &Path) -> Result<Option<serde_json::Value>> {
    let path = run.join(STATE);
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| TrainError::Checkpoint {
            path: path.display().to_string(),
            detail: e.to_string(),
        })
}

/// Attaches burn's LoRA adapters to the projections `opts.lora` names (nothing for full
/// fine-tuning), with the `A` factors drawn from the run's seed.
///
/// # Errors
/// An invalid target expression, or targets that match no weight.
fn attach_lora(model: LlamaT2I, opts: &FinetuneOptions) -> Result<LlamaT2I> {
    let Some(l) = &opts.lora else {
        return Ok(model);
    };
    let bad = |reason: String| TrainError::Config {
        field: "lora.targets",
        reason,
    };
    let group =
        ParamGroup::from_any_regexes(l.targets.clone()).map_err(|e| bad(format!("{e:?}")))?;
    let lora = Lora::new(l.rank, l.alpha).set_param_group(group);
    let mut seeded = SeededAdapters::new(opts.seed, l.rank);
    let model = model.map_backbone(|b| b.apply_lora(lora).map(&mut seeded));
    let adapted = sjd2_models::weights::param_paths(model.backbone())
        .iter()
        .filter(|p| p.ends_with(".lora.a"))
        .count();
    if adapted == 0 {
        return Err(bad(format!(
            "{:?} match no 2-D weight of the backbone",
            l.targets
        )));
    }
    tracing::info!(adapted, rank = l.rank, "LoRA adapters attached");
    Ok(model)
}

/// Loads the trainable parameters of the checkpoint `state.json` names into `model` (whose
/// adapters, with LoRA, are already attached); returns the model, the checkpoint folder and the
/// step it was written at.
fn load_checkpoint(
    model: LlamaT2I,
    run: &Path,
    state: &serde_json::Value,
    partial: bool,
) -> Result<(LlamaT2I, PathBuf, usize)> {
    let ck = run.join(
        state
            .get("checkpoint")
            .and_then(|v| v.as_str())
            .unwrap_or_default(),
    );
    let rec_path = ck.join("trainable.bpk");
    let record = burn::store::ModuleRecord::load(&rec_path)
        .map_err(record_error(&rec_path))?
        .allow_partial(partial);
    let model =
        model.try_map_backbone(|b| b.try_load_record(record).map_err(record_error(&rec_path)))?;
    let step = state
        .get("step")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0) as usize;
    Ok((model, ck, step))
}

/// Where a training batch gets noise, and the noise itself: per position (row-major
/// `rows × len`) the schedule's `α_k`, `σ_k`, the level `k / K`, whether the input is noisy,
/// whether its target is scored, and the standard normal draws `ε` (`rows × len × hidden`).
#[derive(Debug, Clone, PartialEq)]
pub struct NoisePlan {
    /// `α_k` (1 where clean).
    pub alpha: Vec<f32>,
    /// `σ_k` (0 where clean).
    pub sigma: Vec<f32>,
    /// `k / K` (0 where clean).
    pub level: Vec<f32>,
    /// Whether the input is noisy.
    pub noisy: Vec<bool>,
    /// Whether the target is scored: a grid cell no later than the row's last noisy input.
    pub scored: Vec<bool>,
    /// `ε`, empty when nothing is noisy.
    pub eps: Vec<f32>,
}

impl NoisePlan {
    /// Draws `segments` segments per row over its grid-cell inputs, with levels by `pattern`
    /// (ALGORITHM §3.3), and `ε`.
    pub fn draw(
        batch: &TrainingBatch,
        n: &NoiseOptions,
        table: &ScheduleTable,
        hidden: usize,
        rng: &mut impl Rng,
    ) -> Self {
        let (b, len) = (batch.grid_inputs.len(), batch.len);
        let mut plan = Self {
            alpha: vec![1f32; b * len],
            sigma: vec![0f32; b * len],
            level: vec![0f32; b * len],
            noisy: vec![false; b * len],
            scored: batch.scored.clone(),
            eps: Vec::new(),
        };
        for (r, grid) in batch.grid_inputs.iter().enumerate() {
            if grid.is_empty() {
                continue;
            }
            let segments = rng.random_range(n.segments.0..=n.segments.1);
            let mut last = None;
            for _ in 0..segments {
                let seg = rng
                    .random_range(n.segment_len.0..=n.segment_len.1)
                    .min(grid.len());
                let start = rng.random_range(0..=grid.len() - seg);
                let constant = rng.random_range(1..=n.levels);
                for j in 0..seg {
                    let k = match n.pattern {
                        SegmentPattern::Constant => constant,
                        SegmentPattern::Increasing => {
                            (((j + 1) * n.levels).div_ceil(seg)).clamp(1, n.levels)
                        }
                    };
                    let at = r * len + grid[start + j];
                    plan.alpha[at] = table.alpha(k) as f32;
                    plan.sigma[at] = table.sigma(k) as f32;
                    plan.level[at] = k as f32 / n.levels as f32;
                    plan.noisy[at] = true;
                    last = last.max(Some(grid[start + j]));
                }
            }
            // At inference noisy slots only trail the sequence: targets after the last noisy
            // input are not trained on.
            if let Some(last) = last {
                plan.scored[r * len + last + 1..(r + 1) * len]
                    .iter_mut()
                    .for_each(|m| *m = false);
            }
        }
        if plan.noisy.iter().any(|&v| v) {
            plan.eps = (0..b * len * hidden)
                .map(|_| StandardNormal.sample(rng))
                .collect();
        }
        plan
    }
}

/// The next-clean-token loss of a batch under a noise plan: noisy inputs become
/// `denormalize(α·normalize(e₀) + σ·ε)` (+ the sinusoidal level embedding), a constant for the
/// optimizer; the mean cross-entropy over scored targets, and the same over scored targets whose
/// input was clean (detached, for reporting). `normalizer` must hold the statistics of the
/// model's image embedding table, as the decoder computes them.
///
/// # Errors
/// Shape errors, a plan that does not fit the batch.
pub fn next_clean_token_loss(
    model: &LlamaT2I,
    batch: TrainingBatch,
    plan: &NoisePlan,
    normalizer: &EmbeddingNormalizer,
    sinusoidal: bool,
) -> Result<(Tensor<1>, Tensor<1>)> {
    let (b, len) = (batch.grid_inputs.len(), batch.len);
    let d = model.hidden_size();
    if plan.noisy.len() != b * len || !(plan.eps.is_empty() || plan.eps.len() == b * len * d) {
        return Err(TrainError::Config {
            field: "noise plan",
            reason: format!("does not fit a {b}x{len}x{d} batch"),
        });
    }
    let device = model.device();
    let inner = device.clone().inner();
    let clean = batch.embeddings;
    let x = if plan.eps.is_empty() {
        clean
    } else {
        let eps = Tensor::<3>::from_data(TensorData::new(plan.eps.clone(), [b, len, d]), &inner);
        let a = Tensor::<3>::from_data(TensorData::new(plan.alpha.clone(), [b, len, 1]), &inner);
        let s = Tensor::<3>::from_data(TensorData::new(plan.sigma.clone(), [b, len, 1]), &inner);
        let x0 = clean.clone().detach().inner();
        let mut nz = normalizer.denormalize(normalizer.normalize(x0) * a + eps * s);
        if sinusoidal {
            let t = Tensor::<2>::from_data(TensorData::new(plan.level.clone(), [b, len]), &inner);
            nz = nz + sinusoidal_level_embedding(t, d);
        }
        let mask =
            Tensor::<3, Bool>::from_data(TensorData::new(plan.noisy.clone(), [b, len, 1]), &device)
                .expand([b, len, d]);
        clean.mask_where(mask, nz.autodiff())
    };
    let logits = model.training_logits(x, &batch.hidden_prefix)?;
    let targets: Vec<i64> = batch.targets.iter().map(|&t| i64::from(t)).collect();
    let targets = Tensor::<2, Int>::from_data(TensorData::new(targets, [b, len]), &device);
    let mask_of = |v: Vec<bool>| {
        let f: Vec<f32> = v.into_iter().map(|m| if m { 1.0 } else { 0.0 }).collect();
        Tensor::<2>::from_data(TensorData::new(f, [b, len]), &device)
    };
    let clean_scored: Vec<bool> = plan
        .scored
        .iter()
        .zip(&plan.noisy)
        .map(|(&s, &z)| s && !z)
        .collect();
    let (loss, nll) = masked_cross_entropy(logits, targets, mask_of(plan.scored.clone()));
    let cm = mask_of(clean_scored);
    let denom = cm.clone().sum().clamp_min(1.0);
    Ok((loss, (nll.detach() * cm).sum() / denom))
}
