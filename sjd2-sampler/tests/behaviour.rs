//! Statistics, batches, determinism, cancellation, forced tokens and input errors.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Counting, medium_toy, prompt};
use sjd2_core::testing::{ToyConfig, ToyModel};
use sjd2_core::{Error, JacobiDenoiser, Prompt, Sampling};
use sjd2_sampler::{
    Acceptance, Control, DecoderConfig, DraftInit, DraftUpdate, FinishReason, LevelConditioning,
    Mode, Sjd2Decoder, SlotKind,
};

fn all_modes() -> Vec<DecoderConfig> {
    let mut lossy = DecoderConfig {
        window_len: sjd2_sampler::Window::Fixed(6),
        ..DecoderConfig::sjd2()
    };
    lossy.sjd2.acceptance = Acceptance::Lossy;
    lossy.sjd2.denoising_steps = 4;
    vec![
        DecoderConfig::autoregressive(),
        DecoderConfig {
            window_len: sjd2_sampler::Window::Fixed(5),
            draft_init: DraftInit::VerticalRepeat,
            ..DecoderConfig::sjd()
        },
        DecoderConfig {
            window_len: sjd2_sampler::Window::Fixed(8),
            ..DecoderConfig::sjd2()
        },
        DecoderConfig {
            window_len: sjd2_sampler::Window::Fixed(7),
            draft_update: DraftUpdate::Coupled,
            ..DecoderConfig::sjd2()
        },
        lossy,
    ]
}

#[test]
fn forward_passes_are_counted_once_per_model_call() {
    let model = medium_toy(3);
    let p = prompt(&model, &[0, 1]);
    for guidance in [1.0, 2.0] {
        for cfg in all_modes() {
            let mode = cfg.mode;
            let counting = Counting::new(model.clone());
            let d = Sjd2Decoder::new(
                counting,
                DecoderConfig {
                    guidance_scale: guidance,
                    ..cfg
                },
            )
            .unwrap();
            let g = d.generate(&p).unwrap();
            assert_eq!(g.stats.forward_passes, d.model().calls.get(), "{mode:?}");
            assert_eq!(g.stats.tokens_per_pass.len(), g.stats.forward_passes);
            assert_eq!(g.stats.tokens(), g.tokens.len());
            assert_eq!(g.tokens.len(), model.layout().len());
            assert_eq!(g.finish_reason, FinishReason::Complete);
            if mode == Mode::Autoregressive {
                assert_eq!(g.stats.forward_passes, g.tokens.len());
                assert_eq!(g.stats.step_compression(), 1.0);
            }
        }
    }
}

#[test]
fn every_mode_respects_the_layout() {
    let model = medium_toy(5);
    let layout = model.layout().clone();
    for cfg in all_modes() {
        for seed in 0..4 {
            let g = Sjd2Decoder::new(
                model.clone(),
                DecoderConfig {
                    seed,
                    guidance_scale: 1.5,
                    ..cfg.clone()
                },
            )
            .unwrap()
            .generate(&prompt(&model, &[2]))
            .unwrap();
            for (pos, &t) in g.tokens.iter().enumerate() {
                match layout.forced_token(pos) {
                    Some(f) => assert_eq!(t, f, "{:?} position {pos}", cfg.mode),
                    None => assert!(layout.image_token_range().contains(&t)),
                }
            }
            assert_eq!(
                layout.image_tokens(&g.tokens).len(),
                layout.rows() * layout.cols()
            );
        }
    }
}

