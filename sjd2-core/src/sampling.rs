//! Turning logits into the processed distribution `P` and drawing tokens from it.
//!
//! The pipeline for one row of logits is: temperature → top-k → top-p → softmax, or a one-hot at
//! the arg-max for [`Sampling::Greedy`]. Verification always compares these processed
//! distributions, so greedy decoding is simply sampling from a one-hot `P`.

use rand::Rng;

use crate::error::{Error, Result};

/// How the next token is chosen from the (guided) logits.
///
/// The names follow Hugging Face `generate`: `temperature`, `top_k`, `top_p`.
///
/// # Example
/// ```
/// use sjd2_core::Sampling;
/// let s = Sampling::top_k(2000, 1.0);
/// assert!(s.validate().is_ok());
/// assert!(Sampling::Multinomial { temperature: 0.0, top_k: None, top_p: None }.validate().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Sampling {
    /// Always the most probable token (ties go to the lowest id). `P` is a one-hot vector.
    Greedy,
    /// Sample from `softmax(top_p(top_k(logits / temperature)))`.
    Multinomial {
        /// Divides the logits; must be finite and > 0.
        temperature: f32,
        /// Keep only the `top_k` most probable tokens (ties at the boundary are kept); must be > 0.
        top_k: Option<usize>,
        /// Keep the smallest set of most probable tokens whose mass reaches `top_p`; in (0, 1].
        top_p: Option<f32>,
    },
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling::Multinomial {
            temperature: 1.0,
            top_k: None,
            top_p: None,
        }
    }
}

impl Sampling {
    /// Multinomial sampling with a temperature and no filtering.
    pub fn temperature(temperature: f32) -> Self {
        Sampling::Multinomial {
            temperature,
            top_k: None,
            top_p: None,
        }
    }

    /// Multinomial sampling restricted to the `k` most probable tokens.
    pub fn top_k(k: usize, temperature: f32) -> Self {
        Sampling::Multinomial {
            temperature,
            top_k: Some(k),
            top_p: None,
        }
    }

    /// Multinomial nucleus sampling.
    pub fn top_p(p: f32, temperature: f32) -> Self {
        Sampling::Multinomial {
            temperature,
            top_k: None,
            top_p: Some(p),
        }
    }

    /// The `top_k` setting, if any (used to re-apply top-k to residual distributions).
    pub fn top_k_value(&self) -> Option<usize> {
        match self {
            Sampling::Greedy => None,
            Sampling::Multinomial { top_k, .. } => *top_k,
        }
    }

    /// Checks every field.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming `temperature` (not finite or ≤ 0), `top_k` (0) or `top_p`
    /// (outside (0, 1]).
    pub fn validate(&self) -> Result<()> {
        if let Sampling::Multinomial {
            temperature,
            top_k,
            top_p,
        } = *self
        {
            if !(temperature.is_finite() && temperature > 0.0) {
                return Err(Error::config(
                    "temperature",
                    format!(
                        "must be finite and > 0 (got {temperature}); use Sampling::Greedy for arg-max decoding"
                    ),
                ));
            }
            if top_k == Some(0) {
                return Err(Error::config(
                    "top_k",
                    "must be >= 1 (got 0); use None to disable",
                ));
            }
            if let Some(p) = top_p
                && !(p > 0.0 && p <= 1.0)
            {
                return Err(Error::config(
                    "top_p",
                    format!("must be in (0, 1] (got {p})"),
                ));
            }
        }
        Ok(())
    }

    /// Turns one row of logits, in place, into the processed probability distribution `P`.
    ///
    /// `-inf` logits are allowed (masked tokens) as long as one entry is finite.
    ///
    /// # Errors
    /// [`Error::NonFinite`] if the row holds NaN or `+inf`, or has no finite entry; `what` names
    /// the row in the message.
    pub fn process_in_place(&self, row: &mut [f32], what: &dyn Fn() -> String) -> Result<()> {
        check_logits(row, what)?;
        match *self {
            Sampling::Greedy => {
                let best = argmax(row);
                row.fill(0.0);
                row[best] = 1.0;
            }
            Sampling::Multinomial {
                temperature,
                top_k,
                top_p,
            } => {
                if temperature != 1.0 {
                    let inv = 1.0 / temperature;
                    row.iter_mut().for_each(|x| *x *= inv);
                }
                if let Some(k) = top_k {
                    apply_top_k(row, k, f32::NEG_INFINITY);
                }
                softmax_in_place(row);
                if let Some(p) = top_p
                    && p < 1.0
                {
                    apply_top_p(row, p);
                }
            }
        }
        Ok(())
    }
}

