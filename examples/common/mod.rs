//! Command-line pieces shared by the examples.

use clap::Args;
use sjd2::Device;

/// `--device` and `--dtype`.
#[derive(Args, Debug, Clone)]
pub struct DeviceArgs {
    /// Device: cpu, wgpu[:N] or cuda[:N] (GPU backends need `--features wgpu` or `cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Precision of weights and computation: f32, f16 or bf16 (bf16 is refused where unsupported).
    #[arg(long, default_value = "f32")]
    pub dtype: String,
}

impl DeviceArgs {
    /// The device, switched to the requested precision.
    pub fn device(&self) -> anyhow::Result<Device> {
        let mut device = sjd2::core::parse_device(&self.device)?;
        sjd2::core::configure_precision(&mut device, self.dtype.parse()?)?;
        Ok(device)
    }
}
