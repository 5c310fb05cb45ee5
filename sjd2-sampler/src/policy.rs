//! The window policy: how many slots the next pass drafts.
//!
//! A fixed window always drafts the same number of slots. An adaptive window
//! ([`crate::Window::Auto`]) chooses, before each pass, the length that maximizes the expected
//! tokens committed per second: the device's measured cost of a pass of each length
//! ([`CostCurve`]) against the acceptance this generation has seen so far (how far runs of
//! drafts got before a rejection, by slot index). The choice is made from finished passes only,
//! before the next pass's drafts are drawn, so verification stays lossless (docs/algorithm.md,
//! "Adaptive windows").

use serde::{Deserialize, Serialize};
use sjd2_core::{Error, Result};

/// Seconds one decoding pass takes as a function of its length (the tokens fed per row: pending
/// tokens plus drafted slots), for one batch shape on one device: measured points, linear in
/// between and beyond the last point.
///
/// ```
/// use sjd2_sampler::CostCurve;
///
/// let curve = CostCurve::new(vec![(1, 0.010), (5, 0.012), (33, 0.040)])?;
/// assert!((curve.seconds(3) - 0.011).abs() < 1e-12);
/// assert!((curve.seconds(61) - 0.068).abs() < 1e-12); // the last slope, extended
/// # Ok::<(), sjd2_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostCurve {
    /// `(pass length, seconds)`, lengths strictly increasing.
    points: Vec<(usize, f64)>,
}

impl CostCurve {
    /// A curve through `points` (sorted by length here).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] (`cost_curve`) for no points, a length of 0, a repeated length
    /// or a time that is not finite and positive.
    pub fn new(mut points: Vec<(usize, f64)>) -> Result<Self> {
        points.sort_by_key(|p| p.0);
        if points.is_empty() {
            return Err(Error::config("cost_curve", "needs at least one point"));
        }
        if points
            .iter()
            .any(|&(n, t)| n == 0 || !(t.is_finite() && t > 0.0))
        {
            return Err(Error::config(
                "cost_curve",
                "lengths must be >= 1 and times finite and > 0",
            ));
        }
        if points.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(Error::config("cost_curve", "a pass length appears twice"));
        }
        Ok(Self { points })
    }

    /// A curve on which every length costs the same (a device whose passes are memory-bound at
    /// any window the policy may pick).
    pub fn flat() -> Self {
        Self {
            points: vec![(1, 1.0)],
        }
    }

    /// The measured points.
    pub fn points(&self) -> &[(usize, f64)] {
        &self.points
    }

    /// Seconds for a pass of `len` tokens per row (the first point's time below it; the last
    /// segment's slope, never negative, beyond the last point).
    pub fn seconds(&self, len: usize) -> f64 {
        let p = &self.points;
        let at = p.partition_point(|&(n, _)| n < len);
        let segment = match at {
            0 => return p[0].1,
            _ if at < p.len() => (p[at - 1], p[at]),
            _ if p.len() >= 2 => (p[p.len() - 2], p[p.len() - 1]),
            _ => return p[0].1,
        };
        let ((n0, t0), (n1, t1)) = segment;
        let slope = ((t1 - t0) / (n1 - n0) as f64).max(0.0);
        t0 + slope * (len as f64 - n0 as f64)
    }

    /// The curve as JSON (what [`CostCurve::from_json`] reads).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A curve from [`CostCurve::to_json`]'s output.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] (`cost_curve`) for malformed JSON or invalid points.
    pub fn from_json(text: &str) -> Result<Self> {
        let curve: Self = serde_json::from_str(text)
            .map_err(|e| Error::config("cost_curve", format!("not a cost curve: {e}")))?;
        Self::new(curve.points)
    }
}

/// Pass lengths the decoder times to build a [`CostCurve`] for windows up to `max`: 1 (a plain
/// pass), 2, then one more than each power of two, and `max + 1`.
pub(crate) fn probe_lengths(max: usize) -> Vec<usize> {
    let mut lens = vec![1, 2];
    let mut w = 2;
    while w < max {
        lens.push(w + 1);
        w *= 2;
    }
    lens.push(max + 1);
    lens.dedup();
    lens
}