fn check_logits(row: &[f32], what: &dyn Fn() -> String) -> Result<()> {
    // One branch-free pass (it vectorizes); the errors are told apart afterwards.
    let (mut nan, mut infinite, mut finite) = (false, false, false);
    for &x in row {
        nan |= x.is_nan();
        infinite |= x == f32::INFINITY;
        finite |= x.is_finite();
    }
    let detail = if nan {
        "NaN logit"
    } else if infinite {
        "+inf logit"
    } else if !finite {
        "every logit is -inf or the row is empty"
    } else {
        return Ok(());
    };
    Err(Error::NonFinite {
        what: what(),
        detail: detail.into(),
    })
}

/// Index of the largest value (the first one on ties). Returns 0 for an empty slice.
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in row.iter().enumerate() {
        if x > row[best] {
            best = i;
        }
    }
    best
}

/// Numerically stable softmax in place; `-inf` entries become exactly 0.
pub fn softmax_in_place(row: &mut [f32]) {
    let max = lanes_max(row);
    for x in row.iter_mut() {
        *x = exp_nonpositive(*x - max);
    }
    let inv = (1.0 / lanes_sum(row)) as f32;
    row.iter_mut().for_each(|x| *x *= inv);
}

/// `e^x` for `x ≤ 0` (`-inf` gives 0, NaN stays NaN), within 2 ulp of the exact value, written
/// so that the compiler vectorizes a loop over a row (the C library's `expf` is one call per
/// entry and took most of a 32 768-entry row's softmax). Cephes' `expf` (S. L. Moshier, Cephes
/// Math Library, `expf.c`): `x = n·ln 2 + r` with `|r| ≤ ln 2 / 2`, a degree-6 polynomial for
/// `e^r` and `2^n` from the exponent bits. Arguments below `-87` (`e^-87` ≈ 1.6e-38, the
/// bottom of the normal floats) give 0.
#[inline]
fn exp_nonpositive(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5 · 2^23 rounds to the nearest integer in plain arithmetic
    // (`floor` is a library call on x86-64's baseline, which would stop vectorization).
    const ROUND: f32 = 12_582_912.0;
    let clamped = if x < -87.0 { -87.0 } else { x };
    let shifted = clamped * LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = clamped - n * LN2_HI - n * LN2_LO;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let e_r = p * r * r + r + 1.0;
    // n is in [-126, 0] here and sits in the low bits of `shifted` (same binade as ROUND), so
    // 2^n is built with integer arithmetic (a float-to-int cast is scalar on the baseline); a
    // NaN `x` leaves `e_r` NaN.
    let biased = shifted
        .to_bits()
        .wrapping_sub(ROUND.to_bits())
        .wrapping_add(127);
    let two_n = f32::from_bits(biased << 23);
    if x < -87.0 { 0.0 } else { e_r * two_n }
}

/// Independent accumulators of the row reductions below: the compiler turns them into vector
/// instructions, where one running sum would wait on every addition in turn (four cycles each,
/// the whole cost of a 32 768-entry row). The grouping is fixed, so results do not depend on the
/// machine or the thread.
const LANES: usize = 16;

/// Σ x in f64 over [`LANES`] accumulators (non-negative `x`; NaN propagates).
fn lanes_sum(row: &[f32]) -> f64 {
    let mut acc = [0f64; LANES];
    let chunks = row.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (a, &x) in acc.iter_mut().zip(chunk) {
            *a += f64::from(x);
        }
    }
    acc.iter().sum::<f64>() + rest.iter().map(|&x| f64::from(x)).sum::<f64>()
}

