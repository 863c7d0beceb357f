//! The compute backend a command runs on (`--device`).

/// A compute backend.
#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum Device {
    /// Burn's fast pure-Rust CPU backend.
    Flex,
    /// The ndarray CPU backend.
    Ndarray,
    /// wgpu (Vulkan / Metal / DX12).
    Wgpu,
    /// CUDA (NVIDIA GPUs).
    Cuda,
}

impl Device {
    /// The lower-case name, as `--device` takes it.
    pub fn name(self) -> String {
        format!("{self:?}").to_lowercase()
    }
}

/// Work generic over the backend, run on the one `--device` names.
pub trait BackendJob {
    fn run<B: burn::tensor::backend::Backend>(self, device: B::Device) -> anyhow::Result<()>;
}

pub fn on_backend(device: Device, job: impl BackendJob) -> anyhow::Result<()> {
    on_backend_at(device, 0, job)
}

/// [`on_backend`] on GPU `index` of a `cuda` or `wgpu` device (0: the default device; the CPU
/// backends have one device).
#[allow(unused_variables)]
pub fn on_backend_at(device: Device, index: usize, job: impl BackendJob) -> anyhow::Result<()> {
    match device {
        #[cfg(feature = "flex")]
        Device::Flex => job.run::<burn::backend::Flex>(Default::default()),
        #[cfg(feature = "ndarray")]
        Device::Ndarray => job.run::<burn::backend::NdArray>(Default::default()),
        #[cfg(feature = "wgpu")]
        Device::Wgpu => job.run::<burn::backend::Wgpu>(match index {
            0 => Default::default(),
            i => burn::backend::wgpu::WgpuDevice::DiscreteGpu(i),
        }),
        #[cfg(feature = "cuda")]
        Device::Cuda => job.run::<burn::backend::Cuda>(burn::backend::cuda::CudaDevice::new(index)),
        #[allow(unreachable_patterns)]
        other => {
            let name = other.name();
            anyhow::bail!(
                "this binary was built without the `{name}` feature: cargo build --release --features {name}"
            )
        }
    }
}
