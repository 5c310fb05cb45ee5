//! Verification criteria: which drafted tokens of a window are kept.
//!
//! A window holds drafts `d_1..d_W` for positions `n+1..n+W`; one forward pass gives the processed
//! target distributions `P_0..P_W` (`P_{j-1}` is the distribution of position `n+j` given the
//! accepted prefix) and one sample `y_i ~ P_i` per output. A [`Verifier`] walks the drafts left to
//! right and returns an [`Outcome`]: how many drafts were accepted and the token for the first
//! position that was not, so that every pass commits between 1 and `W + 1` tokens.
//!
//! [`ProbabilisticVerifier`] is the speculative-sampling criterion of SJD (accept with probability
//! `min(1, P(d)/q(d))`, resample the residual on rejection); it keeps the output distribution
//! equal to plain autoregressive sampling. [`JacobiVerifier`] accepts a draft iff it equals the
//! sample drawn for its position; it is exact only for greedy decoding.

use std::cell::RefCell;
use std::fmt::Debug;

use rand::{Rng, RngCore};

use crate::error::{Error, Result};
use crate::sampling::{apply_top_k, inverse_cdf, positive_mass};

/// A processed distribution over a contiguous range of token ids.
#[derive(Debug, Clone, Copy)]
pub struct Dist<'a> {
    /// Token id of `probs[0]`.
    pub offset: u32,
    /// Probabilities (non-negative, summing to 1 up to rounding).
    pub probs: &'a [f32],
}

impl Dist<'_> {
    /// Probability of `token` (0 outside the range).
    pub fn prob(&self, token: u32) -> f32 {
        token
            .checked_sub(self.offset)
            .and_then(|i| self.probs.get(i as usize))
            .copied()
            .unwrap_or(0.0)
    }
}

/// The distribution a draft token was drawn from (`q` in speculative sampling).
#[derive(Debug, Clone, Copy)]
pub enum Proposal<'a> {
    /// The draft was chosen deterministically (random initialization, repetition): `q = δ_d`.
    OneHot,
    /// The draft was sampled from this distribution (a Jacobi update from an earlier pass).
    Dist(Dist<'a>),
}

/// What the model predicts for one position of the window.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// The processed distribution `P`.
    Dist(Dist<'a>),
    /// The position is structurally forced (row end, end of image): `P = δ_token`.
    Forced(u32),
}

/// One window slot as the verifier sees it.
#[derive(Debug, Clone, Copy)]
pub enum Draft<'a> {
    /// A structurally forced token: always accepted.
    Forced(u32),
    /// A drafted token with its proposal distribution.
    Token {
        /// The drafted id.
        token: u32,
        /// The distribution it was drawn from.
        q: Proposal<'a>,
    },
    /// A slot that cannot be accepted (an SJD2 noisy slot under clean-prefix verification):
    /// verification stops here and the position takes the fresh sample.
    Stop,
}

/// Everything a verifier needs for one sample's window.
#[derive(Debug, Clone, Copy)]
pub struct VerifyInput<'a> {
    /// Slots `d_1..d_W`.
    pub drafts: &'a [Draft<'a>],
    /// `P_0..P_W` (one more than `drafts`).
    pub targets: &'a [Target<'a>],
    /// `y_0..y_W`, one sample from each target.
    pub samples: &'a [u32],
    /// Top-k to re-apply to residual distributions (as the SJD reference does).
    pub top_k: Option<usize>,
}

impl VerifyInput<'_> {
    fn check(&self) -> Result<()> {
        let w = self.drafts.len();
        if self.targets.len() != w + 1 || self.samples.len() != w + 1 {
            return Err(Error::Shape {
                what: "verification input (targets, samples)".into(),
                expected: vec![w + 1, w + 1],
                got: vec![self.targets.len(), self.samples.len()],
            });
        }
        Ok(())
    }
}

