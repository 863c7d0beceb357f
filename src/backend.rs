//! The CPU backend compiled by default and the backends chosen by feature.

/// The default CPU backend: flex when compiled in (Burn's fast pure-Rust CPU backend), else
/// ndarray.
#[cfg(feature = "flex")]
pub type CpuBackend = burn::backend::Flex;
/// The default CPU backend: flex when compiled in, else ndarray.
#[cfg(all(not(feature = "flex"), feature = "ndarray"))]
pub type CpuBackend = burn::backend::NdArray;