/// Σ max(x, 0) in f64 over [`LANES`] accumulators (NaN propagates).
fn lanes_positive_sum(row: &[f32]) -> f64 {
    let mut acc = [0f64; LANES];
    let chunks = row.chunks_exact(LANES);
    let rest = chunks.remainder();
    let positive = |x: f32| if x < 0.0 { 0.0 } else { f64::from(x) };
    for chunk in chunks {
        for (a, &x) in acc.iter_mut().zip(chunk) {
            *a += positive(x);
        }
    }
    acc.iter().sum::<f64>() + rest.iter().map(|&x| positive(x)).sum::<f64>()
}

/// The largest entry over [`LANES`] accumulators (`-inf` for an empty row; the row holds no
/// NaN, [`check_logits`] ran first).
fn lanes_max(row: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = row.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (a, &x) in acc.iter_mut().zip(chunk) {
            *a = if x > *a { x } else { *a };
        }
    }
    acc.iter()
        .chain(rest)
        .copied()
        .fold(f32::NEG_INFINITY, f32::max)
}

thread_local! {
    /// The copy [`apply_top_k`] selects in, kept between rows (no allocation per row).
    static TOP_K_SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Keeps the `k` largest entries (all entries equal to the k-th largest are kept too) and sets
/// the others to `fill`. Does nothing when `k >= row.len()`.
pub fn apply_top_k(row: &mut [f32], k: usize, fill: f32) {
    if k == 0 || k >= row.len() {
        return;
    }
    let threshold = TOP_K_SCRATCH.with_borrow_mut(|scratch| {
        scratch.clear();
        scratch.extend_from_slice(row);
        *scratch
            .select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a))
            .1
    });
    for x in row.iter_mut() {
        if *x < threshold {
            *x = fill;
        }
    }
}

/// Nucleus filtering of a probability row in place: keeps the smallest set of most probable
/// entries whose mass reaches `p` (at least one), zeroes the rest and renormalizes.
pub fn apply_top_p(probs: &mut [f32], p: f32) {
    let mut order: Vec<usize> = (0..probs.len()).filter(|&i| probs[i] > 0.0).collect();
    order.sort_unstable_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    let mut mass = 0.0f64;
    let mut keep = order.len();
    for (n, &i) in order.iter().enumerate() {
        mass += f64::from(probs[i]);
        if mass >= f64::from(p) {
            keep = n + 1;
            break;
        }
    }
    for &i in &order[keep..] {
        probs[i] = 0.0;
    }
    normalize_in_place(probs);
}

/// Divides by the sum; returns the sum before normalization (0 leaves the row unchanged).
pub fn normalize_in_place(probs: &mut [f32]) -> f64 {
    let sum: f64 = probs.iter().map(|&x| f64::from(x)).sum();
    if sum > 0.0 {
        let inv = (1.0 / sum) as f32;
        probs.iter_mut().for_each(|x| *x *= inv);
    }
    sum
}

/// Draws an index from unnormalized non-negative weights (inverse CDF in f64).
///
/// Returns `None` when the weights sum to zero; then nothing is drawn from `rng`. Otherwise it
/// draws exactly one `f64` and equals [`sample_index_at`] with it.
pub fn sample_index<R: Rng + ?Sized>(weights: &[f32], rng: &mut R) -> Option<usize> {
    let total = positive_mass(weights)?;
    Some(inverse_cdf(weights, rng.random::<f64>() * total))
}

/// [`sample_index`] with its uniform drawn beforehand: `u` in `[0, 1)`. Drawing the uniforms of
/// many rows in order and then resolving the rows in any order (on several threads) gives the
/// same indices as drawing row by row.
///
/// ```
/// use sjd2_core::sampling::sample_index_at;
///
/// assert_eq!(sample_index_at(&[0.25, 0.0, 0.75], 0.2), Some(0));
/// assert_eq!(sample_index_at(&[0.25, 0.0, 0.75], 0.3), Some(2));
/// assert_eq!(sample_index_at(&[0.0, 0.0], 0.5), None);
/// ```
pub fn sample_index_at(weights: &[f32], u: f64) -> Option<usize> {
    let total = positive_mass(weights)?;
    Some(inverse_cdf(weights, u * total))
}

