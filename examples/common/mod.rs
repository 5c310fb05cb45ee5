//! Command-line pieces shared by the examples.

use clap::Args;
use sjd2::Device;

/// `--device` and `--dtype`.
#[derive(Args, Debug, Clone)]
pub struct DeviceArgs {
    /// Device: cpu, wgpu[:N] or cuda[:N] (GPU backends need `--features wgpu` or `cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Precision of weights and computation: f32, f16, bf16 (refused where unsupported), or auto:
    /// f32 on the CPU, f16 on wgpu, bf16 on CUDA.
    #[arg(long, default_value = "auto")]
    pub dtype: String,
}

impl DeviceArgs {
    /// The device, switched to the requested precision.
    pub fn device(&self) -> anyhow::Result<Device> {
        let mut device = sjd2::core::parse_device(&self.device)?;
        let precision = match self.dtype.as_str() {
            "auto" => sjd2::core::Precision::default_for(&self.device),
            other => other.parse()?,
        };
        sjd2::core::configure_precision(&mut device, precision)?;
        Ok(device)
    }
}
