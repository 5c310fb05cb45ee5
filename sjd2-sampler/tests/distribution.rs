//! SJD and SJD2 must sample whole sequences from exactly the autoregressive distribution.
//!
//! The toy model's 2x2 image (4 image tokens, forced row ends) has 256 possible outputs; their
//! exact probabilities under AR sampling are enumerated and compared with 20 000 decoded samples
//! by Pearson's chi-square test (cells with expected count < 5 pooled). A configuration passes
//! when p > 0.001. Two deliberately wrong verifiers must be rejected at p < 1e-6, showing that
//! the test has the power to catch a biased criterion.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashMap};

use common::{prompt, small_toy};
use rand::{Rng, RngCore};
use sjd2_core::sampling::sample_index;
use sjd2_core::testing::{GoodnessOfFit, ToyModel, exact_sequence_distribution, goodness_of_fit};
use sjd2_core::{
    Draft, Outcome, Prompt, Proposal, Result, Sampling, Target, Verifier, VerifyInput,
};
use sjd2_sampler::{
    CostCurve, DecoderConfig, DraftInit, DraftUpdate, LevelConditioning, LevelPolicy, Sjd2Decoder,
    Window,
};

const SAMPLES: usize = 20_000;
const BATCH: usize = 2_000;
const ALPHA: f64 = 1e-3;

fn fit(
    model: &ToyModel,
    cfg: DecoderConfig,
    verifier: Option<Box<dyn Fn() -> Box<dyn Verifier>>>,
) -> GoodnessOfFit {
    let p = test_prompt(model, &cfg);
    let exact = exact(model, &p, &cfg);
    let total: f64 = exact.values().sum();
    assert!(
        (total - 1.0).abs() < 1e-4,
        "exact distribution sums to {total}"
    );
    let mut decoder = Sjd2Decoder::new(model.clone(), cfg).unwrap();
    if let Some(v) = verifier {
        decoder = decoder.with_verifier(BoxedVerifier(v()));
    }
    fit_decoder(&decoder, BATCH).0
}

/// The prompt of every test: two words, and with an image guidance scale an image condition
/// that differs from the unconditional row (so that three-way guidance is not two-way).
fn test_prompt(model: &ToyModel, cfg: &DecoderConfig) -> Prompt {
    let p = prompt(model, &[1, 2]);
    match cfg.image_guidance_scale {
        Some(_) => p.with_image_condition(vec![model.config().text_token(3)]),
        None => p,
    }
}

fn exact(model: &ToyModel, p: &Prompt, cfg: &DecoderConfig) -> HashMap<Vec<u32>, f64> {
    exact_sequence_distribution(
        model,
        p,
        &cfg.sampling,
        cfg.guidance_scale,
        cfg.image_guidance_scale,
    )
    .unwrap()
}

/// Decodes [`SAMPLES`] sequences in batches of `batch`; the fit to the exact AR distribution
/// and the windows the passes drafted.
/// The fit, and how many passes (prefills left out) drafted each window (0: a plain pass).
fn fit_decoder(
    decoder: &Sjd2Decoder<ToyModel>,
    batch: usize,
) -> (GoodnessOfFit, BTreeMap<usize, usize>) {
    let model = decoder.model();
    let cfg = decoder.config();
    let p = test_prompt(model, cfg);
    let exact = exact(model, &p, cfg);
    let mut counts: HashMap<Vec<u32>, usize> = HashMap::new();
    let mut windows = BTreeMap::new();
    for chunk in 0..SAMPLES / batch {
        let prompts: Vec<_> = (0..batch)
            .map(|i| p.clone().with_seed((chunk * batch + i) as u64 + 1_000_000))
            .collect();
        for g in decoder.generate_batch(&prompts).unwrap() {
            for &w in g.stats.windows.iter().skip(1) {
                *windows.entry(w).or_default() += 1;
            }
            *counts.entry(g.tokens).or_default() += 1;
        }
    }
    (goodness_of_fit(&counts, &exact, 5.0), windows)
}