/// Pseudo-observations that pull a slot index's rejection rate towards the pooled rate.
const SHRINK: f64 = 4.0;
/// Prior pooled rejection rate (a mean run of about three accepted drafts) and its weight.
const PRIOR_HAZARD: f64 = 0.25;
const PRIOR_WEIGHT: f64 = 4.0;

/// Acceptance seen so far in one generation, pooled over the batch: for each slot index, how
/// often a draft there was verified and how often it was rejected, among slots verification
/// could accept (clean drafts; SJD2's noisy slots end a run without counting as rejections).
#[derive(Debug, Clone, Default)]
pub(crate) struct AcceptanceModel {
    verified: Vec<f64>,
    rejected: Vec<f64>,
    /// Sum over observations of (verifiable slots, window length).
    verifiable: f64,
    offered: f64,
}

impl AcceptanceModel {
    /// One sample's pass: `window` slots drafted, the first `verifiable` of them acceptable, the
    /// first `accepted` accepted.
    pub(crate) fn observe(&mut self, window: usize, verifiable: usize, accepted: usize) {
        if window == 0 {
            return;
        }
        let verifiable = verifiable.min(window);
        if self.verified.len() < verifiable {
            self.verified.resize(verifiable, 0.0);
            self.rejected.resize(verifiable, 0.0);
        }
        let survived = accepted.min(verifiable);
        for k in 0..survived {
            self.verified[k] += 1.0;
        }
        if survived < verifiable {
            self.verified[survived] += 1.0;
            self.rejected[survived] += 1.0;
        }
        self.verifiable += verifiable as f64;
        self.offered += window as f64;
    }

    /// Expected accepted drafts in a window of `w` slots: the run survives slot `k` with the
    /// (shrunk) empirical probability, over the slots such a window would make acceptable.
    pub(crate) fn expected_accepted(&self, w: usize) -> f64 {
        let rejected: f64 = self.rejected.iter().sum();
        let verified: f64 = self.verified.iter().sum();
        let pooled = (rejected + PRIOR_HAZARD * PRIOR_WEIGHT) / (verified + PRIOR_WEIGHT);
        let ratio = if self.offered > 0.0 {
            self.verifiable / self.offered
        } else {
            1.0
        };
        let acceptable = ((ratio * w as f64).round() as usize).clamp(1, w);
        let mut survive = 1.0;
        let mut total = 0.0;
        for k in 0..acceptable {
            let (v, r) = (
                self.verified.get(k).copied().unwrap_or(0.0),
                self.rejected.get(k).copied().unwrap_or(0.0),
            );
            let hazard = (r + SHRINK * pooled) / (v + SHRINK);
            survive *= 1.0 - hazard.clamp(0.0, 1.0);
            total += survive;
        }
        total
    }
}

/// The window length, in `1..=max`, that maximizes expected committed tokens per second when
/// `pending` tokens are fed before the slots (ties, to a relative 1e-9, go to the longer
/// window: a slot that costs nothing is worth drafting).
pub(crate) fn best_window(
    curve: &CostCurve,
    acceptance: &AcceptanceModel,
    pending: usize,
    max: usize,
) -> usize {
    let rates: Vec<f64> = (1..=max.max(1))
        .map(|w| (1.0 + acceptance.expected_accepted(w)) / curve.seconds(pending + w))
        .collect();
    let top = rates.iter().copied().fold(f64::MIN, f64::max);
    rates
        .iter()
        .rposition(|&r| r >= top * (1.0 - 1e-9))
        .map_or(1, |i| i + 1)
}

/// The window of each pass of one generation.
#[derive(Debug, Clone)]
pub(crate) enum WindowPolicy {
    Fixed(usize),
    Auto {
        curve: CostCurve,
        acceptance: AcceptanceModel,
        max: usize,
    },
}

impl WindowPolicy {
    pub(crate) fn fixed(w: usize) -> Self {
        Self::Fixed(w)
    }

    pub(crate) fn auto(curve: CostCurve, max: usize) -> Self {
        Self::Auto {
            curve,
            acceptance: AcceptanceModel::default(),
            max,
        }
    }

