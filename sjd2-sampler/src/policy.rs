//! The window policy: how many slots the next pass drafts.
//!
//! A fixed window always drafts the same number of slots. An adaptive window
//! ([`crate::Window::Auto`]) chooses, before each pass, the length that maximizes the expected
//! tokens committed per second, a plain autoregressive pass (no slot) included: the device's
//! measured cost of a pass of each length ([`CostCurve`]) against the acceptance seen so far
//! (the decoder's calibration, [`AcceptanceHistory`], plus this generation's passes: how drafts
//! of each age fared). The choice is made from finished passes only, before the next pass's
//! drafts are drawn, so verification stays lossless (docs/algorithm.md, "Adaptive windows").

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

/// Drafts judged by verification, pooled over a batch or over generations, counted by the age
/// of the draft (passes it has been refined for) and whether it was rejected: a draft that has
/// lived longer in the window has seen its context settle and is accepted more often, which is
/// what a longer window buys. Only drafts verification could accept count (forced tokens never;
/// an SJD2 noisy slot ends a run without being a rejection).
///
/// A decoder with [`crate::Window::Auto`] keeps the history of its first generation as its
/// calibration ([`crate::Sjd2Decoder::acceptance_history`]); save it with the cost curves so
/// that a later process starts from it instead of exploring.
///
/// ```
/// use sjd2_sampler::AcceptanceHistory;
///
/// let h = AcceptanceHistory::default();
/// assert_eq!(h.judged(), 0.0);
/// assert_eq!(AcceptanceHistory::from_json(&h.to_json())?, h);
/// assert!(AcceptanceHistory::from_json("[1]").is_err());
/// # Ok::<(), sjd2_core::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AcceptanceHistory {
    /// Judged drafts by age bucket.
    verified: [f64; AGE_BUCKETS.len() + 1],
    /// Rejected drafts by age bucket.
    rejected: [f64; AGE_BUCKETS.len() + 1],
    /// Generations the counts come from (0: no calibration yet).
    #[serde(default)]
    generations: u64,
}

impl AcceptanceHistory {
    /// Drafts judged in all.
    pub fn judged(&self) -> f64 {
        self.verified.iter().sum()
    }

    /// Generations the counts come from; a decoder whose history has none explores first.
    pub fn generations(&self) -> u64 {
        self.generations
    }

    /// The history as JSON (what [`AcceptanceHistory::from_json`] reads).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A history from [`AcceptanceHistory::to_json`]'s output.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] (`acceptance_history`) for malformed JSON, negative or
    /// non-finite counts, or more rejections than judged drafts in a bucket.
    pub fn from_json(text: &str) -> Result<Self> {
        let h: Self = serde_json::from_str(text).map_err(|e| {
            Error::config(
                "acceptance_history",
                format!("not an acceptance history: {e}"),
            )
        })?;
        h.validate()?;
        Ok(h)
    }

    /// Checks the counts (what deserializing from elsewhere cannot promise).
    ///
    /// # Errors
    /// As [`AcceptanceHistory::from_json`].
    pub fn validate(&self) -> Result<()> {
        let ok = self
            .verified
            .iter()
            .zip(&self.rejected)
            .all(|(&v, &r)| v.is_finite() && r.is_finite() && r >= 0.0 && r <= v);
        if ok {
            Ok(())
        } else {
            Err(Error::config(
                "acceptance_history",
                "counts must be finite, >= 0, with no more rejections than judged drafts",
            ))
        }
    }

    /// Adds `other`'s counts.
    pub(crate) fn add(&mut self, other: &Self) {
        for b in 0..self.verified.len() {
            self.verified[b] += other.verified[b];
            self.rejected[b] += other.rejected[b];
        }
        self.generations += other.generations;
    }

    /// Counts one more generation.
    pub(crate) fn count_generation(&mut self) {
        self.generations += 1;
    }

    /// The same rates with at most `n` judged drafts in all (a prior that the generation's own
    /// passes can overrule).
    pub(crate) fn capped(&self, n: f64) -> Self {
        let total = self.judged();
        let f = if total > n { n / total } else { 1.0 };
        Self {
            verified: self.verified.map(|v| v * f),
            rejected: self.rejected.map(|r| r * f),
            generations: self.generations,
        }
    }

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

/// [`AcceptanceHistory::expected_accepted`] for rejection rates `hazards` by age bucket.
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

/// The window length, in `0..=max`, that maximizes expected committed tokens per second when
/// `pending` tokens are fed before the slots; 0 is a plain autoregressive pass, which commits one
/// token (ties, to a relative 1e-9, go to the longer window: a slot that costs nothing is worth
/// drafting).
pub(crate) fn best_window(
    curve: &CostCurve,
    acceptance: &AcceptanceHistory,
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
            if w > 0 {
                best_so_far = best_so_far.max(steady_state_accepted(&hazards, w, acceptable));
            }
            (1.0 + best_so_far) / curve.seconds(pending.max(1) + w)
        })
        .collect();
    let top = rates.iter().copied().fold(f64::MIN, f64::max);
    rates
        .iter()
        .rposition(|&r| r >= top * (1.0 - 1e-9))
        .map_or(0, |i| candidates[i])
}