/// The result of verifying one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Number of leading drafts accepted, in `0..=W`.
    pub accepted: usize,
    /// The token for position `n + accepted + 1`: a residual resample, a fresh sample at a noisy
    /// slot, or the bonus sample when every draft was accepted.
    pub next_token: u32,
}

impl Outcome {
    /// Tokens this pass commits: `accepted + 1`, in `1..=W+1`.
    pub fn committed(&self) -> usize {
        self.accepted + 1
    }
}

/// A verification criterion. Implement it to plug a custom (for example lossy) criterion into the
/// decoder; the provided ones are [`ProbabilisticVerifier`] and [`JacobiVerifier`].
pub trait Verifier: Debug + Send + Sync {
    /// Verifies one window.
    ///
    /// # Errors
    /// [`Error::Shape`] if `targets` or `samples` do not have one more entry than `drafts`.
    fn verify(&self, input: &VerifyInput<'_>, rng: &mut dyn RngCore) -> Result<Outcome>;
}

/// `min(1, p / q)`; a draft with `q(d) = 0` (which cannot have been drawn from `q`) is accepted
/// iff `p > 0`.
pub fn acceptance_probability(p: f32, q: f32) -> f64 {
    if q <= 0.0 {
        return if p > 0.0 { 1.0 } else { 0.0 };
    }
    (f64::from(p) / f64::from(q)).min(1.0)
}

/// The residual distribution `max(P − q, 0)` over `p`'s range, with top-k re-applied, not
/// normalized. All zeros means the residual has no mass.
pub fn residual(p: Dist<'_>, q: Proposal<'_>, draft: u32, top_k: Option<usize>) -> Vec<f32> {
    let mut r = Vec::with_capacity(p.probs.len());
    write_residual(p, q, draft, &mut r);
    if let Some(k) = top_k {
        apply_top_k(&mut r, k, 0.0);
    }
    r
}

/// Replaces `out` by `max(P − q, 0)` over `p`'s range. The usual case, `q` over the same range as
/// `p`, walks both slices side by side (and vectorizes).
fn write_residual(p: Dist<'_>, q: Proposal<'_>, draft: u32, out: &mut Vec<f32>) {
    out.clear();
    match q {
        Proposal::Dist(q) if q.offset == p.offset && q.probs.len() >= p.probs.len() => {
            out.extend(p.probs.iter().zip(q.probs).map(|(&x, &y)| (x - y).max(0.0)))
        }
        _ => out.extend(residual_weights(p, q, draft)),
    }
}

/// `max(P − q, 0)` entry by entry over `p`'s range, for any `q`.
fn residual_weights<'a>(
    p: Dist<'a>,
    q: Proposal<'a>,
    draft: u32,
) -> impl Iterator<Item = f32> + 'a {
    let one_hot = match q {
        Proposal::OneHot => draft
            .checked_sub(p.offset)
            .map(|i| i as usize)
            .filter(|&i| i < p.probs.len()),
        Proposal::Dist(_) => None,
    };
    let (q_offset, q_probs): (u32, &[f32]) = match q {
        Proposal::Dist(q) => (q.offset, q.probs),
        Proposal::OneHot => (p.offset, &[]),
    };
    let aligned = q_offset == p.offset;
    p.probs.iter().enumerate().map(move |(i, &x)| {
        let q_i = if one_hot == Some(i) {
            1.0
        } else if aligned {
            q_probs.get(i).copied().unwrap_or(0.0)
        } else {
            Dist {
                offset: q_offset,
                probs: q_probs,
            }
            .prob(p.offset + i as u32)
        };
        (x - q_i).max(0.0)
    })
}

/// Samples the replacement token after a rejection: from the residual, or from `P` itself when
/// the residual has no mass.
pub fn sample_residual(
    p: Dist<'_>,
    q: Proposal<'_>,
    draft: u32,
    top_k: Option<usize>,
    rng: &mut dyn RngCore,
) -> Result<u32> {
    draw_residual(p, q, draft, top_k, &mut || rng.random::<f64>())
}

