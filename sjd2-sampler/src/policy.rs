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

/// Pseudo-observations that pull an age bucket's rejection rate towards the pooled rate.
const SHRINK: f64 = 4.0;
/// Prior rejection rate of the youngest drafts (before anything is seen).
const PRIOR_HAZARD: f64 = 0.5;
/// Draft ages (passes refined) grouped roughly logarithmically: 0, 1, 2, 3, 4, 5–6, 7–9, 10–14,
/// 15–22, 23–34, 35 and more.
const AGE_BUCKETS: [usize; 10] = [1, 2, 3, 4, 5, 7, 10, 15, 23, 35];

fn age_bucket(age: f64) -> usize {
    AGE_BUCKETS.partition_point(|&upper| upper as f64 <= age)
}

/// Which slots of a window verification can accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acceptable {
    /// Every slot (SJD; SJD2 with lossy acceptance).
    All,
    /// SJD2 with levels by distance and `K` levels: a refined slot `i` is clean when
    /// `⌊K·i/W⌋ = 0`, so the first `⌈W/K⌉`.
    Front(usize),
    /// SJD2 with one level per iteration: a slot is clean once refined `K` times.
    Aged(usize),
}

impl Acceptable {
    /// Whether slot `k` of a `w`-slot window, about `age` passes old, can be accepted.
    fn slot(self, k: usize, w: usize, age: f64) -> bool {
        match self {
            Self::All => true,
            Self::Front(levels) => k * levels.max(1) < w,
            Self::Aged(levels) => age >= levels as f64,
        }
    }
}

/// Acceptance seen so far in one generation, pooled over the batch, as a rejection rate by the
/// age of the draft (passes it has been refined for): a draft that has lived longer in the window
/// has seen its context settle and is accepted more often, which is what a longer window buys.
/// Only drafts verification could accept count (forced tokens never; an SJD2 noisy slot ends a
/// run without being a rejection).
#[derive(Debug, Clone, Default)]
pub(crate) struct AcceptanceModel {
    verified: [f64; AGE_BUCKETS.len() + 1],
    rejected: [f64; AGE_BUCKETS.len() + 1],
}

impl AcceptanceModel {
    /// One sample's pass: `verified` holds, in order, the age of each draft verification
    /// judged (forced tokens left out) and whether it was rejected.
    pub(crate) fn observe(&mut self, verified: &[(usize, bool)]) {
        for &(age, rejected) in verified {
            let b = age_bucket(age as f64);
            self.verified[b] += 1.0;
            if rejected {
                self.rejected[b] += 1.0;
            }
        }
    }

    /// Rejection rate by age bucket: observed buckets shrunk towards the pooled rate, the
    /// others taken from the nearest observed bucket (the younger one on a tie).
    fn hazards(&self) -> [f64; AGE_BUCKETS.len() + 1] {
        let (r, v): (f64, f64) = (self.rejected.iter().sum(), self.verified.iter().sum());
        let pooled = (r + SHRINK * PRIOR_HAZARD) / (v + SHRINK);
        let n = AGE_BUCKETS.len() + 1;
        let observed: Vec<usize> = (0..n).filter(|&b| self.verified[b] > 0.0).collect();
        let mut h = [PRIOR_HAZARD; AGE_BUCKETS.len() + 1];
        for (b, h) in h.iter_mut().enumerate() {
            let Some(&nearest) = observed.iter().min_by_key(|&&o| (o.abs_diff(b), o)) else {
                continue;
            };
            *h = ((self.rejected[nearest] + SHRINK * pooled) / (self.verified[nearest] + SHRINK))
                .clamp(0.0, 1.0);
        }
        h
    }

    /// Expected accepted drafts per pass with a window of `w` slots, in the steady state where
    /// the window advances by the expected committed tokens `τ` per pass, so that the draft at
    /// slot `k` has been refined for about `(w − 1 − k) / τ` passes; a run ends at the first
    /// slot `acceptable` rules out. `τ = 1 + E(τ)` has one root (a faster window holds younger
    /// drafts, so `E` falls as `τ` grows), found by bisection.
    #[cfg(test)]
    pub(crate) fn expected_accepted(&self, w: usize, acceptable: Acceptable) -> f64 {
        steady_state_accepted(&self.hazards(), w, acceptable)
    }
}

