//! `sjd2.json`: the SJD2 settings a fine-tuned checkpoint was trained for.
//!
//! `finetune export` writes it beside the weights; a loader that finds it knows the checkpoint
//! was fine-tuned for SJD2 and which noise schedule, number of levels `K`, level conditioning and
//! embedding normalization the decoder must use (decoding with other settings feeds the model
//! inputs it was never trained on).

use std::path::Path;

use serde::{Deserialize, Serialize};
use sjd2_core::{Error, NoiseSchedule, NormalizationKind};

use crate::error::{LoadError, Result};

/// File name of the settings beside a fine-tuned checkpoint.
pub const SJD2_JSON: &str = "sjd2.json";

/// Version of [`Sjd2Settings`]' format.
pub const FORMAT: u32 = 1;

/// The contents of `sjd2.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sjd2Settings {
    /// [`FORMAT`].
    pub format: u32,
    /// Noise levels `K`.
    pub denoising_steps: usize,
    /// `karras`, `linear` or `cosine`.
    pub schedule: String,
    /// Karras σ at level 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigma_min: Option<f64>,
    /// Karras σ at level K.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigma_max: Option<f64>,
    /// Karras spacing exponent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rho: Option<f64>,
    /// Level conditioning added to noisy inputs: `none` or `sinusoidal`.
    pub level_conditioning: String,
    /// Embedding normalization: `per_dimension` or `global_scale`.
    pub normalization: String,
    /// How the checkpoint was trained (the fine-tune's settings, steps, data), for the record.
    #[serde(default)]
    pub training: serde_json::Value,
}

impl Sjd2Settings {
    /// Settings for a schedule, `K`, conditioning and normalization.
    pub fn new(
        schedule: NoiseSchedule,
        denoising_steps: usize,
        sinusoidal_levels: bool,
        normalization: NormalizationKind,
    ) -> Self {
        let (name, sigma_min, sigma_max, rho) = schedule_fields(schedule);
        Self {
            format: FORMAT,
            denoising_steps,
            schedule: name,
            sigma_min,
            sigma_max,
            rho,
            level_conditioning: if sinusoidal_levels {
                "sinusoidal"
            } else {
                "none"
            }
            .into(),
            normalization: match normalization {
                NormalizationKind::PerDimension => "per_dimension",
                NormalizationKind::GlobalScale => "global_scale",
                _ => "unknown",
            }
            .into(),
            training: serde_json::Value::Null,
        }
    }

    /// The noise schedule.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for an unknown name or missing Karras parameters.
    pub fn noise_schedule(&self) -> std::result::Result<NoiseSchedule, Error> {
        schedule_from_fields(&self.schedule, self.sigma_min, self.sigma_max, self.rho)
    }

    /// The normalization.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for an unknown name.
    pub fn normalization_kind(&self) -> std::result::Result<NormalizationKind, Error> {
        normalization_from_name(&self.normalization)
    }

    /// Whether noisy inputs carry the sinusoidal level embedding.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for an unknown name.
    pub fn sinusoidal_levels(&self) -> std::result::Result<bool, Error> {
        match self.level_conditioning.as_str() {
            "sinusoidal" => Ok(true),
            "none" => Ok(false),
            other => Err(Error::config(
                "level_conditioning",
                format!("unknown level conditioning `{other}` (none, sinusoidal)"),
            )),
        }
    }