#[test]
fn same_seed_same_tokens_and_batch_independence() {
    let model = medium_toy(9);
    let prompts = [
        prompt(&model, &[0]),
        prompt(&model, &[1, 2]),
        prompt(&model, &[3, 4, 5]),
    ];
    for cfg in all_modes() {
        let cfg = DecoderConfig {
            guidance_scale: 2.0,
            seed: 77,
            ..cfg
        };
        let d = Sjd2Decoder::new(model.clone(), cfg.clone()).unwrap();
        let batch = d.generate_batch(&prompts).unwrap();
        let again = d.generate_batch(&prompts).unwrap();
        for (a, b) in batch.iter().zip(&again) {
            assert_eq!(a.tokens, b.tokens, "{:?}: not reproducible", cfg.mode);
        }
        for (i, g) in batch.iter().enumerate() {
            assert_eq!(g.seed, 77 + i as u64);
            let alone = d.generate(&prompts[i].clone().with_seed(g.seed)).unwrap();
            assert_eq!(
                alone.tokens, g.tokens,
                "{:?}: sample {i} depends on its batch",
                cfg.mode
            );
            assert_eq!(alone.stats.tokens_per_pass, g.stats.tokens_per_pass);
        }
        // Reordered batch: each prompt keeps its result when it keeps its seed.
        let seeded: Vec<Prompt> = prompts
            .iter()
            .zip(&batch)
            .map(|(p, g)| p.clone().with_seed(g.seed))
            .collect();
        let reversed: Vec<Prompt> = seeded.iter().rev().cloned().collect();
        let out = d.generate_batch(&reversed).unwrap();
        for (g, r) in batch.iter().zip(out.iter().rev()) {
            assert_eq!(g.tokens, r.tokens);
        }
    }
}

#[test]
fn different_seeds_give_different_images() {
    let model = medium_toy(9);
    let d = Sjd2Decoder::new(model.clone(), DecoderConfig::sjd()).unwrap();
    let p = prompt(&model, &[0]);
    let a = d.generate(&p.clone().with_seed(1)).unwrap();
    let b = d.generate(&p.with_seed(2)).unwrap();
    assert_ne!(a.tokens, b.tokens);
}

#[test]
fn observing_steps_does_not_change_tokens_and_sees_the_window() {
    let model = medium_toy(4);
    let p = prompt(&model, &[1]);
    for cfg in all_modes() {
        let d = Sjd2Decoder::new(model.clone(), cfg.clone()).unwrap();
        let plain = d.generate(&p).unwrap();
        let mut events = 0;
        let mut saw_noisy = false;
        let observed = d
            .generate_with(&p, |e| {
                events += 1;
                assert_eq!(e.pass, events);
                assert!(e.committed >= 1 && e.committed <= cfg.window_len.max_len() + 1);
                saw_noisy |= e
                    .window
                    .iter()
                    .any(|s| matches!(s.kind, SlotKind::Noisy { .. }));
                for (i, s) in e.window.iter().enumerate() {
                    assert_eq!(s.position, e.tokens.len() + i);
                }
                Control::Continue
            })
            .unwrap();
        assert_eq!(plain.tokens, observed.tokens);
        assert_eq!(events, observed.stats.forward_passes);
        assert_eq!(saw_noisy, cfg.mode == Mode::Sjd2, "{:?}", cfg.mode);
    }
}

#[test]
fn cancellation_returns_partial_result_and_decoder_is_reusable() {
    let model = medium_toy(2);
    let p = prompt(&model, &[0]);
    for cfg in all_modes() {
        let d = Sjd2Decoder::new(model.clone(), cfg.clone()).unwrap();
        let full = d.generate(&p).unwrap();
        let partial = d
            .generate_with(&p, |e| {
                if e.pass == 3 {
                    Control::Stop
                } else {
                    Control::Continue
                }
            })
            .unwrap();
        assert_eq!(partial.finish_reason, FinishReason::Cancelled);
        assert_eq!(partial.stats.forward_passes, 3);
        assert!(partial.tokens.len() < full.tokens.len());
        assert_eq!(
            partial.tokens[..],
            full.tokens[..partial.tokens.len()],
            "{:?}",
            cfg.mode
        );
        let again = d.generate(&p).unwrap();
        assert_eq!(again.tokens, full.tokens);
    }
}

/// Forward passes of 32 generations of `p` (seeds 0..32) under `cfg`.
fn total_passes(model: &ToyModel, p: &Prompt, cfg: DecoderConfig) -> usize {
    let prompts: Vec<Prompt> = (0..32).map(|i| p.clone().with_seed(i)).collect();
    Sjd2Decoder::new(model.clone(), cfg)
        .unwrap()
        .generate_batch(&prompts)
        .unwrap()
        .iter()
        .map(|g| g.stats.forward_passes)
        .sum()
}

