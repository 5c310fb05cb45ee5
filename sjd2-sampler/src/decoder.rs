//! [`Sjd2Decoder`]: the decoding loop shared by autoregressive, SJD and SJD2 generation.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use burn::Tensor;
use burn::tensor::{Bool, Int, TensorData};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use sjd2_core::error::tensor_to_vec;
use sjd2_core::sampling::sample_index_at;
use sjd2_core::{
    DecodeCache, Dist, Draft, EmbeddingNormalizer, Error, GuidanceStyle, ImageLayout,
    JacobiDenoiser, JacobiVerifier, ProbabilisticVerifier, Prompt, PromptRow, Result, Sampling,
    ScheduleTable, Target, Verifier, VerifyInput, ddim_step, guide_branches, ids_tensor,
    sinusoidal_level_embedding,
};

use crate::config::{
    Acceptance, DecoderConfig, LevelConditioning, LevelPolicy, Mode, Verification, Window,
};
use crate::output::{Control, FinishReason, Generation, StepEvent};
use crate::policy::{Acceptable, AcceptanceHistory, CostCurve, WindowPolicy, probe_lengths};
use crate::rows::{Row, RowPool};
use crate::window::{BufferOp, BufferSource, Commit, Prediction, SampleState, Slot, WindowRules};

/// Timed passes per probe length when measuring a cost curve (the fastest counts), after an
/// untimed one.
const PROBE_REPEATS: usize = 3;

struct NoiseSetup {
    table: ScheduleTable,
    normalizer: EmbeddingNormalizer,
}

/// Generates image tokens from a [`JacobiDenoiser`] with autoregressive, SJD or SJD2 decoding.
///
/// # Example
/// ```
/// use sjd2_core::testing::{ToyConfig, ToyModel};
/// use sjd2_core::{Device, Prompt, Sampling};
/// use sjd2_sampler::{DecoderConfig, Sjd2Decoder};
///
/// let device = Device::flex();
/// let model = ToyModel::new(ToyConfig::default(), &device)?;
/// let prompt = Prompt::new(vec![model.config().text_token(0)]);
/// let config = DecoderConfig { window_len: 3.into(), sampling: Sampling::Greedy, ..DecoderConfig::sjd() };
/// let sjd = Sjd2Decoder::new(model.clone(), config)?.generate(&prompt)?;
/// let ar = Sjd2Decoder::new(model, DecoderConfig { sampling: Sampling::Greedy, ..DecoderConfig::autoregressive() })?
///     .generate(&prompt)?;
/// assert_eq!(sjd.tokens, ar.tokens); // greedy SJD is exact
/// assert!(sjd.stats.forward_passes <= ar.stats.forward_passes);
/// # Ok::<(), sjd2_core::Error>(())
/// ```
pub struct Sjd2Decoder<M: JacobiDenoiser> {
    model: M,
    config: DecoderConfig,
    verifier: Box<dyn Verifier>,
    noise: Option<NoiseSetup>,
    /// Measured or restored cost curves by cache rows (batch shape).
    costs: Mutex<BTreeMap<usize, CostCurve>>,
    /// The adaptive window's calibration: the judged drafts of the first generation (then
    /// frozen, so that a seed gives the same tokens).
    acceptance: Mutex<AcceptanceHistory>,
}

impl<M: JacobiDenoiser> std::fmt::Debug for Sjd2Decoder<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sjd2Decoder")
            .field("config", &self.config)
            .field("verifier", &self.verifier)
            .finish_non_exhaustive()
    }
}

impl<M: JacobiDenoiser> Sjd2Decoder<M> {
    /// A decoder for `model` with a validated `config`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the field at fault; [`Error::Unsupported`] when learned
    /// level conditioning is asked of a model without a level embedding.
    pub fn new(model: M, config: DecoderConfig) -> Result<Self> {
        let mut d = Self {
            model,
            config: DecoderConfig::autoregressive(),
            verifier: Box::new(ProbabilisticVerifier),
            noise: None,
            costs: Mutex::new(BTreeMap::new()),
            acceptance: Mutex::new(AcceptanceHistory::default()),
        };
        d.set_config(config)?;
        Ok(d)
    }