thread_local! {
    /// The residual of the draw in progress on this thread, kept between draws (no allocation
    /// per rejected or coupled draft).
    static RESIDUAL: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// [`sample_residual`] with its uniforms from `uniform`: one for the residual, one more only when
/// the residual has no mass and `P` is sampled instead.
fn draw_residual(
    p: Dist<'_>,
    q: Proposal<'_>,
    draft: u32,
    top_k: Option<usize>,
    uniform: &mut dyn FnMut() -> f64,
) -> Result<u32> {
    let from_residual = match top_k {
        Some(_) => {
            let r = residual(p, q, draft, top_k);
            positive_mass(&r).map(|total| inverse_cdf(&r, uniform() * total))
        }
        None => RESIDUAL.with_borrow_mut(|r| {
            write_residual(p, q, draft, r);
            positive_mass(r).map(|total| inverse_cdf(r, uniform() * total))
        }),
    };
    let idx = from_residual
        .or_else(|| positive_mass(p.probs).map(|total| inverse_cdf(p.probs, uniform() * total)))
        .ok_or_else(|| Error::NonFinite {
            what: "target distribution during verification".into(),
            detail: "it has no probability mass".into(),
        })?;
    Ok(p.offset + idx as u32)
}

/// Redraws a surviving draft from its position's new distribution `p` by maximal coupling with
/// the old draft (MC-SJD, So et al. 2025, arXiv:2510.24211): keep `old` with probability
/// `min(1, p(old)/q(old))`, otherwise draw from the normalized residual `max(p − q, 0)`.
///
/// If `old` was drawn from `q` (or `q` is [`Proposal::OneHot`] at `old`), the result is
/// distributed exactly as `p`, so it is a valid draft with proposal `p` and verification stays
/// lossless; but it equals `old` with probability `Σ min(p, q)`, the largest possible, so drafts
/// stop changing once their context settles and later positions see the same inputs pass after
/// pass. Independent resampling keeps a draft only with probability `Σ p·q`.
///
/// # Errors
/// [`Error::NonFinite`] if `p` has no probability mass.
///
/// ```
/// use sjd2_core::verify::couple;
/// use sjd2_core::{Dist, Proposal};
/// use rand::SeedableRng;
///
/// let mut rng = sjd2_core::SampleRng::seed_from_u64(0);
/// let p = Dist { offset: 100, probs: &[0.5, 0.5] };
/// let q = Dist { offset: 100, probs: &[0.5, 0.5] };
/// // Same distribution: the old draft is always kept.
/// assert_eq!(couple(p, Proposal::Dist(q), 101, &mut rng)?, 101);
/// # Ok::<(), sjd2_core::Error>(())
/// ```
pub fn couple(p: Dist<'_>, q: Proposal<'_>, old: u32, rng: &mut dyn RngCore) -> Result<u32> {
    Ok(accept_or_resample(p, q, old, None, &mut || rng.random::<f64>())?.unwrap_or(old))
}

/// The uniforms one [`couple_with`] consumes, drawn beforehand in a fixed order, so that many
/// drafts can be coupled on several threads with the same result as one after another.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CouplingUniforms {
    /// Decides whether the old draft is kept.
    pub keep: f64,
    /// Draws from the residual.
    pub residual: f64,
    /// Draws from `P` when the residual has no mass.
    pub fallback: f64,
}

impl CouplingUniforms {
    /// Three uniforms from `rng`, always three (whatever the coupling then needs).
    pub fn draw(rng: &mut dyn RngCore) -> Self {
        Self {
            keep: rng.random(),
            residual: rng.random(),
            fallback: rng.random(),
        }
    }
}