#[test]
fn sjd_saves_forward_passes_on_average() {
    let model = medium_toy(1);
    let p = prompt(&model, &[2]);
    let passes = |cfg| total_passes(&model, &p, cfg);
    let ar = passes(DecoderConfig::autoregressive());
    let sjd = passes(DecoderConfig {
        window_len: sjd2_sampler::Window::Fixed(8),
        ..DecoderConfig::sjd()
    });
    assert_eq!(ar, 32 * model.layout().len());
    assert!(sjd < ar, "SJD {sjd} vs AR {ar}");
}

/// Coupled draft updates keep drafts whose distribution barely moved, so later drafts see the
/// same context pass after pass and more of them are accepted.
#[test]
fn coupled_draft_updates_save_passes_over_independent_ones() {
    // Flat distributions over 64 tokens, as image tokens are: independent redraws rarely repeat.
    let model = ToyModel::new(
        ToyConfig {
            image_vocab: 64,
            rows: 6,
            cols: 6,
            logit_scale: 1.0,
            seed: 3,
            ..medium_toy(0).config().clone()
        },
        &common::device(),
    )
    .unwrap();
    let p = prompt(&model, &[2]);
    let passes = |cfg| total_passes(&model, &p, cfg);
    let mut sjd2 = DecoderConfig::sjd2();
    sjd2.sjd2.denoising_steps = 4;
    for base in [DecoderConfig::sjd(), sjd2] {
        let independent = passes(DecoderConfig {
            window_len: sjd2_sampler::Window::Fixed(8),
            ..base.clone()
        });
        let coupled = passes(DecoderConfig {
            window_len: sjd2_sampler::Window::Fixed(8),
            draft_update: DraftUpdate::Coupled,
            ..base.clone()
        });
        assert!(
            coupled < independent,
            "{:?}: coupled {coupled} vs independent {independent}",
            base.mode
        );
    }
}

/// Rows of a large vocabulary are sampled and drafts coupled on several threads: the tokens must
/// not depend on how many there are.
#[test]
fn tokens_do_not_depend_on_the_number_of_threads() {
    // 8 192 image tokens: rows are spread over threads four at a time.
    let model = ToyModel::new(
        ToyConfig {
            image_vocab: 8192,
            rows: 3,
            cols: 4,
            logit_scale: 1.0,
            seed: 5,
            ..medium_toy(0).config().clone()
        },
        &common::device(),
    )
    .unwrap();
    let p = prompt(&model, &[1]).with_seed(11);
    let mut configs = all_modes();
    configs.push(DecoderConfig {
        window_len: sjd2_sampler::Window::Fixed(9),
        draft_update: DraftUpdate::Coupled,
        sampling: Sampling::top_k(500, 1.0),
        ..DecoderConfig::sjd()
    });
    for cfg in configs {
        let decoder = Sjd2Decoder::new(model.clone(), cfg.clone()).unwrap();
        let on = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| decoder.generate(&p).unwrap().tokens)
        };
        let one = on(1);
        assert_eq!(one, on(4), "{:?} {:?}", cfg.mode, cfg.draft_update);
        assert_eq!(one, on(3), "{:?} {:?}", cfg.mode, cfg.draft_update);
    }
}

#[test]
fn bad_prompts_are_errors() {
    let model = medium_toy(0);
    let d = Sjd2Decoder::new(model.clone(), DecoderConfig::sjd()).unwrap();
    let e = d.generate(&Prompt::new(Vec::<u32>::new())).unwrap_err();
    assert!(matches!(e, Error::InvalidPrompt { index: 0, .. }), "{e}");
    let e = d
        .generate_batch(&[prompt(&model, &[0]), Prompt::new(vec![])])
        .unwrap_err();
    assert!(matches!(e, Error::InvalidPrompt { index: 1, .. }), "{e}");
    let e = d.generate(&Prompt::new(vec![10_000])).unwrap_err();
    assert!(
        matches!(e, Error::TokenOutOfRange { token: 10_000, .. }),
        "{e}"
    );
    let d = Sjd2Decoder::new(
        model.clone(),
        DecoderConfig {
            guidance_scale: 2.0,
            ..DecoderConfig::sjd()
        },
    )
    .unwrap();
    let e = d
        .generate(&prompt(&model, &[0]).with_negative(vec![9_999]))
        .unwrap_err();
    assert!(e.to_string().contains("Unconditional"), "{e}");
    let long = Prompt::new(vec![model.config().text_token(0); 5000]);
    assert!(matches!(
        d.generate(&long).unwrap_err(),
        Error::SequenceTooLong { .. }
    ));
    assert!(d.generate_batch(&[]).unwrap().is_empty());
}

