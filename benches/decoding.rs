//! Micro-benchmarks of the decoding loop's parts on CPU: verification of a window, one coupled
//! draft update, sampling one row, the demo model's forward pass over an SJD2 window, and a short
//! SJD2 decode that runs the whole loop (forward, sampling, verification, coupled draft updates,
//! cache rollback, denoising).
//!
//! ```text
//! cargo bench --bench decoding
//! ```
//! `examples/bench.rs` measures the end-to-end trade-offs; this file tracks regressions of the
//! pieces.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use burn::tensor::{Int, Tensor, TensorData};
use criterion::{Criterion, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};
use sjd2::core::{
    DecodeCache, Dist, Draft, ProbabilisticVerifier, PromptRow, Proposal, Role, SampleRng, Target,
    Verifier, VerifyInput, sampling::sample_index,
};
use sjd2::models::demo::{DemoModel, DemoWeights};
use sjd2::models::prompt::Template;
use sjd2::{DecoderConfig, Device, JacobiDenoiser, Mode, Sampling, Sjd2Decoder};

const VOCAB: usize = 512;

/// Emu3's image vocabulary, the largest of the published models'.
const LARGE_VOCAB: usize = 32_768;

fn random_dist(rng: &mut SampleRng, vocab: usize) -> Vec<f32> {
    let mut p: Vec<f32> = (0..vocab).map(|_| rng.random::<f32>().powi(8)).collect();
    let s: f32 = p.iter().sum();
    p.iter_mut().for_each(|x| *x /= s);
    p
}

fn verification(c: &mut Criterion) {
    let mut rng = SampleRng::seed_from_u64(1);
    let w = 32;
    let qs: Vec<Vec<f32>> = (0..w).map(|_| random_dist(&mut rng, VOCAB)).collect();
    let ps: Vec<Vec<f32>> = (0..=w).map(|_| random_dist(&mut rng, VOCAB)).collect();
    // Drafts that the target favours, so verification walks deep into the window.
    let drafts: Vec<Draft<'_>> = qs
        .iter()
        .zip(&ps)
        .map(|(q, p)| Draft::Token {
            token: sjd2::core::sampling::argmax(p) as u32,
            q: Proposal::Dist(Dist {
                offset: 0,
                probs: q,
            }),
        })
        .collect();
    let targets: Vec<Target<'_>> = ps
        .iter()
        .map(|p| {
            Target::Dist(Dist {
                offset: 0,
                probs: p,
            })
        })
        .collect();
    let samples: Vec<u32> = (0..=w as u32).collect();
    let input = VerifyInput {
        drafts: &drafts,
        targets: &targets,
        samples: &samples,
        top_k: None,
    };
    c.bench_function("verify/probabilistic/w32/vocab512", |b| {
        let mut rng = SampleRng::seed_from_u64(2);
        b.iter(|| {
            ProbabilisticVerifier
                .verify(black_box(&input), &mut rng)
                .unwrap()
        })
    });
    // A coupled redraw of one slot (the old draft: the mode of its old distribution).
    for vocab in [VOCAB, LARGE_VOCAB] {
        let (p, q) = (random_dist(&mut rng, vocab), random_dist(&mut rng, vocab));
        let old = sjd2::core::sampling::argmax(&q) as u32;
        c.bench_function(&format!("couple/vocab{vocab}"), |b| {
            let mut rng = SampleRng::seed_from_u64(4);
            b.iter(|| {
                sjd2::core::verify::couple(
                    Dist {
                        offset: 0,
                        probs: black_box(&p),
                    },
                    Proposal::Dist(Dist {
                        offset: 0,
                        probs: &q,
                    }),
                    old,
                    &mut rng,
                )
                .unwrap()
            })
        });
    }
}

fn sampling(c: &mut Criterion) {
    let mut rng = SampleRng::seed_from_u64(3);
    for vocab in [VOCAB, LARGE_VOCAB] {
        let logits: Vec<f32> = (0..vocab).map(|_| rng.random::<f32>() * 8.0).collect();
        for (name, s) in [
            ("temperature", Sampling::temperature(1.0)),
            ("top-k-64", Sampling::top_k(64, 1.0)),
        ] {
            c.bench_function(&format!("sampling/{name}/vocab{vocab}"), |b| {
                let mut row = logits.clone();
                let mut rng = SampleRng::seed_from_u64(5);
                b.iter(|| {
                    row.copy_from_slice(&logits);
                    s.process_in_place(&mut row, &|| "row".into()).unwrap();
                    sample_index(black_box(&row), &mut rng)
                })
            });
        }
    }
}

fn demo() -> DemoModel {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo");
    DemoModel::load(dir, DemoWeights::Sjd2, &Device::flex()).expect("assets/demo loads")
}

fn step(c: &mut Criterion) {
    let demo = demo();
    let prompt = demo
        .tokenizer
        .encode("a red circle in the top left corner", &Template::Chameleon)
        .unwrap()
        .with_seed(7);
    let model = &demo.model;
    let rows = [
        PromptRow {
            prompt: &prompt,
            role: Role::Conditional,
        },
        PromptRow {
            prompt: &prompt,
            role: Role::Unconditional,
        },
    ];
    let mut cache = model.new_cache(2, model.max_sequence_len()).unwrap();
    model.prefill(&mut cache, &rows).unwrap();
    let lens = cache.lens().to_vec();
    let first = i64::from(model.layout().image_token_range().start);
    for w in [1usize, sjd2::demo::SJD2_WINDOW + 1] {
        let ids: Vec<i64> = (0..2 * w as i64).map(|i| first + i % 97).collect();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [2, w]), &model.device());
        c.bench_function(&format!("step/forward-only/demo/w{w}/cfg"), |b| {
            b.iter(|| {
                let emb = model.embed_tokens(ids.clone()).unwrap();
                let out = model.forward(&mut cache, emb).unwrap().into_data();
                for (row, &l) in lens.iter().enumerate() {
                    cache.rollback_to(row, l).unwrap();
                }
                out
            })
        });
    }
    let config = DecoderConfig {
        max_new_tokens: Some(34),
        ..sjd2::demo::decoder_config(&demo.config, Mode::Sjd2)
    };
    let name = format!("step/sjd2-decode-two-rows/demo/w{}/cfg", config.window_len);
    let decoder = Sjd2Decoder::new(demo.model.clone(), config).unwrap();
    c.bench_function(&name, |b| {
        b.iter(|| decoder.generate(black_box(&prompt)).unwrap())
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = verification, sampling, step
}
criterion_main!(benches);
