//! The CPU backend compiled by default, the training backend, and the backends chosen by
//! feature.

use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
use burn::backend::Autodiff;

/// The default CPU backend: flex when compiled in (Burn's fast pure-Rust CPU backend), else
/// ndarray.
#[cfg(feature = "flex")]
pub type CpuBackend = burn::backend::Flex;
/// The default CPU backend: flex when compiled in, else ndarray.
#[cfg(all(not(feature = "flex"), feature = "ndarray"))]
pub type CpuBackend = burn::backend::NdArray;

/// What training runs on: `B` with autodiff that keeps the outputs of compute-bound operations
/// (matrix products) for the backward pass and recomputes the memory-bound ones (LayerNorm,
/// softmax, GELU, adds) from them. The gradients are the same; ViT-B/16 at stride 12 and batch
/// 64 needs 11.4 GB instead of 20.2 GB for about 10% more time on the CPU
/// (`docs/performance.md`).
pub type TrainBackend<B> = Autodiff<B, BalancedCheckpointing>;