/// The windows the policy weighs: 0 (a plain pass), 1, 2, 3, then about 1.5× apart (4, 6, 8,
/// 12, 16, 24, …), and `max`.
fn window_candidates(max: usize) -> Vec<usize> {
    let mut out = vec![0, 1, 2, 3];
    let mut w = 4;
    while w < max {
        out.push(w);
        out.push(w * 3 / 2);
        w *= 2;
    }
    out.retain(|&c| c < max);
    out.push(max);
    out.dedup();
    out
}

/// The window of each pass of one generation.
#[derive(Debug, Clone)]
pub(crate) enum WindowPolicy {
    Fixed(usize),
    Auto {
        curve: CostCurve,
        /// The decoder's calibration, capped at [`PRIOR_WEIGHT`] judged drafts.
        prior: Box<AcceptanceHistory>,
        /// This generation's judged drafts.
        seen: Box<AcceptanceHistory>,
        max: usize,
        /// Windows chosen so far.
        chosen: usize,
        /// Passes drafting [`EXPLORE_WINDOW`] slots first (none with a calibration).
        explore: usize,
        acceptable: Acceptable,
        /// The last choice, by pending tokens and judged drafts seen: unchanged inputs give
        /// the same window, without weighing the candidates again.
        last: Option<(usize, f64, usize)>,
    },
}

/// The window of an adaptive policy's exploration passes (or its maximum, if smaller): drafts
/// age in it, so their acceptance is seen before the policy weighs windows against their cost.
const EXPLORE_WINDOW: usize = 16;

/// How many judged drafts a calibration weighs at most against a generation's own.
const PRIOR_WEIGHT: f64 = 512.0;

impl WindowPolicy {
    pub(crate) fn fixed(w: usize) -> Self {
        Self::Fixed(w)
    }

    /// An adaptive policy on `curve`, starting from `prior` (the decoder's calibration; without
    /// one the first `explore` passes explore).
    pub(crate) fn auto(
        curve: CostCurve,
        prior: &AcceptanceHistory,
        max: usize,
        explore: usize,
        acceptable: Acceptable,
    ) -> Self {
        let calibrated = prior.generations() > 0;
        Self::Auto {
            curve,
            prior: Box::new(prior.capped(PRIOR_WEIGHT)),
            seen: Box::default(),
            max,
            chosen: 0,
            explore: if calibrated { 0 } else { explore },
            acceptable,
            last: None,
        }
    }

    /// The window of the next pass, when `pending` tokens will be fed before its slots.
    pub(crate) fn choose(&mut self, pending: usize) -> usize {
        match self {
            Self::Fixed(w) => *w,
            Self::Auto {
                curve,
                prior,
                seen,
                max,
                chosen,
                explore,
                acceptable,
                last,
            } => {
                *chosen += 1;
                if *chosen <= *explore {
                    return EXPLORE_WINDOW.min(*max);
                }
                let judged = seen.judged();
                if let Some((p, j, w)) = *last
                    && p == pending
                    && j == judged
                {
                    return w;
                }
                let mut all = (**prior).clone();
                all.add(seen);
                let w = best_window(curve, &all, *acceptable, pending, *max);
                *last = Some((pending, judged, w));
                w
            }
        }
    }

    /// Records one sample's verified pass (see [`AcceptanceHistory::observe`]).
    pub(crate) fn observe(&mut self, verified: &[(usize, bool)]) {
        if let Self::Auto { seen, .. } = self {
            seen.observe(verified);
        }
    }