/// [`couple`] with its randomness drawn beforehand: the same maximal coupling, a pure function of
/// its inputs.
///
/// # Errors
/// [`Error::NonFinite`] if `p` has no probability mass.
///
/// ```
/// use sjd2_core::verify::{CouplingUniforms, couple_with};
/// use sjd2_core::{Dist, Proposal};
///
/// let p = Dist { offset: 100, probs: &[0.25, 0.75] };
/// let q = Dist { offset: 100, probs: &[0.5, 0.5] };
/// let u = |keep| CouplingUniforms { keep, residual: 0.5, fallback: 0.5 };
/// // Keep 100 with probability p/q = 0.5; otherwise the residual holds only 101.
/// assert_eq!(couple_with(p, Proposal::Dist(q), 100, u(0.4))?, 100);
/// assert_eq!(couple_with(p, Proposal::Dist(q), 100, u(0.6))?, 101);
/// # Ok::<(), sjd2_core::Error>(())
/// ```
pub fn couple_with(p: Dist<'_>, q: Proposal<'_>, old: u32, u: CouplingUniforms) -> Result<u32> {
    let mut next = [u.keep, u.residual, u.fallback].into_iter();
    let mut uniform = || next.next().unwrap_or(u.fallback);
    Ok(accept_or_resample(p, q, old, None, &mut uniform)?.unwrap_or(old))
}

/// The speculative-sampling step for one draft `d ~ q` against target `p`: `None` when `d` is
/// kept (probability `min(1, p(d)/q(d))`), otherwise `Some` replacement drawn by
/// [`sample_residual`]. Verification and [`couple`] both apply it; `uniform` is called once for
/// the decision, then as [`draw_residual`] needs.
fn accept_or_resample(
    p: Dist<'_>,
    q: Proposal<'_>,
    draft: u32,
    top_k: Option<usize>,
    uniform: &mut dyn FnMut() -> f64,
) -> Result<Option<u32>> {
    let q_d = match q {
        Proposal::OneHot => 1.0,
        Proposal::Dist(q) => q.prob(draft),
    };
    if uniform() < acceptance_probability(p.prob(draft), q_d) {
        return Ok(None);
    }
    draw_residual(p, q, draft, top_k, uniform).map(Some)
}

/// Speculative-sampling verification (SJD's criterion): lossless.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProbabilisticVerifier;

impl Verifier for ProbabilisticVerifier {
    fn verify(&self, input: &VerifyInput<'_>, rng: &mut dyn RngCore) -> Result<Outcome> {
        input.check()?;
        for (j, draft) in input.drafts.iter().enumerate() {
            match *draft {
                Draft::Forced(_) => continue,
                Draft::Stop => {
                    return Ok(Outcome {
                        accepted: j,
                        next_token: input.samples[j],
                    });
                }
                Draft::Token { token, q } => match input.targets[j] {
                    Target::Forced(t) => {
                        if token != t {
                            return Ok(Outcome {
                                accepted: j,
                                next_token: t,
                            });
                        }
                    }
                    Target::Dist(p) => {
                        if let Some(next_token) =
                            accept_or_resample(p, q, token, input.top_k, &mut || {
                                rng.random::<f64>()
                            })?
                        {
                            return Ok(Outcome {
                                accepted: j,
                                next_token,
                            });
                        }
                    }
                },
            }
        }
        Ok(Outcome {
            accepted: input.drafts.len(),
            next_token: input.samples[input.drafts.len()],
        })
    }
}

/// Deterministic Jacobi verification: a draft is accepted iff it equals the sample drawn for its
/// position. Exact for greedy decoding only.
#[derive(Debug, Clone, Copy, Default)]
pub struct JacobiVerifier;

