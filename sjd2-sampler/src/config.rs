//! Decoder configuration, validated once at construction.

use sjd2_core::{Error, NoiseSchedule, NormalizationKind, Result, Sampling};

/// Which decoding algorithm runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Mode {
    /// One token per forward pass: the baseline every other mode is compared with.
    Autoregressive,
    /// Speculative Jacobi Decoding: a window of drafted tokens verified in one pass.
    Sjd,
    /// Speculative Jacobi-Denoising Decoding: new slots start as noise in embedding space and are
    /// denoised along the window (best with a next-clean-token fine-tuned model).
    #[default]
    Sjd2,
}

/// How SJD fills new window slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DraftInit {
    /// A uniformly random image token (the SJD reference default).
    #[default]
    Random,
    /// The token to the left in the same image row (LlamaGen setting); random in column 0.
    HorizontalRepeat,
    /// The token one image row above; falls back to horizontal repeat, then random.
    VerticalRepeat,
}

/// How SJD2 tells the model the noise level of a noisy slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LevelConditioning {
    /// No level information.
    #[default]
    None,
    /// [`sjd2_core::sinusoidal_level_embedding`] added to noisy slots (zero at level 0).
    Sinusoidal,
    /// The model's own [`sjd2_core::JacobiDenoiser::level_embedding`] added to noisy slots.
    Learned,
}

/// How fast SJD2 slots lose noise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LevelPolicy {
    /// Every refinement lowers a slot by one level (the literal reading of the paper): no slot
    /// becomes a clean draft before `denoising_steps` iterations.
    OnePerIteration,
    /// A slot at distance `d` (1-based) from the window front drops at least one level and at
    /// most to `⌊K·(d−1)/W⌋`, so the front of the window becomes clean drafts at once while its
    /// far end stays noisy.
    #[default]
    ByDistance,
}

/// How a surviving draft is redrawn after a pass gives its position a new distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DraftUpdate {
    /// Every pass draws each draft afresh from its new distribution, independently of the old
    /// draft (the SJD and SJD2 papers).
    #[default]
    Independent,
    /// Maximal coupling with the old draft (MC-SJD, So et al. 2025, arXiv:2510.24211): the old
    /// token is kept with probability `min(1, P_new/q_old)`, otherwise the residual is drawn. The
    /// draft is still distributed as the new distribution, so decoding stays lossless, but drafts
    /// stop flickering once their context settles and more of them are accepted. Applies to
    /// clean drafts and to SJD2's noisy-slot predictions; no effect with greedy sampling.
    Coupled,
}

/// The verification criterion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Verification {
    /// Speculative sampling (`min(1, P/q)` with residual resampling): output distribution equals
    /// autoregressive sampling.
    #[default]
    Probabilistic,
    /// Accept a draft iff it equals the sample for its position; exact for greedy decoding only.
    Jacobi,
}

/// Which SJD2 slots verification may accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Acceptance {
    /// Only slots that were fed as clean token embeddings (lossless).
    #[default]
    CleanPrefix,
    /// Noisy slots may be accepted as their latest prediction; their keys and values are then
    /// recomputed from clean embeddings in the next pass. Faster, not lossless.
    Lossy,
}

/// How many generated positions at each end are decoded plainly (one token per pass), as the
/// SJD reference does for the first and last image tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JacobiSpan {
    /// Positions at the start decoded plainly.
    pub plain_prefix: usize,
    /// Positions at the end decoded plainly.
    pub plain_suffix: usize,
}

/// SJD2's denoising settings (ignored by the other modes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sjd2Options {
    /// Noise schedule family.
    pub schedule: NoiseSchedule,
    /// Number of noise levels `K` (≥ 1).
    pub denoising_steps: usize,
    /// Level conditioning.
    pub level_conditioning: LevelConditioning,
    /// Level policy.
    pub level_policy: LevelPolicy,
    /// Embedding normalization statistics.
    pub normalization: NormalizationKind,
    /// Which slots may be accepted.
    pub acceptance: Acceptance,
}

impl Default for Sjd2Options {
    fn default() -> Self {
        Self {
            schedule: NoiseSchedule::default(),
            denoising_steps: 20,
            level_conditioning: LevelConditioning::None,
            level_policy: LevelPolicy::ByDistance,
            normalization: NormalizationKind::PerDimension,
            acceptance: Acceptance::CleanPrefix,
        }
    }
}

/// Largest accepted `window_len` (windows far beyond a model's context are a configuration error).
pub const MAX_WINDOW_LEN: usize = 4096;

