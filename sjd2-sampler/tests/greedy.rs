//! Greedy SJD and SJD2 must reproduce greedy autoregressive decoding token for token.
#![allow(clippy::unwrap_used)]

mod common;

use common::{medium_toy, prompt};
use sjd2_core::{NoiseSchedule, Sampling};
use sjd2_sampler::{
    DecoderConfig, DraftInit, JacobiSpan, LevelConditioning, LevelPolicy, Mode, Sjd2Decoder,
    Verification,
};

fn greedy(mode_cfg: DecoderConfig, guidance: f32) -> DecoderConfig {
    DecoderConfig {
        sampling: Sampling::Greedy,
        guidance_scale: guidance,
        ..mode_cfg
    }
}

#[test]
fn greedy_sjd_equals_greedy_ar() {
    let mut checked = 0;
    let mut fewer_passes = 0;
    for seed in 0..3 {
        let model = medium_toy(seed);
        for guidance in [1.0, 3.0] {
            let p = prompt(&model, &[seed as usize, 2]);
            let ar = Sjd2Decoder::new(
                model.clone(),
                greedy(DecoderConfig::autoregressive(), guidance),
            )
            .unwrap()
            .generate(&p)
            .unwrap();
            assert_eq!(ar.stats.forward_passes, model.layout_len());
            for window in [1, 2, 5, 16] {
                for init in [
                    DraftInit::Random,
                    DraftInit::HorizontalRepeat,
                    DraftInit::VerticalRepeat,
                ] {
                    for verification in [Verification::Probabilistic, Verification::Jacobi] {
                        let cfg = DecoderConfig {
                            window_len: window.into(),
                            draft_init: init,
                            verification,
                            seed: seed * 31 + window as u64,
                            ..greedy(DecoderConfig::sjd(), guidance)
                        };
                        let out = Sjd2Decoder::new(model.clone(), cfg)
                            .unwrap()
                            .generate(&p)
                            .unwrap();
                        assert_eq!(
                            out.tokens, ar.tokens,
                            "seed {seed} window {window} {init:?} {verification:?}"
                        );
                        assert!(out.stats.forward_passes <= ar.stats.forward_passes);
                        fewer_passes +=
                            usize::from(out.stats.forward_passes < ar.stats.forward_passes);
                        checked += 1;
                    }
                }
            }
        }
    }
    assert_eq!(checked, 3 * 2 * 4 * 3 * 2);
    assert!(
        fewer_passes > checked / 2,
        "SJD should usually save passes: {fewer_passes}/{checked}"
    );
}

#[test]
fn greedy_sjd2_equals_greedy_ar() {
    for seed in 0..3 {
        let model = medium_toy(seed);
        for guidance in [1.0, 2.5] {
            let p = prompt(&model, &[1, seed as usize]);
            let ar = Sjd2Decoder::new(
                model.clone(),
                greedy(DecoderConfig::autoregressive(), guidance),
            )
            .unwrap()
            .generate(&p)
            .unwrap();
            for window in [1, 4, 12] {
                for policy in [LevelPolicy::ByDistance, LevelPolicy::OnePerIteration] {
                    for (schedule, steps) in [
                        (NoiseSchedule::default(), 5),
                        (NoiseSchedule::Linear, 2),
                        (NoiseSchedule::Cosine, 8),
                    ] {
                        for conditioning in [LevelConditioning::None, LevelConditioning::Sinusoidal]
                        {
                            let mut cfg = DecoderConfig {
                                window_len: window.into(),
                                seed,
                                ..greedy(DecoderConfig::sjd2(), guidance)
                            };
                            cfg.sjd2.level_policy = policy;
                            cfg.sjd2.schedule = schedule;
                            cfg.sjd2.denoising_steps = steps;
                            cfg.sjd2.level_conditioning = conditioning;
                            let out = Sjd2Decoder::new(model.clone(), cfg)
                                .unwrap()
                                .generate(&p)
                                .unwrap();
                            assert_eq!(
                                out.tokens, ar.tokens,
                                "seed {seed} window {window} {policy:?} {schedule:?}"
                            );
                            assert!(out.stats.forward_passes <= ar.stats.forward_passes);
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn jacobi_span_and_max_new_tokens_keep_greedy_exactness() {
    let model = medium_toy(7);
    let p = prompt(&model, &[3]);
    let ar = Sjd2Decoder::new(model.clone(), greedy(DecoderConfig::autoregressive(), 1.0))
        .unwrap()
        .generate(&p)
        .unwrap();
    let cfg = DecoderConfig {
        window_len: sjd2_sampler::Window::Fixed(6),
        jacobi_span: JacobiSpan {
            plain_prefix: 3,
            plain_suffix: 5,
        },
        ..greedy(DecoderConfig::sjd(), 1.0)
    };
    let out = Sjd2Decoder::new(model.clone(), cfg)
        .unwrap()
        .generate(&p)
        .unwrap();
    assert_eq!(out.tokens, ar.tokens);
    // The first 3 and last 5 positions are decoded one per pass.
    assert!(out.stats.tokens_per_pass[..3].iter().all(|&t| t == 1));
    assert!(
        out.stats
            .tokens_per_pass
            .iter()
            .rev()
            .take(4)
            .all(|&t| t == 1)
    );
    for mode in [Mode::Sjd, Mode::Sjd2, Mode::Autoregressive] {
        let cfg = DecoderConfig {
            mode,
            window_len: sjd2_sampler::Window::Fixed(4),
            max_new_tokens: Some(9),
            ..greedy(DecoderConfig::sjd(), 1.0)
        };
        let out = Sjd2Decoder::new(model.clone(), cfg)
            .unwrap()
            .generate(&p)
            .unwrap();
        assert_eq!(out.tokens, ar.tokens[..9], "{mode:?}");
        assert_eq!(out.finish_reason, sjd2_sampler::FinishReason::MaxNewTokens);
    }
}

trait LayoutLen {
    fn layout_len(&self) -> usize;
}

impl LayoutLen for sjd2_core::testing::ToyModel {
    fn layout_len(&self) -> usize {
        use sjd2_core::JacobiDenoiser;
        self.layout().len()
    }
}