#[test]
fn learned_conditioning_needs_a_model_hook() {
    let mut cfg = DecoderConfig::sjd2();
    cfg.sjd2.level_conditioning = LevelConditioning::Learned;
    let e = Sjd2Decoder::new(medium_toy(0), cfg).unwrap_err();
    assert!(matches!(e, Error::Unsupported(_)), "{e}");
}

#[test]
fn invalid_configs_are_rejected_by_the_decoder() {
    let model = medium_toy(0);
    let e = Sjd2Decoder::new(
        model.clone(),
        DecoderConfig {
            window_len: sjd2_sampler::Window::Fixed(0),
            ..DecoderConfig::sjd()
        },
    )
    .unwrap_err();
    assert_eq!(e.field(), Some("window_len"));
    let mut d = Sjd2Decoder::new(model, DecoderConfig::sjd()).unwrap();
    let e = d
        .set_config(DecoderConfig {
            sampling: Sampling::top_k(0, 1.0),
            ..DecoderConfig::sjd()
        })
        .unwrap_err();
    assert_eq!(e.field(), Some("top_k"));
    assert_eq!(
        d.config().mode,
        Mode::Sjd,
        "a rejected config leaves the decoder unchanged"
    );
}

#[test]
fn nan_logits_are_a_typed_error() {
    for cfg in all_modes() {
        // Prefill and the first window pass are fine; the second window pass returns NaN.
        let d = Sjd2Decoder::new(Counting::poisoned(medium_toy(0), 2), cfg).unwrap();
        let e = d
            .generate(&Prompt::new(vec![d.model().inner.config().text_token(0)]))
            .unwrap_err();
        assert!(matches!(e, Error::NonFinite { .. }), "{e}");
    }
}

/// Windows of the passes that were not shortened by the end of the image (0 for a plain pass),
/// after the prefill and the policy's first `skip` passes (its exploration).
fn free_windows(g: &sjd2_sampler::Generation, max: usize, skip: usize) -> Vec<usize> {
    let mut at = 0;
    let mut free = Vec::new();
    for (&w, &n) in g.stats.windows.iter().zip(&g.stats.tokens_per_pass) {
        if at + 1 + max < g.tokens.len() {
            free.push(w);
        }
        at += n;
    }
    free.split_off((skip + 1).min(free.len()))
}

#[test]
fn adaptive_windows_follow_the_cost_curve() {
    use sjd2_sampler::{CostCurve, Window};
    use std::collections::BTreeMap;
    // An 8×8 image: room for the policy's exploration (8 passes) and for choices after it.
    let model = ToyModel::new(
        ToyConfig {
            rows: 8,
            cols: 8,
            ..medium_toy(5).config().clone()
        },
        &common::device(),
    )
    .unwrap();
    let p = prompt(&model, &[0, 1]);
    let cfg = DecoderConfig {
        window_len: Window::Auto { max: 6, explore: 8 },
        draft_update: DraftUpdate::Coupled,
        guidance_scale: 2.0,
        ..DecoderConfig::sjd()
    };
    let with = |curve: CostCurve| {
        Sjd2Decoder::new(model.clone(), cfg.clone())
            .unwrap()
            .with_cost_curves(BTreeMap::from([(2, curve)]))
    };
    // Passes that cost the same at any length: every pass drafts the longest window.
    let flat = with(CostCurve::flat()).generate(&p).unwrap();
    let windows = free_windows(&flat, 6, 0);
    assert!(
        !windows.is_empty() && windows.iter().all(|&w| w == 6),
        "{windows:?}"
    );
    // Cost proportional to length: no slot pays for itself, and after its exploration the
    // policy makes plain passes.
    let linear = CostCurve::new(vec![(1, 1.0), (100, 100.0)]).unwrap();
    let steep = with(linear).generate(&p).unwrap();
    let windows = free_windows(&steep, 6, 8);
    assert!(
        !windows.is_empty() && windows.iter().all(|&w| w == 0),
        "{windows:?}"
    );
    // Lossless either way: greedy adaptive decoding equals greedy AR.
    let greedy = DecoderConfig {
        sampling: Sampling::Greedy,
        ..cfg.clone()
    };
    let ar = Sjd2Decoder::new(
        model.clone(),
        DecoderConfig {
            mode: Mode::Autoregressive,
            ..greedy.clone()
        },
    )
    .unwrap()
    .generate(&p)
    .unwrap();
    let adaptive = Sjd2Decoder::new(model.clone(), greedy)
        .unwrap()
        .generate(&p)
        .unwrap();
    assert_eq!(adaptive.tokens, ar.tokens);
}