/// The longest window [`Window::auto`] may choose.
pub const AUTO_WINDOW_MAX: usize = 64;

/// The exploration passes of [`Window::auto`].
pub const AUTO_EXPLORE_PASSES: usize = 8;

/// How many slots each SJD / SJD2 pass drafts.
///
/// ```
/// use sjd2_sampler::Window;
///
/// assert_eq!(Window::from(16), Window::Fixed(16));
/// assert_eq!(Window::auto().max_len(), 64);
/// assert_eq!("auto".parse::<Window>()?, Window::auto());
/// assert_eq!("auto:32".parse::<Window>()?, Window::Auto { max: 32, explore: 8 });
/// assert_eq!("auto:32:0".parse::<Window>()?, Window::Auto { max: 32, explore: 0 });
/// assert_eq!("8".parse::<Window>()?, Window::Fixed(8));
/// assert!("auto:x".parse::<Window>().is_err() && "autox".parse::<Window>().is_err());
/// # Ok::<(), sjd2_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Window {
    /// Always this many slots (≥ 1).
    Fixed(usize),
    /// Chosen before every pass, in `0..=max` (0: a plain pass, exactly AR's work), to maximize
    /// the expected tokens committed per second: the decoder times passes of several lengths on
    /// its device once per batch shape (its [`crate::CostCurve`]) and weighs them against the
    /// acceptance of its calibration (its first generation, [`crate::AcceptanceHistory`]) and of
    /// the current generation. On a device where a long pass costs what a short one does it
    /// drafts `max` slots; where no draft pays, it decodes at AR's speed. Lossless like a fixed
    /// window. A prompt's tokens then depend on its seed, the cost curve, the calibration and its
    /// batch: hand a saved curve and calibration to another decoder to reproduce them.
    Auto {
        /// The longest window it may choose.
        max: usize,
        /// Passes at the start of an uncalibrated decoder's first generation that draft
        /// `min(16, max)` slots before the policy chooses, so that it sees how drafts that have
        /// aged in the window are accepted ([`AUTO_EXPLORE_PASSES`] by default).
        explore: usize,
    },
}

impl Window {
    /// An adaptive window of at most [`AUTO_WINDOW_MAX`] slots.
    pub const fn auto() -> Self {
        Self::Auto {
            max: AUTO_WINDOW_MAX,
            explore: AUTO_EXPLORE_PASSES,
        }
    }

    /// The longest window a pass may draft.
    pub const fn max_len(&self) -> usize {
        match *self {
            Self::Fixed(w) | Self::Auto { max: w, .. } => w,
        }
    }

    /// Whether the window adapts.
    pub const fn is_auto(&self) -> bool {
        matches!(self, Self::Auto { .. })
    }
}

impl From<usize> for Window {
    fn from(w: usize) -> Self {
        Self::Fixed(w)
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Self::Fixed(w) => write!(f, "{w}"),
            Self::Auto { max, explore } if explore == AUTO_EXPLORE_PASSES => match max {
                AUTO_WINDOW_MAX => write!(f, "auto"),
                _ => write!(f, "auto:{max}"),
            },
            Self::Auto { max, explore } => write!(f, "auto:{max}:{explore}"),
        }
    }
}

impl std::str::FromStr for Window {
    type Err = Error;

    /// `16` (fixed), `auto`, `auto:MAX` or `auto:MAX:EXPLORE`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::config(
                "window_len",
                format!("expected a number, `auto`, `auto:MAX` or `auto:MAX:EXPLORE` (got {s:?})"),
            )
        };
        let Some(rest) = s.strip_prefix("auto") else {
            return s.parse().map(Self::Fixed).map_err(|_| bad());
        };
        let mut parts = rest.split(':').skip(1).map(str::parse::<usize>);
        let max = parts
            .next()
            .unwrap_or(Ok(AUTO_WINDOW_MAX))
            .map_err(|_| bad())?;
        let explore = parts
            .next()
            .unwrap_or(Ok(AUTO_EXPLORE_PASSES))
            .map_err(|_| bad())?;
        if parts.next().is_some() || !(rest.is_empty() || rest.starts_with(':')) {
            return Err(bad());
        }
        Ok(Self::Auto { max, explore })
    }
}

/// Largest accepted `denoising_steps`.
pub const MAX_DENOISING_STEPS: usize = 10_000;