/// The sum of the positive weights in f64, `None` when it is zero or not finite.
pub(crate) fn positive_mass(weights: &[f32]) -> Option<f64> {
    let total = lanes_positive_sum(weights);
    (total > 0.0 && total.is_finite()).then_some(total)
}

/// The first index whose running sum of positive weights exceeds `target` (the last positive
/// one when rounding leaves `target` at the total); `weights` must have some positive mass.
///
/// Blocks of entries are skipped by their vectorized sums and only the block where the running
/// sum crosses `target` is walked entry by entry.
pub(crate) fn inverse_cdf(weights: &[f32], target: f64) -> usize {
    const BLOCK: usize = 256;
    let mut acc = 0.0f64;
    for (b, block) in weights.chunks(BLOCK).enumerate() {
        let mass = lanes_positive_sum(block);
        if target < acc + mass {
            for (i, &w) in block.iter().enumerate() {
                if w > 0.0 {
                    acc += f64::from(w);
                    if target < acc {
                        return b * BLOCK + i;
                    }
                }
            }
            // The walk's sum fell short of the block's by rounding: go on from it.
        } else {
            acc += mass;
        }
    }
    weights.iter().rposition(|&w| w > 0.0).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::Just;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn what() -> String {
        "test row".into()
    }

    #[test]
    fn greedy_is_one_hot_at_first_max() {
        let mut row = vec![0.5, 2.0, 2.0, -1.0];
        Sampling::Greedy.process_in_place(&mut row, &what).unwrap();
        assert_eq!(row, vec![0.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn temperature_and_softmax() {
        let mut row = vec![0.0, (2.0f32).ln()];
        Sampling::temperature(1.0)
            .process_in_place(&mut row, &what)
            .unwrap();
        assert!((row[0] - 1.0 / 3.0).abs() < 1e-6 && (row[1] - 2.0 / 3.0).abs() < 1e-6);
        let mut row = vec![0.0, (2.0f32).ln()];
        Sampling::temperature(0.5)
            .process_in_place(&mut row, &what)
            .unwrap();
        assert!((row[1] - 0.8).abs() < 1e-6, "{row:?}");
    }

    #[test]
    fn top_k_keeps_k_and_ties() {
        let mut row = vec![1.0, 3.0, 2.0, 0.0];
        Sampling::top_k(2, 1.0)
            .process_in_place(&mut row, &what)
            .unwrap();
        assert_eq!(row[0], 0.0);
        assert_eq!(row[3], 0.0);
        assert!(row[1] > row[2] && row[2] > 0.0);
        let mut tied = vec![1.0, 1.0, 1.0, 0.0];
        apply_top_k(&mut tied, 2, f32::NEG_INFINITY);
        assert_eq!(tied, vec![1.0, 1.0, 1.0, f32::NEG_INFINITY]);
    }

    #[test]
    fn top_p_keeps_smallest_nucleus() {
        let mut p = vec![0.5, 0.3, 0.15, 0.05];
        apply_top_p(&mut p, 0.8);
        assert!((p[0] - 0.625).abs() < 1e-6 && (p[1] - 0.375).abs() < 1e-6);
        assert_eq!(&p[2..], &[0.0, 0.0]);
        let mut p = vec![0.9, 0.1];
        apply_top_p(&mut p, 0.5);
        assert_eq!(p, vec![1.0, 0.0]);
    }

    #[test]
    fn non_finite_logits_are_errors() {
        for bad in [f32::NAN, f32::INFINITY] {
            let mut row = vec![0.0, bad];
            let err = Sampling::Greedy
                .process_in_place(&mut row, &what)
                .unwrap_err();
            assert!(matches!(err, Error::NonFinite { .. }), "{err}");
        }
        let mut row = vec![f32::NEG_INFINITY; 3];
        assert!(
            Sampling::default()
                .process_in_place(&mut row, &what)
                .is_err()
        );
        let mut row = vec![f32::NEG_INFINITY, 0.0];
        Sampling::default()
            .process_in_place(&mut row, &what)
            .unwrap();
        assert_eq!(row, vec![0.0, 1.0]);
    }

    #[test]
    fn validation_names_fields() {
        let t = Sampling::temperature(-1.0).validate().unwrap_err();
        assert_eq!(t.field(), Some("temperature"));
        let t = Sampling::temperature(f32::NAN).validate().unwrap_err();
        assert_eq!(t.field(), Some("temperature"));
        assert_eq!(
            Sampling::top_k(0, 1.0).validate().unwrap_err().field(),
            Some("top_k")
        );
        for p in [0.0, 1.5, -0.1, f32::NAN] {
            assert_eq!(
                Sampling::top_p(p, 1.0).validate().unwrap_err().field(),
                Some("top_p")
            );
        }
        assert!(Sampling::top_p(1.0, 1.0).validate().is_ok());
    }

    #[test]
    fn sample_index_follows_weights() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let w = [0.0, 1.0, 3.0, 0.0];
        let mut counts = [0usize; 4];
        for _ in 0..40_000 {
            counts[sample_index(&w, &mut rng).unwrap()] += 1;
        }
        assert_eq!(counts[0] + counts[3], 0);
        let frac = counts[2] as f64 / 40_000.0;
        assert!((frac - 0.75).abs() < 0.01, "{frac}");
        assert_eq!(sample_index(&[0.0, 0.0], &mut rng), None);
    }

    proptest::proptest! {
        /// The blocked inverse CDF lands where a plain running sum would: on a positive weight
        /// whose interval of the cumulative sum holds the target (up to f64 rounding).
        #[test]
        fn blocked_inverse_cdf_matches_the_running_sum(
            weights in proptest::collection::vec(
                proptest::prop_oneof![Just(0.0f32), 0.0f32..1.0, -1.0f32..0.0],
                1..1500,
            ),
            u in 0.0f64..1.0,
        ) {
            let total: f64 = weights.iter().map(|&w| f64::from(w.max(0.0))).sum();
            proptest::prop_assume!(total > 0.0);
            let i = sample_index_at(&weights, u).unwrap();
            proptest::prop_assert!(weights[i] > 0.0);
            let before: f64 = weights[..i].iter().map(|&w| f64::from(w.max(0.0))).sum();
            let target = u * total;
            let slack = 1e-9 * total;
            proptest::prop_assert!(before <= target + slack, "{before} > {target}");
            proptest::prop_assert!(target < before + f64::from(weights[i]) + slack);
            proptest::prop_assert!((positive_mass(&weights).unwrap() - total).abs() <= slack);
        }

        /// The lane-wise softmax equals the textbook one.
        #[test]
        fn softmax_matches_the_definition(
            logits in proptest::collection::vec(-30.0f32..30.0, 1..700),
        ) {
            let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let exps: Vec<f64> = logits.iter().map(|&x| f64::from(x - max).exp()).collect();
            let sum: f64 = exps.iter().sum();
            let mut row = logits.clone();
            softmax_in_place(&mut row);
            for (p, e) in row.iter().zip(&exps) {
                proptest::prop_assert!((f64::from(*p) - e / sum).abs() < 1e-6);
            }
        }
    }

    /// The vectorizable exponential against f64's over its whole range, and at its edges.
    #[test]
    fn exp_nonpositive_is_within_two_ulp() {
        let mut worst = 0.0f64;
        for i in 0..=870_000 {
            let x = -(i as f32) * 1e-4;
            let exact = f64::from(x).exp();
            let got = f64::from(exp_nonpositive(x));
            // One ulp of the result at its binade.
            let ulp = f64::from(f32::EPSILON) * 2f64.powi(exact.log2().floor() as i32);
            worst = worst.max((got - exact).abs() / ulp);
        }
        assert!(worst <= 2.0, "worst error {worst} ulp");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(-88.0), 0.0);
        assert_eq!(exp_nonpositive(f32::NEG_INFINITY), 0.0);
        assert!(exp_nonpositive(f32::NAN).is_nan());
    }
}
