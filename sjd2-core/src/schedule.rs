//! Noise schedules for SJD2's Jacobi-denoising slots and the DDIM refinement step.
//!
//! A schedule with `K` denoising steps gives `(α_k, σ_k)` for levels `0..=K`; level 0 is clean
//! (`α_0 = 1, σ_0 = 0`) and level `K` is the noisiest. A noisy slot at level `k` holds
//! `ē_k = α_k · ē_0 + σ_k · ε` in the normalized embedding space.

use burn::Tensor;

use crate::error::{Error, Result};

/// A family of noise schedules.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum NoiseSchedule {
    /// Karras et al. (2022, "Elucidating the Design Space of Diffusion-Based Generative Models",
    /// eq. 5) spacing of σ between `sigma_min` and `sigma_max` with exponent `rho`, mapped to a
    /// variance-preserving pair `α = 1/√(1+σ²)`, `σ' = σ/√(1+σ²)`. The SJD2 paper's choice.
    Karras {
        /// σ at level 1 (> 0).
        sigma_min: f64,
        /// σ at level K (> `sigma_min`).
        sigma_max: f64,
        /// Spacing exponent (> 0; 7 in Karras et al.).
        rho: f64,
    },
    /// Rectified-flow interpolation: `t = k/K`, `α = 1 − t`, `σ = t`.
    Linear,
    /// Cosine interpolation: `t = k/K`, `α = cos(πt/2)`, `σ = sin(πt/2)`.
    Cosine,
}

impl Default for NoiseSchedule {
    /// Karras with the EDM defaults `σ_min = 0.002`, `σ_max = 80`, `ρ = 7`.
    fn default() -> Self {
        NoiseSchedule::Karras {
            sigma_min: 0.002,
            sigma_max: 80.0,
            rho: 7.0,
        }
    }
}

impl NoiseSchedule {
    /// Checks the parameters.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming `schedule.sigma_min`, `schedule.sigma_max` or
    /// `schedule.rho`.
    pub fn validate(&self) -> Result<()> {
        if let NoiseSchedule::Karras {
            sigma_min,
            sigma_max,
            rho,
        } = *self
        {
            if !(sigma_min.is_finite() && sigma_min > 0.0) {
                return Err(Error::config(
                    "schedule.sigma_min",
                    format!("must be finite and > 0 (got {sigma_min})"),
                ));
            }
            if !(sigma_max.is_finite() && sigma_max > sigma_min) {
                return Err(Error::config(
                    "schedule.sigma_max",
                    format!("must be finite and > sigma_min (got {sigma_max})"),
                ));
            }
            if !(rho.is_finite() && rho > 0.0) {
                return Err(Error::config(
                    "schedule.rho",
                    format!("must be finite and > 0 (got {rho})"),
                ));
            }
        }
        Ok(())
    }

    /// The table of `(α_k, σ_k)` for `k = 0..=steps`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for `denoising_steps == 0` or invalid schedule parameters.
    pub fn table(&self, steps: usize) -> Result<ScheduleTable> {
        self.validate()?;
        if steps == 0 {
            return Err(Error::config(
                "denoising_steps",
                "must be >= 1 for SJD2 (got 0)",
            ));
        }
        let mut alpha = vec![1.0];
        let mut sigma = vec![0.0];
        for k in 1..=steps {
            let t = k as f64 / steps as f64;
            let (a, s) = match *self {
                NoiseSchedule::Linear => (1.0 - t, t),
                NoiseSchedule::Cosine => {
                    let x = std::f64::consts::FRAC_PI_2 * t;
                    (x.cos().max(0.0), x.sin())
                }
                NoiseSchedule::Karras {
                    sigma_min,
                    sigma_max,
                    rho,
                } => {
                    // Level 1 ↔ sigma_min, level K ↔ sigma_max.
                    let frac = if steps == 1 {
                        1.0
                    } else {
                        (k - 1) as f64 / (steps - 1) as f64
                    };
                    let lo = sigma_min.powf(1.0 / rho);
                    let hi = sigma_max.powf(1.0 / rho);
                    let s = (lo + frac * (hi - lo)).powf(rho);
                    let norm = (1.0 + s * s).sqrt();
                    (1.0 / norm, s / norm)
                }
            };
            alpha.push(a);
            sigma.push(s);
        }
        Ok(ScheduleTable { alpha, sigma })
    }
}

/// `(α_k, σ_k)` for levels `0..=K` of one schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleTable {
    alpha: Vec<f64>,
    sigma: Vec<f64>,
}

impl ScheduleTable {
    /// The number of denoising steps `K` (the noisiest level).
    pub fn steps(&self) -> usize {
        self.alpha.len() - 1
    }

    /// `α_k`. Levels above `K` are clamped to `K`.
    pub fn alpha(&self, level: usize) -> f64 {
        self.alpha[level.min(self.steps())]
    }

    /// `σ_k`. Levels above `K` are clamped to `K`.
    pub fn sigma(&self, level: usize) -> f64 {
        self.sigma[level.min(self.steps())]
    }