/// Everything that controls a generation. Build with a preset ([`DecoderConfig::autoregressive`],
/// [`DecoderConfig::sjd`], [`DecoderConfig::sjd2`]) and adjust fields; the decoder validates it.
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderConfig {
    /// Decoding algorithm.
    pub mode: Mode,
    /// Drafted slots per pass (SJD, SJD2): a fixed number (≥ 1) or [`Window::Auto`].
    pub window_len: Window,
    /// SJD draft initialization.
    pub draft_init: DraftInit,
    /// How surviving drafts are redrawn between passes (SJD, SJD2).
    pub draft_update: DraftUpdate,
    /// Verification criterion.
    pub verification: Verification,
    /// SJD2 settings.
    pub sjd2: Sjd2Options,
    /// Plainly decoded ends.
    pub jacobi_span: JacobiSpan,
    /// Stop after this many generated positions (`None`: the whole image layout).
    pub max_new_tokens: Option<usize>,
    /// Token choice.
    pub sampling: Sampling,
    /// Classifier-free guidance scale; 1 disables guidance (no unconditional rows); ≥ 0.
    pub guidance_scale: f32,
    /// Image scale of three-way guidance (Chameleon / Anole upstream: 1.2 with text scale
    /// `guidance_scale` 3.0), [`sjd2_core::guide_instruct`]. It applies to batches where some
    /// prompt has an [`image_condition`](sjd2_core::Prompt::image_condition) (images in the
    /// prompt); other batches are guided two ways, which is what three-way guidance amounts to
    /// when the image-conditioned row equals the unconditional one. `None`: two-way only; ≥ 0.
    pub image_guidance_scale: Option<f32>,
    /// Seed of the first prompt; prompt `i` of a batch uses `seed + i` unless it has its own.
    pub seed: u64,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        Self::sjd2()
    }
}

impl DecoderConfig {
    /// Plain autoregressive decoding.
    pub fn autoregressive() -> Self {
        Self {
            mode: Mode::Autoregressive,
            window_len: Window::Fixed(1),
            draft_init: DraftInit::Random,
            draft_update: DraftUpdate::Independent,
            verification: Verification::Probabilistic,
            sjd2: Sjd2Options::default(),
            jacobi_span: JacobiSpan::default(),
            max_new_tokens: None,
            sampling: Sampling::default(),
            guidance_scale: 1.0,
            image_guidance_scale: None,
            seed: 0,
        }
    }

    /// SJD with the reference settings: window 16, random draft initialization.
    pub fn sjd() -> Self {
        Self {
            mode: Mode::Sjd,
            window_len: Window::Fixed(16),
            ..Self::autoregressive()
        }
    }

    /// SJD2 with window 32, Karras schedule, 20 levels, levels by distance.
    pub fn sjd2() -> Self {
        Self {
            mode: Mode::Sjd2,
            window_len: Window::Fixed(32),
            ..Self::autoregressive()
        }
    }

    /// Checks every field.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the field: `window_len` (0), `temperature`, `top_k`,
    /// `top_p`, `guidance_scale` (negative or not finite), `denoising_steps` (0 in SJD2 mode),
    /// `schedule.*`, `max_new_tokens` (0), `verification` (Jacobi with non-greedy sampling is
    /// allowed but documented as lossy; it is not an error).
    pub fn validate(&self) -> Result<()> {
        let w = self.window_len.max_len();
        if w == 0 || w > MAX_WINDOW_LEN {
            return Err(Error::config(
                "window_len",
                format!("must be in 1..={MAX_WINDOW_LEN} (got {w})"),
            ));
        }
        self.sampling.validate()?;
        if !(self.guidance_scale.is_finite() && self.guidance_scale >= 0.0) {
            return Err(Error::config(
                "guidance_scale",
                format!(
                    "must be finite and >= 0 (got {}); 1 disables guidance",
                    self.guidance_scale
                ),
            ));
        }
        if let Some(s) = self
            .image_guidance_scale
            .filter(|s| !(s.is_finite() && *s >= 0.0))
        {
            return Err(Error::config(
                "image_guidance_scale",
                format!("must be finite and >= 0 (got {s})"),
            ));
        }
        if self.max_new_tokens == Some(0) {
            return Err(Error::config(
                "max_new_tokens",
                "must be >= 1 (got 0); use None for the whole image",
            ));
        }
        if self.mode == Mode::Sjd2 {
            if self.sjd2.denoising_steps > MAX_DENOISING_STEPS {
                return Err(Error::config(
                    "denoising_steps",
                    format!(
                        "must be in 1..={MAX_DENOISING_STEPS} (got {})",
                        self.sjd2.denoising_steps
                    ),
                ));
            }
            self.sjd2.schedule.table(self.sjd2.denoising_steps)?;
        }
        Ok(())
    }

    /// Whether unconditional rows are run.
    pub fn uses_guidance(&self) -> bool {
        self.guidance_scale != 1.0
    }

