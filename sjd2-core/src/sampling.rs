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
    let mut finite = false;
    for &x in row {
        if x.is_nan() {
            return Err(Error::NonFinite {
                what: what(),
                detail: "NaN logit".into(),
            });
        }
        if x == f32::INFINITY {
            return Err(Error::NonFinite {
                what: what(),
                detail: "+inf logit".into(),
            });
        }
        finite |= x.is_finite();
    }
    if !finite {
        return Err(Error::NonFinite {
            what: what(),
            detail: "every logit is -inf or the row is empty".into(),
        });
    }
    Ok(())
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
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f64;
    for x in row.iter_mut() {
        *x = if *x == f32::NEG_INFINITY {
            0.0
        } else {
            (*x - max).exp()
        };
        sum += f64::from(*x);
    }
    let inv = (1.0 / sum) as f32;
    row.iter_mut().for_each(|x| *x *= inv);
}

/// Keeps the `k` largest entries (all entries equal to the k-th largest are kept too) and sets
/// the others to `fill`. Does nothing when `k >= row.len()`.
pub fn apply_top_k(row: &mut [f32], k: usize, fill: f32) {
    if k == 0 || k >= row.len() {
        return;
    }
    let mut scratch: Vec<f32> = row.to_vec();
    let (_, kth, _) = scratch.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    let threshold = *kth;
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
/// Returns `None` when the weights sum to zero.
pub fn sample_index<R: Rng + ?Sized>(weights: &[f32], rng: &mut R) -> Option<usize> {
    let total: f64 = weights.iter().map(|&w| f64::from(w.max(0.0))).sum();
    if total <= 0.0 || !total.is_finite() {
        return None;
    }
    let u = rng.random::<f64>() * total;
    let mut acc = 0.0f64;
    let mut last_positive = None;
    for (i, &w) in weights.iter().enumerate() {
        if w > 0.0 {
            acc += f64::from(w);
            last_positive = Some(i);
            if u < acc {
                return Some(i);
            }
        }
    }
    last_positive
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
