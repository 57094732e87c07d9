//! The compute device, chosen once at start-up and passed down.

use candle_core::Device;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// CUDA if built with `--features cuda` and a GPU is present, else Metal likewise, else CPU.
    #[default]
    Auto,
    Cpu,
    Cuda,
    Metal,
}

impl DeviceChoice {
    pub fn open(self) -> Result<Device> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Cuda => {
                if !candle_core::utils::cuda_is_available() {
                    return Err(Error::Device(
                        "CUDA was asked for, but this build has no `cuda` feature".into(),
                    ));
                }
                Ok(Device::new_cuda(0)?)
            }
            DeviceChoice::Metal => {
                if !candle_core::utils::metal_is_available() {
                    return Err(Error::Device(
                        "Metal was asked for, but this build has no `metal` feature".into(),
                    ));
                }
                Ok(Device::new_metal(0)?)
            }
            DeviceChoice::Auto => {
                if candle_core::utils::cuda_is_available()
                    && let Ok(device) = Device::new_cuda(0)
                {
                    return Ok(device);
                }
                if candle_core::utils::metal_is_available()
                    && let Ok(device) = Device::new_metal(0)
                {
                    return Ok(device);
                }
                Ok(Device::Cpu)
            }
        }
    }
}

pub fn describe(device: &Device) -> &'static str {
    match device {
        Device::Cpu => "cpu",
        Device::Cuda(_) => "cuda",
        Device::Metal(_) => "metal",
    }
}