    /// How many rows each prompt of `prompts` takes in the cache: 1 without guidance, 2 with
    /// two-way guidance, 3 with three-way guidance (an image scale and some prompt with an
    /// image condition); the rows are grouped by branch: all conditional rows, then the
    /// unconditional ones, then the image-conditioned ones.
    pub fn guidance_branches(&self, prompts: &[sjd2_core::Prompt]) -> usize {
        if self.image_guidance_scale.is_some()
            && prompts.iter().any(|p| p.image_condition.is_some())
        {
            3
        } else if self.uses_guidance() {
            2
        } else {
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(c: DecoderConfig) -> Option<&'static str> {
        c.validate().unwrap_err().field()
    }

    #[test]
    fn three_way_guidance_runs_a_third_branch_only_for_prompts_with_images() {
        use sjd2_core::Prompt;
        let text = Prompt::new([1, 2]);
        let with_image = Prompt::new([1, 5, 2]).with_image_condition([1, 5]);
        let mut c = DecoderConfig::sjd();
        assert_eq!(c.guidance_branches(std::slice::from_ref(&text)), 1);
        c.guidance_scale = 3.0;
        assert_eq!(c.guidance_branches(&[text.clone(), with_image.clone()]), 2);
        c.image_guidance_scale = Some(1.2);
        assert_eq!(c.guidance_branches(std::slice::from_ref(&text)), 2);
        assert_eq!(c.guidance_branches(&[text, with_image]), 3);
        c.image_guidance_scale = Some(-1.0);
        assert_eq!(field(c), Some("image_guidance_scale"));
    }

    #[test]
    fn presets_are_valid() {
        for c in [
            DecoderConfig::autoregressive(),
            DecoderConfig::sjd(),
            DecoderConfig::sjd2(),
        ] {
            c.validate().unwrap();
        }
    }

    #[test]
    fn invalid_fields_are_named() {
        let base = DecoderConfig::sjd2;
        assert_eq!(
            field(DecoderConfig {
                window_len: Window::Fixed(0),
                ..base()
            }),
            Some("window_len")
        );
        assert_eq!(
            field(DecoderConfig {
                sampling: Sampling::temperature(0.0),
                ..base()
            }),
            Some("temperature")
        );
        assert_eq!(
            field(DecoderConfig {
                sampling: Sampling::temperature(-2.0),
                ..base()
            }),
            Some("temperature")
        );
        assert_eq!(
            field(DecoderConfig {
                sampling: Sampling::top_k(0, 1.0),
                ..base()
            }),
            Some("top_k")
        );
        assert_eq!(
            field(DecoderConfig {
                sampling: Sampling::top_p(0.0, 1.0),
                ..base()
            }),
            Some("top_p")
        );
        assert_eq!(
            field(DecoderConfig {
                sampling: Sampling::top_p(1.01, 1.0),
                ..base()
            }),
            Some("top_p")
        );
        assert_eq!(
            field(DecoderConfig {
                guidance_scale: -0.5,
                ..base()
            }),
            Some("guidance_scale")
        );
        assert_eq!(
            field(DecoderConfig {
                guidance_scale: f32::NAN,
                ..base()
            }),
            Some("guidance_scale")
        );
        assert_eq!(
            field(DecoderConfig {
                max_new_tokens: Some(0),
                ..base()
            }),
            Some("max_new_tokens")
        );
        let mut c = base();
        c.sjd2.denoising_steps = 0;
        assert_eq!(field(c.clone()), Some("denoising_steps"));
        c.sjd2.denoising_steps = usize::MAX;
        assert_eq!(field(c.clone()), Some("denoising_steps"));
        let huge = DecoderConfig {
            window_len: Window::Fixed(usize::MAX),
            ..base()
        };
        assert_eq!(field(huge), Some("window_len"));
        let zero_auto = DecoderConfig {
            window_len: Window::Auto { max: 0, explore: 0 },
            ..base()
        };
        assert_eq!(field(zero_auto), Some("window_len"));
        c.mode = Mode::Sjd;
        assert!(
            c.validate().is_ok(),
            "denoising_steps only matters for SJD2"
        );
        let mut c = base();
        c.sjd2.schedule = NoiseSchedule::Karras {
            sigma_min: -1.0,
            sigma_max: 1.0,
            rho: 7.0,
        };
        assert_eq!(field(c), Some("schedule.sigma_min"));
        assert!(
            DecoderConfig {
                guidance_scale: 0.0,
                ..base()
            }
            .validate()
            .is_ok()
        );
    }
}