    /// This generation's judged drafts (none for a fixed window).
    pub(crate) fn seen(&self) -> Option<&AcceptanceHistory> {
        match self {
            Self::Fixed(_) => None,
            Self::Auto { seen, .. } => Some(seen),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An acceptance model after `n` passes of window `w` whose drafts are accepted up to
    /// index `a` (ages as in a window advancing `a + 1` slots per pass).
    fn seen(n: usize, w: usize, a: usize) -> AcceptanceHistory {
        let mut m = AcceptanceHistory::default();
        m.count_generation();
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
            vec![0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64]
        );
        assert_eq!(window_candidates(5), vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(window_candidates(1), vec![0, 1]);
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
        // Cost proportional to length: each slot must pay for itself, and a draft accepted
        // now and then does not, so a plain pass wins.
        let linear = CostCurve::new(vec![(1, 1.0), (100, 100.0)]).unwrap();
        let rarely = seen(50, 8, 0);
        assert_eq!(best_window(&linear, &rarely, Acceptable::All, 1, 64), 0);
        // Even drafts that were always accepted do not beat a plain pass when every slot costs
        // a whole pass; with a fixed cost per pass they do.
        let always = seen(50, 8, 7);
        assert_eq!(best_window(&linear, &always, Acceptable::All, 1, 64), 0);
        let fixed_cost = CostCurve::new(vec![(1, 1.0), (100, 10.9)]).unwrap();
        assert!(best_window(&fixed_cost, &always, Acceptable::All, 1, 64) >= 8);
        // A CPU-like curve (t(65)/t(1) ≈ 6): long runs justify a longer window, rare ones not.
        let cpu = CostCurve::new(vec![(1, 3.1), (2, 3.3), (33, 15.8), (65, 19.0)]).unwrap();
        let w_rare = best_window(&cpu, &seen(50, 16, 0), Acceptable::All, 1, 64);
        let w_long = best_window(&cpu, &seen(50, 16, 15), Acceptable::All, 1, 64);
        assert!(w_rare < w_long, "{w_rare} vs {w_long}");
        assert!(w_rare <= 4, "{w_rare}");
    }

    #[test]
    fn the_measured_cpu_curve_falls_back_to_plain_passes() {
        // The demo model on 2 cores (bench --quick, x86-v4): t(1) = 0.25 ms, t(17) = 1.58,
        // t(33) = 2.96; drafts accepted as the coupled SJD bench saw them (3.46 tokens per
        // pass at window 16) do not pay for their slots.
        let cpu = CostCurve::new(vec![(1, 0.25), (17, 1.58), (33, 2.96)]).unwrap();
        let mut sjd = seen(100, 16, 2);
        // A fresh draft is accepted about one time in ten (1.08 tokens per pass at window 1).
        for i in 0..100 {
            sjd.observe(&[(0, i % 10 != 0)]);
        }
        assert_eq!(best_window(&cpu, &sjd, Acceptable::All, 1, 64), 0);
        // The same acceptance on a flat (GPU-like) curve takes the longest window.
        assert_eq!(
            best_window(&CostCurve::flat(), &sjd, Acceptable::All, 1, 64),
            64
        );
    }

    #[test]
    fn older_drafts_make_longer_windows_pay() {
        // Young drafts are always rejected, drafts refined 4+ times always accepted: a window
        // long enough to age its drafts commits far more per pass than a short one.
        let mut m = AcceptanceHistory::default();
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
        let mut m = AcceptanceHistory::default();
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
        let none = AcceptanceHistory::default();
        let mut p = WindowPolicy::auto(curve.clone(), &none, 32, 5, Acceptable::All);
        let first: Vec<usize> = (0..5).map(|_| p.choose(1)).collect();
        assert_eq!(first, vec![EXPLORE_WINDOW; 5]);
        assert!(p.choose(1) < EXPLORE_WINDOW);
        assert_eq!(WindowPolicy::fixed(7).choose(1), 7);
        // A calibration skips the exploration and decides from the first pass.
        let calibrated = seen(100, 8, 0);
        assert_eq!(calibrated.generations(), 1);
        let mut p = WindowPolicy::auto(curve, &calibrated, 32, 5, Acceptable::All);
        assert_eq!(p.choose(1), 0);
    }

    #[test]
    fn a_calibration_is_a_prior_the_generation_can_overrule() {
        let curve = CostCurve::new(vec![(1, 1.0), (100, 10.9)]).unwrap();
        // Calibrated on a model whose drafts were rejected: plain passes.
        let mut p = WindowPolicy::auto(curve, &seen(1000, 8, 0), 32, 5, Acceptable::All);
        assert_eq!(p.choose(1), 0);
        // This generation's drafts (seen through the policy) are always accepted.
        for _ in 0..400 {
            p.observe(&(0..8).map(|k| (7 - k, false)).collect::<Vec<_>>());
        }
        assert!(p.choose(1) >= 1);
        assert_eq!(p.seen().map(AcceptanceHistory::judged), Some(3200.0));
    }

    #[test]
    fn histories_round_trip_and_reject_bad_counts() {
        let h = seen(10, 8, 3);
        assert_eq!(AcceptanceHistory::from_json(&h.to_json()).unwrap(), h);
        let mut bad = h.clone();
        bad.rejected[0] = bad.verified[0] + 1.0;
        let err = AcceptanceHistory::from_json(&bad.to_json()).unwrap_err();
        assert_eq!(err.field(), Some("acceptance_history"));
        assert_eq!(h.capped(4.0).judged(), 4.0);
    }
}