/// An adaptive window over a cost curve on which the best length depends on the acceptance
/// seen so far, in small batches so that each batch's windows follow its own random outcomes.
fn fit_adaptive(model: &ToyModel, cfg: DecoderConfig) -> GoodnessOfFit {
    let curve = CostCurve::new(vec![(1, 1.0), (2, 1.0), (5, 1.75)]).unwrap();
    fit_adaptive_on(model, cfg, curve, false)
}

/// [`fit_adaptive`] on `curve`; with `plain`, the policy must also have chosen plain passes
/// (window 0) between drafting ones.
fn fit_adaptive_on(
    model: &ToyModel,
    cfg: DecoderConfig,
    curve: CostCurve,
    plain: bool,
) -> GoodnessOfFit {
    const SMALL: usize = 10;
    let rows = SMALL * if cfg.uses_guidance() { 2 } else { 1 };
    let decoder = Sjd2Decoder::new(model.clone(), cfg)
        .unwrap()
        .with_cost_curves(BTreeMap::from([(rows, curve)]));
    let (fit, windows) = fit_decoder(&decoder, SMALL);
    let drafted: Vec<usize> = windows.keys().copied().filter(|&w| w > 0).collect();
    assert!(
        drafted.len() >= 2,
        "the policy should vary the window: {windows:?}"
    );
    if plain {
        let plain_passes = windows.get(&0).copied().unwrap_or(0);
        let drafting: usize = windows
            .iter()
            .filter(|(w, _)| **w > 0)
            .map(|(_, n)| n)
            .sum();
        assert!(
            plain_passes > 1000 && drafting > 1000,
            "plain passes should mix with drafting ones: {windows:?}"
        );
        eprintln!("passes by window: {windows:?}");
    }
    fit
}

#[derive(Debug)]
struct BoxedVerifier(Box<dyn Verifier>);

impl Verifier for BoxedVerifier {
    fn verify(&self, input: &VerifyInput<'_>, rng: &mut dyn RngCore) -> Result<Outcome> {
        self.0.verify(input, rng)
    }
}

fn sampled(cfg: DecoderConfig, guidance: f32, sampling: Sampling) -> DecoderConfig {
    DecoderConfig {
        guidance_scale: guidance,
        sampling,
        ..cfg
    }
}

fn sjd(window: usize, init: DraftInit) -> DecoderConfig {
    DecoderConfig {
        window_len: window.into(),
        draft_init: init,
        ..DecoderConfig::sjd()
    }
}

fn assert_same(name: &str, f: GoodnessOfFit) {
    assert!(
        f.cells >= 20,
        "{name}: too few cells to be a meaningful test: {f:?}"
    );
    assert!(
        f.p_value > ALPHA,
        "{name}: distribution differs from AR: {f:?}"
    );
    eprintln!("{name}: {f:?}");
}

#[test]
fn enumeration_matches_plain_ar_sampling() {
    let m = small_toy(11);
    let f = fit(
        &m,
        sampled(DecoderConfig::autoregressive(), 2.0, Sampling::default()),
        None,
    );
    assert_same("AR with guidance", f);
}

#[test]
fn sjd_random_init_no_guidance() {
    let m = small_toy(11);
    assert_same(
        "SJD random",
        fit(
            &m,
            sampled(sjd(3, DraftInit::Random), 1.0, Sampling::default()),
            None,
        ),
    );
}

#[test]
fn sjd_horizontal_repeat_with_guidance() {
    let m = small_toy(12);
    assert_same(
        "SJD horizontal",
        fit(
            &m,
            sampled(
                sjd(2, DraftInit::HorizontalRepeat),
                2.0,
                Sampling::default(),
            ),
            None,
        ),
    );
}

#[test]
fn sjd_vertical_repeat_top_k_with_guidance() {
    let m = small_toy(13);
    let s = Sampling::Multinomial {
        temperature: 0.8,
        top_k: Some(3),
        top_p: None,
    };
    assert_same(
        "SJD vertical top-k",
        fit(&m, sampled(sjd(4, DraftInit::VerticalRepeat), 1.5, s), None),
    );
}

#[test]
fn sjd2_clean_prefix_no_guidance() {
    let m = small_toy(11);
    let mut cfg = sampled(
        DecoderConfig {
            window_len: sjd2_sampler::Window::Fixed(3),
            ..DecoderConfig::sjd2()
        },
        1.0,
        Sampling::default(),
    );
    cfg.sjd2.denoising_steps = 3;
    assert_same("SJD2 by distance", fit(&m, cfg, None));
}