    /// Replaces the configuration (validated; the decoder is unchanged on error).
    ///
    /// # Errors
    /// As [`Sjd2Decoder::new`].
    pub fn set_config(&mut self, config: DecoderConfig) -> Result<()> {
        config.validate()?;
        let noise = if config.mode == Mode::Sjd2 {
            if config.sjd2.level_conditioning == LevelConditioning::Learned {
                let probe = Tensor::<2>::zeros([1, 1], &self.model.device());
                if self.model.level_embedding(probe).is_none() {
                    return Err(Error::Unsupported(
                        "sjd2.level_conditioning = Learned, but the model has no level embedding"
                            .into(),
                    ));
                }
            }
            let table = config.sjd2.schedule.table(config.sjd2.denoising_steps)?;
            let normalizer = EmbeddingNormalizer::from_table(
                self.model.image_embedding_table()?,
                config.sjd2.normalization,
            )?;
            Some(NoiseSetup { table, normalizer })
        } else {
            None
        };
        self.verifier = match config.verification {
            Verification::Probabilistic => Box::new(ProbabilisticVerifier),
            Verification::Jacobi => Box::new(JacobiVerifier),
        };
        self.noise = noise;
        self.config = config;
        Ok(())
    }

    /// Uses a custom verification criterion instead of the configured one.
    pub fn with_verifier(mut self, verifier: impl Verifier + 'static) -> Self {
        self.verifier = Box::new(verifier);
        self
    }