#[test]
fn the_cost_curve_is_measured_once_and_reproduces_tokens() {
    use sjd2_sampler::Window;
    let model = medium_toy(6);
    let p = prompt(&model, &[2]).with_seed(9);
    let cfg = DecoderConfig {
        window_len: Window::Auto { max: 8, explore: 0 },
        guidance_scale: 2.0,
        ..DecoderConfig::sjd2()
    };
    let d = Sjd2Decoder::new(Counting::new(model.clone()), cfg.clone()).unwrap();
    let first = d.generate(&p).unwrap();
    let probes = d.model().calls.get() - first.stats.forward_passes;
    // Lengths 9, 5, 3, 2, 1: an untimed pass and three timed ones each.
    assert_eq!(probes, 20);
    let curves = d.cost_curves();
    assert_eq!(curves.keys().copied().collect::<Vec<_>>(), vec![2]);
    let before = d.model().calls.get();
    let second = d.generate(&p).unwrap();
    assert_eq!(d.model().calls.get() - before, second.stats.forward_passes);
    assert_eq!(first.tokens, second.tokens);
    // Another decoder given the saved curve chooses the same windows.
    let json = curves[&2].to_json();
    let restored = sjd2_sampler::CostCurve::from_json(&json).unwrap();
    let other = Sjd2Decoder::new(model.clone(), cfg.clone())
        .unwrap()
        .with_cost_curves([(2, restored.clone())].into());
    let third = other.generate(&p).unwrap();
    assert_eq!(third.tokens, first.tokens);
    assert_eq!(third.stats.windows, first.stats.windows);
    // Once calibrated (by its first generation's exploration), the decoder's history stops
    // changing: the same seed gives the same tokens, and a decoder restored with curve and
    // history gives them too.
    let cfg = DecoderConfig {
        window_len: Window::Auto { max: 8, explore: 8 },
        ..cfg
    };
    let d = Sjd2Decoder::new(model.clone(), cfg.clone())
        .unwrap()
        .with_cost_curves([(2, restored.clone())].into());
    assert_eq!(d.acceptance_history().generations(), 0);
    d.generate(&p).unwrap();
    assert_eq!(d.acceptance_history().generations(), 1);
    assert!(d.acceptance_history().judged() > 0.0);
    let history = d.acceptance_history();
    let calibrated = d.generate(&p).unwrap();
    assert_eq!(d.acceptance_history(), history);
    assert_eq!(d.generate(&p).unwrap().tokens, calibrated.tokens);
    let saved = sjd2_sampler::AcceptanceHistory::from_json(&history.to_json()).unwrap();
    let restored = Sjd2Decoder::new(model, cfg)
        .unwrap()
        .with_cost_curves([(2, restored)].into())
        .with_acceptance_history(saved)
        .unwrap()
        .generate(&p)
        .unwrap();
    assert_eq!(restored.tokens, calibrated.tokens);
    assert_eq!(restored.stats.windows, calibrated.stats.windows);
}
