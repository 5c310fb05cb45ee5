//! Chi-square goodness of fit for comparing sampled sequences with an exact distribution.

use std::collections::HashMap;
use std::hash::Hash;

/// The result of [`goodness_of_fit`].
#[derive(Debug, Clone, PartialEq)]
pub struct GoodnessOfFit {
    /// Pearson's chi-square statistic.
    pub statistic: f64,
    /// Degrees of freedom (cells after pooling, minus one).
    pub dof: usize,
    /// `P(χ²_dof ≥ statistic)`.
    pub p_value: f64,
    /// Cells used (categories with expected count ≥ `min_expected`, plus one pooled cell).
    pub cells: usize,
}

/// Pearson chi-square test of `observed` counts against the `expected` probabilities.
///
/// Categories whose expected count is below `min_expected` are pooled into one cell (as are
/// observed categories missing from `expected`, which makes an impossible outcome count against
/// the fit).
pub fn goodness_of_fit<K: Eq + Hash + Clone>(
    observed: &HashMap<K, usize>,
    expected: &HashMap<K, f64>,
    min_expected: f64,
) -> GoodnessOfFit {
    let n: usize = observed.values().sum();
    let n = n as f64;
    let total_p: f64 = expected.values().sum();
    let mut stat = 0.0;
    let mut cells: usize = 0;
    let (mut pooled_obs, mut pooled_exp) = (0.0, 0.0);
    for (k, &p) in expected {
        let e = n * p / total_p;
        let o = observed.get(k).copied().unwrap_or(0) as f64;
        if e >= min_expected {
            stat += (o - e).powi(2) / e;
            cells += 1;
        } else {
            pooled_obs += o;
            pooled_exp += e;
        }
    }
    for (k, &o) in observed {
        if !expected.contains_key(k) {
            pooled_obs += o as f64;
        }
    }
    if pooled_exp > 0.0 || pooled_obs > 0.0 {
        let e = pooled_exp.max(1e-9);
        stat += (pooled_obs - e).powi(2) / e;
        cells += 1;
    }
    let dof = cells.saturating_sub(1).max(1);
    GoodnessOfFit {
        statistic: stat,
        dof,
        p_value: chi_square_sf(stat, dof as f64),
        cells,
    }
}

/// Survival function of the chi-square distribution: `Q(dof/2, x/2)`.
pub fn chi_square_sf(x: f64, dof: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    upper_regularized_gamma(dof / 2.0, x / 2.0)
}

fn ln_gamma(x: f64) -> f64 {
    // Lanczos approximation (g = 7, n = 9).
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + 7.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

fn upper_regularized_gamma(a: f64, x: f64) -> f64 {
    let ln_pre = a * x.ln() - x - ln_gamma(a);
    if x < a + 1.0 {
        // Series for the lower function.
        let (mut sum, mut term, mut n) = (1.0 / a, 1.0 / a, a);
        for _ in 0..10_000 {
            n += 1.0;
            term *= x / n;
            sum += term;
            if term.abs() < sum.abs() * 1e-15 {
                break;
            }
        }
        (1.0 - sum * ln_pre.exp()).clamp(0.0, 1.0)
    } else {
        // Continued fraction (modified Lentz) for the upper function.
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..10_000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < 1e-15 {
                break;
            }
        }
        (ln_pre.exp() * h).clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chi_square_survival_matches_tables() {
        // Standard table values.
        assert!((chi_square_sf(3.841_458_8, 1.0) - 0.05).abs() < 1e-6);
        assert!((chi_square_sf(18.307_038, 10.0) - 0.05).abs() < 1e-6);
        assert!((chi_square_sf(29.588_298, 10.0) - 0.001).abs() < 1e-7);
        assert!((chi_square_sf(2.0, 2.0) - (-1.0f64).exp()).abs() < 1e-12);
        assert_eq!(chi_square_sf(0.0, 3.0), 1.0);
    }

    #[test]
    fn goodness_of_fit_detects_mismatch() {
        let expected: HashMap<u8, f64> = [(0, 0.5), (1, 0.5)].into();
        let fair: HashMap<u8, usize> = [(0, 5020), (1, 4980)].into();
        let biased: HashMap<u8, usize> = [(0, 5400), (1, 4600)].into();
        assert!(goodness_of_fit(&fair, &expected, 5.0).p_value > 0.5);
        assert!(goodness_of_fit(&biased, &expected, 5.0).p_value < 1e-10);
        let impossible: HashMap<u8, usize> = [(0, 5000), (1, 4990), (2, 10)].into();
        assert!(goodness_of_fit(&impossible, &expected, 5.0).p_value < 1e-10);
    }
}
