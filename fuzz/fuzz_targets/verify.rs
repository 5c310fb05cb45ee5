//! Verification, coupled draft redraws and logit processing with arbitrary rows (NaN, inf,
//! zeros, negative values).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use sjd2_core::{Dist, Draft, JacobiVerifier, ProbabilisticVerifier, Proposal, SampleRng, Sampling, Target, Verifier, VerifyInput};

fuzz_target!(|b: &[u8]| {
    if b.len() < 8 {
        return;
    }
    let vocab = 1 + b[0] as usize % 8;
    let w = b[1] as usize % 5;
    let floats: Vec<f32> = b[8..].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let row = |i: usize| -> Vec<f32> { (0..vocab).map(|j| floats.get(i * vocab + j).copied().unwrap_or(0.0)).collect() };
    let rows: Vec<Vec<f32>> = (0..=2 * w + 1).map(row).collect();
    let targets: Vec<Target> = (0..=w).map(|i| Target::Dist(Dist { offset: 3, probs: &rows[i] })).collect();
    let drafts: Vec<Draft> = (0..w)
        .map(|i| match b[2 + i % 6] % 4 {
            0 => Draft::Stop,
            1 => Draft::Forced(b[3] as u32),
            2 => Draft::Token { token: 3 + b[4] as u32 % 10, q: Proposal::OneHot },
            _ => Draft::Token { token: 3 + b[5] as u32 % 10, q: Proposal::Dist(Dist { offset: 3, probs: &rows[w + 1 + i] }) },
        })
        .collect();
    let samples: Vec<u32> = (0..=w).map(|i| 3 + b[(6 + i) % b.len()] as u32 % 10).collect();
    let input = VerifyInput { drafts: &drafts, targets: &targets, samples: &samples, top_k: (b[7] % 2 == 0).then_some(1 + b[7] as usize % 4) };
    let mut rng = SampleRng::seed_from_u64(u64::from(b[6]));
    for v in [&ProbabilisticVerifier as &dyn Verifier, &JacobiVerifier] {
        if let Ok(out) = v.verify(&input, &mut rng) {
            assert!(out.accepted <= w);
        }
    }
    // Coupled redraws: any row against any proposal; a returned token lies in the row's range.
    for (i, t) in targets.iter().enumerate() {
        if let (Target::Dist(p), Draft::Token { token, q }) = (*t, drafts.get(i).copied().unwrap_or(Draft::Stop)) {
            if let Ok(x) = sjd2_core::verify::couple(p, q, token, &mut rng) {
                assert!(x == token || (3..3 + vocab as u32).contains(&x));
            }
        }
    }
    for s in [Sampling::Greedy, Sampling::default(), Sampling::top_k(2, 0.7), Sampling::top_p(0.5, 1.3)] {
        let mut r = rows[0].clone();
        let _ = s.process_in_place(&mut r, &|| "fuzz row".into());
    }
});