    /// Reads `dir/sjd2.json` (or the file itself), `None` when there is none.
    ///
    /// # Errors
    /// [`LoadError::Io`] for an unreadable file, [`LoadError::Corrupt`] for invalid contents.
    pub fn find(path: &Path) -> Result<Option<Self>> {
        let file = if path.is_dir() {
            path.join(SJD2_JSON)
        } else if path.file_name().is_some_and(|n| n == SJD2_JSON) {
            path.to_path_buf()
        } else {
            path.parent().unwrap_or(Path::new(".")).join(SJD2_JSON)
        };
        if !file.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&file).map_err(|source| LoadError::Io {
            path: file.clone(),
            source,
        })?;
        let s: Self = serde_json::from_str(&text).map_err(|e| LoadError::Corrupt {
            path: file.clone(),
            detail: e.to_string(),
        })?;
        let check = s
            .noise_schedule()
            .and(s.normalization_kind().map(|_| ()))
            .and(s.sinusoidal_levels().map(|_| ()));
        if s.format != FORMAT || s.denoising_steps == 0 || check.is_err() {
            return Err(LoadError::Corrupt {
                path: file,
                detail: format!(
                    "format {} (expected {FORMAT}), K {}: {}",
                    s.format,
                    s.denoising_steps,
                    check.err().map_or_else(String::new, |e| e.to_string())
                ),
            });
        }
        Ok(Some(s))
    }

    /// Writes the settings as `dir/sjd2.json`.
    ///
    /// # Errors
    /// [`LoadError::Io`].
    pub fn write(&self, dir: &Path) -> Result<()> {
        let file = dir.join(SJD2_JSON);
        let text = serde_json::to_string_pretty(self).map_err(|e| LoadError::Corrupt {
            path: file.clone(),
            detail: e.to_string(),
        })?;
        std::fs::write(&file, text).map_err(|source| LoadError::Io { path: file, source })
    }
}

/// A schedule as its name (`karras`, `linear`, `cosine`) and Karras parameters, as `sjd2.json`
/// and the fine-tune's `state.json` store it.
pub fn schedule_fields(schedule: NoiseSchedule) -> (String, Option<f64>, Option<f64>, Option<f64>) {
    match schedule {
        NoiseSchedule::Karras {
            sigma_min,
            sigma_max,
            rho,
        } => ("karras".into(), Some(sigma_min), Some(sigma_max), Some(rho)),
        NoiseSchedule::Linear => ("linear".into(), None, None, None),
        NoiseSchedule::Cosine => ("cosine".into(), None, None, None),
        other => (format!("{other:?}"), None, None, None),
    }
}

/// The schedule [`schedule_fields`] wrote.
///
/// # Errors
/// [`Error::InvalidConfig`] for an unknown name or missing Karras parameters.
pub fn schedule_from_fields(
    name: &str,
    sigma_min: Option<f64>,
    sigma_max: Option<f64>,
    rho: Option<f64>,
) -> std::result::Result<NoiseSchedule, Error> {
    match name {
        "karras" => match (sigma_min, sigma_max, rho) {
            (Some(sigma_min), Some(sigma_max), Some(rho)) => Ok(NoiseSchedule::Karras {
                sigma_min,
                sigma_max,
                rho,
            }),
            _ => Err(Error::config(
                "schedule",
                "karras needs sigma_min, sigma_max and rho",
            )),
        },
        "linear" => Ok(NoiseSchedule::Linear),
        "cosine" => Ok(NoiseSchedule::Cosine),
        other => Err(Error::config(
            "schedule",
            format!("unknown schedule `{other}` (karras, linear, cosine)"),
        )),
    }
}

/// A normalization's name: `per_dimension` or `global_scale`.
pub fn normalization_name(kind: NormalizationKind) -> &'static str {
    match kind {
        NormalizationKind::PerDimension => "per_dimension",
        NormalizationKind::GlobalScale => "global_scale",
        _ => "unknown",
    }
}

/// The normalization [`normalization_name`] wrote.
///
/// # Errors
/// [`Error::InvalidConfig`] for an unknown name.
pub fn normalization_from_name(name: &str) -> std::result::Result<NormalizationKind, Error> {
    match name {
        "per_dimension" => Ok(NormalizationKind::PerDimension),
        "global_scale" => Ok(NormalizationKind::GlobalScale),
        other => Err(Error::config(
            "normalization",
            format!("unknown normalization `{other}` (per_dimension, global_scale)"),
        )),
    }
}