#[test]
fn sjd2_clean_prefix_with_guidance() {
    let m = small_toy(12);
    let mut cfg = sampled(
        DecoderConfig {
            window_len: sjd2_sampler::Window::Fixed(4),
            ..DecoderConfig::sjd2()
        },
        1.5,
        Sampling::top_p(0.95, 1.0),
    );
    cfg.sjd2.denoising_steps = 2;
    cfg.sjd2.level_policy = LevelPolicy::OnePerIteration;
    cfg.sjd2.level_conditioning = LevelConditioning::Sinusoidal;
    assert_same("SJD2 one level per iteration", fit(&m, cfg, None));
}

#[test]
fn sjd_coupled_drafts_with_guidance() {
    let m = small_toy(11);
    let cfg = DecoderConfig {
        draft_update: DraftUpdate::Coupled,
        ..sampled(sjd(3, DraftInit::Random), 2.0, Sampling::default())
    };
    assert_same("SJD coupled", fit(&m, cfg, None));
}

#[test]
fn sjd_coupled_drafts_top_k() {
    let m = small_toy(13);
    let s = Sampling::Multinomial {
        temperature: 0.8,
        top_k: Some(3),
        top_p: None,
    };
    let cfg = DecoderConfig {
        draft_update: DraftUpdate::Coupled,
        ..sampled(sjd(4, DraftInit::HorizontalRepeat), 1.0, s)
    };
    assert_same("SJD coupled top-k", fit(&m, cfg, None));
}

#[test]
fn sjd2_coupled_drafts_with_guidance() {
    let m = small_toy(12);
    let mut cfg = sampled(
        DecoderConfig {
            window_len: sjd2_sampler::Window::Fixed(4),
            draft_update: DraftUpdate::Coupled,
            ..DecoderConfig::sjd2()
        },
        1.5,
        Sampling::default(),
    );
    cfg.sjd2.denoising_steps = 3;
    cfg.sjd2.level_conditioning = LevelConditioning::Sinusoidal;
    assert_same("SJD2 coupled", fit(&m, cfg, None));
}

/// Chameleon's three-way guidance (text 3.0, image 1.2 upstream; smaller here so that the toy's
/// distribution keeps enough cells) with an image-conditioned row of its own: AR decoding, SJD
/// and SJD2 must all sample the three-way guided distribution, which differs from the two-way
/// one at the same text scale.
#[test]
fn three_way_guidance_ar_sjd_and_sjd2() {
    let m = small_toy(15);
    let three_way = |cfg: DecoderConfig| DecoderConfig {
        image_guidance_scale: Some(1.3),
        ..sampled(cfg, 1.6, Sampling::default())
    };
    let ar = three_way(DecoderConfig::autoregressive());
    let two_way = exact(
        &m,
        &prompt(&m, &[1, 2]),
        &DecoderConfig {
            image_guidance_scale: None,
            ..ar.clone()
        },
    );
    let three = exact(&m, &test_prompt(&m, &ar), &ar);
    let tv: f64 = three
        .iter()
        .map(|(s, p)| (p - two_way.get(s).copied().unwrap_or(0.0)).abs())
        .sum::<f64>()
        / 2.0;
    assert!(
        tv > 0.05,
        "three-way guidance should change the distribution (TV {tv})"
    );
    assert_same("AR three-way", fit(&m, ar, None));
    let sjd = three_way(DecoderConfig {
        draft_update: DraftUpdate::Coupled,
        ..sjd(3, DraftInit::HorizontalRepeat)
    });
    assert_same("SJD coupled three-way", fit(&m, sjd, None));
    let mut sjd2 = three_way(DecoderConfig {
        window_len: Window::Fixed(4),
        draft_update: DraftUpdate::Coupled,
        ..DecoderConfig::sjd2()
    });
    sjd2.sjd2.denoising_steps = 3;
    assert_same("SJD2 coupled three-way", fit(&m, sjd2, None));
}

