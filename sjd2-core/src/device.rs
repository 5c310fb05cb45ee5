//! Choosing a device and a compute precision from user-facing strings (`--device`, `--dtype`).

use std::str::FromStr;

use burn::tensor::{Device, FloatDType};

use crate::error::{Error, Result};

/// Floating-point precision of weights and computation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// 32-bit floats (the default; what CPU tests use).
    #[default]
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16 (refused on devices that do not support it, such as wgpu).
    BF16,
}

impl Precision {
    /// burn's float dtype.
    pub fn dtype(self) -> FloatDType {
        match self {
            Precision::F32 => FloatDType::F32,
            Precision::F16 => FloatDType::F16,
            Precision::BF16 => FloatDType::BF16,
        }
    }
}

impl Precision {
    /// The default precision of a device named as [`parse_device`] reads it: f32 on the CPU, f16
    /// on wgpu (bf16 is not supported there), bf16 on CUDA, where 7-8 B checkpoints are stored in
    /// bf16 and f32 would double their memory.
    ///
    /// ```
    /// use sjd2_core::Precision;
    ///
    /// assert_eq!(Precision::default_for("cpu"), Precision::F32);
    /// assert_eq!(Precision::default_for("wgpu:1"), Precision::F16);
    /// assert_eq!(Precision::default_for("cuda:0"), Precision::BF16);
    /// ```
    pub fn default_for(device: &str) -> Self {
        let name = device.split(':').next().unwrap_or_default();
        match name.to_ascii_lowercase().as_str() {
            "wgpu" => Precision::F16,
            "cuda" => Precision::BF16,
            _ => Precision::F32,
        }
    }
}

impl FromStr for Precision {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(Precision::F32),
            "f16" | "float16" | "half" => Ok(Precision::F16),
            "bf16" | "bfloat16" => Ok(Precision::BF16),
            other => Err(Error::config(
                "dtype",
                format!("unknown precision `{other}` (use f32, f16 or bf16)"),
            )),
        }
    }
}

/// Parses `cpu` (burn's Flex backend), `wgpu`, `wgpu:N` (N-th discrete GPU), `cuda` or `cuda:N`.
///
/// # Errors
/// [`Error::InvalidConfig`] for an unknown device, [`Error::Unsupported`] for a backend this
/// build does not include (rebuild with `--features wgpu` or `--features cuda`).
///
/// # Example
/// ```
/// let cpu = sjd2_core::device::parse_device("cpu")?;
/// assert!(sjd2_core::device::parse_device("tpu").is_err());
/// # Ok::<(), sjd2_core::Error>(())
/// ```
pub fn parse_device(spec: &str) -> Result<Device> {
    let (name, index) = match spec.split_once(':') {
        Some((n, i)) => {
            let i: usize = i.parse().map_err(|_| {
                Error::config(
                    "device",
                    format!("`{spec}`: the index after `:` must be a number"),
                )
            })?;
            (n, Some(i))
        }
        None => (spec, None),
    };
    match name.to_ascii_lowercase().as_str() {
        "cpu" | "flex" => Ok(Device::flex()),
        "wgpu" => wgpu(index),
        "cuda" => cuda(index.unwrap_or(0)),
        _ => Err(Error::config(
            "device",
            format!("unknown device `{spec}` (use cpu, wgpu[:N] or cuda[:N])"),
        )),
    }
}

#[cfg(feature = "wgpu")]
fn wgpu(index: Option<usize>) -> Result<Device> {
    use burn::tensor::DeviceKind;
    Ok(Device::wgpu(index.map_or(
        DeviceKind::DefaultDevice,
        DeviceKind::DiscreteGpu,
    )))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu(_index: Option<usize>) -> Result<Device> {
    Err(Error::Unsupported(
        "this build has no wgpu backend: rebuild with `--features wgpu`".into(),
    ))
}

#[cfg(feature = "cuda")]
fn cuda(index: usize) -> Result<Device> {
    Ok(Device::cuda(index))
}

#[cfg(not(feature = "cuda"))]
fn cuda(_index: usize) -> Result<Device> {
    Err(Error::Unsupported(
        "this build has no CUDA backend: rebuild with `--features cuda`".into(),
    ))
}

/// Makes `precision` the default float type of `device`. Call it before loading a model: burn
/// fixes a device's defaults at its first tensor.
///
/// # Errors
/// [`Error::Unsupported`] when the device cannot compute in that type (bf16 on wgpu reports
/// no support and would compute garbage) or its settings are already fixed.
pub fn configure_precision(device: &mut Device, precision: Precision) -> Result<()> {
    if precision == Precision::F32 && device.settings().float_dtype == FloatDType::F32 {
        return Ok(());
    }
    if !device.supports_dtype(precision.dtype()) {
        return Err(Error::Unsupported(format!(
            "{precision:?} is not supported on {device:?}; use f16 or f32"
        )));
    }
    device.configure(precision.dtype()).map_err(|e| {
        Error::Unsupported(format!("cannot switch {device:?} to {precision:?}: {e} (set the precision before creating any tensor)"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices_and_precisions() {
        assert!(parse_device("cpu").is_ok());
        assert!(parse_device("CPU").is_ok());
        assert_eq!(parse_device("tpu").unwrap_err().field(), Some("device"));
        assert_eq!(parse_device("cuda:x").unwrap_err().field(), Some("device"));
        #[cfg(not(feature = "wgpu"))]
        assert!(matches!(
            parse_device("wgpu").unwrap_err(),
            Error::Unsupported(_)
        ));
        #[cfg(not(feature = "cuda"))]
        assert!(matches!(
            parse_device("cuda:1").unwrap_err(),
            Error::Unsupported(_)
        ));
        assert_eq!("bf16".parse::<Precision>().unwrap(), Precision::BF16);
        assert_eq!("F16".parse::<Precision>().unwrap(), Precision::F16);
        assert_eq!(
            "f64".parse::<Precision>().unwrap_err().field(),
            Some("dtype")
        );
    }
}
