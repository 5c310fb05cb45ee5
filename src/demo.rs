//! Decoder settings for the shipped demo model (`assets/demo`, see `docs/demo-model.md`).

use sjd2_models::demo::DemoConfig;
use sjd2_sampler::{
    AUTO_EXPLORE_PASSES, DecoderConfig, DraftUpdate, LevelConditioning, Mode, Window,
};

/// The SJD window the demo model was evaluated with, and the longest its adaptive default
/// drafts.
pub const SJD_WINDOW: usize = 16;
/// The SJD2 window the demo model was evaluated with, and the longest its adaptive default
/// drafts.
pub const SJD2_WINDOW: usize = 64;

/// The decoder configuration the demo model runs with: `mode`, an adaptive window of at most
/// [`SJD_WINDOW`] or [`SJD2_WINDOW`] slots ([`Window::Auto`]: as long as pays on the device,
/// plain passes where no draft does), coupled draft updates
/// ([`DraftUpdate::Coupled`], lossless, far fewer passes than the papers' independent redraws),
/// the model's guidance scale, and, for SJD2, the denoising steps `K` and level conditioning that
/// `config.json` records. Sampling and seed are [`DecoderConfig`]'s defaults; adjust any field
/// afterwards (set `draft_update` to [`DraftUpdate::Independent`] to reproduce the papers).
///
/// ```
/// use sjd2::models::demo::DemoConfig;
/// use sjd2::{DraftUpdate, LevelConditioning, Mode};
///
/// let path = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/demo/config.json");
/// let config: DemoConfig = serde_json::from_str(&std::fs::read_to_string(path)?)?;
/// let decoder = sjd2::demo::decoder_config(&config, Mode::Sjd2);
/// assert_eq!(decoder.window_len.max_len(), sjd2::demo::SJD2_WINDOW);
/// assert!(decoder.window_len.is_auto());
/// assert_eq!(decoder.draft_update, DraftUpdate::Coupled);
/// assert_eq!(decoder.sjd2.denoising_steps, 5);
/// assert_eq!(decoder.sjd2.level_conditioning, LevelConditioning::Sinusoidal);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn decoder_config(config: &DemoConfig, mode: Mode) -> DecoderConfig {
    let auto_window = |max| Window::Auto {
        max,
        explore: AUTO_EXPLORE_PASSES,
    };
    let mut decoder = DecoderConfig {
        mode,
        window_len: match mode {
            Mode::Sjd => auto_window(SJD_WINDOW),
            Mode::Sjd2 => auto_window(SJD2_WINDOW),
            _ => Window::Fixed(1),
        },
        draft_update: DraftUpdate::Coupled,
        guidance_scale: config.guidance_scale,
        ..DecoderConfig::sjd2()
    };
    if let Some(k) = config.denoising_steps {
        decoder.sjd2.denoising_steps = k;
    }
    decoder.sjd2.level_conditioning = match config.level_conditioning.as_deref() {
        Some("sinusoidal") => LevelConditioning::Sinusoidal,
        Some("learned") => LevelConditioning::Learned,
        _ => LevelConditioning::None,
    };
    decoder
}