#[test]
fn sjd_adaptive_window_coupled_with_guidance() {
    let m = small_toy(13);
    let cfg = sampled(
        DecoderConfig {
            window_len: Window::Auto { max: 4, explore: 1 },
            draft_update: DraftUpdate::Coupled,
            draft_init: DraftInit::HorizontalRepeat,
            ..DecoderConfig::sjd()
        },
        1.5,
        Sampling::default(),
    );
    assert_same("SJD adaptive window", fit_adaptive(&m, cfg));
}

#[test]
fn sjd2_adaptive_window_with_guidance() {
    let m = small_toy(14);
    let mut cfg = sampled(
        DecoderConfig {
            window_len: Window::Auto { max: 4, explore: 1 },
            ..DecoderConfig::sjd2()
        },
        1.5,
        Sampling::default(),
    );
    cfg.sjd2.denoising_steps = 2;
    assert_same("SJD2 adaptive window", fit_adaptive(&m, cfg));
}

#[test]
fn sjd2_adaptive_window_mixing_plain_passes() {
    // A slot costs half a plain pass: a window pays only while drafts are accepted, so the
    // policy switches between plain passes and drafting ones, and SJD2's noisy buffer is
    // dropped and rebuilt along the way.
    let m = small_toy(15);
    let mut cfg = sampled(
        DecoderConfig {
            window_len: Window::Auto { max: 4, explore: 1 },
            draft_update: DraftUpdate::Coupled,
            ..DecoderConfig::sjd2()
        },
        1.5,
        Sampling::default(),
    );
    cfg.sjd2.denoising_steps = 2;
    let curve = CostCurve::new(vec![(1, 1.0), (2, 1.5), (5, 3.0)]).unwrap();
    assert_same(
        "SJD2 adaptive window with plain passes",
        fit_adaptive_on(&m, cfg, curve, true),
    );
}

/// Negative control: accepting every draft is wrong.
#[derive(Debug)]
struct AlwaysAccept;

impl Verifier for AlwaysAccept {
    fn verify(&self, input: &VerifyInput<'_>, _rng: &mut dyn RngCore) -> Result<Outcome> {
        let stop = input
            .drafts
            .iter()
            .position(|d| matches!(d, Draft::Stop))
            .unwrap_or(input.drafts.len());
        Ok(Outcome {
            accepted: stop,
            next_token: input.samples[stop],
        })
    }
}

/// Negative control: resampling from `P` instead of the residual after a rejection is wrong.
#[derive(Debug)]
struct ResampleFromP;

impl Verifier for ResampleFromP {
    fn verify(&self, input: &VerifyInput<'_>, rng: &mut dyn RngCore) -> Result<Outcome> {
        for (j, d) in input.drafts.iter().enumerate() {
            if let (Draft::Token { token, q }, Target::Dist(p)) = (*d, input.targets[j]) {
                let q_d = match q {
                    Proposal::OneHot => 1.0,
                    Proposal::Dist(q) => q.prob(token),
                };
                if rng.random::<f64>()
                    >= sjd2_core::verify::acceptance_probability(p.prob(token), q_d)
                {
                    let i = sample_index(p.probs, rng).unwrap() as u32;
                    return Ok(Outcome {
                        accepted: j,
                        next_token: p.offset + i,
                    });
                }
            }
        }
        let w = input.drafts.len();
        Ok(Outcome {
            accepted: w,
            next_token: input.samples[w],
        })
    }
}

#[test]
fn negative_controls_are_detected() {
    let m = small_toy(12);
    let cfg = sampled(
        sjd(2, DraftInit::HorizontalRepeat),
        1.0,
        Sampling::default(),
    );
    let accept = fit(&m, cfg.clone(), Some(Box::new(|| Box::new(AlwaysAccept))));
    eprintln!("always-accept: {accept:?}");
    assert!(
        accept.p_value < 1e-6,
        "always-accept not detected: {accept:?}"
    );
    let from_p = fit(&m, cfg, Some(Box::new(|| Box::new(ResampleFromP))));
    eprintln!("resample-from-P: {from_p:?}");
    assert!(
        from_p.p_value < 1e-6,
        "resample-from-P not detected: {from_p:?}"
    );
}