impl Verifier for JacobiVerifier {
    fn verify(&self, input: &VerifyInput<'_>, _rng: &mut dyn RngCore) -> Result<Outcome> {
        input.check()?;
        for (j, draft) in input.drafts.iter().enumerate() {
            let keep = match *draft {
                Draft::Forced(_) => true,
                Draft::Stop => false,
                Draft::Token { token, .. } => token == input.samples[j],
            };
            if !keep {
                return Ok(Outcome {
                    accepted: j,
                    next_token: input.samples[j],
                });
            }
        }
        Ok(Outcome {
            accepted: input.drafts.len(),
            next_token: input.samples[input.drafts.len()],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::sample_index;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    const P: [f32; 4] = [0.1, 0.2, 0.3, 0.4];

    fn dist(p: &[f32]) -> Dist<'_> {
        Dist {
            offset: 10,
            probs: p,
        }
    }

    /// Asserts that the tokens `10..14` were drawn with frequencies within `tol` of `P`.
    fn assert_frequencies_match_p(counts: &[usize; 4], tol: f64) {
        let n = counts.iter().sum::<usize>() as f64;
        for (c, p) in counts.iter().zip(P) {
            assert!(
                (*c as f64 / n - f64::from(p)).abs() < tol,
                "frequencies {counts:?} are not P"
            );
        }
    }

    #[test]
    fn acceptance_probability_is_min_ratio() {
        assert_eq!(acceptance_probability(0.2, 0.4), 0.5);
        assert_eq!(acceptance_probability(0.6, 0.3), 1.0);
        assert_eq!(acceptance_probability(0.0, 0.3), 0.0);
        assert_eq!(acceptance_probability(0.1, 0.0), 1.0);
    }

    #[test]
    fn residual_one_hot_removes_the_draft() {
        let r = residual(dist(&P), Proposal::OneHot, 12, None);
        assert_eq!(r, vec![0.1, 0.2, 0.0, 0.4]);
    }

    #[test]
    fn residual_against_a_distribution() {
        let q = [0.4, 0.1, 0.3, 0.2];
        let r = residual(dist(&P), Proposal::Dist(dist(&q)), 10, None);
        let expect = [0.0, 0.1, 0.0, 0.2];
        for (a, b) in r.iter().zip(expect) {
            assert!((a - b).abs() < 1e-6, "{r:?}");
        }
    }

    #[test]
    fn residual_reapplies_top_k() {
        let r = residual(dist(&P), Proposal::OneHot, 10, Some(2));
        assert_eq!(r, vec![0.0, 0.0, 0.3, 0.4]);
    }

    #[test]
    fn zero_mass_residual_falls_back_to_p() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut counts = [0usize; 4];
        for _ in 0..20_000 {
            let t =
                sample_residual(dist(&P), Proposal::Dist(dist(&P)), 11, None, &mut rng).unwrap();
            counts[(t - 10) as usize] += 1;
        }
        assert_frequencies_match_p(&counts, 0.015);
    }

    /// Maximal coupling: with `old ~ q`, the new draft is distributed as `P` and equals `old`
    /// with probability `Σ min(P, q)`; independent resampling would keep it with `Σ P·q`.
    #[test]
    fn coupling_keeps_p_and_maximizes_agreement() {
        let q = [0.4, 0.1, 0.3, 0.2];
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let n = 80_000;
        let mut counts = [0usize; 4];
        let mut same = 0usize;
        for _ in 0..n {
            let old = 10 + sample_index(&q, &mut rng).unwrap() as u32;
            let new = couple(dist(&P), Proposal::Dist(dist(&q)), old, &mut rng).unwrap();
            counts[(new - 10) as usize] += 1;
            same += usize::from(new == old);
        }
        assert_frequencies_match_p(&counts, 0.008);
        let overlap: f32 = P.iter().zip(q).map(|(a, b)| a.min(b)).sum();
        let agree = same as f64 / n as f64;
        assert!(
            (agree - f64::from(overlap)).abs() < 0.008,
            "agreement {agree} vs Σmin {overlap}"
        );
        let independent: f32 = P.iter().zip(q).map(|(a, b)| a * b).sum();
        assert!(agree > f64::from(independent) + 0.3);
    }

    #[test]
    fn coupling_with_a_one_hot_old_draft() {
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        let n = 40_000;
        let mut counts = [0usize; 4];
        for _ in 0..n {
            let new = couple(dist(&P), Proposal::OneHot, 13, &mut rng).unwrap();
            counts[(new - 10) as usize] += 1;
        }
        assert_frequencies_match_p(&counts, 0.01);
    }

    /// The defining property: accept-or-resample yields exactly `P`, whatever `q` is.
    #[test]
    fn accept_or_resample_reproduces_p() {
        let q = [0.7, 0.1, 0.1, 0.1];
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let n = 60_000;
        let mut counts = [0usize; 4];
        for _ in 0..n {
            let d = 10 + sample_index(&q, &mut rng).unwrap() as u32;
            let drafts = [Draft::Token {
                token: d,
                q: Proposal::Dist(dist(&q)),
            }];
            let targets = [Target::Dist(dist(&P)), Target::Dist(dist(&P))];
            let out = ProbabilisticVerifier
                .verify(
                    &VerifyInput {
                        drafts: &drafts,
                        targets: &targets,
                        samples: &[10, 10],
                        top_k: None,
                    },
                    &mut rng,
                )
                .unwrap();
            let first = if out.accepted == 1 { d } else { out.next_token };
            counts[(first - 10) as usize] += 1;
        }
        assert_frequencies_match_p(&counts, 0.01);
    }

    #[test]
    fn stop_and_forced_slots() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let one = [1.0f32, 0.0, 0.0, 0.0];
        let t = Target::Dist(dist(&one));
        let drafts = [
            Draft::Token {
                token: 10,
                q: Proposal::OneHot,
            },
            Draft::Forced(99),
            Draft::Stop,
            Draft::Token {
                token: 10,
                q: Proposal::OneHot,
            },
        ];
        let targets = [t, Target::Forced(99), t, t, t];
        let input = VerifyInput {
            drafts: &drafts,
            targets: &targets,
            samples: &[10, 99, 10, 13, 12],
            top_k: None,
        };
        for v in [&ProbabilisticVerifier as &dyn Verifier, &JacobiVerifier] {
            let out = v.verify(&input, &mut rng).unwrap();
            assert_eq!(
                out,
                Outcome {
                    accepted: 2,
                    next_token: 10
                }
            );
        }
    }