    /// The window of the next pass, when `pending` tokens will be fed before its slots.
    pub(crate) fn choose(&self, pending: usize) -> usize {
        match self {
            Self::Fixed(w) => *w,
            Self::Auto {
                curve,
                acceptance,
                max,
            } => best_window(curve, acceptance, pending, *max),
        }
    }

    /// Records one sample's verified pass (see [`AcceptanceModel::observe`]).
    pub(crate) fn observe(&mut self, window: usize, verifiable: usize, accepted: usize) {
        if let Self::Auto { acceptance, .. } = self {
            acceptance.observe(window, verifiable, accepted);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An acceptance model after `n` passes of window `w` that each accepted `a` drafts.
    fn seen(n: usize, w: usize, a: usize) -> AcceptanceModel {
        let mut m = AcceptanceModel::default();
        for _ in 0..n {
            m.observe(w, w, a);
        }
        m
    }

    #[test]
    fn curve_interpolates_and_extends() {
        let c = CostCurve::new(vec![(9, 2.0), (1, 1.0)]).unwrap();
        assert_eq!(c.seconds(1), 1.0);
        assert_eq!(c.seconds(5), 1.5);
        assert_eq!(c.seconds(17), 3.0);
        assert_eq!(CostCurve::flat().seconds(500), 1.0);
        let back = CostCurve::from_json(&c.to_json()).unwrap();
        assert_eq!(back, c);
        for bad in [
            vec![],
            vec![(0, 1.0)],
            vec![(1, -1.0)],
            vec![(2, 1.0), (2, 2.0)],
        ] {
            assert_eq!(CostCurve::new(bad).unwrap_err().field(), Some("cost_curve"));
        }
        assert!(CostCurve::from_json("{").is_err());
    }

    #[test]
    fn probes_cover_the_window() {
        assert_eq!(probe_lengths(64), vec![1, 2, 3, 5, 9, 17, 33, 65]);
        assert_eq!(probe_lengths(1), vec![1, 2]);
        assert_eq!(probe_lengths(6), vec![1, 2, 3, 5, 7]);
    }

    #[test]
    fn a_flat_cost_curve_picks_long_windows() {
        // Any chance of acceptance makes a free slot worth drafting.
        for a in [0, 1, 3] {
            let m = seen(20, 8, a);
            assert_eq!(
                best_window(&CostCurve::flat(), &m, 1, 64),
                64,
                "accepting {a}"
            );
        }
    }

    #[test]
    fn a_steep_cost_curve_picks_short_windows() {
        // Cost proportional to length: each slot must pay for itself.
        let linear = CostCurve::new(vec![(1, 1.0), (100, 100.0)]).unwrap();
        let rarely = seen(50, 8, 0);
        assert_eq!(best_window(&linear, &rarely, 1, 64), 1);
        // A CPU-like curve (t(65)/t(1) ≈ 6): long runs justify a longer window, rare ones not.
        let cpu = CostCurve::new(vec![(1, 3.1), (2, 3.3), (33, 15.8), (65, 19.0)]).unwrap();
        let w_rare = best_window(&cpu, &seen(50, 16, 1), 1, 64);
        let w_long = best_window(&cpu, &seen(50, 16, 15), 1, 64);
        assert!(w_rare < w_long, "{w_rare} vs {w_long}");
        assert!(w_rare <= 4, "{w_rare}");
    }

    #[test]
    fn expected_acceptance_follows_the_observed_runs() {
        let m = seen(200, 16, 3);
        // Slots 0..3 always survive, slot 3 is always rejected.
        assert!(
            (m.expected_accepted(16) - 3.0).abs() < 0.1,
            "{}",
            m.expected_accepted(16)
        );
        assert!((m.expected_accepted(2) - 2.0).abs() < 0.1);
        // Noisy slots end runs without counting as rejections, and scale with the window.
        let mut sjd2 = AcceptanceModel::default();
        for _ in 0..200 {
            sjd2.observe(32, 8, 8);
        }
        let short = sjd2.expected_accepted(16);
        assert!((3.0..=4.0).contains(&short), "{short}"); // 4 acceptable slots of 16
    }
}