    /// The cost curves this decoder has measured (or was given) for [`Window::Auto`], by the
    /// number of cache rows of the batch (samples, times two with guidance). Save them
    /// ([`CostCurve::to_json`], or serde) with [`Sjd2Decoder::acceptance_history`] so that a
    /// later process skips the measurement and the exploration and chooses the same windows.
    pub fn cost_curves(&self) -> BTreeMap<usize, CostCurve> {
        self.costs.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Uses `curves` (by cache rows, as [`Sjd2Decoder::cost_curves`] returns them) instead of
    /// measuring.
    pub fn with_cost_curves(self, curves: BTreeMap<usize, CostCurve>) -> Self {
        if let Ok(mut c) = self.costs.lock() {
            c.extend(curves);
        }
        self
    }

    /// The adaptive window's calibration: how the drafts of this decoder's first generation
    /// were accepted, by age. Generations after it start from it instead of exploring, and it
    /// no longer changes, so a seed gives the same tokens again. Save it with the cost curves
    /// ([`AcceptanceHistory::to_json`]).
    pub fn acceptance_history(&self) -> AcceptanceHistory {
        self.acceptance
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default()
    }

    /// Starts from a saved calibration (see [`Sjd2Decoder::acceptance_history`]).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] (`acceptance_history`) for invalid counts.
    pub fn with_acceptance_history(self, history: AcceptanceHistory) -> Result<Self> {
        history.validate()?;
        if let Ok(mut a) = self.acceptance.lock() {
            *a = history;
        }
        Ok(self)
    }

    /// The configuration.
    pub fn config(&self) -> &DecoderConfig {
        &self.config
    }

    /// The model.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// Generates one image's tokens.
    ///
    /// # Errors
    /// Invalid prompts ([`Error::InvalidPrompt`], [`Error::TokenOutOfRange`],
    /// [`Error::SequenceTooLong`]), non-finite logits ([`Error::NonFinite`]) and model failures.
    pub fn generate(&self, prompt: &Prompt) -> Result<Generation> {
        self.generate_with(prompt, |_| Control::Continue)
    }

    /// Generates one image's tokens, calling `on_step` after every forward pass; returning
    /// [`Control::Stop`] ends decoding with the partial result ([`FinishReason::Cancelled`]).
    ///
    /// # Errors
    /// As [`Sjd2Decoder::generate`].
    pub fn generate_with<F>(&self, prompt: &Prompt, mut on_step: F) -> Result<Generation>
    where
        F: FnMut(&StepEvent<'_>) -> Control,
    {
        let mut out = self.run(std::slice::from_ref(prompt), &mut on_step)?;
        out.pop()
            .ok_or_else(|| Error::Model("the decoder produced no sample".into()))
    }

    /// Generates a batch in one set of forward passes. Every sample accepts its own prefix, and
    /// sample `i` uses `prompt.seed` or `config.seed + i`: its tokens do not depend on the other
    /// prompts of the batch.
    ///
    /// # Errors
    /// As [`Sjd2Decoder::generate`]; the error names the index of a bad prompt.
    pub fn generate_batch(&self, prompts: &[Prompt]) -> Result<Vec<Generation>> {
        self.generate_batch_with(prompts, |_| Control::Continue)
    }

    /// [`Sjd2Decoder::generate_batch`] with a step callback (called once per running sample per
    /// pass).
    ///
    /// # Errors
    /// As [`Sjd2Decoder::generate`].
    pub fn generate_batch_with<F>(
        &self,
        prompts: &[Prompt],
        mut on_step: F,
    ) -> Result<Vec<Generation>>
    where
        F: FnMut(&StepEvent<'_>) -> Control,
    {
        self.run(prompts, &mut on_step)
    }

    /// The guided logits of the image tokens, on the host; `logits` holds the branches' rows
    /// grouped as [`DecoderConfig::guidance_branches`] orders them.
    fn guided_image_logits(&self, logits: Tensor<3>, samples: usize) -> Result<Vec<f32>> {
        let range = self.model.layout().image_token_range();
        let image_only = |t: Tensor<3>| t.narrow(2, range.start as usize, range.len());
        let style = self.model.guidance_style();
        // Raw-logit guidance is elementwise: guide the image tokens only (an eighth of
        // Chameleon's vocabulary). Other styles (log-softmax) normalize over the whole
        // vocabulary first.
        if style == GuidanceStyle::RawLogits {
            return self.guide_image_logits(image_only(logits), samples);
        }
        let logits = guide_branches(
            logits,
            samples,
            self.config.guidance_scale,
            self.config.image_guidance_scale,
            style,
        );
        tensor_to_vec(image_only(logits), "guided image logits")
    }

    /// Raw-logit guidance of image-token logits `[rows, len, image_vocab]`, copied to the host.
    fn guide_image_logits(&self, logits: Tensor<3>, samples: usize) -> Result<Vec<f32>> {
        let logits = guide_branches(
            logits,
            samples,
            self.config.guidance_scale,
            self.config.image_guidance_scale,
            GuidanceStyle::RawLogits,
        );
        tensor_to_vec(logits, "guided image logits")
    }

    /// One forward pass over a window and its guided image-token logits on the host. With
    /// raw-logit guidance the model computes the image tokens' logits only
    /// ([`JacobiDenoiser::forward_image_logits`]).
    fn pass_logits(
        &self,
        cache: &mut M::Cache,
        embeddings: Tensor<3>,
        samples: usize,
    ) -> Result<Vec<f32>> {
        if self.model.guidance_style() == GuidanceStyle::RawLogits {
            let logits = self.model.forward_image_logits(cache, embeddings)?;
            return self.guide_image_logits(logits, samples);
        }
        let logits = self.model.forward(cache, embeddings)?;
        self.guided_image_logits(logits, samples)
    }

    fn check_prompts(&self, rows: &[PromptRow<'_>], samples: usize) -> Result<usize> {
        let mut longest = 0;
        for (r, row) in rows.iter().enumerate() {
            let index = r % samples;
            if row.prompt.tokens.is_empty() {
                return Err(Error::InvalidPrompt {
                    index,
                    reason: "the prompt is empty".into(),
                });
            }
            let n = self.model.prompt_len(row).map_err(|e| match e {
                Error::InvalidPrompt { reason, .. } => Error::InvalidPrompt { index, reason },
                Error::TokenOutOfRange {
                    what,
                    token,
                    allowed,
                } => Error::TokenOutOfRange {
                    what: format!("{what} (prompt {index}, {:?} row)", row.role),
                    token,
                    allowed,
                },
                other => other,
            })?;
            longest = longest.max(n);
        }
        Ok(longest)
    }

    /// Decodes a batch: prefill, then passes of propose (window embeddings and one forward
    /// pass), verify (each sample's targets against its drafts), commit (the accepted tokens,
    /// and the cache rolled back to what stays), choose the next window, and refine (the
    /// surviving slots redrawn or denoised, the window refilled), until every sample is done.
    fn run(
        &self,
        prompts: &[Prompt],
        on_step: &mut dyn FnMut(&StepEvent<'_>) -> Control,
    ) -> Result<Vec<Generation>> {
        let start = Instant::now();
        if prompts.is_empty() {
            return Ok(Vec::new());
        }
        let cfg = &self.config;
        let model = &self.model;
        let layout = model.layout().clone();
        let target = cfg
            .max_new_tokens
            .map_or(layout.len(), |m| m.min(layout.len()));
        let samples = prompts.len();
        let branches = cfg.guidance_branches(prompts);
        let rows = PromptRow::grouped(prompts, branches);
        let longest = self.check_prompts(&rows, samples)?;
        if longest + target > model.max_sequence_len() {
            return Err(Error::SequenceTooLong {
                what: "prompt plus generated image".into(),
                needed: longest + target,
                max: model.max_sequence_len(),
            });
        }
        let max_window = self.max_window();
        // Lossy acceptance can leave up to w + 1 pending tokens; padding adds one window more.
        let capacity = longest + target + 2 * max_window + 2;
        let mut cache = model.new_cache(rows.len(), capacity)?;
        let mut rules = self.window_rules(&layout, max_window);
        let mut states: Vec<SampleState> = prompts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                SampleState::new(p.seed.unwrap_or(cfg.seed.wrapping_add(i as u64)), target)
            })
            .collect();

        let (pool, image_range) = (RowPool::new(), layout.image_token_range());
        let mut sampling_time = Duration::ZERO;

        // Pass 1: the prefill gives the first position.
        let first = model.prefill(&mut cache, &rows)?;
        let host = self.guided_image_logits(first.unsqueeze_dim::<3>(1), samples)?;
        let mut policy = self.window_policy(&mut cache, &pool, samples)?;
        rules.window_len = policy.choose(1);
        let mut fresh = vec![0usize; samples];
        let mut plans = Vec::with_capacity(samples);
        for (b, st) in states.iter_mut().enumerate() {
            let token = match layout.forced_token(0) {
                Some(t) => t,
                None => {
                    let u = st.rng.random::<f64>();
                    let what = || format!("prefill logits of sample {b}");
                    sample_row(
                        &cfg.sampling,
                        image_range.clone(),
                        &pool,
                        &host,
                        (b, b),
                        u,
                        &what,
                    )?
                    .1
                }
            };
            st.begin();
            plans.push(st.advance(&rules, &[token], Vec::new(), &mut fresh[b])?);
            st.finish_if_done(layout.len());
        }
        let mut buffer = self.update_buffer(None, &plans, &mut states, &fresh)?;
        let mut cancelled = emit(
            &states,
            &[true].repeat(samples),
            on_step,
            &[0].repeat(samples),
        );

        while !cancelled && states.iter().any(SampleState::active) {
            let active: Vec<bool> = states.iter().map(SampleState::active).collect();
            // Propose: every active sample's pending tokens and slots, in one forward pass.
            let len = states
                .iter()
                .filter(|st| st.active())
                .map(|st| st.pending + st.slots.len())
                .max()
                .unwrap_or(1);
            let lens_before = cache.lens().to_vec();
            let embeddings = self.window_embeddings(&states, len, buffer.as_ref())?;
            let embeddings = Tensor::cat(vec![embeddings; branches], 0);
            let host = self.pass_logits(&mut cache, embeddings, samples)?;

            // Verify and commit, sample by sample.
            let sampling_start = Instant::now();
            let mut commits: Vec<Option<(Commit, Vec<Prediction>)>> = Vec::with_capacity(samples);
            for (b, st) in states.iter_mut().enumerate() {
                let keep = if active[b] {
                    let (commit, predictions) = self.verify_and_commit(st, &pool, &host, b, len)?;
                    policy.observe(&commit.verified);
                    let keep = commit.cached;
                    commits.push(Some((commit, predictions)));
                    keep
                } else {
                    commits.push(None);
                    0
                };
                for r in (0..branches).map(|g| b + g * samples) {
                    cache.rollback_to(r, lens_before[r] + keep)?;
                }
            }

            // Choose the next window from finished passes only, then refine and refill.
            let pending = states.iter().map(|st| st.pending).max().unwrap_or(1);
            rules.window_len = policy.choose(pending);
            fresh.iter_mut().for_each(|f| *f = 0);
            plans.clear();
            let mut accepted_now = vec![0usize; samples];
            for (b, (st, commit)) in states.iter_mut().zip(commits).enumerate() {
                let Some((commit, predictions)) = commit else {
                    plans.push(Vec::new());
                    continue;
                };
                accepted_now[b] = commit.accepted;
                plans.push(st.advance(&rules, &commit.tokens, predictions, &mut fresh[b])?);
                st.finish_if_done(layout.len());
            }
            sampling_time += sampling_start.elapsed();
            buffer = self.update_buffer(buffer, &plans, &mut states, &fresh)?;
            tracing::trace!(len, accepted = ?accepted_now, next_window = rules.window_len, "decoding pass");
            cancelled = emit(&states, &active, on_step, &accepted_now);
        }

        if let (Some(seen), Ok(mut calibration)) = (policy.seen(), self.acceptance.lock())
            && calibration.generations() == 0
        {
            calibration.add(seen);
            calibration.count_generation();
        }
        let wall = start.elapsed();
        Ok(states
            .into_iter()
            .map(|mut st| {
                st.stats.wall_time = wall;
                st.stats.sampling_time = sampling_time;
                Generation {
                    finish_reason: st.finished.unwrap_or(FinishReason::Cancelled),
                    tokens: st.tokens,
                    stats: st.stats,
                    seed: st.seed,
                }
            })
            .collect())
    }

    /// The window-shaping settings of this configuration with windows of `window_len` slots.
    fn window_rules<'a>(&'a self, layout: &'a ImageLayout, window_len: usize) -> WindowRules<'a> {
        let cfg = &self.config;
        WindowRules {
            layout,
            window_len,
            plain_prefix: cfg.jacobi_span.plain_prefix,
            plain_suffix: cfg.jacobi_span.plain_suffix,
            draft_init: cfg.draft_init,
            draft_update: cfg.draft_update,
            noise: self
                .noise
                .as_ref()
                .map(|n| (&n.table, cfg.sjd2.level_policy)),
        }
    }

    /// The longest window a pass may draft (0 in autoregressive mode).
    fn max_window(&self) -> usize {
        match self.config.mode {
            Mode::Autoregressive => 0,
            _ => self.config.window_len.max_len(),
        }
    }

    /// Verifies sample `b`'s slots against this pass's distributions (`host` holds `len`
    /// positions per sample) and commits the outcome; returns the commit and, for each slot,
    /// the sample and distribution this pass gave its position (to refine it).
    fn verify_and_commit(
        &self,
        st: &mut SampleState,
        pool: &Arc<RowPool>,
        host: &[f32],
        b: usize,
        len: usize,
    ) -> Result<(Commit, Vec<Prediction>)> {
        let cfg = &self.config;
        let layout = self.model.layout();
        let offset = layout.image_token_range().start;
        let lossy = cfg.sjd2.acceptance == Acceptance::Lossy && cfg.mode == Mode::Sjd2;
        let base = st.pending - 1;
        let width = st.slots.len();
        let generated = st.tokens.len();
        // One uniform per sampled row, drawn in window order; the rows (softmax, filtering and
        // the draw, each over the whole image vocabulary) are then independent and run on
        // several threads where they are long enough to pay.
        let mut probs: Vec<Option<Row>> = (0..=width).map(|_| None).collect();
        let mut ys: Vec<u32> = (0..=width)
            .map(|i| layout.forced_token(generated + i).unwrap_or(0))
            .collect();
        let rows: Vec<(usize, f64)> = (0..=width)
            .filter(|&i| layout.forced_token(generated + i).is_none())
            .map(|i| (i, st.rng.random::<f64>()))
            .collect();
        let (sampling, range) = (&cfg.sampling, layout.image_token_range());
        let sampled = rows
            .par_iter()
            .with_min_len(rows_per_task(range.len()))
            .map(|&(i, u)| {
                let what = || format!("logits of sample {b} at window index {}", base + i);
                let at = (b, b * len + base + i);
                sample_row(sampling, range.clone(), pool, host, at, u, &what)
            })
            .collect::<Result<Vec<_>>>()?;
        for (&(i, _), (row, y)) in rows.iter().zip(sampled) {
            ys[i] = y;
            probs[i] = Some(row);
        }
        let targets: Vec<Target> = probs
            .iter()
            .zip(&ys)
            .map(|(p, &y)| match p {
                Some(p) => Target::Dist(Dist { offset, probs: p }),
                None => Target::Forced(y),
            })
            .collect();
        let drafts: Vec<_> = st.slots.iter().map(|x| x.draft(offset, lossy)).collect();
        let verifiable = drafts
            .iter()
            .take_while(|d| !matches!(d, Draft::Stop))
            .count();
        let input = VerifyInput {
            drafts: &drafts,
            targets: &targets,
            samples: &ys,
            top_k: cfg.sampling.top_k_value(),
        };
        let outcome = self.verifier.verify(&input, &mut st.rng)?;
        let commit = st.commit(outcome.accepted, outcome.next_token, ys[0], verifiable);
        let predictions = ys
            .iter()
            .zip(probs)
            .take(width)
            .map(|(&token, probs)| Prediction { token, probs })
            .collect();
        Ok((commit, predictions))
    }

    /// The window policy of one generation: a fixed window, or an adaptive one with this
    /// decoder's cost curve for the batch shape (measured now, on the prefilled `cache`, if it
    /// has none yet).
    fn window_policy(
        &self,
        cache: &mut M::Cache,
        pool: &Arc<RowPool>,
        samples: usize,
    ) -> Result<WindowPolicy> {
        let max = self.max_window();
        let Window::Auto { explore, .. } = self.config.window_len else {
            return Ok(WindowPolicy::fixed(max));
        };
        if self.config.mode == Mode::Autoregressive {
            return Ok(WindowPolicy::fixed(0));
        }
        let rows = cache.rows();
        let known = self.costs.lock().ok().and_then(|c| c.get(&rows).cloned());
        let curve = match known {
            Some(curve) => curve,
            None => {
                let curve = self.measure_cost_curve(cache, pool, samples, max)?;
                tracing::debug!(rows, points = ?curve.points(), "measured the cost curve");
                if let Ok(mut c) = self.costs.lock() {
                    c.insert(rows, curve.clone());
                }
                curve
            }
        };
        let sjd2 = &self.config.sjd2;
        let acceptable = match (self.noise.as_ref(), sjd2.acceptance, sjd2.level_policy) {
            (None, _, _) | (_, Acceptance::Lossy, _) => Acceptable::All,
            (Some(_), _, LevelPolicy::ByDistance) => Acceptable::Front(sjd2.denoising_steps),
            (Some(_), _, LevelPolicy::OnePerIteration) => Acceptable::Aged(sjd2.denoising_steps),
        };
        let prior = self.acceptance_history();
        Ok(WindowPolicy::auto(curve, &prior, max, explore, acceptable))
    }

    /// Times whole passes of [`probe_lengths`] on the prefilled `cache`, longest first: per
    /// length an untimed pass (the first pass of a shape pays for allocations, and the one after
    /// a longer pass for refilling the CPU caches, which a running decoder does not) and then
    /// [`PROBE_REPEATS`] timed ones in a row, as a decoder repeats a window; the fastest counts.
    /// Stand-in samples (their own random streams, never the real ones) with one pending token
    /// and `len − 1` slots (noisy in SJD2, clean drafts otherwise) go through the real loop's
    /// steps: window embeddings, forward pass, guidance and the copy to the host, verification
    /// and commit, the window's refill and SJD2's buffer update. The cache is rolled back after
    /// each pass.
    fn measure_cost_curve(
        &self,
        cache: &mut M::Cache,
        pool: &Arc<RowPool>,
        samples: usize,
        max: usize,
    ) -> Result<CostCurve> {
        let lens_before = cache.lens().to_vec();
        let mut points = Vec::new();
        for len in probe_lengths(max).into_iter().rev() {
            let mut best = f64::INFINITY;
            for repeat in 0..=PROBE_REPEATS {
                let seconds = self.probe_pass(cache, pool, samples, len)?;
                for (r, &l) in lens_before.iter().enumerate() {
                    cache.rollback_to(r, l)?;
                }
                if repeat > 0 {
                    best = best.min(seconds);
                }
            }
            points.push((len, best.max(1e-9)));
        }
        points.reverse();
        // A longer pass does the shorter one's work and more: where noise made a shorter
        // length look dearer, it costs what the longer one did.
        for i in (0..points.len().saturating_sub(1)).rev() {
            points[i].1 = points[i].1.min(points[i + 1].1);
        }
        CostCurve::new(points)
    }

    /// Seconds of one stand-in pass of `len` tokens per row (see
    /// [`Sjd2Decoder::measure_cost_curve`]); the caller rolls the cache back.
    fn probe_pass(
        &self,
        cache: &mut M::Cache,
        pool: &Arc<RowPool>,
        samples: usize,
        len: usize,
    ) -> Result<f64> {
        let device = self.model.device();
        let layout = self.model.layout();
        let token = layout.image_token_range().start;
        let (w_max, d) = (self.max_window(), self.model.hidden_size());
        let slots = len - 1;
        let rules = self.window_rules(layout, slots);
        let mut stand_ins: Vec<SampleState> = (0..samples)
            .map(|_| SampleState::stand_in(token, slots, self.noise.is_some()))
            .collect();
        let buffer = self
            .noise
            .as_ref()
            .map(|_| Tensor::<3>::zeros([samples, w_max, d], &device));
        let clock = Instant::now();
        let embeddings = self.window_embeddings(&stand_ins, len, buffer.as_ref())?;
        let branches = cache.rows() / samples.max(1);
        let embeddings = Tensor::cat(vec![embeddings; branches], 0);
        let host = self.pass_logits(cache, embeddings, samples)?;
        let mut plans = Vec::with_capacity(samples);
        let mut fresh = vec![0; samples];
        for (b, st) in stand_ins.iter_mut().enumerate() {
            let (commit, predictions) = self.verify_and_commit(st, pool, &host, b, len)?;
            plans.push(st.advance(&rules, &commit.tokens, predictions, &mut fresh[b])?);
        }
        if let Some(b) = self.update_buffer(buffer, &plans, &mut stand_ins, &fresh)? {
            // Flex computes eagerly, other backends when the result is read.
            b.sum().into_scalar::<f32>();
        }
        Ok(clock.elapsed().as_secs_f64())
    }

    /// Input embeddings `[samples, len, hidden]` of the next pass: pending tokens, then slots
    /// (token embeddings for clean and forced slots, denormalized noisy embeddings plus level
    /// conditioning for noisy ones), then padding.
    fn window_embeddings(
        &self,
        states: &[SampleState],
        len: usize,
        buffer: Option<&Tensor<3>>,
    ) -> Result<Tensor<3>> {
        let device = self.model.device();
        let s = states.len();
        let pad = self.model.layout().image_token_range().start;
        let mut ids = vec![pad; s * len];
        let mut noisy = vec![false; s * len];
        let mut slot_index = vec![0i64; s * len];
        let mut levels = vec![0f32; s * len];
        let steps = self.noise.as_ref().map_or(1, |n| n.table.steps()) as f32;
        for (b, st) in states.iter().enumerate().filter(|(_, st)| st.active()) {
            let row = &mut ids[b * len..(b + 1) * len];
            let g = st.tokens.len();
            row[..st.pending].copy_from_slice(&st.tokens[g - st.pending..]);
            for (i, slot) in st.slots.iter().enumerate() {
                let at = b * len + st.pending + i;
                match slot {
                    Slot::Noisy { level, .. } => {
                        noisy[at] = true;
                        slot_index[at] = i as i64;
                        levels[at] = *level as f32 / steps;
                    }
                    other => ids[at] = other.fed_token().unwrap_or(pad),
                }
            }
        }
        let tokens = ids_tensor(&ids, [s, len], &device);
        let clean = self.model.embed_tokens(tokens)?;
        let (Some(noise), Some(buffer)) = (&self.noise, buffer) else {
            return Ok(clean);
        };
        if !noisy.iter().any(|&n| n) {
            return Ok(clean);
        }
        let d = self.model.hidden_size();
        let idx = Tensor::<2, Int>::from_data(TensorData::new(slot_index, [s, len]), &device)
            .unsqueeze_dim::<3>(2)
            .expand([s, len, d]);
        let mut noisy_emb = noise.normalizer.denormalize(buffer.clone().gather(1, idx));
        let t = Tensor::<2>::from_data(TensorData::new(levels, [s, len]), &device);
        match self.config.sjd2.level_conditioning {
            LevelConditioning::None => {}
            LevelConditioning::Sinusoidal => {
                noisy_emb = noisy_emb + sinusoidal_level_embedding(t, d)
            }
            LevelConditioning::Learned => {
                let e = self.model.level_embedding(t).ok_or_else(|| {
                    Error::Unsupported("the model has no level embedding".into())
                })??;
                noisy_emb = noisy_emb + e;
            }
        }
        let mask = Tensor::<2, Bool>::from_data(TensorData::new(noisy, [s, len]), &device)
            .unsqueeze_dim::<3>(2)
            .expand([s, len, d]);
        Ok(clean.mask_where(mask, noisy_emb))
    }

    /// Applies the window plans to the device buffer of normalized noisy embeddings
    /// `[samples, window_len, hidden]` (SJD2 only).
    fn update_buffer(
        &self,
        old: Option<Tensor<3>>,
        plans: &[Vec<BufferOp>],
        states: &mut [SampleState],
        fresh: &[usize],
    ) -> Result<Option<Tensor<3>>> {
        let Some(noise) = &self.noise else {
            return Ok(None);
        };
        if plans.iter().all(Vec::is_empty) {
            // No slot anywhere (a plain pass, or every sample done): nothing refers to the old
            // buffer any more and no noise is drawn, so the pass costs what an AR pass does.
            return Ok(None);
        }
        let device = self.model.device();
        let (s, w, d) = (states.len(), self.max_window(), self.model.hidden_size());
        let f = fresh.iter().copied().max().unwrap_or(0).max(1);
        let mut eps = vec![0f32; s * f * d];
        for (b, st) in states.iter_mut().enumerate() {
            for v in &mut eps[b * f * d..(b * f + fresh[b]) * d] {
                *v = StandardNormal.sample(&mut st.rng);
            }
        }
        let pad = self.model.layout().image_token_range().start;
        let mut idx = vec![0i64; s * w];
        let mut c_e = vec![0f32; s * w];
        let mut c_x = vec![0f32; s * w];
        let mut x0 = vec![pad; s * w];
        for (b, plan) in plans.iter().enumerate() {
            for (j, op) in plan.iter().enumerate() {
                let at = b * w + j;
                idx[at] = match op.source {
                    BufferSource::Unused => 0,
                    BufferSource::Old(i) => i as i64,
                    BufferSource::Fresh(k) => (w + k) as i64,
                };
                c_e[at] = op.c_e;
                c_x[at] = op.c_x;
                if op.c_x != 0.0 {
                    x0[at] = op.x0_token;
                }
            }
        }
        let old = old.unwrap_or_else(|| Tensor::zeros([s, w, d], &device));
        let eps = Tensor::<3>::from_data(TensorData::new(eps, [s, f, d]), &device);
        let source = Tensor::cat(vec![old, eps], 1);
        let idx = Tensor::<2, Int>::from_data(TensorData::new(idx, [s, w]), &device)
            .unsqueeze_dim::<3>(2)
            .expand([s, w, d]);
        let gathered = source.gather(1, idx);
        let x0_hat = noise
            .normalizer
            .normalize(self.model.embed_tokens(ids_tensor(&x0, [s, w], &device))?);
        let c_e = Tensor::<2>::from_data(TensorData::new(c_e, [s, w]), &device);
        let c_x = Tensor::<2>::from_data(TensorData::new(c_x, [s, w]), &device);
        Ok(Some(ddim_step(gathered, x0_hat, c_e, c_x)))
    }
}

/// Row `at` of `host` (rows of `range.len()` guided image logits) processed by `sampling` into a
/// distribution (in a buffer from `pool`), and the token that the uniform `u` draws from it; `sample` names the sample in
/// errors.
fn sample_row(
    sampling: &Sampling,
    range: Range<u32>,
    pool: &Arc<RowPool>,
    host: &[f32],
    (sample, at): (usize, usize),
    u: f64,
    what: &dyn Fn() -> String,
) -> Result<(Row, u32)> {
    let vimg = range.len();
    let mut row = pool.row(&host[at * vimg..(at + 1) * vimg]);
    sampling.process_in_place(&mut row, what)?;
    let index = sample_index_at(&row, u).ok_or_else(|| Error::NonFinite {
        what: format!("processed distribution of sample {sample}"),
        detail: "it has no probability mass".into(),
    })?;
    Ok((row, range.start + index as u32))
}

/// Rows of `image_vocab` entries that one thread takes at a time: at least about 32 768 entries
/// (tens of microseconds), so that the demo model's 512-entry rows stay on one thread and the
/// published models' 8 192-32 768-entry rows spread over the cores.
pub(crate) fn rows_per_task(image_vocab: usize) -> usize {
    32_768usize.div_ceil(image_vocab.max(1))
}

/// Calls the step callback for every sample that took part in the last pass; true = cancel.
fn emit(
    states: &[SampleState],
    took_part: &[bool],
    on_step: &mut dyn FnMut(&StepEvent<'_>) -> Control,
    accepted: &[usize],
) -> bool {
    let mut stop = false;
    for (b, st) in states.iter().enumerate().filter(|(b, _)| took_part[*b]) {
        let window = st.window_view();
        let event = StepEvent {
            sample: b,
            pass: st.stats.forward_passes,
            tokens: &st.tokens,
            committed: st.stats.tokens_per_pass.last().copied().unwrap_or(0),
            accepted: accepted[b],
            window: &window,
            target_len: st.target_len,
        };
        stop |= on_step(&event) == Control::Stop;
    }
    stop
}