    #[test]
    fn jacobi_accepts_iff_equal_to_sample() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let tok = |token| Draft::Token {
            token,
            q: Proposal::OneHot,
        };
        let t = Target::Dist(dist(&P));
        let drafts = [tok(11), tok(12), tok(13)];
        let input = VerifyInput {
            drafts: &drafts,
            targets: &[t; 4],
            samples: &[11, 12, 10, 13],
            top_k: None,
        };
        assert_eq!(
            JacobiVerifier.verify(&input, &mut rng).unwrap(),
            Outcome {
                accepted: 2,
                next_token: 10
            }
        );
        let all = VerifyInput {
            samples: &[11, 12, 13, 11],
            ..input
        };
        assert_eq!(
            JacobiVerifier.verify(&all, &mut rng).unwrap(),
            Outcome {
                accepted: 3,
                next_token: 11
            }
        );
    }

    #[test]
    fn shape_mismatch_is_an_error() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let input = VerifyInput {
            drafts: &[Draft::Stop],
            targets: &[Target::Forced(1)],
            samples: &[1],
            top_k: None,
        };
        assert!(matches!(
            ProbabilisticVerifier.verify(&input, &mut rng),
            Err(Error::Shape { .. })
        ));
    }

    proptest! {
        #[test]
        fn outcome_in_range(
            raw in proptest::collection::vec(0.0f32..1.0, 6),
            draft_idx in proptest::collection::vec(0u32..6, 0..5),
            stop_at in proptest::option::of(0usize..5),
            seed in any::<u64>(),
            top_k in proptest::option::of(1usize..7),
        ) {
            let mut p = raw.clone();
            p[0] += 1e-3;
            crate::sampling::normalize_in_place(&mut p);
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let d = Dist { offset: 100, probs: &p };
            let mut drafts: Vec<Draft> = draft_idx
                .iter()
                .map(|&i| Draft::Token { token: 100 + i, q: Proposal::OneHot })
                .collect();
            if let Some(s) = stop_at && s < drafts.len() {
                drafts[s] = Draft::Stop;
            }
            let w = drafts.len();
            let targets = vec![Target::Dist(d); w + 1];
            let samples: Vec<u32> = (0..=w)
                .map(|_| 100 + sample_index(&p, &mut rng).unwrap() as u32)
                .collect();
            let input = VerifyInput { drafts: &drafts, targets: &targets, samples: &samples, top_k };
            for v in [&ProbabilisticVerifier as &dyn Verifier, &JacobiVerifier] {
                let out = v.verify(&input, &mut rng).unwrap();
                prop_assert!(out.committed() >= 1 && out.committed() <= w + 1);
                prop_assert!((100..106).contains(&out.next_token));
                prop_assert!(p[(out.next_token - 100) as usize] > 0.0);
                if let Some(s) = stop_at && s < w {
                    prop_assert!(out.accepted <= s);
                }
            }
        }

        /// A coupled redraw is always a token the new distribution can produce, and it keeps the
        /// old draft whenever the new distribution gives it at least the old probability.
        #[test]
        fn coupled_redraw_stays_in_the_support(
            raw_p in proptest::collection::vec(0.0f32..1.0, 6),
            raw_q in proptest::collection::vec(0.0f32..1.0, 6),
            zeroed in 0usize..6,
            old in 0u32..6,
            one_hot in any::<bool>(),
            seed in any::<u64>(),
        ) {
            let mut p = raw_p.clone();
            p[zeroed] = 0.0;
            p[(zeroed + 1) % 6] += 1e-3;
            crate::sampling::normalize_in_place(&mut p);
            let mut q = raw_q.clone();
            q[old as usize] += 1e-3;
            crate::sampling::normalize_in_place(&mut q);
            let proposal = if one_hot {
                Proposal::OneHot
            } else {
                Proposal::Dist(Dist { offset: 100, probs: &q })
            };
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let x = couple(Dist { offset: 100, probs: &p }, proposal, 100 + old, &mut rng).unwrap();
            prop_assert!((100..106).contains(&x));
            prop_assert!(p[(x - 100) as usize] > 0.0, "{x} has no mass in {p:?}");
            let q_old = if one_hot { 1.0 } else { q[old as usize] };
            if p[old as usize] >= q_old {
                prop_assert_eq!(x, 100 + old);
            }
        }
    }

    /// The pre-drawn coupling is the lazy one: with the same uniforms (the lazy one draws the
    /// first one or two of the same three), the same token.
    #[test]
    fn coupling_with_drawn_uniforms_equals_coupling_from_the_rng() {
        let q = [0.4, 0.1, 0.3, 0.2];
        let mut source = ChaCha8Rng::seed_from_u64(9);
        for _ in 0..2_000 {
            let seed = rand::Rng::random::<u64>(&mut source);
            let old = 10 + sample_index(&q, &mut source).unwrap() as u32;
            let lazy = couple(
                dist(&P),
                Proposal::Dist(dist(&q)),
                old,
                &mut ChaCha8Rng::seed_from_u64(seed),
            )
            .unwrap();
            let u = CouplingUniforms::draw(&mut ChaCha8Rng::seed_from_u64(seed));
            let drawn = couple_with(dist(&P), Proposal::Dist(dist(&q)), old, u).unwrap();
            assert_eq!(lazy, drawn);
        }
    }

    /// A `q` over another range than `p` (shifted by one id) gives the residual entry by entry.
    #[test]
    fn residual_against_a_shifted_distribution() {
        let q = Dist {
            offset: 11,
            probs: &[0.5, 0.1, 0.1, 0.3],
        };
        let r = residual(dist(&P), Proposal::Dist(q), 10, None);
        let expect = [0.1, 0.0, 0.2, 0.3];
        for (a, b) in r.iter().zip(expect) {
            assert!((a - b).abs() < 1e-6, "{r:?}");
        }
    }
}