/// [`AcceptanceModel::expected_accepted`] for rejection rates `hazards` by age bucket.
fn steady_state_accepted(hazards: &[f64], w: usize, acceptable: Acceptable) -> f64 {
    let accepted_at = |tau: f64| {
        let mut survive = 1.0;
        let mut total = 0.0;
        for k in 0..w {
            let age = (w - 1 - k) as f64 / tau;
            if !acceptable.slot(k, w, age) {
                break;
            }
            survive *= 1.0 - hazards[age_bucket(age)];
            total += survive;
        }
        total
    };
    let (mut lo, mut hi) = (1.0, w as f64 + 1.0);
    for _ in 0..20 {
        let mid = 0.5 * (lo + hi);
        if 1.0 + accepted_at(mid) > mid {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    accepted_at(0.5 * (lo + hi))
}

/// The window length, in `1..=max`, that maximizes expected committed tokens per second when
/// `pending` tokens are fed before the slots (ties, to a relative 1e-9, go to the longer
/// window: a slot that costs nothing is worth drafting).
pub(crate) fn best_window(
    curve: &CostCurve,
    acceptance: &AcceptanceModel,
    acceptable: Acceptable,
    pending: usize,
    max: usize,
) -> usize {
    let candidates = window_candidates(max);
    // A longer window holds the shorter one's slots, and older drafts in them: it never
    // commits fewer tokens per pass, whatever the fitted model says between age buckets.
    let hazards = acceptance.hazards();
    let mut best_so_far = 0.0_f64;
    let rates: Vec<f64> = candidates
        .iter()
        .map(|&w| {
            best_so_far = best_so_far.max(steady_state_accepted(&hazards, w, acceptable));
            (1.0 + best_so_far) / curve.seconds(pending + w)
        })
        .collect();
    let top = rates.iter().copied().fold(f64::MIN, f64::max);
    rates
        .iter()
        .rposition(|&r| r >= top * (1.0 - 1e-9))
        .map_or(1, |i| candidates[i])
}

/// The windows the policy weighs: 1, 2, 3, then about 1.5× apart (4, 6, 8, 12, 16, 24, …),
/// and `max`.
fn window_candidates(max: usize) -> Vec<usize> {
    let mut out = vec![1, 2, 3];
    let mut w = 4;
    while w < max {
        out.push(w);
        out.push(w * 3 / 2);
        w *= 2;
    }
    out.retain(|&c| c < max);
    out.push(max.max(1));
    out.dedup();
    out
}

/// The window of each pass of one generation.
#[derive(Debug, Clone)]
pub(crate) enum WindowPolicy {
    Fixed(usize),
    Auto {
        curve: CostCurve,
        acceptance: Box<AcceptanceModel>,
        max: usize,
        /// Windows chosen so far.
        chosen: usize,
        /// Passes drafting [`EXPLORE_WINDOW`] slots first.
        explore: usize,
        acceptable: Acceptable,
    },
}

/// The window of an adaptive policy's exploration passes (or its maximum, if smaller): drafts
/// age in it, so their acceptance is seen before the policy weighs windows against their cost.
const EXPLORE_WINDOW: usize = 16;

impl WindowPolicy {
    pub(crate) fn fixed(w: usize) -> Self {
        Self::Fixed(w)
    }

    pub(crate) fn auto(
        curve: CostCurve,
        max: usize,
        explore: usize,
        acceptable: Acceptable,
    ) -> Self {
        Self::Auto {
            curve,
            acceptance: Box::default(),
            max,
            chosen: 0,
            explore,
            acceptable,
        }
    }

    /// The window of the next pass, when `pending` tokens will be fed before its slots.
    pub(crate) fn choose(&mut self, pending: usize) -> usize {
        match self {
            Self::Fixed(w) => *w,
            Self::Auto {
                curve,
                acceptance,
                max,
                chosen,
                explore,
                acceptable,
            } => {
                *chosen += 1;
                if *chosen <= *explore {
                    EXPLORE_WINDOW.min(*max)
                } else {
                    best_window(curve, acceptance, *acceptable, pending, *max)
                }
            }
        }
    }

    /// Records one sample's verified pass (see [`AcceptanceModel::observe`]).
    pub(crate) fn observe(&mut self, verified: &[(usize, bool)]) {
        if let Self::Auto { acceptance, .. } = self {
            acceptance.observe(verified);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An acceptance model after `n` passes of window `w` whose drafts are accepted up to
    /// index `a` (ages as in a window advancing `a + 1` slots per pass).
    fn seen(n: usize, w: usize, a: usize) -> AcceptanceModel {
        let mut m = AcceptanceModel::default();
        for _ in 0..n {
            let verified: Vec<(usize, bool)> = (0..=a.min(w - 1))
                .map(|k| ((w - 1 - k) / (a + 1), k == a))
                .collect();
            m.observe(&verified);
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
    fn candidate_windows() {
        assert_eq!(
            window_candidates(64),
            vec![1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64]
        );
        assert_eq!(window_candidates(5), vec![1, 2, 3, 4, 5]);
        assert_eq!(window_candidates(1), vec![1]);
    }

    #[test]
    fn ages_fall_in_buckets() {
        let b: Vec<usize> = [0.0, 0.5, 1.0, 4.9, 5.0, 6.9, 34.0, 35.0, 1e6]
            .iter()
            .map(|&a| age_bucket(a))
            .collect();
        assert_eq!(b, vec![0, 0, 1, 4, 5, 5, 9, 10, 10]);
    }

    #[test]
    fn a_flat_cost_curve_picks_long_windows() {
        // Any chance of acceptance makes a free slot worth drafting.
        for a in [1, 3, 7] {
            let m = seen(20, 16, a);
            assert_eq!(
                best_window(&CostCurve::flat(), &m, Acceptable::All, 1, 64),
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
        assert_eq!(best_window(&linear, &rarely, Acceptable::All, 1, 64), 1);
        // A CPU-like curve (t(65)/t(1) ≈ 6): long runs justify a longer window, rare ones not.
        let cpu = CostCurve::new(vec![(1, 3.1), (2, 3.3), (33, 15.8), (65, 19.0)]).unwrap();
        let w_rare = best_window(&cpu, &seen(50, 16, 0), Acceptable::All, 1, 64);
        let w_long = best_window(&cpu, &seen(50, 16, 15), Acceptable::All, 1, 64);
        assert!(w_rare < w_long, "{w_rare} vs {w_long}");
        assert!(w_rare <= 4, "{w_rare}");
    }

    #[test]
    fn older_drafts_make_longer_windows_pay() {
        // Young drafts are always rejected, drafts refined 4+ times always accepted: a window
        // long enough to age its drafts commits far more per pass than a short one.
        let mut m = AcceptanceModel::default();
        for _ in 0..100 {
            m.observe(&[(8, false), (5, false), (4, false), (0, true)]);
            m.observe(&[(0, true)]);
        }
        let all = Acceptable::All;
        let (short, long) = (m.expected_accepted(2, all), m.expected_accepted(32, all));
        assert!(short < 0.2 && long > 4.0, "{short} {long}");
    }

    #[test]
    fn sjd2_clean_slots_bound_the_runs() {
        // Every judged draft accepted: runs end where the slots stop being clean.
        let mut m = AcceptanceModel::default();
        for _ in 0..200 {
            let verified: Vec<(usize, bool)> = (0..8).map(|k| (10 - k, false)).collect();
            m.observe(&verified);
        }
        // Levels by distance, K = 5: the first ⌈16/5⌉ = 4 of 16 slots are clean.
        let front = m.expected_accepted(16, Acceptable::Front(5));
        assert!((3.5..=4.0).contains(&front), "{front}");
        // One level per iteration, K = 5: clean once 5 passes old, so the window must be long
        // enough for its front to age.
        let short = m.expected_accepted(4, Acceptable::Aged(5));
        let long = m.expected_accepted(32, Acceptable::Aged(5));
        assert!(short < 0.01 && long > 3.0, "{short} {long}");
    }

    #[test]
    fn the_first_passes_explore() {
        let curve = CostCurve::new(vec![(1, 1.0), (100, 100.0)]).unwrap();
        let mut p = WindowPolicy::auto(curve, 32, 5, Acceptable::All);
        let first: Vec<usize> = (0..5).map(|_| p.choose(1)).collect();
        assert_eq!(first, vec![EXPLORE_WINDOW; 5]);
        assert!(p.choose(1) < EXPLORE_WINDOW);
        assert_eq!(WindowPolicy::fixed(7).choose(1), 7);
    }
}