    /// Coefficients `(c_e, c_x)` of the deterministic DDIM step from level `from` to level `to`
    /// (`to < from`, `from >= 1`): `ē_to = c_e · ē_from + c_x · x̂_0`, which equals
    /// `α_to · x̂_0 + σ_to · ε̂` with `ε̂ = (ē_from − α_from · x̂_0) / σ_from`.
    ///
    /// At `to = 0` this is `(0, 1)`: the step returns `x̂_0`.
    pub fn ddim_coefficients(&self, from: usize, to: usize) -> (f64, f64) {
        let (a_f, s_f) = (self.alpha(from), self.sigma(from));
        let (a_t, s_t) = (self.alpha(to), self.sigma(to));
        if s_f <= 0.0 {
            return (0.0, 1.0);
        }
        let r = s_t / s_f;
        (r, a_t - a_f * r)
    }
}

/// The DDIM step on tensors: `c_e · noisy + c_x · x0_hat`, with per-slot coefficients broadcast
/// over the last (embedding) dimension.
///
/// # Shapes
/// - `noisy`, `x0_hat`: `[batch, slots, dim]`
/// - `c_e`, `c_x`: `[batch, slots]`
pub fn ddim_step(noisy: Tensor<3>, x0_hat: Tensor<3>, c_e: Tensor<2>, c_x: Tensor<2>) -> Tensor<3> {
    noisy * c_e.unsqueeze_dim::<3>(2) + x0_hat * c_x.unsqueeze_dim::<3>(2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    fn all() -> Vec<NoiseSchedule> {
        vec![
            NoiseSchedule::default(),
            NoiseSchedule::Linear,
            NoiseSchedule::Cosine,
        ]
    }

    #[test]
    fn level_zero_is_clean_and_levels_are_monotone() {
        for s in all() {
            for steps in [1, 2, 20] {
                let t = s.table(steps).unwrap();
                assert_eq!((t.alpha(0), t.sigma(0)), (1.0, 0.0));
                for k in 1..=steps {
                    assert!(
                        t.alpha(k) < t.alpha(k - 1),
                        "{s:?} alpha not decreasing at {k}"
                    );
                    assert!(
                        t.sigma(k) > t.sigma(k - 1),
                        "{s:?} sigma not increasing at {k}"
                    );
                }
            }
        }
        let k = NoiseSchedule::default().table(20).unwrap();
        let s_max = 80.0 / (1.0f64 + 6400.0).sqrt();
        assert!((k.sigma(20) - s_max).abs() < 1e-12);
        let s_min = 0.002 / (1.0f64 + 0.002 * 0.002).sqrt();
        assert!((k.sigma(1) - s_min).abs() < 1e-12);
    }

    #[test]
    fn invalid_parameters_name_the_field() {
        assert_eq!(
            NoiseSchedule::Linear.table(0).unwrap_err().field(),
            Some("denoising_steps")
        );
        let bad = NoiseSchedule::Karras {
            sigma_min: 0.0,
            sigma_max: 1.0,
            rho: 7.0,
        };
        assert_eq!(
            bad.table(4).unwrap_err().field(),
            Some("schedule.sigma_min")
        );
        let bad = NoiseSchedule::Karras {
            sigma_min: 1.0,
            sigma_max: 0.5,
            rho: 7.0,
        };
        assert_eq!(
            bad.table(4).unwrap_err().field(),
            Some("schedule.sigma_max")
        );
        let bad = NoiseSchedule::Karras {
            sigma_min: 0.1,
            sigma_max: 1.0,
            rho: -1.0,
        };
        assert_eq!(bad.table(4).unwrap_err().field(), Some("schedule.rho"));
    }

    #[test]
    fn ddim_step_to_zero_returns_x0_and_is_consistent() {
        for s in all() {
            let t = s.table(10).unwrap();
            assert_eq!(t.ddim_coefficients(7, 0), (0.0, 1.0));
            // Consistency: ē_k = α_k x0 + σ_k ε steps to α_j x0 + σ_j ε exactly.
            let (x0, eps) = (0.7, -1.3);
            let e7 = t.alpha(7) * x0 + t.sigma(7) * eps;
            let (ce, cx) = t.ddim_coefficients(7, 3);
            let e3 = ce * e7 + cx * x0;
            assert!((e3 - (t.alpha(3) * x0 + t.sigma(3) * eps)).abs() < 1e-12);
        }
        let device = Device::flex();
        let noisy = Tensor::<3>::from_floats([[[1.0, 2.0], [3.0, 4.0]]], &device);
        let x0 = Tensor::<3>::from_floats([[[5.0, 6.0], [7.0, 8.0]]], &device);
        let ce = Tensor::<2>::from_floats([[0.0, 0.5]], &device);
        let cx = Tensor::<2>::from_floats([[1.0, 0.25]], &device);
        let out = ddim_step(noisy, x0, ce, cx)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(out, vec![5.0, 6.0, 3.25, 4.0]);
    }
}
